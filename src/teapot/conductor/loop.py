"""The reconcile loop: find what is due, reconcile it in a pool of workers, sleep, repeat.

What to do lives in the reconcilers; this module only decides when. Progress is in the database,
so a conductor killed at any line is replaced by starting another (its leases expire).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait

from teapot import dependencies
from teapot.db import leases
from teapot.observability.logs import RECONCILING
from teapot.observability.metrics import ConductorMetrics

LOG = logging.getLogger(__name__)
MAX_BACKOFF = 300.0  # seconds: the longest wait before a reconcile that keeps raising is retried
# A dependency that is down (teapot.dependencies) is looked at again sooner: its return is not
# Teapot's to wait for.
MAX_DEPENDENCY_BACKOFF = 8.0
# How long one pass waits for a reconciler's refresh before going on with the other kinds (the
# refresh goes on meanwhile; its kind is dispatched on a later pass).
REFRESH_WAIT = 1.0


def default_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Loop:
    def __init__(self, reconcilers, workers: int, poll_interval: float,
                 metrics: ConductorMetrics | None = None):
        self.reconcilers = reconcilers
        self.metrics = metrics or ConductorMetrics()
        self.metrics.declare(r.kind for r in reconcilers)
        self.poll_interval = poll_interval
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="reconcile")
        self.workers = workers
        self.inflight: dict[tuple[str, int], Future] = {}
        self.failures: dict[tuple[str, int], int] = {}  # reconciles in a row that raised
        # Refreshes run on threads of their own: a dependency that hangs (a frozen Ironic) holds
        # back its own kind only, never the switch's or the clusters'.
        self.refresher = ThreadPoolExecutor(max_workers=max(1, len(reconcilers)),
                                            thread_name_prefix="refresh")
        self.refreshing: dict[str, Future] = {}
        self.stopping = threading.Event()

    def tick(self) -> int:
        """One pass: returns how many objects were handed to workers."""
        self.inflight = {k: f for k, f in self.inflight.items() if not f.done()}
        started = 0
        for reconciler in self.reconcilers:
            free = self.workers - len(self.inflight)
            if free <= 0:
                break
            try:
                due = reconciler.due(time.time(), free + len(self.inflight))
            except Exception as e:  # noqa: BLE001 - one kind's trouble never stops the others
                LOG.warning("%s: could not look for work: %s", reconciler.kind, e)
                continue
            ids = [i for i in due if (reconciler.kind, i) not in self.inflight][:free]
            if not ids:
                continue
            refreshed = self._refresh(reconciler)
            if refreshed is None:
                continue  # still under way
            if refreshed is not True:
                LOG.warning("%s: could not refresh observed state: %s", reconciler.kind, refreshed)
                self.metrics.refresh_failed(reconciler.kind)
                down = dependencies.classify(refreshed)
                hold = getattr(reconciler, "hold", None)
                if down is not None and hold is not None:
                    # What observes these objects is down: they say so, and wait.
                    for object_id in ids:
                        self.inflight[(reconciler.kind, object_id)] = self.pool.submit(
                            self._guarded_hold, reconciler, object_id, down)
                continue
            for object_id in ids:
                self.inflight[(reconciler.kind, object_id)] = self.pool.submit(
                    self._guarded, reconciler, object_id)
                started += 1
        return started

    def _refresh(self, reconciler) -> bool | Exception | None:
        """Refresh what `reconciler` observes, waiting for it up to REFRESH_WAIT: True when done,
        the exception it raised, or None while it is still under way."""
        future = self.refreshing.get(reconciler.kind)
        if future is None:
            future = self.refreshing[reconciler.kind] = self.refresher.submit(reconciler.refresh)
        wait([future], timeout=REFRESH_WAIT)
        if not future.done():
            return None
        del self.refreshing[reconciler.kind]
        return future.exception() or True

    def _guarded_hold(self, reconciler, object_id: int, down: dependencies.Down) -> None:
        try:
            reconciler.hold(object_id, down)
        except Exception as e:  # noqa: BLE001 - the database itself may be what fails
            LOG.warning("%s %s: could not record %s: %s", reconciler.kind, object_id, down, e)

    def _guarded(self, reconciler, object_id: int) -> None:
        token = RECONCILING.set(f"{reconciler.kind} {object_id}")
        key = (reconciler.kind, object_id)
        try:
            self.metrics.reconciled(reconciler.kind, lambda: reconciler.reconcile(object_id))
            self.failures.pop(key, None)
        except Exception as e:
            count = self.failures[key] = self.failures.get(key, 0) + 1
            down = dependencies.classify(e)
            if down is not None:
                delay = min(MAX_DEPENDENCY_BACKOFF, 2.0 ** min(count - 1, 16))
                LOG.warning("%s %s: %s (again in %.0f s)", reconciler.kind, object_id, down, delay)
                self._defer(reconciler, object_id, delay, str(down))
            else:
                delay = min(MAX_BACKOFF, 2.0 ** min(count, 16))
                LOG.exception("%s %s: reconcile failed (%d in a row; again in %.0f s)",
                              reconciler.kind, object_id, count, delay)
                self._defer(reconciler, object_id, delay)
        finally:
            RECONCILING.reset(token)

    @staticmethod
    def _defer(reconciler, object_id: int, delay: float, reason: str | None = None) -> None:
        """A reconcile that raised is tried again later, with a growing delay: never in a hot
        loop, whatever the bug. `reason` (a dependency it waits for) becomes its status reason."""
        model, sm = getattr(reconciler, "model", None), getattr(reconciler, "sm", None)
        if model is None or sm is None:
            return
        try:
            leases.defer(sm, model, object_id, delay, reason)
        except Exception as e:  # noqa: BLE001 - the database itself may be what fails
            LOG.warning("%s %s: could not defer it: %s", reconciler.kind, object_id, e)

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.tick()
                self.metrics.passed()
            except Exception:
                LOG.exception("conductor pass failed")
            self.stopping.wait(self.poll_interval)
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.refresher.shutdown(wait=False, cancel_futures=True)  # one may hang on a dependency

    def stop(self) -> None:
        self.stopping.set()
