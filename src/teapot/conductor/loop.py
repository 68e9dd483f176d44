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
from concurrent.futures import Future, ThreadPoolExecutor

from teapot.observability.logs import RECONCILING
from teapot.observability.metrics import ConductorMetrics

LOG = logging.getLogger(__name__)


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
        self.stopping = threading.Event()

    def tick(self) -> int:
        """One pass: returns how many objects were handed to workers."""
        self.inflight = {k: f for k, f in self.inflight.items() if not f.done()}
        started = 0
        for reconciler in self.reconcilers:
            free = self.workers - len(self.inflight)
            if free <= 0:
                break
            ids = [i for i in reconciler.due(time.time(), free + len(self.inflight))
                   if (reconciler.kind, i) not in self.inflight][:free]
            if not ids:
                continue
            try:
                reconciler.refresh()
            except Exception as e:
                LOG.warning("%s: could not refresh observed state: %s", reconciler.kind, e)
                self.metrics.refresh_failed(reconciler.kind)
                continue
            for object_id in ids:
                self.inflight[(reconciler.kind, object_id)] = self.pool.submit(
                    self._guarded, reconciler, object_id)
                started += 1
        return started

    def _guarded(self, reconciler, object_id: int) -> None:
        token = RECONCILING.set(f"{reconciler.kind} {object_id}")
        try:
            self.metrics.reconciled(reconciler.kind, lambda: reconciler.reconcile(object_id))
        except Exception:
            LOG.exception("%s %s: reconcile failed", reconciler.kind, object_id)
        finally:
            RECONCILING.reset(token)

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.tick()
                self.metrics.passed()
            except Exception:
                LOG.exception("conductor pass failed")
            self.stopping.wait(self.poll_interval)
        self.pool.shutdown(wait=True, cancel_futures=True)

    def stop(self) -> None:
        self.stopping.set()
