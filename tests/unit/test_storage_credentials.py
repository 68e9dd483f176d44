"""Storage labels, access rules, the credential steps of the cluster state machine, and the
conductor retrying (with a growing delay, said in status_reason) while Keystone cannot be reached."""

from __future__ import annotations

import json
import socket
import time
import uuid as uuidlib

import pytest
from cryptography.fernet import Fernet
from keystoneauth1 import session
from keystoneauth1.identity import v3

from teapot.conductor.clusters import ClusterReconciler, credential_fields
from teapot.conductor.hosts import Timing
from teapot.db.models import Cluster, NodeGroup
from teapot.drivers.identity import IdentityError, KeystoneCredentials
from teapot.resources import cluster as csm
from teapot.resources import storage
from teapot.resources.errors import ValidationError


# -- labels and access rules -----------------------------------------------------------------------
def test_labels_choose_the_storage():
    assert storage.wanted({}) == ()
    assert storage.wanted({"manila_csi_enabled": "true", "object_storage_enabled": "False"}) == (
        storage.FILE,)
    assert storage.wanted({"object_storage_enabled": "1", "manila_csi_enabled": "yes"}) == (
        storage.FILE, storage.OBJECT)


@pytest.mark.parametrize("labels, field", [
    ({"manila_csi_enabled": "maybe"}, "labels.manila_csi_enabled"),
    ({"barbican_enabled": "true"}, "labels.barbican_enabled"),
])
def test_bad_storage_labels_name_the_label(labels, field):
    with pytest.raises(ValidationError) as e:
        storage.wanted(labels)
    assert e.value.field == field


CLUSTER = "3f0b5b8e-5a3c-4f4e-9d2c-0a1b2c3d4e5f"


def test_access_rules_name_only_the_storage_asked_for():
    file_rules = storage.access_rules((storage.FILE,), CLUSTER)
    assert {r["service"] for r in file_rules} == {"sharev2", "share"}
    assert {"service": "sharev2", "method": "GET", "path": "/v2/"} in file_rules
    assert {"service": "sharev2", "method": "POST", "path": "/v2/shares/*/action"} in file_rules
    assert {"service": "sharev2", "method": "POST", "path": "/v2/*/shares/*/action"} in file_rules
    both = storage.access_rules((storage.FILE, storage.OBJECT), CLUSTER)
    assert {r["service"] for r in both} == {"sharev2", "share", "object-store", "container-infra"}
    # Swift's and RGW's paths to the project's account only
    swift = [r["path"] for r in both if r["service"] == "object-store"]
    assert "/v1/AUTH_*/**" in swift and "/swift/v1/AUTH_*/**" in swift
    assert all("/AUTH_*" in p for p in swift)
    # Teapot: the bucket credentials of this cluster, nothing else
    teapot = sorted((r["method"], r["path"]) for r in both if r["service"] == "container-infra")
    assert teapot == [("DELETE", f"/v1/clusters/{CLUSTER}/bucket_credentials/*"),
                      ("GET", f"/v1/clusters/{CLUSTER}/bucket_credentials"),
                      ("POST", f"/v1/clusters/{CLUSTER}/bucket_credentials")]
    every = storage.access_rules((storage.FILE, storage.OBJECT, storage.BLOCK, storage.KEYS),
                                 CLUSTER)
    assert {r["service"] for r in every} == {"sharev2", "share", "object-store", "volumev3",
                                            "block-storage", "key-manager", "container-infra"}
    assert storage.access_rules((), CLUSTER) == []
    assert not {r["service"] for r in storage.access_rules((storage.FILE, storage.BLOCK),
                                                           CLUSTER)} & {"container-infra"}
    # nothing of Keystone, compute or networking, and every rule is a method and an absolute path
    assert not {r["service"] for r in every} & {"identity", "compute", "network"}
    with pytest.raises(ValueError):
        storage.access_rules((storage.OBJECT,), "*")
    assert all(r["path"].startswith("/") and r["method"].isupper() for r in every)
    assert len({(r["service"], r["method"], r["path"]) for r in every}) == len(every)


