"""/v1/hosts: list, show, create, update (JSON merge patch), delete."""

from __future__ import annotations

import copy
import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from teapot.api.common import authorize, json_body
from teapot.api.errors import APIError
from teapot.api.hosts import views
from teapot.db import hosts as host_db
from teapot.db.models import Host
from teapot.resources import host as hsm
from teapot.resources import host_schema
from teapot.resources.errors import ValidationError

CREATE_FIELDS = {"name", "labels", "traits", "spec", "bmcCredentials", "userData"}
UPDATE_FIELDS = {"labels", "traits", "spec", "bmcCredentials", "userData"}
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


def _labels(value: Any) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                              for k, v in value.items()):
        raise ValidationError("labels", "must be an object of strings")
    return value


def _user_data(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValidationError("userData", "must be a string (the cloud-init user data)")
    return value


def _unknown(body: dict, allowed: set[str]) -> None:
    extra = sorted(set(body) - allowed)
    if extra:
        raise ValidationError(extra[0], f"unknown field; expected some of {', '.join(sorted(allowed))}")


def _prepare_spec(name: str, spec: Any, user_data: str | None) -> dict:
    if not isinstance(spec, dict):
        raise ValidationError("spec", "is required and must be an object")
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
    authorize(request, "teapot:host:get_all")
    with request.app.state.sessionmaker() as session:
        rows = host_db.list_all(session)
        base = request.app.state.base_url(request)
        return JSONResponse({"hosts": [views.host(r, base) for r in rows]})


def show_host(request: Request) -> Response:
    authorize(request, "teapot:host:get")
    with request.app.state.sessionmaker() as session:
        row = host_db.get(session, request.path_params["ident"])
        return JSONResponse(views.host(row, request.app.state.base_url(request)))


def create_host(request: Request) -> Response:
    authorize(request, "teapot:host:create")
    body = json_body(request)
    _unknown(body, CREATE_FIELDS)
    name = host_schema.validate_name(body.get("name"))
    labels = _labels(body.get("labels"))
    traits = host_schema.validate_traits(body.get("traits"))
    user_data = _user_data(body.get("userData"))
    spec = _prepare_spec(name, body.get("spec"), user_data)
    username, password = host_schema.validate_credentials(body.get("bmcCredentials"))
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
    authorize(request, "teapot:host:update")
    body = json_body(request)
    _unknown(body, UPDATE_FIELDS)
    fernet = request.app.state.fernet
    with request.app.state.sessionmaker.begin() as session:
        row = host_db.get(session, request.path_params["ident"])
        if row.deleting:
            raise ValidationError("", f"host {row.name} is being deleted")
        old_spec = row.spec
        old_user_data = fernet.decrypt(row.user_data).decode() if row.user_data else None
        user_data = _user_data(body["userData"]) if "userData" in body else old_user_data
        patched = merge_patch(old_spec, body.get("spec") or {})
        patched.pop("userData", None)
        spec = _prepare_spec(row.name, patched, "" if user_data is not None else None)
        credentials = None
        if "bmcCredentials" in body:
            username, password = host_schema.validate_credentials(body["bmcCredentials"])
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
        if "labels" in body:
            row.labels = _labels(body["labels"])
        if "traits" in body:
            row.traits = host_schema.validate_traits(body["traits"])
        row.spec = spec
        row.generation += 1
        row.next_attempt_at = 0.0
        row.updated_at = time.time()
        session.flush()
        return JSONResponse(views.host(row, request.app.state.base_url(request)))


def delete_host(request: Request) -> Response:
    authorize(request, "teapot:host:delete")
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


ROUTES = [
    Route("/v1/hosts", list_hosts, methods=["GET"]),
    Route("/v1/hosts", create_host, methods=["POST"]),
    Route("/v1/hosts/{ident}", show_host, methods=["GET"]),
    Route("/v1/hosts/{ident}", update_host, methods=["PATCH"]),
    Route("/v1/hosts/{ident}", delete_host, methods=["DELETE"]),
]
