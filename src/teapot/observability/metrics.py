"""Prometheus metrics of the API and the conductor (prometheus-client).

Each API app and each conductor has a registry of its own (several can live in one process, as in
tests). What is counted:

- the API: requests by method, route template (``/v1/clusters/{ident}``, never the raw path, so the
  number of series stays bounded) and status; their latency, as a histogram by method and route;
- the conductor: reconciles, their errors and their durations by resource kind, passes of the loop;
- the database, read when scraped (one GROUP BY per table): hosts by provisioning state and by
  operational status, clusters by status.

Counters live in the process: with several uvicorn workers each has its own (the box runs one).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    gc_collector,
    platform_collector,
    process_collector,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from teapot.db.models import Cluster, Host
from teapot.resources import cluster as cluster_sm
from teapot.resources import host as host_sm

LOG = logging.getLogger(__name__)

UNMATCHED = "unmatched"  # the route label of requests no route matched (404s of unknown paths)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                     120.0)
HOST_STATES = host_sm.STATES
CLUSTER_STATUSES = (cluster_sm.CREATE_IN_PROGRESS, cluster_sm.CREATE_COMPLETE,
                    cluster_sm.CREATE_FAILED, cluster_sm.UPDATE_IN_PROGRESS,
                    cluster_sm.UPDATE_COMPLETE, cluster_sm.UPDATE_FAILED,
                    cluster_sm.DELETE_IN_PROGRESS, cluster_sm.DELETE_FAILED)


def new_registry() -> CollectorRegistry:
    """A registry with the process's own metrics (CPU, memory, file descriptors, GC, Python)."""
    registry = CollectorRegistry()
    process_collector.ProcessCollector(registry=registry)
    platform_collector.PlatformCollector(registry=registry)
    gc_collector.GCCollector(registry=registry)
    return registry


