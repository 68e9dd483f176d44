"""container-infra v1 handlers. Every object belongs to a Keystone project; nothing of one project
is visible or changeable from another (a foreign object is a 404, not a 403)."""

from __future__ import annotations

import copy
import json
import time
import uuid as uuidlib
from typing import Any

import jsonpatch
from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from teapot import pki
from teapot.api import schema
from teapot.api.common import FastJSONResponse, authorize, identity
from teapot.api.container_infra import microversion, views
from teapot.api.container_infra import schemas as s
from teapot.api.errors import APIError
from teapot.api.operations import Operation, body
from teapot.api.pagination import Paging, finish
from teapot.api.policy import Forbidden
from teapot.db import clusters as cdb
from teapot.db import networks as ndb
from teapot.db.hosts import NotFound
from teapot.db.models import Cluster, ClusterTemplate, HostClass, HostEvent, NodeGroup, Quota
from teapot.resources import cluster as csm
from teapot.resources import cluster_rules, host_schema, storage
from teapot.resources import loadbalancer as lbr
from teapot.resources.errors import ValidationError

DEFAULT_QUOTA = 20
TEMPLATE_DEFAULTS = {
    "coe": "kubernetes", "server_type": "bm", "network_driver": "flannel", "tls_disabled": False,
    "master_lb_enabled": False, "floating_ip_enabled": False, "registry_enabled": False,
    "labels": {}, "cluster_distro": "ubuntu", "docker_volume_size": None, "tags": None,
    "driver": "teapot",
}
TEMPLATE_PAGING = Paging({"id": ClusterTemplate.id, "uuid": ClusterTemplate.uuid,
                          "name": ClusterTemplate.name, "created_at": ClusterTemplate.created_at,
                          "updated_at": func.coalesce(ClusterTemplate.updated_at, 0.0)},
                         "id", ClusterTemplate.id, ClusterTemplate.uuid, schema.UUID)
CLUSTER_PAGING = Paging({"id": Cluster.id, "uuid": Cluster.uuid, "name": Cluster.name,
                         "status": Cluster.status, "created_at": Cluster.created_at,
                         "updated_at": func.coalesce(Cluster.updated_at, 0.0)},
                        "id", Cluster.id, Cluster.uuid, schema.UUID)
NODEGROUP_PAGING = Paging({"id": NodeGroup.id, "uuid": NodeGroup.uuid, "name": NodeGroup.name,
                           "role": NodeGroup.role, "node_count": NodeGroup.node_count,
                           "created_at": NodeGroup.created_at},
                          "id", NodeGroup.id, NodeGroup.uuid, schema.UUID)
QUOTA_PAGING = Paging({"id": Quota.id, "project_id": Quota.project_id,
                       "created_at": Quota.created_at},
                      "id", Quota.id, Quota.project_id, schema.string(64, 1))
HOSTCLASS_PAGING = Paging({"name": HostClass.name, "created_at": HostClass.created_at},
                          "name", HostClass.id, HostClass.name, schema.string(255, 1))


# -- plumbing --------------------------------------------------------------------------------------
def _respond(request: Request, body: Any, status: int = 200) -> Response:
    version = getattr(request.state, "microversion", microversion.MIN)
    headers = microversion.headers(version)
    if body is None:
        return Response(status_code=status, headers=headers)
    return FastJSONResponse(body, status_code=status, headers=headers)


def _base(request: Request) -> str:
    return request.app.state.base_url(request)


def _sm(request: Request):
    return request.app.state.sessionmaker


def _reader(request: Request):
    return request.app.state.reader


def _served(request: Request) -> tuple[str, ...]:
    """The Kubernetes releases clusters may ask for ([clusters] kubernetes_versions)."""
    return request.app.state.kubernetes_versions


def _scope(request: Request) -> str:
    project = identity(request).project_id
    if not project:
        raise APIError(403, "container-infra needs a project-scoped token")
    return project


def _check(request: Request, rule: str, project_id: str) -> None:
    try:
        authorize(request, rule, {"project_id": project_id})
    except Forbidden:
        if identity(request).project_id != project_id and "admin" not in identity(request).roles:
            raise NotFound("") from None  # other projects' objects do not exist for you
        raise


_TEMPLATE_DOC = schema.validator(s.TEMPLATE_DOC)
_CLUSTER_DOC = schema.validator(s.CLUSTER_DOC)
_NODEGROUP_DOC = schema.validator(s.NODEGROUP_DOC)


def _patch(doc: dict, ops: list, result) -> dict:
    """Apply a JSON patch (its paths already checked by the operation's schema) and validate the
    patched document with the same field schemas as a create."""
    try:
        new = jsonpatch.apply_patch(doc, ops)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
        raise ValidationError("", f"invalid JSON patch: {e}") from None
    return schema.check(result, new)


def _given(body: dict, key: str, default):
    """A field of the body; null (as Magnum's clients send for unset fields) means the default."""
    value = body.get(key)
    return default if value is None else value


def _listed(request: Request, key: str, rows: list, page, marker_of, render) -> Response:
    rows, next_link = finish(request, list(rows), page, marker_of)
    out: dict[str, Any] = {key: [render(r) for r in rows]}
    if next_link:
        out["next"] = next_link
    return _respond(request, out)


# -- versions --------------------------------------------------------------------------------------
def versions_root(request: Request) -> Response:
    base = _base(request)
    return JSONResponse({
        "versions": [{"id": "v1", "status": "CURRENT", "min_version": "1.1", "max_version": "1.14",
                      "links": [{"href": f"{base}/v1/", "rel": "self"}]}],
        "name": "Teapot API (container-infra, Magnum compatible)",
        "description": "Bare-metal Kubernetes clusters beside OpenStack",
    })


