"""An API operation declared once: method, path, handler, and the schemas of its query, body and
responses. Routes are made from these declarations; the body and query are validated before the
handler runs, and the OpenAPI document is derived from the same declarations."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from teapot.api import schema
from teapot.api.common import authorize, identity
from teapot.resources.errors import ValidationError

# Errors any operation may answer with, all in the OpenStack API-SIG shape.
ERROR_STATUSES = {400: "bad input, naming the field", 401: "no or invalid token",
                  403: "not allowed", 404: "no such object (or not yours)",
                  409: "conflicts with the object's state"}


@dataclass
class Operation:
    method: str
    path: str
    handler: Callable[[Request], Response]
    summary: str
    tag: str
    responses: dict[int, dict | None]  # status → response body schema (None: no body)
    body: dict | None = None  # request body schema
    query: dict[str, dict] = field(default_factory=dict)  # parameter → schema
    authenticated: bool = True
    rule: str | None = None  # a policy rule checked before the body is (needs no object)
    body_optional: bool = False  # an empty request body stands for {}
    _body_validator: Any = field(default=None, init=False, repr=False)
    _query_validators: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self):
        if self.body is not None:
            self._body_validator = schema.validator(self.body)
        self._query_validators = {k: schema.validator(v) for k, v in self.query.items()}

    @property
    def operation_id(self) -> str:
        return self.handler.__name__

    # -- what runs before the handler --------------------------------------------------------------
    def parse_query(self, request: Request) -> dict:
        out = {}
        for name, v in self._query_validators.items():
            raw = request.query_params.get(name)
            if raw is None:
                continue
            value: Any = raw
            if v.schema.get("type") == "integer":
                try:
                    value = int(raw)
                except ValueError:
                    raise ValidationError(name, f"{raw[:40]!r} is not an integer") from None
            elif v.schema.get("type") == "boolean":
                if raw.lower() not in ("true", "false", "1", "0"):
                    raise ValidationError(name, "must be true or false")
                value = raw.lower() in ("true", "1")
            out[name] = schema.check(v, value, name)
        return out

    def parse_body(self, raw: bytes) -> Any:
        if self._body_validator is None:
            return None
        if not raw.strip() and self.body_optional:
            raw = b"{}"
        if not raw:
            raise ValidationError("", "the request needs a JSON body")
        try:
            body = json.loads(raw)
        except ValueError as e:
            raise ValidationError("", f"the body is not valid JSON: {e}") from None
        return schema.check(self._body_validator, body)

    def run(self, request: Request, raw: bytes) -> Response:
        """Who asks (401), may they (403), is the request well-formed (400), then the handler."""
        if self.authenticated:
            identity(request)
        if self.rule:
            authorize(request, self.rule)
        request.state.query = self.parse_query(request)
        request.state.body = self.parse_body(raw)
        return self.handler(request)

    def endpoint(self):
        async def endpoint(request: Request) -> Response:
            return await run_in_threadpool(self.run, request, await request.body())

        endpoint.__name__ = self.operation_id
        return endpoint


def routes(operations: list[Operation]) -> list[Route]:
    """One Route per path, dispatching on the method (so a wrong method is a 405 naming the others)."""
    by_path: dict[str, dict[str, Operation]] = {}
    for op in operations:
        methods = by_path.setdefault(op.path, {})
        if op.method in methods:
            raise ValueError(f"{op.method} {op.path} is declared twice")
        methods[op.method] = op
    out = []
    for path, methods in by_path.items():
        endpoints = {m: op.endpoint() for m, op in methods.items()}

        async def dispatch(request: Request, _endpoints=endpoints) -> Response:
            return await _endpoints.get(request.method, _endpoints.get("GET"))(request)

        out.append(Route(path, dispatch, methods=list(methods), name=path))
    return out


def body(request: Request) -> Any:
    """The request body, validated against the operation's declared schema."""
    return request.state.body


def query(request: Request) -> dict:
    return request.state.query
