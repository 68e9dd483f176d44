"""The OpenAPI 3.1 document of the API, derived from the operations' declared schemas."""

from __future__ import annotations

import re

from teapot import __version__
from teapot.api import schema
from teapot.api.operations import ERROR_STATUSES, Operation

_PARAM = re.compile(r"{([^}]+)}")


def _operation(op: Operation) -> dict:
    params = [{"name": name, "in": "path", "required": True, "schema": schema.IDENT}
              for name in _PARAM.findall(op.path)]
    params += [{"name": name, "in": "query", "required": False, "schema": s}
               for name, s in op.query.items()]
    responses = {}
    for status, body in op.responses.items():
        entry: dict = {"description": "success"}
        if body is not None:
            entry["content"] = {"application/json": {"schema": body}}
        responses[str(status)] = entry
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    statuses = ERROR_STATUSES if op.authenticated else {400: ERROR_STATUSES[400]}
    for status, why in statuses.items():
        responses.setdefault(str(status), {"description": why, **error})
    out = {"operationId": op.operation_id, "summary": op.summary, "tags": [op.tag],
           "responses": responses}
    if params:
        out["parameters"] = params
    if op.body is not None:
        out["requestBody"] = {"required": not op.body_optional,
                              "content": {"application/json": {"schema": op.body}}}
    if not op.authenticated:
        out["security"] = []
    return out


def document(operations: list[Operation], server_url: str) -> dict:
    paths: dict[str, dict] = {}
    seen: dict[str, int] = {}
    for op in operations:
        entry = _operation(op)
        # One handler may serve two paths (/v1 and /v1/, a list and its detail): ids stay unique.
        seen[op.operation_id] = seen.get(op.operation_id, 0) + 1
        if seen[op.operation_id] > 1:
            entry["operationId"] = f"{op.operation_id}_{seen[op.operation_id]}"
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": "Teapot API", "version": __version__,
                 "description": "Bare-metal Kubernetes clusters beside OpenStack: container-infra v1 "
                                "(Magnum compatible) and the admin API of hosts."},
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {
            "schemas": {"Error": schema.ERROR},
            "securitySchemes": {"keystone": {"type": "apiKey", "in": "header", "name": "X-Auth-Token",
                                             "description": "a Keystone token"}},
        },
        "security": [{"keystone": []}],
    }