def version_v1(request: Request) -> Response:
    base = _base(request)
    doc = {"id": "v1", "media_types": [{"base": "application/json",
                                        "type": "application/vnd.openstack.magnum.v1+json"}],
           "links": [{"href": f"{base}/v1/", "rel": "self"}]}
    for kind in ("clustertemplates", "clusters", "certificates", "mservices", "quotas", "stats",
                 "hosts", "hostclasses", "networks"):
        doc[kind] = [{"href": f"{base}/v1/{kind}/", "rel": "self"},
                     {"href": f"{base}/{kind}/", "rel": "bookmark"}]
    return _respond(request, doc)


# -- host classes (flavors) ------------------------------------------------------------------------
def list_hostclasses(request: Request) -> Response:
    page = HOSTCLASS_PAGING.page(request)
    with _reader(request)() as session:
        rows = session.scalars(cdb.pagination.apply(session, select(HostClass), page)).all()

        def render(r: HostClass) -> dict:
            return {"name": r.name, "description": r.description, "labels": r.labels,
                    "traits": r.traits or [],
                    "hosts": cdb.count_matching(session, cdb.Selector.of(r)),
                    "free_hosts": cdb.count_matching(session, cdb.Selector.of(r), free_only=True)}

        return _listed(request, "hostclasses", rows, page, lambda r: r.name, render)


def create_hostclass(request: Request) -> Response:
    spec = body(request)
    name = spec["name"]
    labels = spec.get("labels") or {}
    traits = host_schema.validate_traits(spec.get("traits"))
    if not labels and not traits:
        raise ValidationError("labels", "a host class needs at least one host label or trait to select by")
    with _sm(request).begin() as session:
        if cdb.host_class(session, name):
            raise ValidationError("name", f"a host class named {name!r} already exists")
        session.add(HostClass(name=name, description=spec.get("description") or "", labels=labels,
                              traits=traits, created_at=time.time()))
        session.flush()
        return _respond(request, {"name": name, "description": spec.get("description") or "",
                                  "labels": labels, "traits": traits,
                                  "hosts": cdb.count_matching(session, cdb.Selector(labels, tuple(traits))),
                                  "free_hosts": cdb.count_matching(
                                      session, cdb.Selector(labels, tuple(traits)), free_only=True)},
                        201)


def delete_hostclass(request: Request) -> Response:
    with _sm(request).begin() as session:
        row = cdb.host_class(session, request.path_params["name"])
        if row is None:
            raise NotFound(f"host class {request.path_params['name']}")
        session.delete(row)
    return _respond(request, None, 204)


def _check_flavor(session, flavor: str | None, field: str) -> None:
    if flavor is None:
        raise ValidationError(field, "is required: name a host class (teapot hostclass list)")
    hc = cdb.host_class(session, flavor)
    if hc is None:
        raise ValidationError(field, f"{flavor!r} is not a host class")
    selector = cdb.Selector.of(hc)
    if cdb.count_matching(session, selector) == 0:
        raise ValidationError(field, f"no host is of host class {flavor!r} ({selector})")


# -- cluster templates -----------------------------------------------------------------------------
def list_templates(request: Request) -> Response:
    project = _scope(request)
    page = TEMPLATE_PAGING.page(request)
    base = _base(request)
    with _reader(request)() as session:
        rows = cdb.templates(session, project, page)
        return _listed(request, "clustertemplates", rows, page, lambda r: r.uuid,
                       lambda r: views.template(r, base))


def show_template(request: Request) -> Response:
    project = _scope(request)
    with _reader(request)() as session:
        row = cdb.get_template(session, request.path_params["ident"], project)
        _check(request, "container-infra:clustertemplate:get", project if row.public else row.project_id)
        return _respond(request, views.template(row, _base(request)))


def create_template(request: Request) -> Response:
    project = _scope(request)
    spec = body(request)
    name = spec.get("name") or f"template-{uuidlib.uuid4().hex[:8]}"
    public, hidden = bool(spec.get("public")), bool(spec.get("hidden"))
    if public or hidden:
        authorize(request, "container-infra:clustertemplate:publish")
    attrs = {**TEMPLATE_DEFAULTS, **{k: spec[k] for k in views.TEMPLATE_FIELDS if spec.get(k) is not None}}
    cluster_rules.check_template(attrs, _served(request))
    now = time.time()
    with _sm(request).begin() as session:
        _check_flavor(session, attrs.get("flavor_id"), "flavor_id")
        if attrs.get("master_flavor_id"):
            _check_flavor(session, attrs["master_flavor_id"], "master_flavor_id")
        row = ClusterTemplate(uuid=str(uuidlib.uuid4()), name=name, project_id=project,
                              user_id=identity(request).user_id, public=public, hidden=hidden,
                              attrs=attrs, created_at=now)
        session.add(row)
        session.flush()
        return _respond(request, views.template(row, _base(request)), 201)


