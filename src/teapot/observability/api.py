"""The API's `/metrics` and `/healthz`, and the middleware that counts its requests.

Both routes are answered without a token, like the version documents: scrapers and probes have
none. `instrument` gives the app its registry (requests, process, database gauges) and wraps it.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from teapot.observability import health, metrics


async def metrics_endpoint(request: Request) -> Response:
    # The database gauges query the database: off the event loop.
    body, content_type = await run_in_threadpool(
        metrics.exposition, request.app.state.metrics.registry, request.headers.get("accept"))
    return Response(body, media_type=content_type)


async def healthz_endpoint(request: Request) -> Response:
    status, body = await run_in_threadpool(health.run, request.app.state.health_checks)
    return JSONResponse(body, status_code=status)


ROUTES = [
    Route("/metrics", metrics_endpoint, methods=["GET"]),
    Route("/healthz", healthz_endpoint, methods=["GET"]),
]


def instrument(app, reader) -> ASGIApp:
    """Metrics and health checks for a Starlette app whose routes include `ROUTES`; `reader` makes
    read-only sessions of its database. Returns the app wrapped in the request-counting
    middleware."""
    registry = metrics.new_registry()
    api_metrics = metrics.ApiMetrics(registry)
    registry.register(metrics.DatabaseCollector(reader))
    app.state.metrics = api_metrics
    app.state.health_checks = {"database": health.database(reader)}
    return api_metrics.middleware(app)
