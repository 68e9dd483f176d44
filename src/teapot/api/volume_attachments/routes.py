"""/v1/clusters/{cluster}/volume_attachments: Cinder volumes attached to a cluster's hosts.

Members of the cluster's project attach and detach, readers list and show; another project's
cluster is a 404 (administrators too act in their token's project: Cinder is called with the
caller's own token, so the volumes are those of the caller's project). Cinder is the record: an
attachment belongs to the cluster when its instance is the Ironic node of one of the cluster's
hosts (drivers/block.py). A cluster attaches volumes only when it asked for them (label
`cinder_attachments_enabled`): its hosts then hold the project's Ceph key in their add-ons.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response

from teapot.api.common import FastJSONResponse, authorize, identity
from teapot.api.errors import APIError
from teapot.api.operations import Operation, body
from teapot.api.volume_attachments import schemas
from teapot.db import clusters as cdb
from teapot.db.models import Cluster, Host
from teapot.drivers import block
from teapot.resources import storage

RULE = "teapot:volume_attachment"


def make_driver(conf) -> block.CinderBlock | None:
    """The block driver of this API process, from [block] and [keystone_authtoken]."""
    from keystoneauth1.identity import v3

    from teapot.drivers.bootstrap import storage as addons

    try:
        users = block.CephUsers.from_conf(conf)
    except Exception:  # noqa: BLE001 - a configuration without the [block] group
        users = None
    ka = conf.keystone_authtoken
    service = v3.Password(auth_url=ka.auth_url, username=ka.username, password=ka.password,
                          project_name=ka.project_name, user_domain_name=ka.user_domain_name,
                          project_domain_name=ka.project_domain_name)
    return block.CinderBlock(ka.auth_url, service, users, addons.BLOCK_SECRET_REF)


def _driver(request: Request) -> block.CinderBlock:
    driver = getattr(request.app.state, "block", None)
    if driver is None:
        raise APIError(503, "volume attachments are not configured on this cloud")
    return driver


def _caller(request: Request) -> block.Caller:
    ident = identity(request)
    if not ident.project_id:
        raise APIError(403, "volume attachments need a project-scoped token")
    return block.Caller(request.headers["x-auth-token"], ident.project_id)


def _host_ref(h: Host) -> block.HostRef | None:
    node = ((h.status or {}).get("provisioning") or {}).get("ID") or ""
    return block.HostRef(h.uuid, h.name, node) if node else None


def _context(request: Request, rule: str) -> tuple[Cluster, list[Host], set[str]]:
    """The cluster (of the caller's project), its hosts, and the Ironic nodes of every host of
    the project's clusters (whose volumes the project's Ceph user opens)."""
    project = _caller(request).project_id
    with request.app.state.reader() as session:
        row = cdb.get_cluster(session, request.path_params["cluster"], project)
        authorize(request, f"{RULE}:{rule}", {"project_id": row.project_id})
        hosts = list(cdb.hosts_of(session, row.uuid))
        clusters = select(Cluster.uuid).where(Cluster.project_id == row.project_id)
        nodes = {ref.node_uuid for h in session.scalars(
            select(Host).where(Host.cluster_uuid.in_(clusters))) if (ref := _host_ref(h))}
        session.expunge_all()
    if storage.BLOCK not in (row.attrs.get("storage_kinds") or ()):
        raise APIError(409, f"cluster {row.name} did not ask for volume attachments (label "
                            "cinder_attachments_enabled)")
    return row, hosts, nodes


def _refs(hosts: list[Host]) -> list[block.HostRef]:
    return [ref for h in hosts if (ref := _host_ref(h))]


def view(request: Request, cluster: Cluster, a: block.Attachment) -> dict:
    base = request.app.state.base_url(request)
    href = f"{base}/v1/clusters/{cluster.uuid}/volume_attachments/{a.id}"
    out: dict[str, Any] = {
        "id": a.id, "volume_id": a.volume_id, "cluster_uuid": cluster.uuid,
        "host": {"uuid": a.host.uuid, "name": a.host.name, "node_uuid": a.host.node_uuid},
        "status": a.status, "connection_info": a.connection_info,
        "links": [{"href": href, "rel": "self"}]}
    return out


def _fail(e: block.BlockError) -> APIError:
    return APIError(e.status, str(e))


def list_attachments(request: Request) -> Response:
    row, hosts, _ = _context(request, "get_all")
    try:
        found = _driver(request).list(_caller(request), _refs(hosts))
    except block.BlockError as e:
        raise _fail(e) from None
    items = [view(request, row, a) for a in found]
    return FastJSONResponse({"volume_attachments": items, "count": len(items)})


def show_attachment(request: Request) -> Response:
    row, hosts, _ = _context(request, "get")
    try:
        found = _driver(request).show(_caller(request), request.path_params["attachment"],
                                      _refs(hosts))
    except block.BlockError as e:
        raise _fail(e) from None
    return FastJSONResponse(view(request, row, found))


def create_attachment(request: Request) -> Response:
    spec = body(request)
    row, hosts, nodes = _context(request, "create")
    wanted = spec["host"]
    matches = [h for h in hosts if wanted in (h.uuid, h.name)]
    if not matches:
        raise APIError(400, f"host: {wanted[:80]!r} is not a host of cluster {row.name}")
    ref = _host_ref(matches[0])
    if ref is None:
        raise APIError(409, f"host {matches[0].name} has no Ironic node yet; try again later")
    try:
        made = _driver(request).attach(_caller(request), spec["volume_id"], ref, nodes)
    except block.BlockError as e:
        raise _fail(e) from None
    return FastJSONResponse(view(request, row, made), status_code=201)


def delete_attachment(request: Request) -> Response:
    _, hosts, nodes = _context(request, "delete")
    try:
        _driver(request).detach(_caller(request), request.path_params["attachment"],
                                _refs(hosts), nodes)
    except block.BlockError as e:
        raise _fail(e) from None
    return Response(status_code=204)


PATH = "/v1/clusters/{cluster}/volume_attachments"
OPERATIONS = [
    Operation("GET", PATH, list_attachments, "List the volumes attached to a cluster's hosts",
              "volume_attachments", {200: schemas.ATTACHMENT_LIST},
              rule=f"{RULE}:get_all"),
    Operation("POST", PATH, create_attachment,
              "Attach a Cinder volume to a host of the cluster (answers its connection info)",
              "volume_attachments", {201: schemas.ATTACHMENT}, body=schemas.CREATE,
              rule=f"{RULE}:create"),
    Operation("GET", PATH + "/{attachment}", show_attachment, "Show a volume attachment",
              "volume_attachments", {200: schemas.ATTACHMENT}, rule=f"{RULE}:get"),
    Operation("DELETE", PATH + "/{attachment}", delete_attachment,
              "Detach a volume from a host of the cluster", "volume_attachments", {204: None},
              rule=f"{RULE}:delete"),
]
