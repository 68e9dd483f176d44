"""The API application: routes of every API, auth, errors, request ids."""

from __future__ import annotations

import gc
import logging
import uuid

from oslo_config import cfg
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from teapot import config, crypto, dependencies
from teapot.api import openapi, operations
from teapot.api.auth import TokenValidator
from teapot.api.bucket_credentials import routes as bucket_routes
from teapot.api.container_infra import routes as ci_routes
from teapot.api.errors import APIError, Unavailable, error_response
from teapot.api.hosts import routes as host_routes
from teapot.api.loadbalancers import routes as loadbalancer_routes
from teapot.api.networks import routes as network_routes
from teapot.api.policy import Enforcer, Forbidden
from teapot.api.volume_attachments import routes as volume_routes
from teapot.db import engine as db_engine
from teapot.db.hosts import NotFound
from teapot.db.pagination import MarkerNotFound
from teapot.observability import api as observe
from teapot.observability import logs
from teapot.resources import network as nsm
from teapot.resources.errors import ValidationError

# Every operation of every API, each with its declared schemas.
OPERATIONS = [*ci_routes.OPERATIONS, *host_routes.OPERATIONS, *network_routes.OPERATIONS,
              *volume_routes.OPERATIONS, *bucket_routes.OPERATIONS,
              *loadbalancer_routes.OPERATIONS]

LOG = logging.getLogger(__name__)


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _with_request_id(app: Starlette):
    async def middleware(scope, receive, send):
        if scope["type"] == "http":
            request_id = f"req-{uuid.uuid4()}"
            scope.setdefault("state", {})["request_id"] = request_id

            async def send_with_id(message):
                if message["type"] == "http.response.start":
                    headers = list(message.get("headers", []))
                    if not any(k.lower() == b"x-openstack-request-id" for k, _ in headers):
                        headers.append((b"x-openstack-request-id", request_id.encode()))
                    message = {**message, "headers": headers}
                await send(message)

            token = logs.REQUEST_ID.set(request_id)  # for log records of this request
            try:
                return await app(scope, receive, send_with_id)
            finally:
                logs.REQUEST_ID.reset(token)
        return await app(scope, receive, send)

    return middleware


async def openapi_document(request: Request) -> JSONResponse:
    doc = request.app.state.openapi
    if doc is None:
        doc = request.app.state.openapi = openapi.document(OPERATIONS, _base_url(request))
    return JSONResponse(doc)


def dependency_failure(exc: Exception) -> Unavailable | None:
    """The 503 for an exception that says a dependency is down rather than Teapot wrong
    (teapot.dependencies): the database gone or locked, a service not answering."""
    down = dependencies.classify(exc)
    return None if down is None else Unavailable(down.dependency, down.why)


def build(conf: cfg.ConfigOpts, validator=None, identity=None) -> Starlette:
    """The application; `validator` (Keystone token validation) and `identity` (clusters'
    Keystone credentials, drivers.identity.KeystoneCredentials) default to ones from `conf`."""
    routes = [*operations.routes(OPERATIONS), Route("/openapi.json", openapi_document)]
    routes.extend(observe.ROUTES)  # /metrics and /healthz, unauthenticated

    async def on_api_error(request, exc: APIError):
        response = error_response(request, exc.status, exc.detail, exc.code)
        response.headers.update(exc.headers)
        return response

    async def on_validation(request, exc: ValidationError):
        return error_response(request, 400, str(exc), "invalid_input")

    async def on_not_found(request, exc: NotFound):
        what = exc.args[0] if exc.args and exc.args[0] else "the object"
        return error_response(request, 404, f"{what} not found", "not_found")

    async def on_ambiguous(request, exc: LookupError):
        return error_response(request, 409, str(exc), "conflict")

    async def on_forbidden(request, exc: Forbidden):
        return error_response(request, 403, str(exc), "forbidden")

    async def on_marker(request, exc: MarkerNotFound):
        return error_response(request, 400, "marker: no such object in this list", "invalid_input")

    async def on_http(request, exc: HTTPException):
        if exc.status_code == 404:
            detail = f"no such resource: {request.url.path}"
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
        else:
            detail = exc.detail
        response = error_response(request, exc.status_code, detail)
        response.headers.update(exc.headers or {})
        return response

    async def on_error(request, exc: Exception):
        unavailable = dependency_failure(exc)
        if unavailable is not None:
            LOG.warning("%s %s: %s", request.method, request.url.path, unavailable.detail)
            return await on_api_error(request, unavailable)
        LOG.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(request, 500, "internal error; the request id is in the server log")

    app = Starlette(routes=routes, exception_handlers={
        APIError: on_api_error, ValidationError: on_validation, NotFound: on_not_found,
        MarkerNotFound: on_marker, LookupError: on_ambiguous, HTTPException: on_http,
        Forbidden: on_forbidden, Exception: on_error,
    })
    dependencies.name_configured(conf)
    engine = db_engine.make_engine(conf.database.connection)
    app.state.sessionmaker = db_engine.make_sessionmaker(engine)
    app.state.reader = db_engine.reader(engine)
    # Rendered cluster list entries, keyed by everything they show that can change.
    app.state.cluster_views = {}
    app.state.fernet = crypto.load_or_create_key(conf.secrets.key_file)
    app.state.enforcer = Enforcer(conf)
    app.state.base_url = _base_url
    app.state.max_limit = conf.api.max_limit
    app.state.kubernetes_versions = tuple(conf.clusters.kubernetes_versions)  # what kube_tag may be
    app.state.cluster_driver = conf.clusters.driver  # hosts: Teapot replaces hosts in upgrades
    app.state.vlan_ranges = nsm.parse_ranges(conf.network.vlan_ranges)
    app.state.default_subnet = nsm.Subnet.parse(
        conf.network.default_cidr, dns_nameservers=conf.network.default_dns_nameservers)
    app.state.networks_enabled = conf.network.enabled
    app.state.loadbalancers_enabled = conf.loadbalancer.driver != "none"
    app.state.openapi = None
    app.state.block = volume_routes.make_driver(conf)
    if identity is None:
        from teapot.drivers.identity import KeystoneCredentials

        identity = KeystoneCredentials.from_conf(conf)
    app.state.identity = identity  # bucket credentials, made as Teapot's service user
    ka = conf.keystone_authtoken
    app.state.validator = validator or TokenValidator(
        ka.auth_url, ka.username, ka.password, ka.project_name, ka.user_domain_name,
        ka.project_domain_name, ka.cache_seconds, timeout=ka.http_connect_timeout)
    return _with_request_id(observe.instrument(app, app.state.reader))


def create_app():
    """uvicorn factory: configuration from TEAPOT_CONFIG."""
    conf = config.load()
    logs.setup(conf.log_format)
    app = build(conf)
    # What is loaded now lives as long as the process: keep it out of the collector's way, and
    # collect less often (a list of a thousand clusters makes tens of thousands of objects).
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    return app
