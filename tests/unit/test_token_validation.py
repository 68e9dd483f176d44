"""Token validation under a crowd and with Keystone down: one Keystone call per new token however
many requests bring it at once; Keystone refusing connections, answering 5xx or not answering in
time is a 503 with Retry-After naming the identity service (through the whole application, never a
500); tokens validated before keep working from the cache meanwhile.

Keystone here is a stand-in on 127.0.0.1 speaking its token API (the service user's login and
`GET /v3/auth/tokens`), so that it can be slowed, frozen and made to fail on cue."""

from __future__ import annotations

import http.server
import json
import threading
import time

import pytest

from teapot.api.auth import IDENTITY, InvalidToken, TokenValidator
from teapot.api.errors import Unavailable
from tests.unit.conftest import call
from tests.unit.test_bucket_credentials import _token


class Keystone:
    def __init__(self):
        self.validations: list[str] = []  # the subject tokens asked about
        self.delay = 0.0  # seconds before each validation answers
        self.status = 200  # what a validation answers (a known token)
        self.lock = threading.Lock()
        keystone = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _send(self, status: int, body: dict, token: str | None = None):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if token:
                    self.send_header("X-Subject-Token", token)
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):  # noqa: N802 - the service user logs in
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self._send(201, _token("teapot", False), "service-token")

            def do_GET(self):  # noqa: N802
                subject = self.headers.get("X-Subject-Token", "")
                with keystone.lock:
                    keystone.validations.append(subject)
                time.sleep(keystone.delay)
                if not subject.startswith("good"):
                    return self._send(404, {"error": {"code": 404}})
                if keystone.status != 200:
                    return self._send(keystone.status, {"error": {"code": keystone.status}})
                body = _token(subject, False)
                body["token"]["roles"].append({"id": "r", "name": "reader"})  # implied by member
                return self._send(200, body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda *args: None  # a client that gave up: a broken pipe
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v3"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def count(self, token: str) -> int:
        with self.lock:
            return self.validations.count(token)


@pytest.fixture
def keystone():
    ks = Keystone()
    ks.thread.start()
    try:
        yield ks
    finally:
        ks.server.shutdown()
        ks.server.server_close()


def _validator(url: str, timeout: float = 5.0) -> TokenValidator:
    return TokenValidator(url, "teapot", "pw", "service", "Default", "Default", timeout=timeout)


def _crowd(validator: TokenValidator, token: str, n: int) -> list:
    """`n` threads validating `token` at once: each one's Identity or exception."""
    out: list = [None] * n
    start = threading.Barrier(n)

    def one(i: int):
        start.wait()
        try:
            out[i] = validator.validate(token)
        except Exception as e:  # noqa: BLE001 - what each request would see
            out[i] = e

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out


def test_a_crowd_with_one_new_token_makes_one_keystone_call(keystone):
    keystone.delay = 0.3  # the crowd arrives while the first call is under way
    validator = _validator(keystone.url)
    got = _crowd(validator, "good-crowd", 32)
    assert all(getattr(x, "user_name", None) == "good-crowd" for x in got), got
    assert keystone.count("good-crowd") == 1
    # a bad token's crowd shares the one refusal
    got = _crowd(validator, "bad-crowd", 16)
    assert all(isinstance(x, InvalidToken) for x in got), got
    assert keystone.count("bad-crowd") == 1


def test_keystone_not_answering_is_unavailable_for_new_tokens_only(keystone):
    validator = _validator(keystone.url, timeout=0.5)
    known = validator.validate("good-known")
    keystone.delay = 3.0  # frozen, as far as the validator can tell
    got = _crowd(validator, "good-new", 8)
    assert all(isinstance(x, Unavailable) for x in got), got
    assert got[0].service == IDENTITY and "in time" in got[0].detail
    assert keystone.count("good-new") == 1
    assert validator.validate("good-known") == known  # from the cache, Keystone not asked
    assert keystone.count("good-known") == 1


@pytest.mark.parametrize("status", [500, 503])
def test_keystone_answering_5xx_is_unavailable(keystone, status):
    keystone.status = status
    with pytest.raises(Unavailable, match=f"answered {status}"):
        _validator(keystone.url).validate("good-x")


def test_through_the_api_keystone_down_is_a_503_with_retry_after(keystone, tmp_path, db_url):
    from starlette.testclient import TestClient

    from teapot import config
    from teapot.api import app as api_app

    conf_file = tmp_path / "teapot.conf"
    conf_file.write_text(
        f"[database]\nconnection = {db_url}\n"
        f"[keystone_authtoken]\nauth_url = {keystone.url}\npassword = unused\n"
        "http_connect_timeout = 0.5\n"
        "[ironic]\nendpoint = http://127.0.0.1:9\n"
        f"[secrets]\nkey_file = {tmp_path / 'secret.key'}\n")
    conf = config.load(str(conf_file))
    with TestClient(api_app.build(conf), base_url="http://teapot") as client:
        first = call(client, "good-before", "GET", "/v1/clusters")
        assert first.status_code == 200, first.text
        keystone.delay = 3.0
        slow = call(client, "good-during", "GET", "/v1/clusters")
        assert slow.status_code == 503 and slow.headers["Retry-After"] == "5"
        error = slow.json()["errors"][0]
        assert error["code"] == "teapot.service_unavailable" and IDENTITY in error["detail"]
        assert call(client, "good-before", "GET", "/v1/clusters").status_code == 200  # cached
        keystone.delay = 0.0
        keystone.server.shutdown()
        keystone.server.server_close()  # gone: connections refused
        gone = call(client, "good-after", "GET", "/v1/clusters")
        assert gone.status_code == 503 and "connection refused" in gone.json()["errors"][0]["detail"]
        assert call(client, "bad-token", "GET", "/v1/clusters").status_code == 503


def test_a_dependency_down_is_named_and_anything_else_stays_ours():
    from keystoneauth1 import exceptions as ksa_exc
    from sqlalchemy import exc as sa_exc

    from teapot.api.app import dependency_failure

    locked = dependency_failure(sa_exc.OperationalError("SELECT 1", {},
                                                        Exception("database is locked")))
    assert locked.status == 503 and "the database" in locked.detail and "locked" in locked.detail
    refused = ksa_exc.ConnectFailure("Unable to establish connection to "
                                     "http://127.0.0.1:8776/v3/volumes")
    refused.url = "http://127.0.0.1:8776/v3/volumes"
    down = dependency_failure(refused)
    assert down.status == 503 and "http://127.0.0.1:8776" in down.detail
    assert down.headers == {"Retry-After": "5"}
    assert dependency_failure(KeyError("a bug of ours")) is None  # still a 500
