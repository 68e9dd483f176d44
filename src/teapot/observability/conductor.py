"""The conductor's `/metrics` and `/healthz`, served by a small HTTP server in a thread.

The conductor has no web framework and needs none: two GET routes on a port of its own
(`[conductor] metrics_host`, `metrics_port`). Its health: the database answers and the loop has
finished a pass recently.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry

from teapot.observability import health, metrics

LOG = logging.getLogger(__name__)


class StatusServer:
    """Serves `/metrics` (from `registry`) and `/healthz` (from `checks`) until stopped."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry,
                 checks: Mapping[str, health.Check]):
        server = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "teapot-conductor"

            def do_GET(self):  # noqa: N802 (the name http.server calls)
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    body, content_type = metrics.exposition(server.registry,
                                                            self.headers.get("accept"))
                    self._answer(200, body, content_type)
                elif path == "/healthz":
                    status, doc = health.run(server.checks)
                    self._answer(status, json.dumps(doc).encode(), "application/json")
                else:
                    doc = {"error": f"{path} not found; this port serves /metrics and /healthz"}
                    self._answer(404, json.dumps(doc).encode(), "application/json")

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt, *args):  # scrapes every few seconds: not worth a line each
                LOG.debug("%s %s", self.address_string(), fmt % args)

        self.registry = registry
        self.checks = checks
        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="status-server",
                                       daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.httpd.server_address[:2]
        return host, port

    def start(self) -> StatusServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


def serve(host: str, port: int, registry: CollectorRegistry,
          checks: Mapping[str, health.Check]) -> StatusServer | None:
    """Start the status server; None (and an error in the log) when its port cannot be bound:
    the conductor's work matters more than its metrics, and conductors may share a machine."""
    try:
        server = StatusServer(host, port, registry, checks).start()
    except OSError as e:
        LOG.error("cannot serve /metrics and /healthz on %s:%s (%s); reconciling without them. "
                  "Set [conductor] metrics_port or pass --metrics-port to choose another port "
                  "(0: any free one)", host, port, e.strerror or e)
        return None
    LOG.info("serving /metrics and /healthz on http://%s:%s", *server.address)
    return server
