"""Helpers of the storage tests: people of two projects, clusters made through Teapot's API, and the
credentials the conductor stored for a cluster (read back from its database, as only the cluster's
own plugins would hold them)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

import httpx
import yaml
from cryptography.fernet import Fernet
from keystoneauth1 import session
from keystoneauth1.identity import v3

from teapot.deploy.keystone_setup import admin_connection, ensure_user

from .conftest import Box, wait_for

IMAGE = "https://images.example/ubuntu-2404-k8s.raw"
HEADERS = {"OpenStack-API-Version": "container-infra 1.14"}
ALL_STORAGE = {"manila_csi_enabled": "true", "object_storage_enabled": "true",
               "cinder_attachments_enabled": "true", "barbican_enabled": "true"}


def user_session(box: Box, user: str, password: str, project: str) -> session.Session:
    return session.Session(auth=v3.Password(
        auth_url=box.url("keystone") + "/v3", username=user, password=password,
        project_name=project, user_domain_name="Default", project_domain_name="Default"))


def app_session(box: Box, cred_id: str, secret: str) -> session.Session:
    return session.Session(auth=v3.ApplicationCredential(
        auth_url=box.url("keystone") + "/v3", application_credential_id=cred_id,
        application_credential_secret=secret))


def people(box: Box) -> dict[str, session.Session]:
    """Sessions of demo (member of demo), store-other (member of its own project), store-viewer
    (reader of demo) and admin."""
    conn = admin_connection(box.url("keystone") + "/v3", box.secret("admin-password"))
    ensure_user(conn, "store-other", "store-other-password", "store-other", ["member"])
    ensure_user(conn, "store-viewer", "store-viewer-password", "demo", ["reader"])
    return {"demo": user_session(box, "demo", box.cloud_auth("teapot-demo")["password"], "demo"),
            "other": user_session(box, "store-other", "store-other-password", "store-other"),
            "viewer": user_session(box, "store-viewer", "store-viewer-password", "demo"),
            "admin": user_session(box, "admin", box.secret("admin-password"), "admin")}


def api(box: Box, sess: session.Session, method: str, path: str, **kw) -> httpx.Response:
    return httpx.request(method, box.url("teapot-api") + path, timeout=30,
                         headers={**HEADERS, "X-Auth-Token": sess.get_token()}, **kw)


def create_cluster(box: Box, sess: session.Session, name: str, labels: dict) -> str:
    template = api(box, sess, "POST", "/v1/clustertemplates", json={
        "name": f"{name}-t", "image_id": IMAGE, "coe": "kubernetes", "flavor_id": "baremetal",
        "master_flavor_id": "baremetal", "labels": {"image_checksum": "34" * 32}})
    assert template.status_code == 201, template.text
    made = api(box, sess, "POST", "/v1/clusters", json={
        "name": name, "cluster_template_id": template.json()["uuid"], "master_count": 1,
        "node_count": 0, "labels": labels})
    assert made.status_code == 202, made.text
    return made.json()["uuid"]


def show(box: Box, sess: session.Session, uuid: str) -> dict:
    r = api(box, sess, "GET", f"/v1/clusters/{uuid}")
    assert r.status_code == 200, r.text
    return r.json()


def settled(box: Box, sess: session.Session, uuid: str, timeout: float = 300) -> dict:
    """The cluster once CREATE_COMPLETE (a failure is an assertion naming its reason)."""
    cluster = wait_for(lambda: (c := show(box, sess, uuid))["status"] in (
        "CREATE_COMPLETE", "CREATE_FAILED") and c, timeout=timeout, what="cluster settled")
    assert cluster["status"] == "CREATE_COMPLETE", cluster["status_reason"]
    return cluster


def _teapot_db(box: Box) -> tuple[Fernet, sqlite3.Connection]:
    key = (box.state_dir / "data" / "teapot" / "secret.key").read_bytes().strip()
    return Fernet(key), sqlite3.connect(box.state_dir / "data" / "teapot" / "teapot.sqlite")


def stored_credentials(box: Box, uuid: str) -> dict:
    """The cluster's credential secrets as the conductor stored them (encrypted at rest)."""
    fernet, db = _teapot_db(box)
    try:
        (blob,) = db.execute("SELECT secrets FROM clusters WHERE uuid = ?", (uuid,)).fetchone()
    finally:
        db.close()
    assert b"application_credential_secret" not in blob  # encrypted, not JSON
    return json.loads(fernet.decrypt(blob))["storage"]


def addons_of(box: Box, uuid: str) -> list[dict]:
    """The add-on objects in the user data of the cluster's hosts (only one host may have any)."""
    fernet, db = _teapot_db(box)
    try:
        rows = db.execute("SELECT user_data FROM hosts WHERE cluster_uuid = ?", (uuid,)).fetchall()
    finally:
        db.close()
    found = []
    for (blob,) in rows:
        doc = yaml.safe_load(fernet.decrypt(blob))
        found += [f["content"] for f in doc["write_files"] if f["path"].endswith("addons.yaml")]
    assert len(found) == 1, f"{len(found)} hosts carry add-ons"
    return list(yaml.safe_load_all(found[0]))


def hosts_of(box: Box, cluster_uuid: str) -> list[str]:
    """The names of the cluster's hosts (from the database the conductor wrote)."""
    db = sqlite3.connect(box.state_dir / "data" / "teapot" / "teapot.sqlite")
    try:
        rows = db.execute("SELECT name FROM hosts WHERE cluster_uuid = ? ORDER BY name",
                          (cluster_uuid,)).fetchall()
    finally:
        db.close()
    assert rows, f"cluster {cluster_uuid} has no hosts"
    return [r[0] for r in rows]


@dataclass
class TenantCluster:
    """A CREATE_COMPLETE cluster of one project, asking for every kind of storage."""

    uuid: str
    project_id: str
    user: session.Session  # a member of the project
    credentials: dict  # as stored: application credential id/secret, EC2 access/secret
    info: dict  # the cluster as the API shows it

    def app(self, box: Box) -> session.Session:
        """A session of the cluster's own application credential."""
        return app_session(box, self.credentials["application_credential_id"],
                           self.credentials["application_credential_secret"])