def test_storage_view_never_holds_a_secret():
    view = storage.view((storage.OBJECT,), storage.Credentials("ac1", "ak1", 1), 1)
    assert view == {"kinds": ["object"], "credential": "ready", "application_credential_id": "ac1",
                    "rotation": 1, "ec2_access": "ak1"}
    assert storage.view((storage.OBJECT,), storage.Credentials("ac1", "ak1", 1), 2)[
        "credential"] == "pending"
    assert storage.view((), storage.Credentials(), 0) == {"kinds": [], "credential": "none"}


# -- the state machine -----------------------------------------------------------------------------
def _view(status=csm.CREATE_IN_PROGRESS, deleting=False, hosts=(), **creds) -> csm.ClusterView:
    return csm.ClusterView(status=status, deleting=deleting,
                           nodegroups=(csm.NodeGroupView("default-master", csm.ROLE_MASTER, 1,
                                                         "small"),),
                           hosts=tuple(hosts), **creds)


def _host(name="m1", state="available", has_image=False) -> csm.HostView:
    return csm.HostView(name, f"uuid-{name}", "default-master", state, has_image)


def test_credentials_come_before_hosts():
    assert csm.plan(_view()) == csm.Claim({"default-master": 1})
    assert csm.plan(_view(credential_rotation=1)) == csm.MakeCredentials(1)
    made = _view(credential_rotation=1, credential_made=1, credentials_held=True)
    assert csm.plan(made) == csm.Claim({"default-master": 1})
    assert csm.plan(_view(hosts=[_host()], credential_rotation=1)) == csm.MakeCredentials(1)


def test_rotation_of_a_settled_cluster_and_then_the_old_ones_go():
    settled = dict(status=csm.CREATE_COMPLETE, hosts=[_host(state="provisioned", has_image=True)])
    assert csm.plan(_view(**settled, credential_rotation=1, credential_made=1)) == csm.Wait("settled")
    assert csm.plan(_view(**settled, credential_rotation=2, credential_made=1)) == \
        csm.MakeCredentials(2)
    # the running cluster gets the new credential before the old one is deleted
    rotated = dict(settled, credential_rotation=2, credential_made=2, stale_credentials=True)
    assert csm.plan(_view(**rotated, credential_pushed=1)) == csm.PushCredentials(2)
    assert csm.plan(_view(**rotated, credential_pushed=2)) == \
        csm.DeleteCredentials(stale_only=True)
    # hosts not provisioned yet get the new one in their user data: nothing to push
    assert csm.plan(_view(hosts=[_host()], credential_rotation=2, credential_made=2,
                          stale_credentials=True)) == csm.DeleteCredentials(stale_only=True)


def test_a_deleted_cluster_gives_back_hosts_then_credentials_then_is_gone():
    busy = _host(state="provisioned", has_image=True)
    held = dict(deleting=True, status=csm.DELETE_IN_PROGRESS, credential_rotation=1,
                credential_made=1, credentials_held=True)
    assert csm.plan(_view(hosts=[busy], **held)) == csm.Deprovision(("m1",))
    assert csm.plan(_view(**held)) == csm.DeleteCredentials()
    assert csm.plan(_view(deleting=True, status=csm.DELETE_IN_PROGRESS)) == csm.Gone()
    # a failed cluster keeps its credentials until it is deleted, and makes none
    assert csm.plan(_view(status=csm.CREATE_FAILED, credential_rotation=1)) == \
        csm.Wait("failed; holds no hosts")


