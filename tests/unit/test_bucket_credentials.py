"""Access rules of application credentials enforced by Teapot's API (the matcher, refusal and
acceptance through the API), and /v1/clusters/{cluster}/bucket_credentials over the real
KeystoneCredentials driver talking to an in-memory stand-in of Keystone's credential API."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
import uuid as uuidlib

import pytest
from cryptography.fernet import Fernet

from teapot.api import app as api_app
from teapot.api.auth import allows, path_matches
from teapot.db.models import Cluster
from teapot.drivers import identity as identity_mod
from teapot.drivers.identity import KeystoneCredentials
from teapot.resources import cluster as csm
from teapot.resources import storage
from tests.unit.conftest import call

PATH = "/v1/clusters/{}/bucket_credentials"


# -- the matcher ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("path", "pattern", "matches"), [
    ("/v1/clusters/abc/bucket_credentials", "/v1/clusters/abc/bucket_credentials", True),
    ("/v1/clusters/abc/bucket_credentials/", "/v1/clusters/abc/bucket_credentials", False),
    ("/v1/clusters/abc/bucket_credentials/k1", "/v1/clusters/abc/bucket_credentials/*", True),
    ("/v1/clusters/abc/bucket_credentials/k1/x", "/v1/clusters/abc/bucket_credentials/*", False),
    ("/v1/clusters/abc/bucket_credentials/", "/v1/clusters/abc/bucket_credentials/*", False),
    ("/v1/clusters/abd/bucket_credentials", "/v1/clusters/abc/bucket_credentials", False),
    ("/v1/clusters/x/bucket_credentials", "/v1/clusters/{cluster}/bucket_credentials", True),
    ("/v1/AUTH_p/c/o/deep", "/v1/AUTH_*/**", True),
    ("/v1/AUTH_p/", "/v1/AUTH_*/**", True),
    ("/v1/AUTH_p", "/v1/AUTH_*/**", False),
    ("/v2/shares/s1/action", "/v2/*/shares/*/action", False),
    ("/v2/p/shares/s1/action", "/v2/*/shares/*/action", True),
    # everything but the wildcards is literal: a dot is a dot
    ("/v1/clusters/aXb", "/v1/clusters/a.b", False),
    ("/v1/clusters/a.b", "/v1/clusters/a.b", True),
    ("/v1/clusters/a+b", "/v1/clusters/a+b", True),
])
def test_path_matching_as_keystonemiddleware(path, pattern, matches):
    assert path_matches(path, pattern) is matches


def test_rules_name_service_method_and_path():
    rules = ({"service": "container-infra", "method": "GET", "path": "/v1/clusters"},)
    assert allows(None, "container-infra", "DELETE", "/v1/anything")
    assert allows(rules, "container-infra", "GET", "/v1/clusters")
    assert not allows(rules, "container-infra", "POST", "/v1/clusters")
    assert not allows(rules, "container-infra", "GET", "/v1/clusters/x")
    assert not allows(rules, "teapot", "GET", "/v1/clusters")
    assert not allows((), "container-infra", "GET", "/v1/clusters")


# -- an in-memory Keystone credential API, behind the real driver ----------------------------------
class _Response:
    def __init__(self, status: int, body: dict | None = None):
        self.status_code, self._body = status, body

    def json(self):
        if self._body is None:
            raise ValueError("no body")
        return self._body

    @property
    def text(self) -> str:
        return json.dumps(self._body or {})


class FakeKeystone:
    """Keystone's /v3/credentials as Teapot's admin session sees it (ec2 ids are the hash of the
    access key, as in Keystone); `down` makes every call fail as an unreachable Keystone does."""

    def __init__(self):
        self.credentials: dict[str, dict] = {}
        self.down = False

    def request(self, url: str, method: str, raise_exc=True, params=None, json=None, **_):
        from keystoneauth1 import exceptions as ks_exc

        if self.down:
            raise ks_exc.ConnectFailure("Keystone is unreachable")
        path = url.split("/v3", 1)[1]
        # bodies with secrets (credential blobs) are never logged by keystoneauth
        assert not (path.startswith("/credentials") and method in ("GET", "POST")
                    and _.get("log", True)), f"{method} {path} would be logged"
        if path == "/credentials" and method == "GET":
            found = [c for c in self.credentials.values()
                     if all(c.get(k) == v for k, v in (params or {}).items())]
            return _Response(200, {"credentials": found})
        if path == "/credentials" and method == "POST":
            cred = dict(json["credential"])
            blob = __import__("json").loads(cred["blob"])
            cred["id"] = hashlib.sha256(blob["access"].encode()).hexdigest()
            if cred["id"] in self.credentials:
                return _Response(409, {"error": {"message": "Conflict"}})
            self.credentials[cred["id"]] = cred
            return _Response(201, {"credential": cred})
        cred_id = path.removeprefix("/credentials/")
        if method == "GET":
            cred = self.credentials.get(cred_id)
            return _Response(200, {"credential": cred}) if cred else _Response(404, {})
        if method == "DELETE":
            return _Response(204 if self.credentials.pop(cred_id, None) else 404)
        raise AssertionError(f"unexpected {method} {path}")

    def add_ec2(self, user_id: str, access: str, **blob) -> None:
        body = __import__("json").dumps({"access": access, "secret": "s", **blob})
        cred_id = hashlib.sha256(access.encode()).hexdigest()
        self.credentials[cred_id] = {"id": cred_id, "type": "ec2", "user_id": user_id,
                                     "project_id": "p-one", "blob": body}


@pytest.fixture
def keystone() -> FakeKeystone:
    return FakeKeystone()


@pytest.fixture
def identity_driver(keystone):
    return KeystoneCredentials(keystone, "http://127.0.0.1:9/v3", b"key")


USER = "teapot-user-of-p-one"


def _cluster(sm, project: str = "p-one", kinds=("object",), creds=True) -> str:
    uuid = str(uuidlib.uuid4())
    attrs = {"labels": {}, "storage_kinds": list(kinds), "credential_rotation": 1}
    if creds:
        attrs["credentials"] = {"user_id": USER, "application_credential_id": f"ac-{uuid}",
                                "ec2_access": "cluster-own-key", "rotation": 1}
    with sm.begin() as s:
        s.add(Cluster(uuid=uuid, name=f"c-{uuid[:8]}", project_id=project, user_id="u",
                      cluster_template_id=str(uuidlib.uuid4()), status=csm.CREATE_COMPLETE,
                      status_reason=None, attrs=attrs, ca_cert=b"", ca_key=b"",
                      secrets=Fernet(Fernet.generate_key()).encrypt(b"{}"), deleting=False,
                      generation=1, next_attempt_at=1e12, lease_expires_at=0.0,
                      created_at=time.time()))
    return uuid


# -- access rules through the API -----------------------------------------------------------------
def test_a_cluster_credential_reaches_its_own_bucket_credentials_only(client, sm, tokens):
    mine, other = _cluster(sm), _cluster(sm)
    token = tokens.add("cluster-cred", "p-one", "member", "reader",
                       access_rules=storage.access_rules(("object",), mine))
    made = call(client, token, "POST", PATH.format(mine))
    assert made.status_code == 201, made.text
    listed = call(client, token, "GET", PATH.format(mine))
    assert listed.status_code == 200 and listed.json()["count"] == 1
    # another cluster of the same project, where a member without rules may act
    for method, path in [("GET", PATH.format(other)), ("POST", PATH.format(other)),
                         ("DELETE", PATH.format(other) + "/" + made.json()["access"])]:
        refused = call(client, token, method, path)
        assert refused.status_code == 401, (method, path, refused.text)
        assert "Token authorization failed" in refused.json()["errors"][0]["detail"]
        assert call(client, "alice", method, path).status_code != 401
    # every other operation of Teapot's API, on this very cluster where a path names one
    values = {"cluster": mine, "ident": mine, "access": made.json()["access"], "ng": "x",
              "attachment": str(uuidlib.uuid4()), "name": "x", "project": "p-one",
              "resource": "Cluster"}
    allowed = {("POST", PATH.format(mine)), ("GET", PATH.format(mine)),
               ("DELETE", PATH.format(mine) + "/" + made.json()["access"])}
    tried = 0
    for op in api_app.OPERATIONS:
        if not op.authenticated:
            continue
        path = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], op.path)
        if (op.method, path) in allowed:
            continue
        answer = call(client, token, op.method, path, json={})
        assert answer.status_code == 401, (op.method, path, answer.text)
        tried += 1
    assert tried == len([op for op in api_app.OPERATIONS if op.authenticated]) - 3
    # and a method the rules do not name on an allowed path
    assert call(client, token, "PUT", PATH.format(mine)).status_code in (401, 405)
    gone = call(client, token, "DELETE", PATH.format(mine) + "/" + made.json()["access"])
    assert gone.status_code == 204, gone.text


def test_rules_that_allow_a_request_lead_to_the_policy_check(client, sm, tokens):
    _cluster(sm)
    reader = tokens.add("ruled-reader", "p-one", "reader", access_rules=[
        {"service": "container-infra", "method": "GET", "path": "/v1/clusters"},
        {"service": "container-infra", "method": "POST", "path": "/v1/clusters"}])
    assert call(client, reader, "GET", "/v1/clusters").status_code == 200
    assert call(client, reader, "POST", "/v1/clusters", json={}).status_code == 403
    # a rule of another service type does not count
    elsewhere = tokens.add("ruled-elsewhere", "p-one", "member", access_rules=[
        {"service": "teapot", "method": "GET", "path": "/v1/clusters"}])
    assert call(client, elsewhere, "GET", "/v1/clusters").status_code == 401
    # a token without rules is unrestricted, as before
    assert call(client, "alice", "GET", "/v1/clusters").status_code == 200


# -- the bucket credentials API -------------------------------------------------------------------
def test_members_make_list_and_delete_bucket_credentials(client, sm, keystone, caplog):
    caplog.set_level(logging.DEBUG)
    uuid = _cluster(sm)
    made = call(client, "alice", "POST", PATH.format(uuid))
    assert made.status_code == 201, made.text
    first = made.json()
    assert set(first) >= {"access", "secret", "created_at"} and first["cluster_uuid"] == uuid
    assert first["access"] != "cluster-own-key" and len(first["secret"]) >= 32
    named = call(client, "alice", "POST", PATH.format(uuid), json={"name": "backup-access"})
    assert named.status_code == 201 and named.json()["name"] == "backup-access"
    # Keystone holds them as EC2 credentials of the project's user, tied to the cluster's
    # current application credential (so that deleting the cluster sweeps them)
    held = keystone.credentials[hashlib.sha256(first["access"].encode()).hexdigest()]
    blob = json.loads(held["blob"])
    assert (held["type"], held["user_id"], held["project_id"]) == ("ec2", USER, "p-one")
    assert blob["app_cred_id"] == f"ac-{uuid}" and blob["secret"] == first["secret"]
    # the cluster's own EC2 credentials and another cluster's are not this cluster's
    keystone.add_ec2(USER, "cluster-own-key", app_cred_id=f"ac-{uuid}")
    other = _cluster(sm)
    theirs = call(client, "alice", "POST", PATH.format(other)).json()["access"]
    listed = call(client, "rita", "GET", PATH.format(uuid))
    assert listed.status_code == 200, listed.text
    assert sorted(c["access"] for c in listed.json()["bucket_credentials"]) == sorted(
        [first["access"], named.json()["access"]])
    assert listed.json()["count"] == 2
    assert "secret" not in listed.text and first["secret"] not in listed.text
    for access in ("cluster-own-key", theirs, "not-a-key", "0" * 32):
        answer = call(client, "alice", "DELETE", f"{PATH.format(uuid)}/{access}")
        assert answer.status_code == 404, (access, answer.text)
    assert hashlib.sha256(b"cluster-own-key").hexdigest() in keystone.credentials
    gone = call(client, "alice", "DELETE", f"{PATH.format(uuid)}/{first['access']}")
    assert gone.status_code == 204, gone.text
    assert call(client, "alice", "DELETE",
                f"{PATH.format(uuid)}/{first['access']}").status_code == 404
    assert [c["access"] for c in call(client, "alice", "GET", PATH.format(uuid)).json()[
        "bucket_credentials"]] == [named.json()["access"]]
    # secrets never reach the log
    assert first["secret"] not in caplog.text and named.json()["secret"] not in caplog.text
    assert first["access"] in caplog.text


def test_readers_list_other_projects_see_nothing(client, sm):
    uuid = _cluster(sm)
    access = call(client, "alice", "POST", PATH.format(uuid)).json()["access"]
    assert call(client, "rita", "POST", PATH.format(uuid)).status_code == 403
    assert call(client, "rita", "DELETE", f"{PATH.format(uuid)}/{access}").status_code == 403
    for method, path in [("GET", PATH.format(uuid)), ("POST", PATH.format(uuid)),
                         ("DELETE", f"{PATH.format(uuid)}/{access}")]:
        answer = call(client, "bob", method, path)
        assert answer.status_code == 404, (method, answer.text)
    assert call(client, "alice", "GET", PATH.format(uuid)).json()["count"] == 1


def test_bucket_credentials_need_object_storage_and_made_credentials(client, sm):
    files = _cluster(sm, kinds=("file",))
    answer = call(client, "alice", "POST", PATH.format(files))
    assert answer.status_code == 409 and "object_storage_enabled" in answer.text
    pending = _cluster(sm, creds=False)
    answer = call(client, "alice", "POST", PATH.format(pending))
    assert answer.status_code == 409 and "no storage credentials yet" in answer.text


def test_bad_bodies_are_named(client, sm):
    uuid = _cluster(sm)
    answer = call(client, "alice", "POST", PATH.format(uuid), json={"name": 5})
    assert answer.status_code == 400 and "name" in answer.text
    answer = call(client, "alice", "POST", PATH.format(uuid), json={"secret": "mine"})
    assert answer.status_code == 400 and "secret" in answer.text
    answer = call(client, "alice", "POST", PATH.format(uuid), content=b"{nope")
    assert answer.status_code == 400 and "JSON" in answer.text


def test_a_cluster_holds_a_limited_number(client, sm, monkeypatch):
    monkeypatch.setattr(identity_mod, "MAX_BUCKET_CREDENTIALS", 2)
    uuid, other = _cluster(sm), _cluster(sm)
    for _ in range(2):
        assert call(client, "alice", "POST", PATH.format(uuid)).status_code == 201
    refused = call(client, "alice", "POST", PATH.format(uuid))
    assert refused.status_code == 409 and "delete one first" in refused.text
    # per cluster: another one of the project still may
    assert call(client, "alice", "POST", PATH.format(other)).status_code == 201
    access = call(client, "alice", "GET", PATH.format(uuid)).json()["bucket_credentials"][0]
    assert call(client, "alice", "DELETE",
                f"{PATH.format(uuid)}/{access['access']}").status_code == 204
    assert call(client, "alice", "POST", PATH.format(uuid)).status_code == 201


def test_keystone_unreachable_is_503(client, sm, keystone):
    uuid = _cluster(sm)
    keystone.down = True
    for method in ("GET", "POST"):
        answer = call(client, "alice", method, PATH.format(uuid))
        assert answer.status_code == 503 and "Keystone" in answer.text, answer.text


# -- the validator asks Keystone for access rules --------------------------------------------------
RULES = [{"id": "r1", "service": "container-infra", "method": "GET", "path": "/v1/clusters"}]


def _token(user: str, app_cred: bool) -> dict:
    expires = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(time.time() + 3600))
    body = {"token": {"expires_at": expires, "issued_at": expires, "methods": ["password"],
                      "user": {"id": f"{user}-id", "name": user,
                               "domain": {"id": "default", "name": "Default"}},
                      "project": {"id": "p-one", "name": "one",
                                  "domain": {"id": "default", "name": "Default"}},
                      "roles": [{"id": "m", "name": "member"}], "catalog": []}}
    if app_cred:
        body["token"]["methods"] = ["application_credential"]
        body["token"]["application_credential"] = {"id": "ac", "name": "c", "restricted": True,
                                                   "access_rules": RULES}
    return body


@pytest.fixture
def keystone_tokens():
    """A Keystone token API on 127.0.0.1 (a thread, stopped after): the service user logs in;
    the application credential's token validates only for a caller that sends
    OpenStack-Identity-Access-Rules (as Keystone answers 404 otherwise)."""
    import http.server
    import threading

    seen: list[dict] = []

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

        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self._send(201, _token("teapot", False), "service-token")

        def do_GET(self):  # noqa: N802
            seen.append(dict(self.headers))
            subject = self.headers.get("X-Subject-Token")
            if subject == "app-cred-token":
                if not self.headers.get("OpenStack-Identity-Access-Rules"):
                    return self._send(404, {"error": {"code": 404}})
                return self._send(200, _token("teapot-user", True))
            if subject == "person-token":
                return self._send(200, _token("alice", False))
            return self._send(404, {"error": {"code": 404}})

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v3", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_the_validator_keeps_the_tokens_access_rules(keystone_tokens):
    from teapot.api.auth import InvalidToken, TokenValidator

    url, seen = keystone_tokens
    validator = TokenValidator(url, "teapot", "pw", "service", "Default", "Default")
    ruled = validator.validate("app-cred-token")
    assert ruled.access_rules == tuple(RULES) and ruled.user_name == "teapot-user"
    assert seen[-1].get("OpenStack-Identity-Access-Rules") == "1"
    person = validator.validate("person-token")
    assert person.access_rules is None and person.user_name == "alice"
    with pytest.raises(InvalidToken):
        validator.validate("no-such-token")
    asked = len(seen)
    assert validator.validate("app-cred-token") == ruled  # cached, as before
    assert len(seen) == asked
