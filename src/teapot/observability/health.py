"""Health checks behind `/healthz` (liveness and readiness) of the API and the conductor.

A check is a function that returns when all is well and raises when not. The answer names every
check and which failed; the reason of a failure goes to the log only, since `/healthz` is answered
to anyone (database errors can name hosts and users).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from sqlalchemy import text
from sqlalchemy.orm import sessionmaker

LOG = logging.getLogger(__name__)

Check = Callable[[], None]


class Unhealthy(Exception):
    """A check's failure, with a reason that is safe to show to anyone."""


def database(reader: sessionmaker) -> Check:
    """The database answers and holds Teapot's schema (a read, no lock taken)."""

    def check() -> None:
        with reader() as session:
            session.execute(text("SELECT version_num FROM alembic_version")).first()

    return check


def loop(last_pass: Callable[[], float | None], stopping: Callable[[], bool], started: float,
         max_age: float) -> Check:
    """The conductor's loop is running and finished a pass in the last `max_age` seconds
    (monotonic clock; before its first pass, the time since `started` counts)."""

    def check() -> None:
        if stopping():
            raise Unhealthy("stopping")
        age = time.monotonic() - (last_pass() or started)
        if age > max_age:
            raise Unhealthy(f"no pass of the loop in {age:.0f} s (limit {max_age:.0f} s)")

    return check


def run(checks: Mapping[str, Check]) -> tuple[int, dict]:
    """Run every check: (200, {"status": "ok", ...}) or (503, {"status": "failed", ...})."""
    results: dict[str, str] = {}
    failed: list[str] = []
    for name, check in checks.items():
        try:
            check()
        except Unhealthy as e:
            results[name] = f"failed: {e}"
            failed.append(name)
            LOG.warning("health check %s failed: %s", name, e)
        except Exception as e:
            results[name] = f"failed: {type(e).__name__}"
            failed.append(name)
            LOG.warning("health check %s failed: %s", name, e)
        else:
            results[name] = "ok"
    if failed:
        return 503, {"status": "failed", "failed": failed, "checks": results}
    return 200, {"status": "ok", "checks": results}
