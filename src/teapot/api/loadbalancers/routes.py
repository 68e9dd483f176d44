"""/v1/loadbalancers: a project's load balancers. Members create and delete their project's, readers
read them; another project's load balancer is a 404; administrators see every project's and may
make one in another project (`project_id`, as Octavia's API allows them; its provider driver does).
A load balancer may start with no listener and no member (Octavia's order) and be changed later:
PATCH replaces what it names. The conductor allocates the VIP and runs the data plane: a new load
balancer is PENDING_CREATE (a changed one PENDING_UPDATE) until then, as Octavia's are."""

from __future__ import annotations

import time
import uuid as uuidlib
from typing import Any

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import Response

from teapot.api import schema
from teapot.api.common import FastJSONResponse, authorize, identity
from teapot.api.container_infra.views import iso, links
from teapot.api.errors import APIError
from teapot.api.loadbalancers import schemas
from teapot.api.operations import Operation, body
from teapot.api.pagination import Paging, finish
from teapot.api.policy import Forbidden
from teapot.db import clusters as cdb
from teapot.db import networks as ndb
from teapot.db import pagination
from teapot.db.hosts import NotFound, _is_uuid
from teapot.db.models import LoadBalancer, Network
from teapot.resources import loadbalancer as lbr
from teapot.resources.errors import ValidationError

PAGING = Paging({"id": LoadBalancer.id, "uuid": LoadBalancer.uuid, "name": LoadBalancer.name,
                 "created_at": LoadBalancer.created_at}, "id", LoadBalancer.id,
                LoadBalancer.uuid, schema.UUID)


def _scope(request: Request) -> str | None:
    """The project whose load balancers the caller sees: None for administrators (all)."""
    try:
        authorize(request, "teapot:loadbalancer:get_any")
        return None
    except Forbidden:
        pass
    project = identity(request).project_id
    if not project:
        raise APIError(403, "load balancers need a project-scoped token")
    return project


def view(row: LoadBalancer, base: str) -> dict:
    spec = lbr.LoadBalancerSpec.from_record(row.spec)
    health = (row.status or {}).get("members") or {}
    applied = (row.status or {}).get("applied_members") or list(spec.members)
    return {
        "id": row.uuid, "name": row.name, "description": row.description or "",
        "project_id": row.project_id, "network_id": row.network_uuid, "cluster_id": spec.cluster,
        "vip_address": row.vip_address, "tenant_address": row.tenant_address,
        "provisioning_status": row.provisioning_status, "operating_status": row.operating_status,
        "status_reason": row.status_reason,
        "listeners": row.spec["listeners"],
        "members": [{"address": a, "operating_status": health.get(a, lbr.NO_MONITOR)}
                    for a in applied],
        "health_check": row.spec["health_check"], "topology": spec.topology,
        "created_at": iso(row.created_at), "updated_at": iso(row.updated_at),
        "links": links(base, "loadbalancers", row.uuid),
    }


def _cluster(request: Request, session, project: str | None) -> str | None:
    """The cluster of a /v1/clusters/{cluster}/loadbalancers path (its uuid), None elsewhere."""
    ident = request.path_params.get("cluster")
    if ident is None:
        return None
    return cdb.get_cluster(session, ident, project).uuid


def _get(session, ident: str, project: str | None, cluster: str | None = None) -> LoadBalancer:
    column = LoadBalancer.uuid if _is_uuid(ident) else LoadBalancer.name
    query = select(LoadBalancer).where(column == ident)
    if project is not None:
        query = query.where(LoadBalancer.project_id == project)
    rows = [r for r in session.scalars(query) if cluster is None or r.spec.get("cluster") == cluster]
    if not rows:
        raise NotFound(f"load balancer {ident}")
    if len(rows) > 1:
        raise LookupError(f"several load balancers are named {ident}; use the id")
    return rows[0]