def update_template(request: Request) -> Response:
    project = _scope(request)
    with _sm(request).begin() as session:
        row = cdb.get_template(session, request.path_params["ident"], project)
        _check(request, "container-infra:clustertemplate:update", row.project_id)
        doc = {**{k: v for k, v in row.attrs.items() if k in s.TEMPLATE_FIELDS},
               "name": row.name, "public": row.public, "hidden": row.hidden}
        new = _patch(doc, body(request), _TEMPLATE_DOC)
        cluster_rules.check_template(new, _served(request), before=doc)
        if new.get("public", False) != row.public or new.get("hidden", False) != row.hidden:
            authorize(request, "container-infra:clustertemplate:publish")
        if _in_use(session, row.uuid) and any(new.get(k) != doc.get(k) for k in views.TEMPLATE_FIELDS):
            raise APIError(400, f"cluster template {row.name} is used by clusters; only its name, "
                                "public and hidden can change")
        _check_flavor(session, new.get("flavor_id"), "flavor_id")
        row.name = new.pop("name")
        row.public, row.hidden = bool(new.pop("public", False)), bool(new.pop("hidden", False))
        row.attrs = new
        row.updated_at = time.time()
        session.flush()
        return _respond(request, views.template(row, _base(request)))


def _in_use(session, template_uuid: str) -> bool:
    return bool(session.scalar(select(func.count(Cluster.id))
                               .where(Cluster.cluster_template_id == template_uuid)))


def delete_template(request: Request) -> Response:
    project = _scope(request)
    with _sm(request).begin() as session:
        row = cdb.get_template(session, request.path_params["ident"], project)
        _check(request, "container-infra:clustertemplate:delete", row.project_id)
        if _in_use(session, row.uuid):
            raise APIError(400, f"cluster template {row.name} is in use by clusters")
        session.delete(row)
    return _respond(request, None, 204)


# -- clusters --------------------------------------------------------------------------------------
def _cluster(session, request: Request, project: str, rule: str) -> Cluster:
    row = cdb.get_cluster(session, request.path_params["ident"], project)
    _check(request, rule, row.project_id)
    return row


def list_clusters(request: Request, detail: bool = False) -> Response:
    project = _scope(request)
    page = CLUSTER_PAGING.page(request)
    base = _base(request)
    cache: dict = request.app.state.cluster_views
    with _reader(request)() as session:
        versions, next_link = finish(request, list(cdb.cluster_versions(session, project, page)),
                                     page, lambda v: v.uuid)
        counts = cdb.node_counts(session, project, [v.uuid for v in versions]
                                 if len(versions) < 500 else None)
        keys = [(v.uuid, v.updated_at, v.status, v.status_reason, counts.get(v.uuid, (0, 0)),
                 base, detail) for v in versions]
        missing = [k[0] for k in keys if k not in cache]
        rows = cdb.clusters_by_uuid(session, missing) if missing else {}
    out = []
    for key in keys:
        view = cache.get(key)
        if view is None:
            view = views.cluster(rows[key[0]], key[4], base, detail)
            if len(cache) > 50_000:
                cache.clear()
            cache[key] = view
        out.append(view)
    result: dict[str, Any] = {"clusters": out}
    if next_link:
        result["next"] = next_link
    return _respond(request, result)


def list_clusters_detail(request: Request) -> Response:
    return list_clusters(request, detail=True)


def show_cluster(request: Request) -> Response:
    project = _scope(request)
    with _reader(request)() as session:
        row = _cluster(session, request, project, "container-infra:cluster:get")
        groups = cdb.nodegroups(session, [row.uuid])[row.uuid]
        return _respond(request, views.cluster(row, views.counts(groups), _base(request)))


def _quota_limit(session, project: str) -> int:
    q = cdb.quota(session, project)
    return q.hard_limit if q else DEFAULT_QUOTA


