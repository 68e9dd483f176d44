"""Per-cluster storage credentials against a box's real Keystone: made when a cluster asks for
storage, restricted by access rules, in the cluster's project, rotated by a cluster action and
deleted with the cluster."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess

import httpx
import pytest
from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import session

from tests import addon_schemas

from . import storage
from .conftest import wait_for
from .storage import HEADERS

STORAGE = {"manila_csi_enabled": "true", "object_storage_enabled": "true"}


@pytest.fixture(scope="module")
def people(box):
    return storage.people(box)


def _create(box, sess, name: str, labels: dict | None = None) -> str:
    return storage.create_cluster(box, sess, name, STORAGE if labels is None else labels)


_api, _show, _stored, _addons_of = storage.api, storage.show, storage.stored_credentials, \
    storage.addons_of
_session, _app_session = storage.user_session, storage.app_session


def _refused(sess: session.Session) -> bool:
    try:
        sess.get_token()
    except (ks_exc.Unauthorized, ks_exc.NotFound):
        return True
    return False


def _s3_token(box, access: str, secret: str) -> httpx.Response:
    """What RGW/Swift's s3token does with a signed S3 request: Keystone checks the signature
    (asked, as object stores do, with a service user's token)."""
    service = _session(box, "teapot", box.secret("teapot-password"), "service")
    to_sign = "GET\n\n\nThu, 01 Jan 2026 00:00:00 GMT\n/bucket/"
    signature = base64.b64encode(hmac.new(secret.encode(), to_sign.encode(),
                                          hashlib.sha1).digest()).decode()
    return httpx.post(box.url("keystone") + "/v3/s3tokens", timeout=30,
                      headers={"X-Auth-Token": service.get_token()}, json={"credentials": {
        "access": access, "token": base64.urlsafe_b64encode(to_sign.encode()).decode(),
        "signature": signature}})


def _ec2_keys(box, admin: session.Session, user_id: str) -> set[str]:
    """The access keys of a user's EC2 credentials, as Keystone's database lists them."""
    listed = admin.get(box.url("keystone") + "/v3/credentials",
                       params={"user_id": user_id, "type": "ec2"}).json()["credentials"]
    return {json.loads(c["blob"])["access"] for c in listed}


def _ready(box, sess, uuid: str, rotation: int) -> dict:
    def check():
        c = _show(box, sess, uuid)
        s = c.get("storage") or {}
        return c if s.get("credential") == "ready" and s.get("rotation") == rotation else None

    return wait_for(check, timeout=180, what=f"cluster {uuid} credential rotation {rotation}")


def test_cluster_credentials_lifecycle(box, people):
    demo, viewer, other, admin = people["demo"], people["viewer"], people["other"], people["admin"]
    uuid = _create(box, demo, "stor")
    _ready(box, demo, uuid, 1)
    cluster = wait_for(lambda: (c := _show(box, demo, uuid))["status"] in (
        "CREATE_COMPLETE", "CREATE_FAILED") and c, timeout=180, what="cluster settled")
    assert cluster["status"] == "CREATE_COMPLETE", cluster["status_reason"]
    storage = cluster["storage"]
    assert storage["kinds"] == ["file", "object"]
    assert "secret" not in json.dumps(cluster).replace("application_credential_id", "")
    stored = _stored(box, uuid)
    assert stored["application_credential_id"] == storage["application_credential_id"]
    assert stored["ec2_access"] == storage["ec2_access"]

    # the first master's user data carries the storage add-ons with this credential, valid
    objects = _addons_of(box, uuid)
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert ("StorageClass", "manila-cephfs") in kinds and ("Secret", "openstack-object-storage") in kinds
    for obj in objects:
        addon_schemas.validate(obj)
    creds = next(o for o in objects if o["metadata"]["name"] == "manila-csi-credentials")
    assert creds["stringData"]["os-applicationCredentialSecret"] == \
        stored["application_credential_secret"]
    assert creds["stringData"]["os-authURL"].startswith(box.url("keystone"))

    # the credential logs in, into the cluster's project, with the member role only
    cred = _app_session(box, stored["application_credential_id"],
                        stored["application_credential_secret"])
    demo_project = demo.get_project_id()
    assert cred.get_project_id() == demo_project
    access = cred.auth.get_access(cred)
    assert set(access.role_names) == {"member", "reader"}  # member implies reader; no admin
    granted = access._data["token"]["application_credential"]["access_rules"]
    rules = {(r["service"], r["method"]) for r in granted}
    assert ("sharev2", "POST") in rules and ("object-store", "PUT") in rules
    assert not {s for s, _ in rules} - {"sharev2", "share", "object-store", "container-infra"}
    # of Teapot's API, only its own cluster's bucket credentials
    assert {r["path"] for r in granted if r["service"] == "container-infra"} == {
        f"/v1/clusters/{uuid}/bucket_credentials", f"/v1/clusters/{uuid}/bucket_credentials/*"}

    # outside its access rules it is refused: Keystone's API, Teapot's API
    token = cred.get_token()
    assert httpx.get(box.url("keystone") + "/v3/projects", timeout=30,
                     headers={"X-Auth-Token": token}).status_code == 401
    assert httpx.get(box.url("teapot-api") + "/v1/clusters", timeout=30,
                     headers={**HEADERS, "X-Auth-Token": token}).status_code == 401

    # it cannot be scoped to another project
    other_project = other.get_project_id()
    scoped = httpx.post(box.url("keystone") + "/v3/auth/tokens", timeout=30, json={"auth": {
        "identity": {"methods": ["application_credential"], "application_credential": {
            "id": stored["application_credential_id"],
            "secret": stored["application_credential_secret"]}},
        "scope": {"project": {"id": other_project}}}})
    assert scoped.status_code in (400, 401, 403), scoped.text

    # the EC2 credentials sign S3 requests for the cluster's project, and a wrong secret fails
    s3 = _s3_token(box, stored["ec2_access"], stored["ec2_secret"])
    assert s3.status_code == 200, s3.text
    assert s3.json()["token"]["project"]["id"] == demo_project
    assert _s3_token(box, stored["ec2_access"], "not-the-secret").status_code == 401

    # another project cannot see the cluster nor rotate it; a reader may look but not rotate
    assert _api(box, other, "POST", f"/v1/clusters/{uuid}/actions/rotate_credentials",
                json={}).status_code == 404
    assert _show(box, viewer, uuid)["storage"]["credential"] == "ready"
    assert _api(box, viewer, "POST", f"/v1/clusters/{uuid}/actions/rotate_credentials",
                json={}).status_code == 403

    # `openstack coe cluster show` lists the cluster's storage
    shown = subprocess.run(["openstack", "--os-cloud", "teapot-demo", "coe", "cluster", "show",
                            uuid, "-f", "json"], capture_output=True, text=True, timeout=120,
                           env={**box.env(), "SHELL": "/bin/sh"})
    assert shown.returncode == 0, shown.stderr
    summary = json.loads(shown.stdout)["health_status_reason"]["storage"]
    assert summary.startswith("file (manila-csi, CephFS), object (S3, Swift); credential ready")
    assert stored["application_credential_secret"] not in shown.stdout

    # rotation: a new credential works, the old one (and its EC2 credentials) stop working
    rotated = _api(box, demo, "POST", f"/v1/clusters/{uuid}/actions/rotate_credentials",
                   json={})
    assert rotated.status_code == 202, rotated.text
    new = _ready(box, demo, uuid, 2)["storage"]
    assert new["application_credential_id"] != storage["application_credential_id"]
    wait_for(lambda: _refused(_app_session(box, stored["application_credential_id"],
                                           stored["application_credential_secret"])),
             timeout=120, what="the old credential refused")
    # The EC2 credentials are gone from Keystone's database. (Asked through s3tokens, a box's
    # Keystone may still answer from one gunicorn worker's in-process cache for a while.)
    assert stored["ec2_access"] not in _ec2_keys(box, admin, access.user_id)
    fresh = _stored(box, uuid)
    assert _ec2_keys(box, admin, access.user_id) >= {fresh["ec2_access"]}
    assert fresh["application_credential_id"] == new["application_credential_id"]
    assert _app_session(box, fresh["application_credential_id"],
                        fresh["application_credential_secret"]).get_project_id() == demo_project
    owner = access.user_id
    assert owner != demo.get_user_id()  # Teapot's project user, not the human

    # deleting the cluster deletes its credentials
    assert _api(box, demo, "DELETE", f"/v1/clusters/{uuid}").status_code == 204
    wait_for(lambda: _api(box, demo, "GET", f"/v1/clusters/{uuid}").status_code == 404,
             timeout=180, what="cluster deleted")
    assert _refused(_app_session(box, fresh["application_credential_id"],
                                 fresh["application_credential_secret"]))
    assert fresh["ec2_access"] not in _ec2_keys(box, admin, owner)
    left = admin.get(box.url("keystone") + f"/v3/users/{owner}/application_credentials").json()
    assert not [c for c in left["application_credentials"] if uuid in c["name"]]


def test_two_projects_get_separate_credentials(box, people):
    demo, other = people["demo"], people["other"]
    a, b = _create(box, demo, "stor-a"), _create(box, other, "stor-b")
    plain = _create(box, demo, "stor-plain", labels={"kube_tag": "v1.36.3"})
    try:
        # a cluster that asks for no storage has no credential, and nothing to rotate
        assert _show(box, demo, plain)["storage"] == {"kinds": [], "credential": "none"}
        refused = _api(box, demo, "POST", f"/v1/clusters/{plain}/actions/rotate_credentials",
                       json={})
        assert refused.status_code == 400 and "asks for no storage" in refused.text
        _ready(box, demo, a, 1)
        _ready(box, other, b, 1)
        sa, sb = _stored(box, a), _stored(box, b)
        ca = _app_session(box, sa["application_credential_id"], sa["application_credential_secret"])
        cb = _app_session(box, sb["application_credential_id"], sb["application_credential_secret"])
        assert ca.get_project_id() == demo.get_project_id()
        assert cb.get_project_id() == other.get_project_id()
        assert ca.get_user_id() != cb.get_user_id()  # one Teapot user per project
        # one project's EC2 credentials authenticate only into that project
        assert _s3_token(box, sb["ec2_access"], sb["ec2_secret"]).json()["token"]["project"][
            "id"] == other.get_project_id()
        # a credential id of one project with the secret of the other's is refused
        assert _refused(_app_session(box, sa["application_credential_id"],
                                     sb["application_credential_secret"]))
        # labels that are neither true nor false are a 400 naming the label
        bad = _api(box, demo, "POST", "/v1/clusters", json={
            "cluster_template_id": _show(box, demo, a)["cluster_template_id"],
            "labels": {"manila_csi_enabled": "maybe"}})
        assert bad.status_code == 400 and "manila_csi_enabled" in bad.text
    finally:
        for sess, uuid in ((demo, a), (other, b), (demo, plain)):
            _api(box, sess, "DELETE", f"/v1/clusters/{uuid}")
        for sess, uuid in ((demo, a), (other, b), (demo, plain)):
            wait_for(lambda s=sess, u=uuid: _api(box, s, "GET", f"/v1/clusters/{u}").status_code
                     == 404, timeout=180, what="cluster deleted")
