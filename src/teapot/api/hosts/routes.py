"""/v1/hosts: list, show, create, update (JSON merge patch), delete."""

from __future__ import annotations

import copy
import time
import uuid
from typing import Any

from sqlalchemy import func
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from teapot.api import schema
from teapot.api.errors import APIError
from teapot.api.hosts import schemas, views
from teapot.api.operations import Operation, body
from teapot.api.pagination import Paging, finish
from teapot.db import hosts as host_db
from teapot.db.models import Host
from teapot.resources import host as hsm
from teapot.resources import host_schema
from teapot.resources.errors import ValidationError

PAGING = Paging({"name": Host.name, "uuid": Host.uuid, "state": Host.state,
                 "created_at": Host.created_at, "updated_at": Host.updated_at,
                 "generation": Host.generation, "id": Host.id, "cluster": func.coalesce(Host.cluster_uuid, "")},
                "name", Host.id, Host.uuid, schema.UUID)
# Spec fields that Ironic is told at registration: changing them registers the host again.
REGISTRATION_FIELDS = ("bmc", "bootMACAddress")
REREGISTER_STATES = {hsm.REGISTERING, hsm.INSPECTING, hsm.PREPARING, hsm.AVAILABLE}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _prepare_spec(name: str, spec: dict, user_data: str | None) -> dict:
    spec = copy.deepcopy(spec)
    spec.setdefault("online", False)
    if isinstance(spec.get("bmc"), dict):
        spec["bmc"].setdefault("credentialsName", f"{name}-bmc-secret")
    if user_data is not None:
        spec["userData"] = {"name": f"{name}-user-data"}
    elif spec.get("userData"):
        raise ValidationError("userData", "spec.userData names user data, but none was given")
    return host_schema.validate_spec(spec)


def _claimed(row) -> APIError:
    return APIError(409, f"host {row.name} belongs to cluster {row.cluster_uuid}; "
                         f"remove it from the cluster (resize or delete) first")


def list_hosts(request: Request) -> Response:
    page = PAGING.page(request)
    with request.app.state.reader() as session:
        rows, next_link = finish(request, list(host_db.list_all(session, page)), page,
                                 lambda r: r.uuid)
        base = request.app.state.base_url(request)
        out: dict[str, Any] = {"hosts": [views.host(r, base) for r in rows]}
    if next_link:
        out["next"] = next_link
    return JSONResponse(out)


def show_host(request: Request) -> Response:
    with request.app.state.sessionmaker() as session:
        row = host_db.get(session, request.path_params["ident"])
        return JSONResponse(views.host(row, request.app.state.base_url(request)))


def create_host(request: Request) -> Response:
    spec_in = body(request)
    name = spec_in["name"]
    labels = spec_in.get("labels") or {}
    traits = host_schema.validate_traits(spec_in.get("traits"))
    user_data = spec_in.get("userData")
    spec = _prepare_spec(name, spec_in["spec"], user_data)
    username, password = spec_in["bmcCredentials"]["username"], spec_in["bmcCredentials"]["password"]
    fernet = request.app.state.fernet
    now = time.time()
    status = hsm.initial_status(now)
    row = Host(
        uuid=str(uuid.uuid4()), name=name, labels=labels, traits=traits, spec=spec, generation=1,
        bmc_username=username, bmc_password=fernet.encrypt(password.encode()),
        user_data=fernet.encrypt(user_data.encode()) if user_data is not None else None,
        bmc_version=1, deleting=False, state=status["provisioning"]["state"], status=status,
        next_attempt_at=0.0, lease_owner=None, lease_expires_at=0.0, created_at=now, updated_at=now,
    )
    with request.app.state.sessionmaker.begin() as session:
        host_db.create(session, row)
        out = views.host(row, request.app.state.base_url(request))
    return JSONResponse(out, status_code=201, headers={"Location": out["links"][0]["href"]})


def update_host(request: Request) -> Response:
    patch = body(request)
    fernet = request.app.state.fernet
    with request.app.state.sessionmaker.begin() as session:
        row = host_db.get(session, request.path_params["ident"])
        if row.deleting:
            raise ValidationError("", f"host {row.name} is being deleted")
        old_spec = row.spec
        old_user_data = fernet.decrypt(row.user_data).decode() if row.user_data else None
        user_data = patch["userData"] if "userData" in patch else old_user_data
        patched = merge_patch(old_spec, patch.get("spec") or {})
        patched.pop("userData", None)
        spec = _prepare_spec(row.name, patched, "" if user_data is not None else None)
        credentials = None
        if "bmcCredentials" in patch:
            username, password = patch["bmcCredentials"]["username"], patch["bmcCredentials"]["password"]
            if (username, password) != (row.bmc_username, fernet.decrypt(row.bmc_password).decode()):
                credentials = username, password
        if row.cluster_uuid and (spec != old_spec or user_data != old_user_data or credentials):
            raise _claimed(row)
        if user_data != old_user_data:
            row.user_data = fernet.encrypt(user_data.encode()) if user_data is not None else None
        reregister = any(spec.get(f) != old_spec.get(f) for f in REGISTRATION_FIELDS)
        if credentials:
            row.bmc_username, row.bmc_password = credentials[0], fernet.encrypt(credentials[1].encode())
            reregister = True
        if reregister:
            if row.state not in REREGISTER_STATES:
                raise ValidationError(
                    "spec.bmc", f"BMC details can change only while the host is not provisioned "
                                f"(it is {row.state})")
            row.bmc_version += 1
        if "labels" in patch:
            row.labels = patch["labels"] or {}
        if "traits" in patch:
            row.traits = host_schema.validate_traits(patch["traits"])
        row.spec = spec
        row.generation += 1
        row.next_attempt_at = 0.0
        row.updated_at = time.time()
        session.flush()
        return JSONResponse(views.host(row, request.app.state.base_url(request)))


def delete_host(request: Request) -> Response:
    with request.app.state.sessionmaker.begin() as session:
        row = host_db.get(session, request.path_params["ident"])
        if row.cluster_uuid:
            raise _claimed(row)
        row.deleting = True
        row.generation += 1
        row.next_attempt_at = 0.0
        row.updated_at = time.time()
        session.flush()
        return JSONResponse(views.host(row, request.app.state.base_url(request)), status_code=202)


OPERATIONS = [
    Operation("GET", "/v1/hosts", list_hosts, "List hosts", "hosts", {200: schemas.HOST_LIST},
              query=PAGING.query_schema(), rule="teapot:host:get_all"),
    Operation("POST", "/v1/hosts", create_host, "Enroll a host", "hosts", {201: schemas.HOST},
              body=schemas.CREATE, rule="teapot:host:create"),
    Operation("GET", "/v1/hosts/{ident}", show_host, "Show a host", "hosts", {200: schemas.HOST},
              rule="teapot:host:get"),
    Operation("PATCH", "/v1/hosts/{ident}", update_host, "Change a host (JSON merge patch)", "hosts",
              {200: schemas.HOST}, body=schemas.UPDATE, rule="teapot:host:update"),
    Operation("DELETE", "/v1/hosts/{ident}", delete_host, "Delete a host", "hosts",
              {202: schemas.HOST}, rule="teapot:host:delete"),
]