def create_cluster(request: Request) -> Response:
    project = _scope(request)
    spec = body(request)
    masters = _given(spec, "master_count", 1)
    workers = _given(spec, "node_count", 1)
    name = spec.get("name") or f"cluster-{uuidlib.uuid4().hex[:8]}"
    fernet = request.app.state.fernet
    now = time.time()
    with _sm(request).begin() as session:
        try:
            template = cdb.get_template(session, spec["cluster_template_id"], project)
        except NotFound:
            raise ValidationError("cluster_template_id",
                                  f"no cluster template {spec['cluster_template_id']!r}") from None
        t = template.attrs
        labels = dict(t.get("labels") or {})
        if spec.get("merge_labels") or not spec.get("labels"):
            labels.update(spec.get("labels") or {})
        else:
            labels = dict(spec["labels"])
        own_tag = bool((spec.get("labels") or {}).get("kube_tag"))
        version = cluster_rules.kubernetes_version(
            labels, _served(request), "labels.kube_tag" if own_tag else "cluster_template_id",
            template=None if own_tag else template.name)
        flavor = spec.get("flavor_id") or t.get("flavor_id")
        master_flavor = spec.get("master_flavor_id") or t.get("master_flavor_id") or flavor
        _check_flavor(session, flavor, "flavor_id")
        _check_flavor(session, master_flavor, "master_flavor_id")
        used = session.scalar(select(func.count(Cluster.id)).where(Cluster.project_id == project))
        if used >= _quota_limit(session, project):
            raise APIError(403, f"cluster quota exceeded for project {project}: "
                                f"{used} of {_quota_limit(session, project)}")
        network = _network(request, session, project, _given(spec, "fixed_network",
                                                             t.get("fixed_network")))
        kinds = storage.wanted(labels)
        cluster_rules.auto_healing(labels)  # refused now, naming the label, if it is not one
        _, low, high = cluster_rules.auto_scaling(labels, workers)
        ca = pki.new_ca(f"{name} CA")
        secrets = {"bootstrap_token": pki.bootstrap_token(), "certificate_key": pki.certificate_key()}
        cluster_uuid = str(uuidlib.uuid4())
        attrs = {k: _given(spec, k, t.get(k)) for k in (
            "keypair", "docker_volume_size", "discovery_url", "fixed_network", "fixed_subnet",
            "floating_ip_enabled", "master_lb_enabled")}
        if network is not None:
            attrs["fixed_network"] = network.uuid
        attrs.update(labels=labels, flavor_id=flavor, master_flavor_id=master_flavor,
                     create_timeout=_given(spec, "create_timeout", 60), health_status="UNKNOWN",
                     coe_version=version,
                     master_addresses=[], node_addresses=[], api_address=None, faults={})
        if kinds:  # the conductor makes the cluster's own storage credential first
            attrs.update(storage_kinds=list(kinds), credential_rotation=1)
        if lbr.services_wanted(labels) and network is not None \
                and request.app.state.loadbalancers_enabled:
            # its Services of type LoadBalancer become Teapot load balancers (with that credential)
            attrs.update(service_loadbalancers=True, credential_rotation=1)
        session.add(Cluster(
            uuid=cluster_uuid, name=name, project_id=project, user_id=identity(request).user_id,
            cluster_template_id=template.uuid, status=csm.CREATE_IN_PROGRESS,
            status_reason="claiming hosts", attrs=attrs, ca_cert=ca.cert_pem,
            ca_key=fernet.encrypt(ca.key_pem), secrets=fernet.encrypt(json.dumps(secrets).encode()),
            deleting=False, generation=1, next_attempt_at=0.0, lease_expires_at=0.0, created_at=now,
            network_uuid=network.uuid if network is not None else None))
        for ng_name, role, count, ng_flavor, bounds in (
                ("default-master", "master", masters, master_flavor, (0, None)),
                ("default-worker", "worker", workers, flavor, (low, high))):
            session.add(NodeGroup(uuid=str(uuidlib.uuid4()), name=ng_name, cluster_uuid=cluster_uuid,
                                  project_id=project, role=role, flavor_id=ng_flavor,
                                  min_node_count=bounds[0], max_node_count=bounds[1],
                                  image_id=t.get("image_id"), node_count=count, is_default=True,
                                  labels=labels, status=csm.CREATE_IN_PROGRESS, nodes_to_remove=[],
                                  created_at=now))
    return _respond(request, {"uuid": cluster_uuid}, 202)


def _network(request: Request, session, project: str, ident: str | None):
    """The tenant network a new cluster's hosts join: the one `fixed_network` names (a network of
    the project, by name or uuid), else the project's default network, made on first use. None when
    the cloud has no tenant networks (then fixed_network is only recorded, as Magnum does)."""
    if not request.app.state.networks_enabled:
        return None
    if not ident:
        try:
            return ndb.default_for(session, project, request.app.state.vlan_ranges,
                                   request.app.state.default_subnet)
        except ndb.NoFreeVlan as e:
            raise APIError(409, f"the project's default network cannot be created: {e}") from None
    try:
        network = ndb.get(session, ident, project)
    except NotFound:
        raise ValidationError("fixed_network", f"no network {ident!r} in your project "
                                               "(teapot network list)") from None
    if network.deleting:
        raise ValidationError("fixed_network", f"network {network.name} is being deleted")
    return network


def _touch(row: Cluster, status: str, reason: str) -> None:
    row.status, row.status_reason = status, reason
    row.generation += 1
    row.next_attempt_at = 0.0
    row.updated_at = time.time()


def _busy(row: Cluster) -> None:
    if row.status in csm.IN_PROGRESS or row.deleting:
        raise APIError(409, f"cluster {row.name} is {row.status}; wait until it settles")


def update_cluster(request: Request) -> Response:
    project = _scope(request)
    with _sm(request).begin() as session:
        row = _cluster(session, request, project, "container-infra:cluster:update")
        _busy(row)
        groups = cdb.nodegroups(session, [row.uuid])[row.uuid]
        worker = next(g for g in groups if g.name == "default-worker")
        new = _patch({"node_count": worker.node_count, "name": row.name}, body(request), _CLUSTER_DOC)
        row.name = new["name"]
        row.updated_at = time.time()
        if new["node_count"] != worker.node_count:
            worker.node_count = new["node_count"]
            _touch(row, csm.UPDATE_IN_PROGRESS, f"resizing {worker.name} to {worker.node_count}")
        session.flush()
        return _respond(request, {"uuid": row.uuid}, 202)


def _at_least_one_master(group: NodeGroup, count: int, field: str) -> None:
    if group.role == "master" and count < 1:
        raise ValidationError(field, f"{group.name} is a control-plane group: at least 1")


def resize_cluster(request: Request) -> Response:
    project = _scope(request)
    spec = body(request)
    with _sm(request).begin() as session:
        row = _cluster(session, request, project, "container-infra:cluster:update")
        _busy(row)
        groups = cdb.nodegroups(session, [row.uuid])[row.uuid]
        name = spec.get("nodegroup") or "default-worker"
        group = next((g for g in groups if name in (g.name, g.uuid)), None)
        if group is None:
            raise ValidationError("nodegroup", f"cluster {row.name} has no node group {name!r}")
        _at_least_one_master(group, spec["node_count"], "node_count")
        # within the group's bounds (cluster-autoscaler's min and max), as Magnum refuses
        _bounds(spec["node_count"], group.min_node_count or 0, group.max_node_count)
        remove = list(spec.get("nodes_to_remove") or [])
        held = {n for h in cdb.hosts_of(session, row.uuid) if h.nodegroup == group.name
                for n in (h.name, h.uuid)}
        for i, name in enumerate(remove):
            if name not in held:  # never a host of another group, or of another cluster
                raise ValidationError(f"nodes_to_remove[{i}]", f"node group {group.name} of "
                                                               f"cluster {row.name} has no host {name!r}")
        group.node_count = spec["node_count"]
        group.nodes_to_remove = remove
        _touch(row, csm.UPDATE_IN_PROGRESS, f"resizing {group.name} to {group.node_count}")
    return _respond(request, {"uuid": row.uuid}, 202)


