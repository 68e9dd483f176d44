"""Keystone token validation, cached.

Tokens are validated with Keystone's `GET /v3/auth/tokens` as Teapot's service user (keystoneauth1),
and parsed into keystoneauth1 AccessInfo. A valid token is trusted for `cache_seconds` or until it
expires, whichever comes first; cache keys are hashes, never the token itself.

A crowd of requests bringing one new token makes one Keystone call (single flight): the first
asks, the others wait for its answer and share it, or its error. Keystone not answering (refused,
timed out after `timeout` seconds, or a 5xx) is `Unavailable`, a 503 with Retry-After naming the
identity service, as keystonemiddleware answers; tokens already validated keep working from the
cache meanwhile.

Application credentials with access rules. Keystone validates a token of such a credential only for
a validator that says it enforces access rules (the header `OpenStack-Identity-Access-Rules`, as
keystonemiddleware sends it); Teapot sends it, keeps the token's rules in `Identity.access_rules`
and, as keystonemiddleware does, refuses (401) a request no rule allows: a rule allows a request
when its service is Teapot's catalog type (`container-infra`), its method is the request's, and
its path matches the request's path (`*` or `{name}` one path segment, `**` any number of
characters). A token without access rules is not restricted.
"""

from __future__ import annotations

import datetime
import hashlib
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from keystoneauth1 import access, session
from keystoneauth1 import exceptions as ksa_exc
from keystoneauth1.identity import v3

from teapot.api.errors import Unavailable
from teapot.dependencies import IDENTITY, why


@dataclass(frozen=True)
class Identity:
    user_id: str
    user_name: str
    project_id: str | None
    project_name: str | None
    roles: tuple[str, ...]
    system_scope: str | None
    is_admin_project: bool
    # The access rules of the token's application credential; None: the token has none.
    access_rules: tuple[dict, ...] | None = None


# keystonemiddleware's header and the version of access rules it supports.
ACCESS_RULES_HEADER = "OpenStack-Identity-Access-Rules"
ACCESS_RULES_VERSION = "1"
_PATTERN = re.compile(r"(?P<any>\*\*)|(?P<one>\*|\{[^}]*\})|(?P<literal>[^*{]+|[*{])")


def _path_regex(pattern: str) -> re.Pattern:
    out = []
    for m in _PATTERN.finditer(pattern):
        if m.group("any"):
            out.append(".*")
        elif m.group("one"):
            out.append("[^/]+")
        else:
            out.append(re.escape(m.group("literal")))
    return re.compile("".join(out))


def path_matches(path: str, pattern: str) -> bool:
    """Whether a request path matches an access rule's path: `*` (or `{name}`) is one non-empty
    path segment, `**` any number of characters (slashes too), everything else literal."""
    return _path_regex(pattern).fullmatch(path) is not None


def allows(rules: tuple[dict, ...] | None, service_type: str, method: str, path: str) -> bool:
    """Whether access rules allow a request to the service of `service_type`; no rules (None)
    allow everything, an empty list nothing."""
    if rules is None:
        return True
    return any(r.get("service") == service_type and r.get("method") == method
               and path_matches(path, str(r.get("path", ""))) for r in rules)


class InvalidToken(Exception):
    pass


class _Flight:
    """One validation under way: the requests that wait for it, and what it ends with."""

    def __init__(self):
        self.done = threading.Event()
        self.identity: Identity | None = None
        self.error: Exception | None = None


class TokenValidator:
    def __init__(self, auth_url: str, username: str, password: str, project_name: str,
                 user_domain_name: str, project_domain_name: str, cache_seconds: int = 300,
                 max_entries: int = 10000, timeout: float = 5.0):
        auth = v3.Password(auth_url=auth_url, username=username, password=password,
                           project_name=project_name, user_domain_name=user_domain_name,
                           project_domain_name=project_domain_name)
        self.session = session.Session(auth=auth, timeout=timeout)
        self.timeout = timeout
        self.auth_url = auth_url.rstrip("/")
        self.cache_seconds = cache_seconds
        self.max_entries = max_entries
        self._cache: OrderedDict[str, tuple[float, Identity]] = OrderedDict()
        self._flights: dict[str, _Flight] = {}
        self._lock = threading.Lock()
        self.calls = 0  # validations asked of Keystone

    def validate(self, token: str) -> Identity:
        key = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            hit = self._cache.get(key)
            if hit and hit[0] > time.time():
                self._cache.move_to_end(key)
                return hit[1]
            flight = self._flights.get(key)
            leading = flight is None
            if leading:
                flight = self._flights[key] = _Flight()
        if not leading:
            # the service user's login and the validation: each within the timeout
            if not flight.done.wait(self.timeout * 2 + 1):
                raise Unavailable(IDENTITY, "it has not answered yet")
            if flight.error is not None:
                raise _again(flight.error)
            return flight.identity
        try:
            flight.identity = self._ask(token, key)
            return flight.identity
        except (InvalidToken, Unavailable) as e:
            flight.error = e
            raise
        finally:
            with self._lock:
                self._flights.pop(key, None)
            if flight.identity is None and flight.error is None:
                flight.error = Unavailable(IDENTITY, "the validation failed")
            flight.done.set()

    def _ask(self, token: str, key: str) -> Identity:
        now = time.time()
        self.calls += 1
        try:
            resp = self.session.get(self.auth_url + "/auth/tokens",
                                    headers={"X-Subject-Token": token,
                                             ACCESS_RULES_HEADER: ACCESS_RULES_VERSION},
                                    authenticated=True)
        except (ksa_exc.NotFound, ksa_exc.Unauthorized, ksa_exc.BadRequest):
            raise InvalidToken("the token is not valid (expired, revoked or malformed)") from None
        except (ksa_exc.ConnectionError, ksa_exc.RequestTimeout, ksa_exc.HttpServerError) as e:
            raise Unavailable(IDENTITY, why(e)) from None
        info = access.create(body=resp.json(), auth_token=token)
        rules = getattr(info, "application_credential_access_rules", None)
        identity = Identity(
            user_id=info.user_id, user_name=info.username, project_id=info.project_id,
            project_name=info.project_name, roles=tuple(info.role_names),
            system_scope="all" if info.system_scoped else None,
            is_admin_project=bool(getattr(info, "is_admin_project", False)),
            access_rules=tuple(dict(r) for r in rules) if rules else None,  # as Keystone: [] is none
        )
        expires = info.expires.timestamp() if isinstance(info.expires, datetime.datetime) else now
        with self._lock:
            self._cache[key] = (min(expires, now + self.cache_seconds), identity)
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
        return identity


def _again(error: Exception) -> Exception:
    """A copy of a shared flight's error, for one more waiting request to raise."""
    if isinstance(error, Unavailable):
        return Unavailable(error.service, error.why, error.retry_after)
    return type(error)(*error.args)
