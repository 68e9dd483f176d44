"""Volume attachments without a server: the per-project Ceph user's caps, the connection info a
host is given (never a key, never Cinder's user), the connector, the API's schemas and policy, and
the add-on Secret that carries the project's Ceph key."""

from __future__ import annotations

import struct

import pytest

from teapot.api import schema
from teapot.api.policy import Forbidden
from teapot.api.volume_attachments import routes, schemas
from teapot.drivers import block
from teapot.drivers.bootstrap import storage as addons
from teapot.resources import storage
from teapot.resources.errors import ValidationError

from .test_api_pieces import _identity

PROJECT = "0123456789abcdef0123456789abcdef"
VOLUME = "5d1c5a43-7d63-4b0b-9a53-c1f3c1a0d5e7"
NODE = "A7E1D0B8-6A3C-4B66-9E1F-2B1C0F0E9D11"
REF = {"namespace": "openstack-storage", "name": "openstack-block-storage", "key": "userKey"}


# --- caps ---------------------------------------------------------------------------------------
def test_no_attachment_no_osd_access():
    assert block.render_caps("volumes", {}) == {"mon": "profile rbd"}


def test_caps_name_exactly_the_objects_of_each_image():
    caps = block.render_caps("volumes", {"volume-b": "10ab", "volume-a": "9f3c2"})
    assert caps["mon"] == "profile rbd"
    grants = caps["osd"].split(", ")
    assert grants == [
        "allow class-read pool=volumes object_prefix rbd_info",
        "allow r class-read pool=volumes object_prefix rbd_id.volume-a",
        "allow rwx pool=volumes object_prefix rbd_header.9f3c2",
        "allow rwx pool=volumes object_prefix rbd_object_map.9f3c2",
        "allow rw pool=volumes object_prefix rbd_data.9f3c2.",
        "allow r class-read pool=volumes object_prefix rbd_id.volume-b",
        "allow rwx pool=volumes object_prefix rbd_header.10ab",
        "allow rwx pool=volumes object_prefix rbd_object_map.10ab",
        "allow rw pool=volumes object_prefix rbd_data.10ab.",
    ]
    # nothing pool-wide, nothing on another image's objects
    assert all("object_prefix" in g for g in grants)
    assert "rbd_directory" not in caps["osd"] and "allow *" not in caps["osd"]


@pytest.mark.parametrize("pool, images", [
    ("volumes, allow *", {}),
    ("volumes", {"volume-a pool=other": "10ab"}),
    ("volumes", {"volume-a": "10ab, allow rwx"}),
    ("volumes", {"volume-a": "XYZ"}),
    ("volumes", {"volume-a": ""}),
])
def test_caps_refuse_what_could_widen_them(pool, images):
    with pytest.raises(ValueError):
        block.render_caps(pool, images)


def test_image_id_is_decoded_as_librbd_stores_it():
    assert block.decode_image_id(struct.pack("<I", 12) + b"1036ccdb1689") == "1036ccdb1689"
    for bad in (b"", b"\x01\x00", struct.pack("<I", 5) + b"12", struct.pack("<I", 2) + b"zz"):
        with pytest.raises(block.CephError):
            block.decode_image_id(bad)


def test_ceph_user_is_per_project():
    assert block.ceph_user(PROJECT) == f"client.teapot-{PROJECT}"
    for bad in ("", "a b", "x, allow *", "p" * 65):
        with pytest.raises(ValueError):
            block.ceph_user(bad)


# --- what a host is told ------------------------------------------------------------------------
CINDER_INFO = {  # the attachments API's shape: the data with driver_volume_type among it
    "driver_volume_type": "rbd", "name": f"volumes/volume-{VOLUME}", "hosts": ["127.0.0.1"],
    "ports": ["6789"], "cluster_name": "ceph", "auth_enabled": True, "auth_username": "cinder",
    "secret_type": "ceph", "secret_uuid": "3f2c1a0e-1111-2222-3333-444455556666",
    "keyring": "[client.cinder]\n\tkey = AQBCINDERSECRETKEY==\n", "volume_id": VOLUME,
    "discard": True, "access_mode": "rw", "encrypted": False, "attachment_id": "x",
}


@pytest.mark.parametrize("info", [CINDER_INFO,
                                  {"driver_volume_type": "rbd",
                                   "data": {k: v for k, v in CINDER_INFO.items()
                                            if k != "driver_volume_type"}}])
