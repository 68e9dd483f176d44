"""Apply a rendered control plane: server-side apply in dependency order, waiting for each service,
then prune what this deployment created and no longer wants."""

from __future__ import annotations

import base64
import copy
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


def compute_plan(cfg: dict, cluster: kube.Cluster) -> tuple[list[Unit], list[plan.Change]]:
    units = desired(cfg, cluster)
    objects = [o for u in units for o in u.objects]
    selector = f"{MANAGED_BY}=teapot,{PART_OF}={cfg['name']}"
    return units, plan.plan(objects, cluster.owned(cfg["namespace"], selector))


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
    for unit in units:
        todo = [o for o in unit.objects if (o["kind"], o["metadata"]["name"]) in pending]
        if not todo:
            continue
        say(f"{unit.service}: applying {len(todo)} object(s)")
        for obj in todo:
            cluster.apply(obj)
            if wait and obj["kind"] in ("Job", "Deployment", "StatefulSet", "DaemonSet"):
                wait_ready(cluster, obj, say, timeout)
        say(f"{unit.service}: ready" if wait else f"{unit.service}: applied")
    for change in changes:
        if change.action == "delete":
            say(f"pruning {change.kind}/{change.name}")
            cluster.delete(change.obj)
    return changes


def status(cfg: dict, cluster: kube.Cluster) -> list[tuple[str, str, bool, str]]:
    rows = []
    for unit in desired(cfg, cluster):
        for obj in unit.objects:
            if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet"):
                ok, why = kube.readiness(cluster.get(obj))
                rows.append((unit.service, obj["kind"], ok, why))
    return rows
