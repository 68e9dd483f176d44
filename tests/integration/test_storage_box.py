"""Storage in the box: `teapot up --storage` runs Ceph (mon, mgr, OSD on a sparse file, MDS, RADOS
Gateway), RabbitMQ, Manila (CephFS), Cinder (RBD) and Barbican, registered in Keystone's catalog.

Everything goes through the catalog with real tokens of the demo user (openstacksdk): a CephFS
share and its cephx access rule, an RBD volume (seen in Ceph itself), an S3 bucket with the user's
EC2 credentials (minio's client) and a Swift container with its token (the same RGW account), a
Barbican secret. The box stops without leaving a Ceph daemon, and a second start on the same state
directory (without --storage: it is remembered) still has the share and the volume.
"""

from __future__ import annotations

import io
import json
import stat
import uuid
from urllib.parse import urlsplit

import openstack
import pytest
import requests
import yaml

from .conftest import Box, _alive, wait_for

pytestmark = pytest.mark.integration

STORAGE_TYPES = ("sharev2", "share", "volumev3", "object-store", "s3", "key-manager")
CEPH = ("ceph-mon", "ceph-mgr", "ceph-osd", "ceph-mds", "rgw")
MANILA = {"X-OpenStack-Manila-API-Version": "2.65"}



@pytest.fixture(scope="module")
def sbox(storage_box):
    return storage_box


def _connect(box: Box, cloud: str):
    config = openstack.config.OpenStackConfig(config_files=[str(box.clouds)])
    return openstack.connection.Connection(config=config.get_one(cloud))


@pytest.fixture(scope="module")
def demo(sbox):
    return _connect(sbox, "teapot-demo")


def _wait_status(get, ok: str, timeout: float = 120.0):
    def settled():
        obj = get()
        return obj if obj.status in (ok, "error") else None

    obj = wait_for(settled, timeout=timeout, what=f"status {ok}")
    assert obj.status == ok, obj
    return obj


def test_every_storage_api_answers_through_the_catalog(sbox, demo):
    endpoints = {t: demo.session.get_endpoint(service_type=t, interface="public")
                 for t in STORAGE_TYPES}
    for service_type, url in endpoints.items():
        assert url and url.startswith("http://127.0.0.1:"), (service_type, url)
    token = demo.session.get_token()
    project = demo.current_project_id
    calls = {
        "sharev2": (endpoints["sharev2"] + "/shares", MANILA),
        "volumev3": (endpoints["volumev3"] + "/volumes", {}),
        "object-store": (endpoints["object-store"], {}),
        "key-manager": (endpoints["key-manager"] + "/v1/secrets", {}),
    }
    assert project in endpoints["volumev3"] and project in endpoints["object-store"]
    for service_type, (url, headers) in calls.items():
        answer = requests.get(url, headers={"X-Auth-Token": token, **headers}, timeout=30)
        assert answer.status_code in (200, 204), (service_type, answer.status_code, answer.text)
        # and without a token, each refuses
        refused = requests.get(url, headers=headers, timeout=30)
        assert refused.status_code in (401, 403), (service_type, refused.status_code)


def test_a_cephfs_share_becomes_available_with_a_cephx_rule(sbox, demo):
    sfs = demo.shared_file_system
    share = sfs.create_share(share_protocol="CEPHFS", size=1, name="box-share")
    share = _wait_status(lambda: sfs.get_share(share.id), "available")
    locations = demo.session.get(
        f"{demo.session.get_endpoint(service_type='sharev2')}/shares/{share.id}/export_locations",
        headers=MANILA).json()["export_locations"]
    mon = f"127.0.0.1:{yaml.safe_load((sbox.state_dir / 'box.yaml').read_text())['ports']['ceph-mon']}"
    assert locations and all(mon in loc["path"] for loc in locations), locations
    rule = sfs.create_access_rule(share.id, access_type="cephx", access_to="tenantone",
                                  access_level="rw")

    def active():
        r = sfs.get_access_rule(rule.id)
        return r if r.state in ("active", "error") else None

    rule = wait_for(active, timeout=60, what="access rule")
    assert rule.state == "active" and rule.access_key, rule


def _ceph(sbox):
    import rados

    cluster = rados.Rados(conffile=str(sbox.state_dir / "etc" / "ceph" / "ceph.conf"),
                          name="client.admin")
    cluster.connect(timeout=30)
    return cluster


