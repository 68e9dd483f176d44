"""/v1/networks: a project's tenant networks (one VLAN each). Members create and delete their
project's networks, readers read them; nothing crosses projects (another project's network is a 404);
administrators see every project's, with the VLAN ids."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from teapot.api import schema
from teapot.api.common import FastJSONResponse, authorize, identity
from teapot.api.container_infra.views import iso, links
from teapot.api.errors import APIError
from teapot.api.networks import schemas
from teapot.api.operations import Operation, body
from teapot.api.pagination import Paging, finish
from teapot.api.policy import Forbidden
from teapot.db import networks as ndb
from teapot.db.models import Network
from teapot.resources import network as nsm
from teapot.resources.errors import ValidationError

PAGING = Paging({"id": Network.id, "uuid": Network.uuid, "name": Network.name,
                 "status": Network.status, "created_at": Network.created_at},
                "id", Network.id, Network.uuid, schema.UUID)


def _admin(request: Request) -> bool:
    try:
        authorize(request, "teapot:network:get_any")
    except Forbidden:
        return False
    return True


def _scope(request: Request) -> str | None:
    """The project whose networks the caller sees: None for administrators (all)."""
    if _admin(request):
        return None
    project = identity(request).project_id
    if not project:
        raise APIError(403, "networks need a project-scoped token")
    return project


def view(row: Network, base: str, admin: bool) -> dict:
    out = {"uuid": row.uuid, "name": row.name, "description": row.description or "",
           "project_id": row.project_id, "is_default": row.is_default, "status": row.status,
           "status_reason": row.status_reason, "neutron_network_id": row.neutron_id,
           "subnet": row.subnet,
           "created_at": iso(row.created_at), "updated_at": iso(row.updated_at),
           "links": links(base, "networks", row.uuid)}
    if admin:
        out["vlan_id"] = row.vlan_id
    return out


def _respond(body: Any, status: int = 200) -> Response:
    return FastJSONResponse(body, status_code=status)


def list_networks(request: Request) -> Response:
    project = _scope(request)
    page = PAGING.page(request)
    base = request.app.state.base_url(request)
    with request.app.state.reader() as session:
        rows, next_link = finish(request, list(ndb.listed(session, project, page)), page,
                                 lambda r: r.uuid)
        out: dict[str, Any] = {"networks": [view(r, base, project is None) for r in rows]}
    if next_link:
        out["next"] = next_link
    return _respond(out)


def show_network(request: Request) -> Response:
    project = _scope(request)
    with request.app.state.reader() as session:
        row = ndb.get(session, request.path_params["ident"], project)
        authorize(request, "teapot:network:get", {"project_id": row.project_id})
        return _respond(view(row, request.app.state.base_url(request), project is None))


def create_network(request: Request) -> Response:
    spec = body(request)
    project = identity(request).project_id
    if not project:
        raise APIError(403, "networks need a project-scoped token")
    ranges = request.app.state.vlan_ranges
    subnet = _subnet(request, spec)
    with request.app.state.sessionmaker.begin() as session:
        try:
            row = ndb.create(session, project_id=project, name=spec["name"], subnet=subnet,
                             description=spec.get("description") or "", ranges=ranges)
        except LookupError as e:
            raise APIError(409, str(e)) from None
        except ndb.NoFreeVlan as e:
            raise APIError(409, f"no network can be created: {e}") from None
        out = view(row, request.app.state.base_url(request), _admin(request))
    return _respond(out, 201)


def _subnet(request: Request, spec: dict) -> nsm.Subnet:
    """The subnet a create asks for, or the cloud's default; a 400 naming the field otherwise."""
    fields = ("gateway_ip", "dns_nameservers", "allocation_pool")
    if "cidr" not in spec:
        given = [f for f in fields if f in spec]
        if given:
            raise ValidationError(given[0], "needs a cidr to belong to")
        return request.app.state.default_subnet
    return nsm.Subnet.parse(spec["cidr"], spec.get("gateway_ip"), spec.get("dns_nameservers") or (),
                            spec.get("allocation_pool"))


def delete_network(request: Request) -> Response:
    project = _scope(request)
    with request.app.state.sessionmaker.begin() as session:
        row = ndb.get(session, request.path_params["ident"], project)
        authorize(request, "teapot:network:delete", {"project_id": row.project_id})
        using = ndb.users(session, row)
        if using:
            raise APIError(409, f"network {row.name} is in use by {', '.join(using[:10])}"
                                + (f" and {len(using) - 10} more" if len(using) > 10 else ""))
        if not row.deleting:
            row.deleting, row.status = True, nsm.DELETING
            row.generation += 1
            row.next_attempt_at = 0.0
            row.updated_at = time.time()
    return Response(status_code=204)


OPERATIONS = [
    Operation("GET", "/v1/networks", list_networks, "List tenant networks", "networks",
              {200: schemas.NETWORK_LIST}, query=PAGING.query_schema(),
              rule="teapot:network:get_all"),
    Operation("POST", "/v1/networks", create_network, "Create a tenant network (allocates a VLAN)",
              "networks", {201: schemas.NETWORK}, body=schemas.CREATE, rule="teapot:network:create"),
    Operation("GET", "/v1/networks/{ident}", show_network, "Show a tenant network", "networks",
              {200: schemas.NETWORK}),
    Operation("DELETE", "/v1/networks/{ident}", delete_network, "Delete a tenant network",
              "networks", {204: None}),
]