def exposition(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """The registry's samples in the format the scraper asked for (Prometheus text or OpenMetrics)."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


class ApiMetrics:
    """Requests of one API app; `middleware` counts them with a few dictionary look-ups each."""

    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        self.requests = Counter(
            "teapot_api_requests", "API requests by method, route template and status.",
            ["method", "route", "status"], registry=registry)
        self.latency = Histogram(
            "teapot_api_request_duration_seconds",
            "Time from a request's arrival to the end of its response, by method and route "
            "template.", ["method", "route"], registry=registry)
        self.in_progress = Gauge(
            "teapot_api_requests_in_progress", "API requests being served.", registry=registry)
        # (method, route, status) -> (counter, histogram) children: labels() takes a lock and
        # builds tuples; a cached pair costs one dictionary look-up.
        self._children: dict[tuple[str, str, int], tuple] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = (self.requests.labels(method, route, str(status)),
                        self.latency.labels(method, route))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def middleware(self, app):
        """Wrap an ASGI app (a Starlette app: its router records the matched route in the scope)."""
        in_progress = self.in_progress

        async def instrumented(scope, receive, send):
            if scope["type"] != "http":
                return await app(scope, receive, send)
            status = 500  # what the client gets when the app fails before answering

            async def send_with_status(message):
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            in_progress.inc()
            started = time.perf_counter()
            try:
                await app(scope, receive, send_with_status)
            finally:
                elapsed = time.perf_counter() - started
                in_progress.dec()
                route = scope.get("route")
                method = scope["method"]
                self.observe(method if method in METHODS else "other",
                             getattr(route, "path", UNMATCHED) if route is not None else UNMATCHED,
                             status, elapsed)

        return instrumented


class DatabaseCollector:
    """Gauges read from the database when scraped: hosts by state, clusters by status.

    Every known state is reported, with 0 when no row has it, so that series do not come and go.
    A database that does not answer gives ``teapot_database_up 0`` and no other gauge of this
    collector, and the scrape itself still succeeds."""

    def __init__(self, reader: sessionmaker):
        self.reader = reader

    def describe(self):
        return []  # registering must not query the database

    def collect(self):
        up = GaugeMetricFamily("teapot_database_up",
                               "1 when the database answered the queries of this scrape, else 0.")
        try:
            with self.reader() as session:
                states = dict(session.execute(
                    select(Host.state, func.count()).group_by(Host.state)).all())
                operational_status = Host.status["operationalStatus"].as_string()
                operational = dict(session.execute(
                    select(operational_status, func.count()).group_by(operational_status)).all())
                statuses = dict(session.execute(
                    select(Cluster.status, func.count()).group_by(Cluster.status)).all())
        except Exception as e:
            LOG.warning("metrics: the database did not answer: %s", type(e).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield _by_label("teapot_hosts", "Hosts by provisioning state (BareMetalHost states).",
                        "state", HOST_STATES, states)
        yield _by_label("teapot_hosts_by_operational_status",
                        "Hosts by operational status (BareMetalHost operationalStatus).",
                        "operational_status", ("discovered", "OK", "error"), operational)
        yield _by_label("teapot_clusters", "Clusters by status (Magnum statuses).", "status",
                        CLUSTER_STATUSES, statuses)


def _by_label(name: str, documentation: str, label: str, known, counts: dict) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=[label])
    counts = {"unknown" if value is None else str(value): n for value, n in counts.items()}
    for value in dict.fromkeys([*known, *sorted(counts)]):
        family.add_metric([value], counts.get(value, 0))
    return family


class ConductorMetrics:
    """Reconciles by resource kind, and the loop's passes (for liveness)."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else new_registry()
        self.reconciles = Counter(
            "teapot_reconciles", "Reconciles finished, by resource kind (errors included).",
            ["kind"], registry=self.registry)
        self.errors = Counter(
            "teapot_reconcile_errors",
            "Reconciles that raised an error, by resource kind. Driver failures a reconciler "
            "records on the object (operationalStatus) are not counted here.",
            ["kind"], registry=self.registry)
        self.durations = Histogram(
            "teapot_reconcile_duration_seconds", "Time one reconcile took, by resource kind.",
            ["kind"], buckets=RECONCILE_BUCKETS, registry=self.registry)
        self.refresh_errors = Counter(
            "teapot_reconcile_refresh_errors",
            "Failures to refresh observed state before reconciling, by resource kind.",
            ["kind"], registry=self.registry)
        self.inflight = Gauge(
            "teapot_reconciles_in_progress", "Reconciles running now, by resource kind.",
            ["kind"], registry=self.registry)
        self.passes = Counter("teapot_conductor_passes", "Passes of the conductor's loop.",
                              registry=self.registry)
        self.last_pass = Gauge("teapot_conductor_last_pass_timestamp_seconds",
                               "When the conductor's loop last finished a pass (Unix time).",
                               registry=self.registry)
        self.last_pass_monotonic: float | None = None

    def declare(self, kinds) -> None:
        """Create the series of every kind at 0, so that rates work from the first reconcile."""
        for kind in kinds:
            for metric in (self.reconciles, self.errors, self.durations, self.refresh_errors,
                           self.inflight):
                metric.labels(kind)

    def reconciled(self, kind: str, fn: Callable[[], None]) -> None:
        """Run one reconcile, counting it; its exception (if any) propagates."""
        inflight = self.inflight.labels(kind)
        inflight.inc()
        started = time.perf_counter()
        try:
            fn()
        except BaseException:
            self.errors.labels(kind).inc()
            raise
        finally:
            self.durations.labels(kind).observe(time.perf_counter() - started)
            self.reconciles.labels(kind).inc()
            inflight.dec()

    def refresh_failed(self, kind: str) -> None:
        self.refresh_errors.labels(kind).inc()

    def passed(self) -> None:
        self.passes.inc()
        self.last_pass.set_to_current_time()
        self.last_pass_monotonic = time.monotonic()