def test_a_cinder_volume_becomes_available_as_an_rbd_image(sbox, demo):
    import rbd

    volume = demo.block_storage.create_volume(size=1, name="box-volume")
    volume = _wait_status(lambda: demo.block_storage.get_volume(volume.id), "available")
    assert volume.size == 1
    cluster = _ceph(sbox)
    try:
        with cluster.open_ioctx("volumes") as ioctx:
            assert f"volume-{volume.id}" in rbd.RBD().list(ioctx)
            with rbd.Image(ioctx, f"volume-{volume.id}", read_only=True) as image:
                assert image.size() == 2**30
    finally:
        cluster.shutdown()


def test_s3_with_ec2_credentials_and_swift_with_a_token_reach_one_account(sbox, demo):
    from minio import Minio
    from minio.error import S3Error

    access, secret = uuid.uuid4().hex, uuid.uuid4().hex
    demo.identity.create_credential(type="ec2", user_id=demo.current_user_id,
                                    project_id=demo.current_project_id,
                                    blob=json.dumps({"access": access, "secret": secret}))
    endpoint = urlsplit(demo.session.get_endpoint(service_type="s3", interface="public")).netloc
    s3 = Minio(endpoint, access_key=access, secret_key=secret, secure=False, region="us-east-1")
    s3.make_bucket("box-bucket")
    body = b"hello from s3"
    s3.put_object("box-bucket", "greeting", io.BytesIO(body), len(body))
    assert s3.get_object("box-bucket", "greeting").read() == body
    # The Swift API sees the same project's account, with a Keystone token.
    assert demo.object_store.download_object("greeting", container="box-bucket") == body
    demo.object_store.create_container(name="box-container")
    demo.object_store.upload_object(container="box-container", name="o", data=b"from swift")
    assert s3.get_object("box-container", "o").read() == b"from swift"
    # A wrong secret is refused.
    wrong = Minio(endpoint, access_key=access, secret_key=secret[::-1], secure=False,
                  region="us-east-1")
    with pytest.raises(S3Error) as refused:
        wrong.get_object("box-bucket", "greeting")
    assert refused.value.response.status == 403


def test_a_barbican_secret_round_trips(sbox, demo):
    payload = "box-secret-" + uuid.uuid4().hex
    created = demo.key_manager.create_secret(name="box", payload=payload,
                                             payload_content_type="text/plain")
    secret_id = created.secret_ref.rsplit("/", 1)[1]
    assert demo.key_manager.get_secret(secret_id).payload == payload
    # The key-encryption key is the box's own, never in its logs.
    kek = (sbox.state_dir / "etc" / "barbican" / "barbican.conf").read_text()
    kek = next(line.split("=", 1)[1].strip() for line in kek.splitlines()
               if line.startswith("kek"))
    for log in (sbox.state_dir / "logs").glob("*.log"):
        assert kek not in log.read_text(errors="replace"), log


def test_storage_files_are_owner_only_and_passwords_generated(sbox):
    for directory in ("ceph", "manila", "cinder", "barbican", "rabbitmq"):
        for path in (sbox.state_dir / "etc" / directory).iterdir():
            assert not stat.S_IMODE(path.stat().st_mode) & 0o077, path
    keyring = (sbox.state_dir / "etc" / "ceph" / "ceph.client.cinder.keyring").read_text()
    assert 'osd = "profile rbd pool=volumes"' in keyring
    rabbit = (sbox.state_dir / "etc" / "rabbitmq" / "rabbitmq.conf").read_text()
    assert f"default_pass = {sbox.secret('rabbitmq-password')}" in rabbit
    assert "guest" not in (sbox.state_dir / "etc" / "manila" / "manila.conf").read_text()
    assert yaml.safe_load((sbox.state_dir / "box.yaml").read_text())["storage"] is True


def test_the_box_stops_clean_and_a_restart_keeps_the_share(sbox, demo):
    shares = {s.name: s.id for s in demo.shared_file_system.shares()}
    volumes = {v.name: v.id for v in demo.block_storage.volumes()}
    assert "box-share" in shares and "box-volume" in volumes
    pids = sbox.child_pids()
    assert set(CEPH) <= set(pids), pids
    assert sbox.stop() == 0
    left = {name: pid for name, pid in pids.items() if _alive(pid)}
    assert not left, f"still running after the box stopped: {left}"
    assert not list((sbox.state_dir / "run").glob("*.pid"))

    # Started again without --storage: the box remembers it.
    sbox.args = ("--no-switch",)
    sbox.start(timeout=900)  # left running for the session's other storage tests
    again = _connect(sbox, "teapot-demo")
    share = again.shared_file_system.get_share(shares["box-share"])
    assert share.status == "available"
    assert again.block_storage.get_volume(volumes["box-volume"]).status == "available"
    assert set(CEPH) <= set(sbox.child_pids())