def upgrade_cluster(request: Request) -> Response:
    """Move the cluster to another template (its image and Kubernetes release): the conductor
    replaces its hosts one at a time, masters first. The same call on a cluster whose upgrade
    stopped resumes it; one naming the template it came from rolls it back."""
    project = _scope(request)
    spec = body(request)
    with _sm(request).begin() as session:
        row = _cluster(session, request, project, "container-infra:cluster:update")
        _busy(row)
        if row.status == csm.CREATE_FAILED:
            raise APIError(409, f"cluster {row.name} failed to be created: delete it")
        if spec.get("nodegroup"):
            raise ValidationError("nodegroup", "Teapot upgrades a whole cluster, masters first "
                                               "(workers are never newer than masters): leave "
                                               "nodegroup out")
        try:
            template = cdb.get_template(session, spec["cluster_template"], project)
        except NotFound:
            raise ValidationError("cluster_template", "no such cluster template") from None
        attrs = copy.deepcopy(row.attrs)
        current = {"template": row.cluster_template_id,
                   "version": attrs.get("coe_version") or csm.DEFAULT_KUBERNETES_VERSION}
        version = cluster_rules.kubernetes_version(
            template.attrs.get("labels"), _served(request), "cluster_template",
            template=template.name, default=current["version"])
        upgrade = attrs.get("upgrade")
        target = {"template": template.uuid, "version": version}
        if upgrade and target == current:  # resumed: what failed is tried once more
            upgrade.update(in_place=[], redone=[], resumed_at=time.time())
            reason = f"upgrading to template {template.name} (Kubernetes {version}): resumed"
        else:
            if target == current:
                raise ValidationError("cluster_template", f"cluster {row.name} already runs "
                                                          f"template {template.name} (Kubernetes "
                                                          f"{version})")
            # Cluster API rolls its machines itself; Teapot replaces masters behind their endpoint
            if request.app.state.cluster_driver == "hosts" and not attrs.get("endpoint"):
                raise ValidationError("cluster_template", f"cluster {row.name} has no load "
                                                          "balancer in front of its API servers: "
                                                          "its masters cannot be replaced")
            # back to where an unfinished upgrade began, or where the last one began
            before = (upgrade or {}).get("from") or attrs.get("previous") or {}
            cluster_rules.check_upgrade(current["version"], version,
                                        before.get("version") if before.get("template")
                                        == template.uuid else None)
            upgrade = {"from": current, "to": target, "started_at": time.time()}
            attrs["previous"] = current
            reason = f"upgrading to template {template.name} (Kubernetes {version})"
        attrs.update(upgrade=upgrade, coe_version=version)
        row.cluster_template_id = template.uuid
        row.attrs = attrs
        _touch(row, csm.UPDATE_IN_PROGRESS, reason)
    return _respond(request, {"uuid": row.uuid}, 202)


def rotate_credentials(request: Request) -> Response:
    """Replace the cluster's storage credential (application and EC2 credentials) with new ones;
    the conductor deletes the old ones once the new ones are stored."""
    project = _scope(request)
    with _sm(request).begin() as session:
        row = _cluster(session, request, project, "container-infra:cluster:update")
        if row.deleting:
            raise APIError(409, f"cluster {row.name} is being deleted")
        if row.status == csm.CREATE_FAILED:
            raise APIError(409, f"cluster {row.name} failed to be created: delete it")
        if not row.attrs.get("storage_kinds"):
            raise APIError(400, f"cluster {row.name} asks for no storage (labels "
                                f"{', '.join(storage.LABELS)}): it has no credentials to rotate")
        rotation = row.attrs.get("credential_rotation", 1) + 1
        row.attrs = {**row.attrs, "credential_rotation": rotation}
        row.next_attempt_at = 0.0
        row.updated_at = time.time()
    return _respond(request, {"uuid": row.uuid}, 202)


def delete_cluster(request: Request) -> Response:
    project = _scope(request)
    with _sm(request).begin() as session:
        row = _cluster(session, request, project, "container-infra:cluster:delete")
        row.deleting = True
        _touch(row, csm.DELETE_IN_PROGRESS, "deprovisioning hosts")
    return _respond(request, None, 204)


# -- node groups -----------------------------------------------------------------------------------
def _nodegroup(session, row: Cluster, ident: str) -> NodeGroup:
    group = next((g for g in cdb.nodegroups(session, [row.uuid])[row.uuid]
                  if ident in (g.name, g.uuid)), None)
    if group is None:
        raise NotFound(f"node group {ident}")
    return group


def list_nodegroups(request: Request) -> Response:
    project = _scope(request)
    page = NODEGROUP_PAGING.page(request)
    base = _base(request)
    with _reader(request)() as session:
        row = _cluster(session, request, project, "container-infra:nodegroup:get")
        query = select(NodeGroup).where(NodeGroup.cluster_uuid == row.uuid)
        groups = session.scalars(cdb.pagination.apply(session, query, page)).all()
        return _listed(request, "nodegroups", groups, page, lambda g: g.uuid,
                       lambda g: views.nodegroup(g, base, False))


