"""Apply a rendered control plane: server-side apply in dependency order, waiting for each service,
then prune what this deployment created and no longer wants.

The namespace is created when missing. Each update of the plan is the API server's own answer to a
dry run: what it would not store differently is no change; a Job whose pod template changes (which
the server never allows in place) is replaced; anything else it refuses stops the plan before
anything is touched."""

from __future__ import annotations

import base64
import copy
import json
import time
from collections.abc import Callable

from teapot import kube
from teapot.deploy import plan
from teapot.deploy import settings as settings_mod
from teapot.deploy.service import settings_key
from teapot.deploy.services import kubernetes as kubernetes_services
from teapot.deploy.targets.kubernetes import MANAGED_BY, PART_OF, Unit, render
from teapot.resources.errors import ValidationError

Say = Callable[[str], None]


def existing_passwords(cluster: kube.Cluster, cfg: dict) -> dict[str, str]:
    secret = cluster.get({"apiVersion": "v1", "kind": "Secret",
                          "metadata": {"name": f"{cfg['name']}-passwords", "namespace": cfg["namespace"]}})
    if not secret:
        return {}
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def desired(cfg: dict, cluster: kube.Cluster | None = None) -> list[Unit]:
    existing = existing_passwords(cluster, cfg) if cluster else None
    return render(cfg, kubernetes_services(cfg), existing)


def load_file(path: str) -> dict:
    """Read and check a deployment file completely, dependencies included."""
    with open(path) as f:
        cfg = settings_mod.load(f.read(), path)
    check_dependencies(cfg)
    return cfg


def check_dependencies(cfg: dict) -> None:
    """Every enabled service has what it needs, or a ValidationError names what is missing."""
    enabled = {s.name: s for s in kubernetes_services(cfg)}
    everything = copy.deepcopy(cfg)
    for section in everything["services"].values():
        section["enabled"] = True
    owner = {s.name: settings_key(s) for s in kubernetes_services(everything)}
    external = cfg["identity"]["external"]
    for service in enabled.values():
        for dep in service.depends_on:
            if dep in enabled or (dep == "keystone" and external):
                continue
            hint = " or set identity.external" if dep == "keystone" else ""
            raise ValidationError(
                f"services.{settings_key(service)}",
                f"{service.name} needs {dep}: enable services.{owner.get(dep, dep)}{hint}")


