"""Keystone token validation, cached.

Tokens are validated with Keystone's `GET /v3/auth/tokens` as Teapot's service user (keystoneauth1),
and parsed into keystoneauth1 AccessInfo. A valid token is trusted for `cache_seconds` or until it
expires, whichever comes first; cache keys are hashes, never the token itself.
"""

from __future__ import annotations

import datetime
import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from keystoneauth1 import access, session
from keystoneauth1 import exceptions as ksa_exc
from keystoneauth1.identity import v3


@dataclass(frozen=True)
class Identity:
    user_id: str
    user_name: str
    project_id: str | None
    project_name: str | None
    roles: tuple[str, ...]
    system_scope: str | None
    is_admin_project: bool


class InvalidToken(Exception):
    pass


class TokenValidator:
    def __init__(self, auth_url: str, username: str, password: str, project_name: str,
                 user_domain_name: str, project_domain_name: str, cache_seconds: int = 300,
                 max_entries: int = 10000):
        auth = v3.Password(auth_url=auth_url, username=username, password=password,
                           project_name=project_name, user_domain_name=user_domain_name,
                           project_domain_name=project_domain_name)
        self.session = session.Session(auth=auth, timeout=10)
        self.auth_url = auth_url.rstrip("/")
        self.cache_seconds = cache_seconds
        self.max_entries = max_entries
        self._cache: OrderedDict[str, tuple[float, Identity]] = OrderedDict()
        self._lock = threading.Lock()

    def validate(self, token: str) -> Identity:
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.time()
        with self._lock:
            hit = self._cache.get(key)
            if hit and hit[0] > now:
                self._cache.move_to_end(key)
                return hit[1]
        try:
            resp = self.session.get(self.auth_url + "/auth/tokens", headers={"X-Subject-Token": token},
                                    authenticated=True)
        except (ksa_exc.NotFound, ksa_exc.Unauthorized, ksa_exc.BadRequest):
            raise InvalidToken("the token is not valid (expired, revoked or malformed)") from None
        info = access.create(body=resp.json(), auth_token=token)
        identity = Identity(
            user_id=info.user_id, user_name=info.username, project_id=info.project_id,
            project_name=info.project_name, roles=tuple(info.role_names),
            system_scope="all" if info.system_scoped else None,
            is_admin_project=bool(getattr(info, "is_admin_project", False)),
        )
        expires = info.expires.timestamp() if isinstance(info.expires, datetime.datetime) else now
        with self._lock:
            self._cache[key] = (min(expires, now + self.cache_seconds), identity)
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
        return identity