def show_nodegroup(request: Request) -> Response:
    project = _scope(request)
    with _reader(request)() as session:
        row = _cluster(session, request, project, "container-infra:nodegroup:get")
        group = _nodegroup(session, row, request.path_params["ng"])
        return _respond(request, views.nodegroup(group, _base(request)))


def create_nodegroup(request: Request) -> Response:
    project = _scope(request)
    spec = body(request)
    with _sm(request).begin() as session:
        row = _cluster(session, request, project, "container-infra:nodegroup:write")
        _busy(row)
        name = spec["name"]
        if any(g.name == name for g in cdb.nodegroups(session, [row.uuid])[row.uuid]):
            raise APIError(409, f"cluster {row.name} already has a node group {name!r}")
        role = spec.get("role") or "worker"
        if role == "master":
            raise ValidationError("role", "new node groups are worker groups")
        flavor = spec.get("flavor_id") or row.attrs.get("flavor_id")
        _check_flavor(session, flavor, "flavor_id")
        count, low, high = (_given(spec, "node_count", 1), _given(spec, "min_node_count", 0),
                            spec.get("max_node_count"))
        _bounds(count, low, high)
        labels = dict(row.attrs.get("labels") or {}) if spec.get("merge_labels") else {}
        labels.update(spec.get("labels") or {})
        group = NodeGroup(uuid=str(uuidlib.uuid4()), name=name, cluster_uuid=row.uuid, project_id=project,
                          role=role, flavor_id=flavor, image_id=spec.get("image_id"),
                          node_count=count, min_node_count=low, max_node_count=high,
                          is_default=False, labels=labels, status=csm.CREATE_IN_PROGRESS,
                          nodes_to_remove=[], created_at=time.time())
        session.add(group)
        _touch(row, csm.UPDATE_IN_PROGRESS, f"adding node group {name}")
        session.flush()
        return _respond(request, views.nodegroup(group, _base(request)), 202)


def _bounds(count: int, low: int, high: int | None) -> None:
    if high is not None and low > high:
        raise ValidationError("min_node_count", f"{low} is more than max_node_count {high}")
    if count < low or (high is not None and count > high):
        raise ValidationError("node_count", f"{count} is outside min_node_count {low} to "
                                            f"max_node_count {high if high is not None else 'unbounded'}")


def update_nodegroup(request: Request) -> Response:
    project = _scope(request)
    with _sm(request).begin() as session:
        row = _cluster(session, request, project, "container-infra:nodegroup:write")
        _busy(row)
        group = _nodegroup(session, row, request.path_params["ng"])
        new = _patch({"node_count": group.node_count, "min_node_count": group.min_node_count,
                      "max_node_count": group.max_node_count}, body(request), _NODEGROUP_DOC)
        _at_least_one_master(group, new["node_count"], "node_count")
        _bounds(new["node_count"], new.get("min_node_count", 0), new.get("max_node_count"))
        group.node_count = new["node_count"]
        group.min_node_count = new.get("min_node_count", 0)
        group.max_node_count = new.get("max_node_count")
        _touch(row, csm.UPDATE_IN_PROGRESS, f"resizing {group.name} to {group.node_count}")
        session.flush()
        return _respond(request, views.nodegroup(group, _base(request)), 202)


def delete_nodegroup(request: Request) -> Response:
    project = _scope(request)
    with _sm(request).begin() as session:
        row = _cluster(session, request, project, "container-infra:nodegroup:write")
        _busy(row)
        group = _nodegroup(session, row, request.path_params["ng"])
        if group.is_default:
            raise ValidationError("nodegroup", f"{group.name} is a default node group; resize it instead")
        group.node_count = 0
        group.status = csm.DELETE_IN_PROGRESS
        _touch(row, csm.UPDATE_IN_PROGRESS, f"deleting node group {group.name}")
    return _respond(request, None, 204)


# -- certificates ----------------------------------------------------------------------------------
def _cluster_for_cert(session, request: Request, ident: str, rule: str) -> Cluster:
    project = _scope(request)
    try:
        row = cdb.get_cluster(session, ident, project)
    except NotFound:
        raise NotFound(f"cluster {ident}") from None
    _check(request, rule, row.project_id)
    return row


def show_ca(request: Request) -> Response:
    with _reader(request)() as session:
        row = _cluster_for_cert(session, request, request.path_params["ident"],
                                "container-infra:certificate:get")
        return _respond(request, {"cluster_uuid": row.uuid, "pem": row.ca_cert.decode(),
                                  "links": views.links(_base(request), "certificates", row.uuid)})


def sign_csr(request: Request) -> Response:
    spec = body(request)
    ident = spec.get("cluster_uuid") or spec.get("bay_uuid")
    if not ident:
        raise ValidationError("cluster_uuid", "is required")
    csr = spec["csr"]
    with _reader(request)() as session:
        row = _cluster_for_cert(session, request, ident, "container-infra:certificate:create")
        ca = pki.CA(row.ca_cert, request.app.state.fernet.decrypt(row.ca_key))
    try:
        pem = pki.sign_csr(ca, csr.encode())
    except ValueError as e:
        raise ValidationError("csr", str(e)) from None
    return _respond(request, {"cluster_uuid": row.uuid, "csr": csr, "pem": pem.decode(),
                              "links": views.links(_base(request), "certificates", row.uuid)}, 201)