def list_loadbalancers(request: Request) -> Response:
    project = _scope(request)
    page = PAGING.page(request)
    base = request.app.state.base_url(request)
    with request.app.state.reader() as session:
        cluster = _cluster(request, session, project)
        query = select(LoadBalancer)
        if project is not None:
            query = query.where(LoadBalancer.project_id == project)
        rows = list(session.scalars(pagination.apply(session, query, page)))
        if cluster is not None:  # a page may hold fewer: the cluster is in the JSON spec
            rows = [r for r in rows if r.spec.get("cluster") == cluster]
        rows, next_link = finish(request, rows, page, lambda r: r.uuid)
        out: dict[str, Any] = {"loadbalancers": [view(r, base) for r in rows]}
    if next_link:
        out["next"] = next_link
    return FastJSONResponse(out)


def show_loadbalancer(request: Request) -> Response:
    project = _scope(request)
    with request.app.state.reader() as session:
        row = _get(session, request.path_params["ident"], project,
                   _cluster(request, session, project))
        authorize(request, "teapot:loadbalancer:get", {"project_id": row.project_id})
        return FastJSONResponse(view(row, request.app.state.base_url(request)))


def create_loadbalancer(request: Request) -> Response:
    spec = body(request)
    project = identity(request).project_id
    if spec.get("project_id") and spec["project_id"] != project:
        authorize(request, "teapot:loadbalancer:create_any")
        project = spec["project_id"]
    if not project:
        raise APIError(403, "load balancers need a project-scoped token")
    if not request.app.state.networks_enabled or not request.app.state.loadbalancers_enabled:
        raise APIError(409, "this cloud runs no load balancers (it needs tenant networks and "
                            "[loadbalancer] driver)")
    scoped = request.path_params.get("cluster")
    if scoped is not None:
        if spec.get("cluster") not in (None, scoped):
            raise ValidationError("cluster", "is the cluster of the path when given")
        spec = {**spec, "cluster": scoped}
    with request.app.state.sessionmaker.begin() as session:
        cluster = None
        if spec.get("cluster"):
            try:
                cluster = cdb.get_cluster(session, spec["cluster"], project)
            except NotFound:
                raise ValidationError("cluster", f"no cluster {spec['cluster']!r} in your "
                                                 "project") from None
        if spec.get("network"):
            try:
                network = ndb.get(session, spec["network"], project)
            except NotFound:
                raise ValidationError("network", f"no network {spec['network']!r} in your project "
                                                 "(teapot network list)") from None
        elif cluster is not None and cluster.network_uuid:  # the cluster's own network
            network = ndb.get(session, cluster.network_uuid, project)
        else:
            network = ndb.default_for(session, project, request.app.state.vlan_ranges,
                                      request.app.state.default_subnet)
        if network.deleting:
            raise ValidationError("network", f"network {network.name} is being deleted")
        if cluster is not None and cluster.network_uuid != network.uuid:
            raise ValidationError("cluster", f"cluster {cluster.name} is not on network "
                                             f"{network.name}")
        cluster_uuid = cluster.uuid if cluster is not None else None
        subnet = ndb.subnet_of(network, request.app.state.default_subnet)
        parsed = lbr.parse(spec, subnet.cidr, cluster_uuid)
        if session.scalars(select(LoadBalancer.id).where(
                LoadBalancer.project_id == project, LoadBalancer.name == spec["name"])).first():
            raise APIError(409, f"your project already has a load balancer named {spec['name']}")
        now = time.time()
        row = LoadBalancer(uuid=str(uuidlib.uuid4()), name=spec["name"],
                           description=spec.get("description") or "", project_id=project,
                           network_uuid=network.uuid, spec=parsed.record(),
                           provisioning_status=lbr.PENDING_CREATE, operating_status=lbr.OFFLINE,
                           status={}, generation=1, applied_generation=0, created_at=now,
                           updated_at=now, next_attempt_at=0.0)
        session.add(row)
        session.flush()
        out = view(row, request.app.state.base_url(request))
    return FastJSONResponse(out, status_code=201)


