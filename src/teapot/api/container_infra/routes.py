"""container-infra v1 handlers. Every object belongs to a Keystone project; nothing of one project
is visible or changeable from another (a foreign object is a 404, not a 403)."""

from __future__ import annotations

import copy
import json
import time
import uuid as uuidlib
from typing import Any

import jsonpatch
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from teapot import pki
from teapot.api.common import FastJSONResponse, authorize, identity, json_body
from teapot.api.container_infra import microversion, views
from teapot.api.errors import APIError
from teapot.api.policy import Forbidden
from teapot.db import clusters as cdb
from teapot.db.hosts import NotFound
from teapot.db.models import Cluster, ClusterTemplate, HostClass, NodeGroup, Quota
from teapot.resources import cluster as csm
from teapot.resources import host_schema
from teapot.resources.errors import ValidationError

DEFAULT_QUOTA = 20
TEMPLATE_DEFAULTS = {
    "coe": "kubernetes", "server_type": "bm", "network_driver": "flannel", "tls_disabled": False,
    "master_lb_enabled": False, "floating_ip_enabled": False, "registry_enabled": False,
    "labels": {}, "cluster_distro": "ubuntu", "docker_volume_size": None, "tags": None,
    "driver": "teapot",
}
CLUSTER_INPUT = {"name", "cluster_template_id", "node_count", "master_count", "discovery_url",
                 "create_timeout", "keypair", "docker_volume_size", "labels", "master_flavor_id",
                 "flavor_id", "fixed_network", "fixed_subnet", "floating_ip_enabled",
                 "master_lb_enabled", "merge_labels"}


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


def _patch(doc: dict, ops: Any, allowed: set[str]) -> dict:
    if not isinstance(ops, list):
        raise ValidationError("", "the body must be a JSON patch: a list of operations")
    for op in ops:
        path = op.get("path", "") if isinstance(op, dict) else ""
        if path.strip("/").split("/")[0] not in allowed:
            raise ValidationError(path or "path", f"cannot be changed; allowed: {', '.join(sorted(allowed))}")
    try:
        return jsonpatch.apply_patch(doc, ops)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
        raise ValidationError("", f"invalid JSON patch: {e}") from None


def _int(body: dict, key: str, default: int, minimum: int) -> int:
    value = body.get(key, default)
    if value is None:
        value = default
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValidationError(key, f"must be an integer of at least {minimum}")
    return value


def _labels(value: Any, key: str = "labels") -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError(key, "must be an object of strings")
    return {str(k): str(v) for k, v in value.items()}


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
                 "hosts", "hostclasses"):
        doc[kind] = [{"href": f"{base}/v1/{kind}/", "rel": "self"},
                     {"href": f"{base}/{kind}/", "rel": "bookmark"}]
    return _respond(request, doc)


# -- host classes (flavors) ------------------------------------------------------------------------
def list_hostclasses(request: Request) -> Response:
    authorize(request, "container-infra:hostclass:get")
    with _reader(request)() as session:
        from sqlalchemy import select

        rows = session.scalars(select(HostClass).order_by(HostClass.name)).all()
        return _respond(request, {"hostclasses": [
            {"name": r.name, "description": r.description, "labels": r.labels, "traits": r.traits or [],
             "hosts": cdb.count_matching(session, cdb.Selector.of(r)),
             "free_hosts": cdb.count_matching(session, cdb.Selector.of(r), free_only=True)}
            for r in rows]})


def create_hostclass(request: Request) -> Response:
    authorize(request, "container-infra:hostclass:write")
    body = json_body(request)
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise ValidationError("name", "is required")
    labels = _labels(body.get("labels"))
    traits = host_schema.validate_traits(body.get("traits"))
    if not labels and not traits:
        raise ValidationError("labels", "a host class needs at least one host label or trait to select by")
    with _sm(request).begin() as session:
        if cdb.host_class(session, name):
            raise ValidationError("name", f"a host class named {name!r} already exists")
        session.add(HostClass(name=name, description=str(body.get("description", "")), labels=labels,
                              traits=traits, created_at=time.time()))
    return _respond(request, {"name": name, "labels": labels, "traits": traits}, 201)