def test_capi_clusters_make_credentials_and_reapply_after_a_rotation():
    present = csm.CapiObserved(objects=5, ready=True, endpoint="10.0.0.1:6443")
    creds = _view(status=csm.CREATE_COMPLETE, credential_rotation=2, credential_made=1)
    assert csm.plan_capi(csm.CREATE_COMPLETE, False, 1, 1, present, creds, 1) == \
        csm.MakeCredentials(2)
    rotated = _view(status=csm.CREATE_COMPLETE, credential_rotation=2, credential_made=2)
    assert csm.plan_capi(csm.CREATE_COMPLETE, False, 1, 1, present, rotated, 1) == \
        csm.ApplyObjects()
    assert csm.plan_capi(csm.CREATE_COMPLETE, False, 1, 1, present, rotated, 2) == \
        csm.Wait("settled")
    # replaced credentials are deleted only once the objects carrying the new one are applied
    stale = _view(status=csm.CREATE_COMPLETE, credential_rotation=2, credential_made=2,
                  stale_credentials=True)
    assert csm.plan_capi(csm.CREATE_COMPLETE, False, 1, 1, present, stale, 1) == \
        csm.ApplyObjects()
    assert csm.plan_capi(csm.CREATE_COMPLETE, False, 1, 1, present, stale, 2) == \
        csm.DeleteCredentials(stale_only=True)
    held = _view(deleting=True, credential_made=2, credentials_held=True)
    gone = csm.CapiObserved(objects=0, ready=False, endpoint=None)
    assert csm.plan_capi(csm.DELETE_IN_PROGRESS, True, 1, 1, present, held) == csm.DeleteObjects()
    assert csm.plan_capi(csm.DELETE_IN_PROGRESS, True, 1, 1, gone, held) == csm.DeleteCredentials()


def test_credential_fields_from_attributes():
    assert credential_fields({}) == {"credential_rotation": 0, "credential_made": 0,
                                     "credentials_held": False, "stale_credentials": False,
                                     "credential_pushed": 0}
    attrs = {"storage_kinds": ["file"], "credential_rotation": 2,
             "credentials": {"rotation": 1, "application_credential_id": "x"},
             "stale_credentials": [{"application_credential_id": "y"}]}
    assert credential_fields({**attrs, "pushed_rotation": 1}) == {
        "credential_rotation": 2, "credential_made": 1, "credentials_held": True,
        "stale_credentials": True, "credential_pushed": 1}
    assert credential_fields({**attrs, "credentials": None, "credentials_swept": True})[
        "credentials_held"] is False


# -- the conductor, with Keystone out of reach ------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def test_unreachable_keystone_is_retried_with_a_growing_delay(sm):
    url = f"http://127.0.0.1:{_closed_port()}/v3"
    admin = session.Session(auth=v3.Password(auth_url=url, username="teapot", password="pw",
                                             project_name="service", user_domain_name="Default",
                                             project_domain_name="Default"), timeout=5)
    identity = KeystoneCredentials(admin, url, b"key")
    with pytest.raises(IdentityError) as e:
        identity.project_user("p-one")
    assert "Keystone: looking up project p-one failed" in str(e.value) and "pw" not in str(e.value)

    fernet = Fernet(Fernet.generate_key())
    uuid = str(uuidlib.uuid4())
    with sm.begin() as s:
        s.add(Cluster(uuid=uuid, name="c", project_id="p-one", user_id="u",
                      cluster_template_id=str(uuidlib.uuid4()), status=csm.CREATE_IN_PROGRESS,
                      status_reason="claiming hosts",
                      attrs={"labels": {"manila_csi_enabled": "true"}, "storage_kinds": ["file"],
                             "credential_rotation": 1},
                      ca_cert=b"", ca_key=b"", secrets=fernet.encrypt(json.dumps({}).encode()),
                      deleting=False, generation=1, next_attempt_at=0.0, lease_expires_at=0.0,
                      created_at=time.time()))
        s.add(NodeGroup(uuid=str(uuidlib.uuid4()), name="default-master", cluster_uuid=uuid,
                        project_id="p-one", role="master", flavor_id="small", node_count=1,
                        is_default=True, labels={}, status=csm.CREATE_IN_PROGRESS,
                        nodes_to_remove=[], created_at=time.time()))
    timing = Timing(busy=1.0, resync=5.0, lease=30.0, max_backoff=300.0)
    reconciler = ClusterReconciler(sm, fernet, "test-conductor", timing, readiness="provisioned",
                                   identity=identity)
    delays = []
    for _ in range(3):
        with sm.begin() as s:
            s.query(Cluster).filter_by(uuid=uuid).update({"next_attempt_at": 0.0})
        before = time.time()
        reconciler.reconcile(reconciler.due(time.time(), 10)[0])
        with sm() as s:
            row = s.query(Cluster).filter_by(uuid=uuid).one()
        delays.append(row.next_attempt_at - before)
        assert row.status == csm.CREATE_IN_PROGRESS  # not failed: it keeps trying
        assert row.status_reason.startswith("storage credentials: Keystone: looking up project")
        assert "retrying in" in row.status_reason
        assert not row.attrs.get("credentials")
        assert "storage" not in json.loads(fernet.decrypt(row.secrets))
    assert delays[0] < delays[1] < delays[2]
    with sm() as s:
        row = s.query(Cluster).filter_by(uuid=uuid).one()
        assert row.attrs["credential_failures"] == 3
        assert not s.query(Cluster).filter(Cluster.uuid == uuid, Cluster.lease_owner.is_not(None)
                                           ).count()
    from teapot.api.container_infra.views import storage_view

    shown = storage_view(row.attrs)
    assert shown["credential"] == "error" and "looking up project" in shown["error"]