def rotate_ca(request: Request) -> Response:
    with _sm(request).begin() as session:
        row = _cluster_for_cert(session, request, request.path_params["ident"],
                                "container-infra:certificate:rotate_ca")
        fernet = request.app.state.fernet
        new = pki.rotate(pki.CA(row.ca_cert, fernet.decrypt(row.ca_key)), f"{row.name} CA")
        row.ca_cert, row.ca_key = new.cert_pem, fernet.encrypt(new.key_pem)
        row.updated_at = time.time()
    return _respond(request, None, 202)


# -- quotas, stats, mservices ----------------------------------------------------------------------
def _quota_view(q: Quota) -> dict:
    return {"id": q.id, "project_id": q.project_id, "resource": q.resource,
            "hard_limit": q.hard_limit, "created_at": views.iso(q.created_at),
            "updated_at": views.iso(q.updated_at)}


def list_quotas(request: Request) -> Response:
    page = QUOTA_PAGING.page(request)
    with _reader(request)() as session:
        rows = session.scalars(cdb.pagination.apply(session, select(Quota), page)).all()
        return _listed(request, "quotas", rows, page, lambda q: q.project_id, _quota_view)


def show_quota(request: Request) -> Response:
    project = request.path_params["project"]
    resource = request.path_params["resource"]
    _check(request, "container-infra:quota:get", project)
    with _reader(request)() as session:
        q = cdb.quota(session, project, resource)
        if q is None:
            if resource != "Cluster":
                raise NotFound(f"quota {resource}")
            return _respond(request, {"project_id": project, "resource": resource,
                                      "hard_limit": DEFAULT_QUOTA, "id": None,
                                      "created_at": None, "updated_at": None})
        return _respond(request, _quota_view(q))


def create_quota(request: Request) -> Response:
    spec = body(request)
    with _sm(request).begin() as session:
        if cdb.quota(session, spec["project_id"], "Cluster"):
            raise APIError(409, f"project {spec['project_id']} already has a Cluster quota")
        q = Quota(project_id=spec["project_id"], resource="Cluster",
                  hard_limit=_given(spec, "hard_limit", DEFAULT_QUOTA), created_at=time.time())
        session.add(q)
        session.flush()
        return _respond(request, _quota_view(q), 201)


def update_quota(request: Request) -> Response:
    spec = body(request)
    with _sm(request).begin() as session:
        q = cdb.quota(session, request.path_params["project"], request.path_params["resource"])
        if q is None:
            raise NotFound("quota")
        q.hard_limit = spec["hard_limit"]
        q.updated_at = time.time()
        session.flush()
        return _respond(request, _quota_view(q), 202)


def delete_quota(request: Request) -> Response:
    with _sm(request).begin() as session:
        q = cdb.quota(session, request.path_params["project"], request.path_params["resource"])
        if q is None:
            raise NotFound("quota")
        session.delete(q)
    return _respond(request, None, 204)


def stats(request: Request) -> Response:
    project = request.state.query.get("project_id") or _scope(request)
    _check(request, "container-infra:stats:get", project)
    with _reader(request)() as session:
        rows = cdb.clusters(session, project)
        nodes = sum(m + w for m, w in cdb.node_counts(session, project).values())
        return _respond(request, {"clusters": len(rows), "nodes": nodes})


def mservices(request: Request) -> Response:
    with _reader(request)() as session:
        rows = session.execute(select(HostEvent.conductor, func.count(HostEvent.id),
                                      func.max(HostEvent.finished_at))
                               .group_by(HostEvent.conductor)).all()
    now = time.time()
    return _respond(request, {"mservices": [
        {"id": i + 1, "binary": "magnum-conductor", "host": conductor, "report_count": count,
         "state": "up" if now - last < 120 else "down", "disabled": False, "disabled_reason": None,
         "created_at": None, "updated_at": views.iso(last)}
        for i, (conductor, count, last) in enumerate(rows)]})


def _versioned(fn):
    def wrapper(request: Request) -> Response:
        request.state.microversion = microversion.requested(request)
        return fn(request)

    wrapper.__name__ = fn.__name__
    return wrapper


def _op(method: str, path: str, fn, summary: str, tag: str, responses: dict, **kw) -> Operation:
    return Operation(method, path, _versioned(fn), summary, tag, responses, **kw)


