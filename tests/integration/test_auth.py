"""Every request needs a Keystone token; hosts are for admins only (oslo.policy, default roles)."""

from __future__ import annotations

import httpx
import pytest
from keystoneauth1 import session
from keystoneauth1.identity import v3

from teapot.cli.client import TeapotClient, TeapotError
from teapot.deploy.keystone_setup import admin_connection, ensure_user


def _session(box, user: str, password: str, project: str) -> session.Session:
    auth = v3.Password(auth_url=box.url("keystone") + "/v3", username=user, password=password,
                       project_name=project, user_domain_name="Default", project_domain_name="Default")
    return session.Session(auth=auth)


@pytest.fixture(scope="module")
def reader_client(box):
    conn = admin_connection(box.url("keystone") + "/v3", box.secret("admin-password"))
    ensure_user(conn, "auditor", "auditor-test-password", "demo", ["reader"])
    return TeapotClient(_session(box, "auditor", "auditor-test-password", "demo"), "RegionOne")


def test_admin_lists_hosts(admin):
    assert len(admin.list_hosts()) >= 1


def test_member_gets_403_saying_why(demo):
    with pytest.raises(TeapotError) as err:
        demo.list_hosts()
    message = str(err.value)
    assert "teapot:host:get_all" in message
    assert "admin role" in message


def test_reader_gets_403(reader_client):
    with pytest.raises(TeapotError, match="admin role"):
        reader_client.get_host("host-0")


def test_member_cannot_create_update_or_delete(demo):
    for call in (lambda: demo.create_host({"name": "x"}), lambda: demo.update_host("host-0", {}),
                 lambda: demo.delete_host("host-0")):
        with pytest.raises(TeapotError, match="Policy does not allow"):
            call()


def test_no_token_is_401_with_openstack_error_body(box):
    response = httpx.get(box.url("teapot-api") + "/v1/hosts")
    assert response.status_code == 401
    error = response.json()["errors"][0]
    assert error["status"] == 401 and "X-Auth-Token" in error["detail"]
    assert response.headers["x-openstack-request-id"].startswith("req-")


def test_bad_token_is_401(box):
    response = httpx.get(box.url("teapot-api") + "/v1/hosts", headers={"X-Auth-Token": "gAAAAAnonsense"})
    assert response.status_code == 401
    assert "not valid" in response.json()["errors"][0]["detail"]


def test_versions_document_needs_no_token(box):
    body = httpx.get(box.url("teapot-api") + "/").json()
    assert body["versions"][0]["id"] == "v1"