# -- the API ---------------------------------------------------------------------------------------
def _api_cluster(sm, project: str, status: str = csm.CREATE_COMPLETE, **attrs) -> str:
    uuid = str(uuidlib.uuid4())
    with sm.begin() as s:
        s.add(Cluster(uuid=uuid, name="api", project_id=project, user_id="u",
                      cluster_template_id=str(uuidlib.uuid4()), status=status, status_reason=None,
                      attrs={"labels": {}, **attrs}, ca_cert=b"", ca_key=b"", secrets=b"",
                      deleting=False, generation=1, next_attempt_at=1e12, lease_expires_at=0.0,
                      created_at=time.time()))
    return uuid


def test_rotate_credentials_action(client, sm):
    from tests.unit.conftest import call

    made = {"rotation": 1, "application_credential_id": "ac-1", "ec2_access": "ak-1",
            "user_id": "teapot-user"}
    uuid = _api_cluster(sm, "p-one", storage_kinds=["file", "object"], credential_rotation=1,
                        credentials=made)
    path = f"/v1/clusters/{uuid}/actions/rotate_credentials"
    shown = call(client, "alice", "GET", f"/v1/clusters/{uuid}").json()
    assert shown["storage"] == {"kinds": ["file", "object"], "credential": "ready",
                                "application_credential_id": "ac-1", "ec2_access": "ak-1",
                                "rotation": 1}
    assert shown["health_status_reason"]["storage"].startswith("file (manila-csi, CephFS)")
    assert call(client, "rita", "POST", path, json={}).status_code == 403  # a reader
    assert call(client, "bob", "POST", path, json={}).status_code == 404  # another project
    bad = call(client, "alice", "POST", path, json={"force": True})
    assert bad.status_code == 400 and "force" in bad.text
    done = call(client, "alice", "POST", path, json={})
    assert done.status_code == 202 and done.json() == {"uuid": uuid}
    with sm() as s:
        row = s.query(Cluster).filter_by(uuid=uuid).one()
        assert row.attrs["credential_rotation"] == 2 and row.next_attempt_at == 0.0
    assert call(client, "alice", "GET", f"/v1/clusters/{uuid}").json()["storage"][
        "credential"] == "pending"

    plain = _api_cluster(sm, "p-one")
    refused = call(client, "alice", "POST", f"/v1/clusters/{plain}/actions/rotate_credentials",
                   json={})
    assert refused.status_code == 400 and "asks for no storage" in refused.text
    failed = _api_cluster(sm, "p-one", status=csm.CREATE_FAILED, storage_kinds=["file"],
                          credential_rotation=1)
    assert call(client, "alice", "POST", f"/v1/clusters/{failed}/actions/rotate_credentials",
                json={}).status_code == 409