_ACCEPTED = {202: s.UUID_ONLY}
OPERATIONS = [
    _op("GET", "/", versions_root, "API versions", "versions", {200: s.VERSIONS}, authenticated=False),
    _op("GET", "/v1", version_v1, "The v1 API", "versions", {200: s.VERSION}, authenticated=False),
    _op("GET", "/v1/", version_v1, "The v1 API", "versions", {200: s.VERSION}, authenticated=False),
    _op("GET", "/v1/clustertemplates", list_templates, "List cluster templates", "clustertemplates",
        {200: s.TEMPLATE_LIST}, query=TEMPLATE_PAGING.query_schema(),
            rule="container-infra:clustertemplate:get_all"),
    _op("GET", "/v1/clustertemplates/detail", list_templates, "List cluster templates (detail)",
        "clustertemplates", {200: s.TEMPLATE_LIST}, query=TEMPLATE_PAGING.query_schema(),
            rule="container-infra:clustertemplate:get_all"),
    _op("POST", "/v1/clustertemplates", create_template, "Create a cluster template", "clustertemplates",
        {201: s.TEMPLATE}, body=s.TEMPLATE_CREATE, rule="container-infra:clustertemplate:create"),
    _op("GET", "/v1/clustertemplates/{ident}", show_template, "Show a cluster template",
        "clustertemplates", {200: s.TEMPLATE}),
    _op("PATCH", "/v1/clustertemplates/{ident}", update_template, "Update a cluster template",
        "clustertemplates", {200: s.TEMPLATE}, body=s.TEMPLATE_PATCH),
    _op("DELETE", "/v1/clustertemplates/{ident}", delete_template, "Delete a cluster template",
        "clustertemplates", {204: None}),
    _op("GET", "/v1/clusters", list_clusters, "List clusters", "clusters", {200: s.CLUSTER_LIST},
        query=CLUSTER_PAGING.query_schema(), rule="container-infra:cluster:get_all"),
    _op("GET", "/v1/clusters/detail", list_clusters_detail, "List clusters (detail)", "clusters",
        {200: s.CLUSTER_LIST_DETAIL}, query=CLUSTER_PAGING.query_schema(),
            rule="container-infra:cluster:get_all"),
    _op("POST", "/v1/clusters", create_cluster, "Create a cluster", "clusters", _ACCEPTED,
        body=s.CLUSTER_CREATE, rule="container-infra:cluster:create"),
    _op("GET", "/v1/clusters/{ident}", show_cluster, "Show a cluster", "clusters", {200: s.CLUSTER}),
    _op("PATCH", "/v1/clusters/{ident}", update_cluster, "Update a cluster", "clusters", _ACCEPTED,
        body=s.CLUSTER_PATCH),
    _op("DELETE", "/v1/clusters/{ident}", delete_cluster, "Delete a cluster", "clusters", {204: None}),
    _op("POST", "/v1/clusters/{ident}/actions/resize", resize_cluster, "Resize a node group",
        "clusters", _ACCEPTED, body=s.RESIZE),
    _op("POST", "/v1/clusters/{ident}/actions/upgrade", upgrade_cluster, "Move to another template",
        "clusters", _ACCEPTED, body=s.UPGRADE),
    _op("POST", "/v1/clusters/{ident}/actions/rotate_credentials", rotate_credentials,
        "Replace the cluster's storage credentials", "clusters", _ACCEPTED,
        body=s.ROTATE_CREDENTIALS),
    _op("GET", "/v1/clusters/{ident}/nodegroups", list_nodegroups, "List node groups", "nodegroups",
        {200: s.NODEGROUP_LIST}, query=NODEGROUP_PAGING.query_schema()),
    _op("GET", "/v1/clusters/{ident}/nodegroups/detail", list_nodegroups, "List node groups (detail)",
        "nodegroups", {200: s.NODEGROUP_LIST}, query=NODEGROUP_PAGING.query_schema()),
    _op("POST", "/v1/clusters/{ident}/nodegroups", create_nodegroup, "Add a node group", "nodegroups",
        {202: s.NODEGROUP}, body=s.NODEGROUP_CREATE),
    _op("GET", "/v1/clusters/{ident}/nodegroups/{ng}", show_nodegroup, "Show a node group",
        "nodegroups", {200: s.NODEGROUP}),
    _op("PATCH", "/v1/clusters/{ident}/nodegroups/{ng}", update_nodegroup, "Resize a node group",
        "nodegroups", {202: s.NODEGROUP}, body=s.NODEGROUP_PATCH),
    _op("DELETE", "/v1/clusters/{ident}/nodegroups/{ng}", delete_nodegroup, "Delete a node group",
        "nodegroups", {204: None}),
    _op("POST", "/v1/certificates", sign_csr, "Sign a CSR with a cluster's CA", "certificates",
        {201: s.SIGNED}, body=s.CSR),
    _op("GET", "/v1/certificates/{ident}", show_ca, "Show a cluster's CA", "certificates", {200: s.CA}),
    _op("PATCH", "/v1/certificates/{ident}", rotate_ca, "Rotate a cluster's CA", "certificates",
        {202: None}),
    _op("GET", "/v1/quotas", list_quotas, "List quotas", "quotas", {200: s.QUOTA_LIST},
        query=QUOTA_PAGING.query_schema(), rule="container-infra:quota:write"),
    _op("POST", "/v1/quotas", create_quota, "Set a project's quota", "quotas", {201: s.QUOTA},
        body=s.QUOTA_CREATE, rule="container-infra:quota:write"),
    _op("GET", "/v1/quotas/{project}/{resource}", show_quota, "Show a quota", "quotas",
        {200: s.QUOTA}),
    _op("PATCH", "/v1/quotas/{project}/{resource}", update_quota, "Change a quota", "quotas",
        {202: s.QUOTA}, body=s.QUOTA_UPDATE, rule="container-infra:quota:write"),
    _op("DELETE", "/v1/quotas/{project}/{resource}", delete_quota, "Remove a quota", "quotas",
        {204: None}, rule="container-infra:quota:write"),
    _op("GET", "/v1/stats", stats, "Cluster and node counts", "stats", {200: s.STATS},
        query={"project_id": schema.string(64, 1)}),
    _op("GET", "/v1/mservices", mservices, "Teapot's conductors", "mservices", {200: s.MSERVICES},
        rule="container-infra:mservice:get_all"),
    _op("GET", "/v1/hostclasses", list_hostclasses, "List host classes (flavors)", "hostclasses",
        {200: s.HOSTCLASS_LIST}, query=HOSTCLASS_PAGING.query_schema(),
            rule="container-infra:hostclass:get"),
    _op("POST", "/v1/hostclasses", create_hostclass, "Define a host class", "hostclasses",
        {201: s.HOSTCLASS}, body=s.HOSTCLASS_CREATE, rule="container-infra:hostclass:write"),
    _op("DELETE", "/v1/hostclasses/{name}", delete_hostclass, "Remove a host class", "hostclasses",
        {204: None}, rule="container-infra:hostclass:write"),
]