def delete_hostclass(request: Request) -> Response:
    authorize(request, "container-infra:hostclass:write")
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
def _image(attrs: dict) -> None:
    image = attrs.get("image_id")
    if not isinstance(image, str) or not image.startswith(("http://", "https://")):
        raise ValidationError("image_id", "must be the URL of a disk image (http or https); "
                                          "put its sha256 in the label image_checksum")


def list_templates(request: Request, detail: bool = False) -> Response:
    project = _scope(request)
    authorize(request, "container-infra:clustertemplate:get_all")
    with _reader(request)() as session:
        rows = cdb.templates(session, project)
        return _respond(request, {"clustertemplates": [views.template(r, _base(request)) for r in rows]})


def show_template(request: Request) -> Response:
    project = _scope(request)
    with _reader(request)() as session:
        row = cdb.get_template(session, request.path_params["ident"], project)
        _check(request, "container-infra:clustertemplate:get", project if row.public else row.project_id)
        return _respond(request, views.template(row, _base(request)))


def create_template(request: Request) -> Response:
    project = _scope(request)
    authorize(request, "container-infra:clustertemplate:create")
    body = json_body(request)
    known = set(views.TEMPLATE_FIELDS) | {"name", "public", "hidden"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise ValidationError(unknown[0], "unknown field")
    name = body.get("name") or f"template-{uuidlib.uuid4().hex[:8]}"
    public = bool(body.get("public", False))
    if public or body.get("hidden"):
        authorize(request, "container-infra:clustertemplate:publish")
    attrs = {**TEMPLATE_DEFAULTS, **{k: body[k] for k in views.TEMPLATE_FIELDS if k in body}}
    if attrs["coe"] != "kubernetes":
        raise ValidationError("coe", "Teapot runs kubernetes clusters only")
    attrs["labels"] = _labels(attrs.get("labels"))
    _image(attrs)
    now = time.time()
    with _sm(request).begin() as session:
        _check_flavor(session, attrs.get("flavor_id"), "flavor_id")
        if attrs.get("master_flavor_id"):
            _check_flavor(session, attrs["master_flavor_id"], "master_flavor_id")
        row = ClusterTemplate(uuid=str(uuidlib.uuid4()), name=name, project_id=project,
                              user_id=identity(request).user_id, public=public,
                              hidden=bool(body.get("hidden", False)), attrs=attrs, created_at=now)
        session.add(row)
        session.flush()
        return _respond(request, views.template(row, _base(request)), 201)


def update_template(request: Request) -> Response:
    project = _scope(request)
    ops = json.loads(request.state.raw_body or b"null")
    with _sm(request).begin() as session:
        row = cdb.get_template(session, request.path_params["ident"], project)
        _check(request, "container-infra:clustertemplate:update", row.project_id)
        doc = {**row.attrs, "name": row.name, "public": row.public, "hidden": row.hidden}
        new = _patch(doc, ops, set(views.TEMPLATE_FIELDS) | {"name", "public", "hidden"})
        if (new["public"] != row.public or new["hidden"] != row.hidden):
            authorize(request, "container-infra:clustertemplate:publish")
        if _in_use(session, row.uuid) and any(new.get(k) != doc.get(k) for k in views.TEMPLATE_FIELDS):
            raise APIError(400, f"cluster template {row.name} is used by clusters; only its name, "
                                "public and hidden can change")
        _image(new)
        _check_flavor(session, new.get("flavor_id"), "flavor_id")
        row.name, row.public, row.hidden = new.pop("name"), bool(new.pop("public")), bool(new.pop("hidden"))
        row.attrs = new
        row.updated_at = time.time()
        session.flush()
        return _respond(request, views.template(row, _base(request)))


def _in_use(session, template_uuid: str) -> bool:
    from sqlalchemy import func, select

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
    authorize(request, "container-infra:cluster:get_all")
    base = _base(request)
    cache: dict = request.app.state.cluster_views
    with _reader(request)() as session:
        versions = cdb.cluster_versions(session, project)
        counts = cdb.node_counts(session, project)
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
    return _respond(request, {"clusters": out})


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
    authorize(request, "container-infra:cluster:create")
    body = json_body(request)
    unknown = sorted(set(body) - CLUSTER_INPUT)
    if unknown:
        raise ValidationError(unknown[0], "unknown field")
    if not body.get("cluster_template_id"):
        raise ValidationError("cluster_template_id", "is required")
    masters = _int(body, "master_count", 1, 1)
    workers = _int(body, "node_count", 1, 0)
    name = body.get("name") or f"cluster-{uuidlib.uuid4().hex[:8]}"
    fernet = request.app.state.fernet
    now = time.time()
    with _sm(request).begin() as session:
        try:
            template = cdb.get_template(session, body["cluster_template_id"], project)
        except NotFound:
            raise ValidationError("cluster_template_id",
                                  f"no cluster template {body['cluster_template_id']!r}") from None
        t = template.attrs
        flavor = body.get("flavor_id") or t.get("flavor_id")
        master_flavor = body.get("master_flavor_id") or t.get("master_flavor_id") or flavor
        _check_flavor(session, flavor, "flavor_id")
        _check_flavor(session, master_flavor, "master_flavor_id")
        from sqlalchemy import func, select

        used = session.scalar(select(func.count(Cluster.id)).where(Cluster.project_id == project))
        if used >= _quota_limit(session, project):
            raise APIError(403, f"cluster quota exceeded for project {project}: "
                                f"{used} of {_quota_limit(session, project)}")
        labels = dict(t.get("labels") or {})
        if body.get("merge_labels", False) or not body.get("labels"):
            labels.update(_labels(body.get("labels")))
        else:
            labels = _labels(body.get("labels"))
        ca = pki.new_ca(f"{name} CA")
        secrets = {"bootstrap_token": pki.bootstrap_token(), "certificate_key": pki.certificate_key()}
        cluster_uuid = str(uuidlib.uuid4())
        attrs = {k: body.get(k, t.get(k)) for k in ("keypair", "docker_volume_size", "discovery_url",
                                                     "fixed_network", "fixed_subnet",
                                                     "floating_ip_enabled", "master_lb_enabled")}
        attrs.update(labels=labels, flavor_id=flavor, master_flavor_id=master_flavor,
                     create_timeout=_int(body, "create_timeout", 60, 1), health_status="UNKNOWN",
                     coe_version=labels.get("kube_tag", csm.DEFAULT_KUBERNETES_VERSION),
                     master_addresses=[], node_addresses=[], api_address=None, faults={})
        session.add(Cluster(
            uuid=cluster_uuid, name=name, project_id=project, user_id=identity(request).user_id,
            cluster_template_id=template.uuid, status=csm.CREATE_IN_PROGRESS,
            status_reason="claiming hosts", attrs=attrs, ca_cert=ca.cert_pem,
            ca_key=fernet.encrypt(ca.key_pem), secrets=fernet.encrypt(json.dumps(secrets).encode()),
            deleting=False, generation=1, next_attempt_at=0.0, lease_expires_at=0.0, created_at=now))
        for ng_name, role, count, ng_flavor in (("default-master", "master", masters, master_flavor),
                                                ("default-worker", "worker", workers, flavor)):
            session.add(NodeGroup(uuid=str(uuidlib.uuid4()), name=ng_name, cluster_uuid=cluster_uuid,
                                  project_id=project, role=role, flavor_id=ng_flavor,
                                  image_id=t.get("image_id"), node_count=count, is_default=True,
                                  labels=labels, status=csm.CREATE_IN_PROGRESS, nodes_to_remove=[],
                                  created_at=now))
    return _respond(request, {"uuid": cluster_uuid}, 202)


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
    ops = json.loads(request.state.raw_body or b"null")
    with _sm(request).begin() as session:
        row = _cluster(session, request, project, "container-infra:cluster:update")
        _busy(row)
        groups = cdb.nodegroups(session, [row.uuid])[row.uuid]
        worker = next(g for g in groups if g.name == "default-worker")
        doc = {"node_count": worker.node_count, "name": row.name}
        new = _patch(doc, ops, {"node_count", "name"})
        count = _int(new, "node_count", worker.node_count, 0)
        row.name = str(new["name"])
        row.updated_at = time.time()
        if count != worker.node_count:
            worker.node_count = count
            _touch(row, csm.UPDATE_IN_PROGRESS, f"resizing {worker.name} to {count}")
        session.flush()
        return _respond(request, {"uuid": row.uuid}, 202)


def resize_cluster(request: Request) -> Response:
    project = _scope(request)
    body = json_body(request)
    with _sm(request).begin() as session:
        row = _cluster(session, request, project, "container-infra:cluster:update")
        _busy(row)
        groups = cdb.nodegroups(session, [row.uuid])[row.uuid]
        name = body.get("nodegroup") or "default-worker"
        group = next((g for g in groups if name in (g.name, g.uuid)), None)
        if group is None:
            raise ValidationError("nodegroup", f"cluster {row.name} has no node group {name!r}")
        count = _int(body, "node_count", group.node_count, 1 if group.role == "master" else 0)
        remove = body.get("nodes_to_remove") or []
        if not isinstance(remove, list):
            raise ValidationError("nodes_to_remove", "must be a list of host names or uuids")
        group.node_count, group.nodes_to_remove = count, [str(n) for n in remove]
        _touch(row, csm.UPDATE_IN_PROGRESS, f"resizing {group.name} to {count}")
    return _respond(request, {"uuid": row.uuid}, 202)


def upgrade_cluster(request: Request) -> Response:
    project = _scope(request)
    body = json_body(request)
    with _sm(request).begin() as session:
        row = _cluster(session, request, project, "container-infra:cluster:update")
        _busy(row)
        try:
            template = cdb.get_template(session, str(body.get("cluster_template", "")), project)
        except NotFound:
            raise ValidationError("cluster_template", "no such cluster template") from None
        row.cluster_template_id = template.uuid
        attrs = copy.deepcopy(row.attrs)
        attrs["coe_version"] = template.attrs.get("labels", {}).get("kube_tag", attrs.get("coe_version"))
        row.attrs = attrs
        _touch(row, csm.UPDATE_COMPLETE, f"now on template {template.name}; hosts are re-provisioned "
                                         "with it when they are replaced")
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
    with _reader(request)() as session:
        row = _cluster(session, request, project, "container-infra:nodegroup:get")
        groups = cdb.nodegroups(session, [row.uuid])[row.uuid]
        return _respond(request, {"nodegroups": [views.nodegroup(g, _base(request), False)
                                                 for g in groups]})


def show_nodegroup(request: Request) -> Response:
    project = _scope(request)
    with _reader(request)() as session:
        row = _cluster(session, request, project, "container-infra:nodegroup:get")
        group = _nodegroup(session, row, request.path_params["ng"])
        return _respond(request, views.nodegroup(group, _base(request)))


def create_nodegroup(request: Request) -> Response:
    project = _scope(request)
    body = json_body(request)
    with _sm(request).begin() as session:
        row = _cluster(session, request, project, "container-infra:nodegroup:write")
        _busy(row)
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise ValidationError("name", "is required")
        if any(g.name == name for g in cdb.nodegroups(session, [row.uuid])[row.uuid]):
            raise APIError(409, f"cluster {row.name} already has a node group {name!r}")
        role = body.get("role", "worker")
        if role == "master":
            raise ValidationError("role", "new node groups are worker groups")
        flavor = body.get("flavor_id") or row.attrs.get("flavor_id")
        _check_flavor(session, flavor, "flavor_id")
        group = NodeGroup(uuid=str(uuidlib.uuid4()), name=name, cluster_uuid=row.uuid, project_id=project,
                          role=str(role), flavor_id=flavor, image_id=body.get("image_id"),
                          node_count=_int(body, "node_count", 1, 0),
                          min_node_count=_int(body, "min_node_count", 0, 0),
                          max_node_count=body.get("max_node_count"), is_default=False,
                          labels=_labels(body.get("labels")), status=csm.CREATE_IN_PROGRESS,
                          nodes_to_remove=[], created_at=time.time())
        session.add(group)
        _touch(row, csm.UPDATE_IN_PROGRESS, f"adding node group {name}")
        session.flush()
        return _respond(request, views.nodegroup(group, _base(request)), 202)


def update_nodegroup(request: Request) -> Response:
    project = _scope(request)
    ops = json.loads(request.state.raw_body or b"null")
    with _sm(request).begin() as session:
        row = _cluster(session, request, project, "container-infra:nodegroup:write")
        _busy(row)
        group = _nodegroup(session, row, request.path_params["ng"])
        new = _patch({"node_count": group.node_count, "min_node_count": group.min_node_count,
                      "max_node_count": group.max_node_count}, ops,
                     {"node_count", "min_node_count", "max_node_count"})
        group.node_count = _int(new, "node_count", group.node_count, 1 if group.role == "master" else 0)
        group.min_node_count = _int(new, "min_node_count", 0, 0)
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
    body = json_body(request)
    ident = body.get("cluster_uuid") or body.get("bay_uuid")
    if not ident:
        raise ValidationError("cluster_uuid", "is required")
    csr = body.get("csr")
    if not isinstance(csr, str) or not csr:
        raise ValidationError("csr", "is required (PEM)")
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
    authorize(request, "container-infra:quota:write")
    from sqlalchemy import select

    with _reader(request)() as session:
        return _respond(request, {"quotas": [_quota_view(q) for q in
                                             session.scalars(select(Quota).order_by(Quota.id))]})


def show_quota(request: Request) -> Response:
    project = request.path_params["project"]
    resource = request.path_params["resource"]
    _check(request, "container-infra:quota:get", project)
    with _reader(request)() as session:
        q = cdb.quota(session, project, resource)
        if q is None:
            return _respond(request, {"project_id": project, "resource": resource,
                                      "hard_limit": DEFAULT_QUOTA, "id": None,
                                      "created_at": None, "updated_at": None})
        return _respond(request, _quota_view(q))


def create_quota(request: Request) -> Response:
    authorize(request, "container-infra:quota:write")
    body = json_body(request)
    if body.get("resource") != "Cluster":
        raise ValidationError("resource", "must be Cluster")
    if not body.get("project_id"):
        raise ValidationError("project_id", "is required")
    limit = _int(body, "hard_limit", DEFAULT_QUOTA, 0)
    with _sm(request).begin() as session:
        if cdb.quota(session, body["project_id"], "Cluster"):
            raise APIError(409, f"project {body['project_id']} already has a Cluster quota")
        q = Quota(project_id=body["project_id"], resource="Cluster", hard_limit=limit,
                  created_at=time.time())
        session.add(q)
        session.flush()
        return _respond(request, _quota_view(q), 201)


def update_quota(request: Request) -> Response:
    authorize(request, "container-infra:quota:write")
    body = json_body(request)
    with _sm(request).begin() as session:
        q = cdb.quota(session, request.path_params["project"], request.path_params["resource"])
        if q is None:
            raise NotFound("quota")
        q.hard_limit = _int(body, "hard_limit", q.hard_limit, 0)
        q.updated_at = time.time()
        session.flush()
        return _respond(request, _quota_view(q), 202)


def delete_quota(request: Request) -> Response:
    authorize(request, "container-infra:quota:write")
    with _sm(request).begin() as session:
        q = cdb.quota(session, request.path_params["project"], request.path_params["resource"])
        if q is None:
            raise NotFound("quota")
        session.delete(q)
    return _respond(request, None, 204)


def stats(request: Request) -> Response:
    project = request.query_params.get("project_id") or _scope(request)
    _check(request, "container-infra:stats:get", project)
    with _reader(request)() as session:
        rows = cdb.clusters(session, project)
        groups = cdb.nodegroups(session, [r.uuid for r in rows])
        nodes = sum(g.node_count for gs in groups.values() for g in gs)
        return _respond(request, {"clusters": len(rows), "nodes": nodes})


def mservices(request: Request) -> Response:
    authorize(request, "container-infra:mservice:get_all")
    from sqlalchemy import func, select

    from teapot.db.models import HostEvent

    with _reader(request)() as session:
        rows = session.execute(select(HostEvent.conductor, func.count(HostEvent.id),
                                      func.max(HostEvent.finished_at))
                               .group_by(HostEvent.conductor)).all()
    now = time.time()
    return _respond(request, {"mservices": [
        {"id": i + 1, "binary": "teapot-conductor", "host": conductor, "report_count": count,
         "state": "up" if now - last < 120 else "down", "disabled": False, "disabled_reason": None,
         "created_at": None, "updated_at": views.iso(last)}
        for i, (conductor, count, last) in enumerate(rows)]})


def _versioned(fn):
    def wrapper(request: Request) -> Response:
        request.state.microversion = microversion.requested(request)
        return fn(request)

    wrapper.__name__ = fn.__name__
    return wrapper


ROUTES = [
    Route(path, _versioned(fn), methods=methods) for path, fn, methods in [
        ("/", versions_root, ["GET"]),
        ("/v1", version_v1, ["GET"]),
        ("/v1/", version_v1, ["GET"]),
        ("/v1/clustertemplates", list_templates, ["GET"]),
        ("/v1/clustertemplates/detail", list_templates, ["GET"]),
        ("/v1/clustertemplates", create_template, ["POST"]),
        ("/v1/clustertemplates/{ident}", show_template, ["GET"]),
        ("/v1/clustertemplates/{ident}", update_template, ["PATCH"]),
        ("/v1/clustertemplates/{ident}", delete_template, ["DELETE"]),
        ("/v1/clusters", list_clusters, ["GET"]),
        ("/v1/clusters/detail", list_clusters_detail, ["GET"]),
        ("/v1/clusters", create_cluster, ["POST"]),
        ("/v1/clusters/{ident}", show_cluster, ["GET"]),
        ("/v1/clusters/{ident}", update_cluster, ["PATCH"]),
        ("/v1/clusters/{ident}", delete_cluster, ["DELETE"]),
        ("/v1/clusters/{ident}/actions/resize", resize_cluster, ["POST"]),
        ("/v1/clusters/{ident}/actions/upgrade", upgrade_cluster, ["POST"]),
        ("/v1/clusters/{ident}/nodegroups", list_nodegroups, ["GET"]),
        ("/v1/clusters/{ident}/nodegroups/detail", list_nodegroups, ["GET"]),
        ("/v1/clusters/{ident}/nodegroups", create_nodegroup, ["POST"]),
        ("/v1/clusters/{ident}/nodegroups/{ng}", show_nodegroup, ["GET"]),
        ("/v1/clusters/{ident}/nodegroups/{ng}", update_nodegroup, ["PATCH"]),
        ("/v1/clusters/{ident}/nodegroups/{ng}", delete_nodegroup, ["DELETE"]),
        ("/v1/certificates", sign_csr, ["POST"]),
        ("/v1/certificates/{ident}", show_ca, ["GET"]),
        ("/v1/certificates/{ident}", rotate_ca, ["PATCH"]),
        ("/v1/quotas", list_quotas, ["GET"]),
        ("/v1/quotas", create_quota, ["POST"]),
        ("/v1/quotas/{project}/{resource}", show_quota, ["GET"]),
        ("/v1/quotas/{project}/{resource}", update_quota, ["PATCH"]),
        ("/v1/quotas/{project}/{resource}", delete_quota, ["DELETE"]),
        ("/v1/stats", stats, ["GET"]),
        ("/v1/mservices", mservices, ["GET"]),
        ("/v1/hostclasses", list_hostclasses, ["GET"]),
        ("/v1/hostclasses", create_hostclass, ["POST"]),
        ("/v1/hostclasses/{name}", delete_hostclass, ["DELETE"]),
    ]
]