def namespace_object(cfg: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": cfg["namespace"]}}


def compute_plan(cfg: dict, cluster: kube.Cluster) -> tuple[list[Unit], list[plan.Change]]:
    """What apply would do. Updates are the API server's own answer (a dry run of each)."""
    units = desired(cfg, cluster)
    objects = [o for u in units for o in u.objects]
    selector = f"{MANAGED_BY}=teapot,{PART_OF}={cfg['name']}"
    live = cluster.owned(cfg["namespace"], selector)
    changes = []
    if _missing(cluster, namespace_object(cfg)):
        changes.append(plan.Change("create", "Namespace", cfg["namespace"],
                                   obj=namespace_object(cfg)))
    live_by_key = {(o["kind"], o["metadata"]["name"]): o for o in live}
    for change in plan.plan(objects, live):
        if change.action == "update":
            change = _as_the_server_decides(cluster, change, live_by_key[(change.kind, change.name)])
            if change is None:
                continue
        changes.append(change)
    return units, changes


# A Job's pod template cannot change in place (the API server refuses it): such a Job is
# deleted and created again, which runs it again.
REPLACED = "replaced: a Job's pod template cannot change in place"
# Metadata the API server keeps for itself: a dry run may differ there when nothing else changes.
_BOOKKEEPING = ("managedFields", "resourceVersion", "generation")


def _as_the_server_decides(cluster: kube.Cluster, change: plan.Change,
                           live: dict) -> plan.Change | None:
    """An update as the API server sees it, asked with a dry run of the apply.

    None when it would store nothing new: it omits empty lists and maps and writes quantities its
    own way, so a difference seen here may be none there. Otherwise the fields it would change. A
    Job it refuses to change is to be replaced (REPLACED); any other refusal (e.g. a
    StatefulSet's volumeClaimTemplates) stops the plan, before anything is touched."""
    from kubernetes.client.exceptions import ApiException

    try:
        after = cluster.apply(change.obj, dry_run=True)
    except ApiException as e:
        if e.status != 422:
            raise
        if change.kind == "Job" and "field is immutable" in _message(e):
            fields = plan.changed_fields(_stored(_without_empty(change.obj)), _stored(live))
            return plan.Change("update", change.kind, change.name, [*fields, REPLACED], change.obj)
        raise RuntimeError(f"{change.kind}/{change.name} cannot be changed in place, the API "
                           f"server refuses it: {_message(e)}") from None
    before, after = _stored(live), _stored(after)
    fields = sorted(set(plan.changed_fields(after, before)) | set(plan.changed_fields(before, after)))
    return plan.Change("update", change.kind, change.name, fields, change.obj) if fields else None


def _stored(obj: dict) -> dict:
    """What an apply can change: no status, no bookkeeping."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _BOOKKEEPING}
    out = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "status")}
    return {**out, "metadata": meta}


def _without_empty(value):
    """`value` as stored: no None, no empty list or map."""
    if isinstance(value, dict):
        value = {k: _without_empty(v) for k, v in value.items()}
        return {k: v for k, v in value.items() if v is not None and v != [] and v != {}}
    if isinstance(value, list):
        return [_without_empty(v) for v in value]
    return value


def _missing(cluster: kube.Cluster, obj: dict) -> bool:
    """Whether the object is missing; not when the cluster does not let us look (403)."""
    from kubernetes.client.exceptions import ApiException

    try:
        return cluster.get(obj) is None
    except ApiException as e:
        if e.status == 403:
            return False
        raise


def _message(e) -> str:
    try:
        return json.loads(e.body)["message"]
    except (TypeError, ValueError, KeyError):
        return f"{e.status} {e.reason}"


def wait_ready(cluster: kube.Cluster, obj: dict, say: Say, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        ok, why = kube.readiness(cluster.get(obj))
        if ok:
            return
        if why == "failed":
            raise RuntimeError(f"{obj['kind']}/{obj['metadata']['name']} failed; see its pods' logs")
        if why != last:
            say(f"  waiting for {obj['kind']}/{obj['metadata']['name']}: {why}")
            last = why
        if time.monotonic() > deadline:
            raise RuntimeError(f"{obj['kind']}/{obj['metadata']['name']} not ready after "
                               f"{timeout:.0f} s ({why})")
        time.sleep(2)


def apply(cfg: dict, cluster: kube.Cluster, say: Say, wait: bool = True,
          timeout: float = 900.0) -> list[plan.Change]:
    units, changes = compute_plan(cfg, cluster)
    pending = {(c.kind, c.name) for c in changes if c.action in ("create", "update")}
    replaced = {(c.kind, c.name) for c in changes if REPLACED in c.fields}
    for change in changes:
        if change.kind == "Namespace":
            say(f"namespace {change.name}: creating")
            cluster.apply(change.obj)
    for unit in units:
        todo = [o for o in unit.objects if (o["kind"], o["metadata"]["name"]) in pending]
        if not todo:
            continue
        say(f"{unit.service}: applying {len(todo)} object(s)")
        for obj in todo:
            if (obj["kind"], obj["metadata"]["name"]) in replaced:
                say(f"  replacing {obj['kind']}/{obj['metadata']['name']}: its pod template "
                    "cannot change in place")
                _delete(cluster, obj, timeout)
            cluster.apply(obj)
            if wait and obj["kind"] in ("Job", "Deployment", "StatefulSet", "DaemonSet"):
                wait_ready(cluster, obj, say, timeout)
        say(f"{unit.service}: ready" if wait else f"{unit.service}: applied")
    for change in changes:
        if change.action == "delete":
            say(f"pruning {change.kind}/{change.name}")
            cluster.delete(change.obj)
    return changes


def _delete(cluster: kube.Cluster, obj: dict, timeout: float) -> None:
    """Delete and wait until it is gone (a finalizer may hold it a while)."""
    cluster.delete(obj)
    deadline = time.monotonic() + timeout
    while cluster.get(obj) is not None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{obj['kind']}/{obj['metadata']['name']} still there "
                               f"{timeout:.0f} s after its deletion")
        time.sleep(0.5)


def status(cfg: dict, cluster: kube.Cluster) -> list[tuple[str, str, bool, str]]:
    rows = []
    for unit in desired(cfg, cluster):
        for obj in unit.objects:
            if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet"):
                ok, why = kube.readiness(cluster.get(obj))
                rows.append((unit.service, obj["kind"], ok, why))
    return rows