def test_connection_info_names_the_project_user_and_carries_no_key(info):
    out = block.safe_connection_info(info, block.ceph_user(PROJECT), REF)
    data = out["data"]
    assert out["driver_volume_type"] == "rbd"
    assert data["name"] == f"volumes/volume-{VOLUME}"
    assert data["auth_username"] == f"teapot-{PROJECT}"
    assert data["secret_ref"] == REF
    text = repr(out)
    for secret in ("AQBCINDERSECRETKEY", "keyring", "cinder", "secret_uuid", "3f2c1a0e"):
        assert secret not in text
    schema.check(schema.validator(schemas.CONNECTION_INFO), out)


def test_only_rbd_is_passed_on():
    with pytest.raises(block.BlockError) as err:
        block.safe_connection_info({"driver_volume_type": "iscsi", "target_iqn": "x"},
                                   block.ceph_user(PROJECT), REF)
    assert err.value.status == 409 and "'iscsi'" in str(err.value)


def test_connector_describes_the_host_stably():
    host = block.HostRef("3b0c2b8e-0000-4000-8000-000000000001", "host-3", NODE)
    first, again = block.connector(host), block.connector(host)
    assert first == again
    assert first["initiator"] == "iqn.2010-10.org.openstack.teapot:" + NODE.lower()
    assert (first["host"], first["platform"], first["os_type"], first["multipath"]) == (
        "host-3", "x86_64", "linux", False)
    other = block.connector(block.HostRef(host.uuid, host.name, VOLUME))
    assert other["initiator"] != first["initiator"]


# --- API ----------------------------------------------------------------------------------------
def test_create_body():
    v = schema.validator(schemas.CREATE)
    assert schema.check(v, {"volume_id": VOLUME, "host": "host-1"})
    for body, field in [({"host": "h"}, "volume_id"), ({"volume_id": VOLUME}, "host"),
                        ({"volume_id": "nope", "host": "h"}, "volume_id"),
                        ({"volume_id": VOLUME, "host": "h", "mode": "ro"}, "mode")]:
        with pytest.raises(ValidationError) as err:
            schema.check(v, body)
        assert field in str(err.value)


def test_operations_are_declared_with_their_rules():
    declared = {(op.method, op.path): op.rule for op in routes.OPERATIONS}
    base = "/v1/clusters/{cluster}/volume_attachments"
    assert declared == {
        ("GET", base): "teapot:volume_attachment:get_all",
        ("POST", base): "teapot:volume_attachment:create",
        ("GET", base + "/{attachment}"): "teapot:volume_attachment:get",
        ("DELETE", base + "/{attachment}"): "teapot:volume_attachment:delete",
    }


def test_readers_read_members_attach(enforcer):
    for rule in ("get_all", "get"):
        enforcer.authorize(f"teapot:volume_attachment:{rule}", _identity("reader"))
    for rule in ("create", "delete"):
        enforcer.authorize(f"teapot:volume_attachment:{rule}", _identity("member"))
        with pytest.raises(Forbidden) as err:
            enforcer.authorize(f"teapot:volume_attachment:{rule}", _identity("reader"))
        assert "member role in the cluster's project" in str(err.value)
    with pytest.raises(Forbidden):  # another project's cluster
        enforcer.authorize("teapot:volume_attachment:get", _identity("member"),
                           {"project_id": "p-2"})


# --- the key on the hosts -----------------------------------------------------------------------
def _cfg(kinds, **extra):
    return addons.StorageConfig(
        kinds=kinds, auth_url="https://keystone.example.test/v3", region="RegionOne",
        project_id=PROJECT, application_credential_id="appcred",
        application_credential_secret="app-secret", **extra)


def test_block_secret_carries_the_project_user_and_key():
    objs = addons.objects(_cfg((storage.BLOCK,), ceph_user=f"teapot-{PROJECT}",
                               ceph_key="AQBPROJECTKEY=="))
    secrets = [o for o in objs if o["kind"] == "Secret"]
    assert [s["metadata"]["name"] for s in secrets] == [addons.BLOCK_SECRET]
    assert secrets[0]["metadata"]["namespace"] == addons.BLOCK_SECRET_REF["namespace"]
    assert secrets[0]["stringData"] == {"userID": f"teapot-{PROJECT}",
                                        "userKey": "AQBPROJECTKEY=="}
    assert "AQBPROJECTKEY" not in repr(_cfg((storage.BLOCK,), ceph_key="AQBPROJECTKEY=="))


def test_no_ceph_no_block_secret():
    assert addons.objects(_cfg((storage.BLOCK,))) == []
    objs = addons.objects(_cfg((storage.FILE, storage.BLOCK)))
    assert addons.BLOCK_SECRET not in [o["metadata"]["name"] for o in objs]
