"""Which of Teapot's dependencies an error says is down: named, with a short reason.

An exception that means a dependency cannot answer (the database gone or locked, a service refusing
connections, timing out or answering 5xx) is a `Down`. The API answers it with a 503 naming the
dependency (teapot.api.errors.Unavailable); the conductor records it in the status reason of what
waits for it ("waiting for Ironic: connection refused") and tries again soon. Any other exception is
Teapot's own bug.

Services are named by the origin (scheme://host:port) of the URL they were called at; `name()`
registers the origins Teapot knows (Keystone's, Ironic's, the catalog's endpoints) as they are read.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

_NAMES: dict[str, str] = {}  # origin -> what to call the service there
_LOCK = threading.Lock()
_CHAIN = 6  # how far down __cause__/__context__ to look
IDENTITY = "the identity service (Keystone)"


@dataclass(frozen=True)
class Down:
    dependency: str  # "Ironic", "the database", "the service at http://127.0.0.1:5000"
    why: str  # "connection refused", "it did not answer in time", "it answered 503"

    def __str__(self) -> str:
        return f"waiting for {self.dependency}: {self.why}"


def origin(url: str) -> str:
    parts = urlsplit(url or "")
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else (url or "")


def name(url: str, service: str) -> None:
    """Call the service at `url`'s origin `service` from now on."""
    if url:
        with _LOCK:
            _NAMES[origin(url)] = service


def name_configured(conf) -> None:
    """Name the services Teapot's configuration points at (oslo.config: keystone_authtoken, ironic)."""
    name(conf.keystone_authtoken.auth_url, IDENTITY)
    name(conf.ironic.endpoint, "Ironic")


def named(url: str | None) -> str:
    if not url:
        return "a service Teapot uses"
    with _LOCK:
        return _NAMES.get(origin(url)) or f"the service at {origin(url)}"


def why(error: BaseException) -> str:
    """A few words on why a call failed, from the error and what caused it."""
    status = getattr(error, "http_status", None) or getattr(error, "status_code", None)
    if isinstance(status, int) and status >= 500:
        return f"it answered {status}"
    text = " ".join(str(e) for e in _chain(error)).lower()
    if "refused" in text:
        return "connection refused"
    if "timed out" in text or "timeout" in text:
        return "it did not answer in time"
    if "database is locked" in text:
        return "database is locked"
    if "reset by peer" in text or "remote end closed" in text or "disconnected" in text:
        return "it closed the connection"
    first = str(error).splitlines()[0] if str(error) else type(error).__name__
    return first[:160]


def classify(error: BaseException) -> Down | None:
    """The dependency `error` says is down, or None when it says nothing of the kind."""
    for e in _chain(error):
        down = _one(e)
        if down is not None:
            return down
    return None


def _chain(error: BaseException):
    seen = 0
    e: BaseException | None = error
    while e is not None and seen < _CHAIN:
        yield e
        seen += 1
        e = e.__cause__ or e.__context__


def _one(e: BaseException) -> Down | None:
    import httpx
    from keystoneauth1 import exceptions as ksa_exc
    from openstack import exceptions as sdk_exc
    from sqlalchemy import exc as sa_exc

    if isinstance(e, sa_exc.OperationalError | sa_exc.InterfaceError) or \
            (isinstance(e, sa_exc.DBAPIError) and e.connection_invalidated):
        orig = getattr(e, "orig", None)
        return Down("the database", why(orig) if orig is not None else type(e).__name__)
    if isinstance(e, ksa_exc.ConnectionError | ksa_exc.RequestTimeout | ksa_exc.HttpServerError):
        return Down(named(getattr(e, "url", None) or _url_in(str(e))), why(e))
    if isinstance(e, ksa_exc.DiscoveryFailure):  # a first call, before any answer was had
        return Down(named(_url_in(str(e))), "it does not answer")
    if isinstance(e, sdk_exc.HttpException) and (e.status_code or 0) >= 500:
        url = getattr(getattr(e, "response", None), "url", None) or getattr(e, "url", None)
        return Down(named(url), why(e))
    if isinstance(e, httpx.TransportError):
        try:
            url = str(e.request.url)
        except RuntimeError:  # an error raised before a request was made
            url = None
        return Down(named(url), why(e))
    return None


def _url_in(text: str) -> str | None:
    """keystoneauth names the URL in its connection errors' text only ("... to http://h:p/...")."""
    for word in text.split():
        if word.startswith(("http://", "https://")):
            return word.rstrip(":.,)'\"")
    return None