def update_loadbalancer(request: Request) -> Response:
    change = body(request)
    project = _scope(request)
    with request.app.state.sessionmaker.begin() as session:
        row = _get(session, request.path_params["ident"], project,
                   _cluster(request, session, project))
        authorize(request, "teapot:loadbalancer:update", {"project_id": row.project_id})
        if row.deleting:
            raise APIError(409, f"load balancer {row.name} is being deleted")
        network = session.scalars(select(Network).where(Network.uuid == row.network_uuid)).one()
        subnet = ndb.subnet_of(network, request.app.state.default_subnet)
        parsed = lbr.parse(lbr.merged(row.spec, change), subnet.cidr, row.spec.get("cluster"))
        if "description" in change:
            row.description = change["description"] or ""
        if parsed.record() != row.spec:
            row.spec = parsed.record()
            row.provisioning_status = lbr.PENDING_UPDATE
            row.generation += 1
            row.next_attempt_at = 0.0
        row.updated_at = time.time()
        session.flush()
        out = view(row, request.app.state.base_url(request))
    return FastJSONResponse(out)


def delete_loadbalancer(request: Request) -> Response:
    project = _scope(request)
    with request.app.state.sessionmaker.begin() as session:
        row = _get(session, request.path_params["ident"], project,
                   _cluster(request, session, project))
        authorize(request, "teapot:loadbalancer:delete", {"project_id": row.project_id})
        if not row.deleting:
            row.deleting, row.provisioning_status = True, lbr.PENDING_DELETE
            row.generation += 1
            row.next_attempt_at = 0.0
            row.updated_at = time.time()
    return Response(status_code=204)


# The same, below a cluster: only that cluster's load balancers (made with it as members). A
# cluster's own credential reaches these paths of its cluster only (Keystone access rules,
# resources/loadbalancer.access_rules): the controller that turns its Services of type LoadBalancer
# into load balancers (drivers/bootstrap/service_loadbalancers.py) uses them.
CLUSTER_PATH = "/v1/clusters/{cluster}/loadbalancers"

OPERATIONS = [
    Operation("GET", "/v1/loadbalancers", list_loadbalancers, "List load balancers",
              "loadbalancers", {200: schemas.LOADBALANCER_LIST}, query=PAGING.query_schema(),
              rule="teapot:loadbalancer:get_all"),
    Operation("POST", "/v1/loadbalancers", create_loadbalancer,
              "Create a load balancer (its VIP comes from the public network)", "loadbalancers",
              {201: schemas.LOADBALANCER}, body=schemas.CREATE, rule="teapot:loadbalancer:create"),
    Operation("GET", "/v1/loadbalancers/{ident}", show_loadbalancer, "Show a load balancer",
              "loadbalancers", {200: schemas.LOADBALANCER}),
    Operation("PATCH", "/v1/loadbalancers/{ident}", update_loadbalancer,
              "Change a load balancer's listeners, members or health check", "loadbalancers",
              {200: schemas.LOADBALANCER}, body=schemas.UPDATE),
    Operation("DELETE", "/v1/loadbalancers/{ident}", delete_loadbalancer,
              "Delete a load balancer", "loadbalancers", {204: None}),
    Operation("GET", CLUSTER_PATH, list_loadbalancers, "List a cluster's load balancers",
              "loadbalancers", {200: schemas.LOADBALANCER_LIST}, query=PAGING.query_schema(),
              rule="teapot:loadbalancer:get_all"),
    Operation("POST", CLUSTER_PATH, create_loadbalancer,
              "Create a load balancer whose members are the cluster's hosts", "loadbalancers",
              {201: schemas.LOADBALANCER}, body=schemas.CREATE, rule="teapot:loadbalancer:create"),
    Operation("GET", CLUSTER_PATH + "/{ident}", show_loadbalancer,
              "Show a load balancer of a cluster", "loadbalancers", {200: schemas.LOADBALANCER}),
    Operation("PATCH", CLUSTER_PATH + "/{ident}", update_loadbalancer,
              "Change a load balancer of a cluster", "loadbalancers",
              {200: schemas.LOADBALANCER}, body=schemas.UPDATE),
    Operation("DELETE", CLUSTER_PATH + "/{ident}", delete_loadbalancer,
              "Delete a load balancer of a cluster", "loadbalancers", {204: None}),
]
