"""Logging set-up: readable text or one JSON object per line, both carrying the request id.

The API puts the id of the request it is serving in `REQUEST_ID` (a context variable, so it follows
the request into the thread that runs its handler); the conductor puts the object it is reconciling
in `RECONCILING`. A filter on the handler copies both into every record.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(context)s%(message)s"
NOISY = ("openstack", "keystoneauth", "urllib3", "httpx", "stevedore", "alembic")
# uvicorn's own loggers: in JSON mode they go through the root handler, so every line is JSON.
UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access")

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
RECONCILING: contextvars.ContextVar[str | None] = contextvars.ContextVar("reconciling", default=None)


class ContextFilter(logging.Filter):
    """Stamps records with the request id and the reconciled object of the current context."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        if not hasattr(record, "reconciling"):
            record.reconciling = RECONCILING.get()
        parts = [f"[{v}] " for v in (record.request_id, record.reconciling) if v]
        record.context = "".join(parts)
        return True


class JSONFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines inside values are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self._time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
            "thread": record.threadName,
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = request_id
        reconciling = getattr(record, "reconciling", None)
        if reconciling:
            entry["reconciling"] = reconciling
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)

    @staticmethod
    def _time(created: float) -> str:
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
        return f"{seconds}.{int(created % 1 * 1000):03d}Z"


def handler(fmt: str, stream=None) -> logging.Handler:
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    out = logging.StreamHandler(stream)
    out.addFilter(ContextFilter())
    out.setFormatter(JSONFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    return out


def setup(fmt: str = "text", level: int = logging.INFO, stream=None) -> logging.Handler:
    """Send every record of this process to one handler on stderr (or `stream`) in `fmt`."""
    new = handler(fmt, stream)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(new)
    root.setLevel(level)
    logging.captureWarnings(True)  # libraries' warnings are records too, in the same format
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)
    if fmt == "json":
        for name in UVICORN:
            logger = logging.getLogger(name)
            for old in list(logger.handlers):
                logger.removeHandler(old)
            logger.propagate = True
    return new
