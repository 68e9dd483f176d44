"""Block volumes on a cluster's bare-metal hosts through Teapot (no Nova) against the storage box's
real Cinder (RBD) and Ceph: Teapot's API makes the Cinder attachment with the host's Ironic node
as instance, answers connection info naming the project's own Ceph user (never a key), and that
user, with the key the cluster's hosts receive in their add-ons, opens exactly the volumes attached
to its project's hosts, until they are detached."""

from __future__ import annotations

import contextlib
import json
import re

import httpx
import openstack
import pytest
import rados
import rbd

from . import storage
from .conftest import wait_for

api = storage.api
CINDER = {"OpenStack-API-Version": "volume 3.44"}


def _cinder(sess):
    return openstack.connection.Connection(session=sess)


def _volume(sess, name: str):
    conn = _cinder(sess)
    vol = conn.block_storage.create_volume(size=1, name=name)
    return conn.block_storage.wait_for_status(vol, "available", failures=["error"], wait=180)


def _ceph_secret(box, cluster_uuid: str) -> dict:
    """The project's Ceph user and key as the cluster's hosts receive them (their add-ons)."""
    secrets = [o for o in storage.addons_of(box, cluster_uuid)
               if o["kind"] == "Secret" and o["metadata"]["name"] == "openstack-block-storage"]
    assert len(secrets) == 1, "the cluster's add-ons carry no block storage Secret"
    return secrets[0]["stringData"]


@contextlib.contextmanager
def _rados(box, user: str, key: str, info: dict | None = None):
    conf = {"key": key}
    if info:  # the monitors the connection info names
        data = info["data"]
        conf["mon_host"] = ",".join(f"[v2:{h}:{p}]"
                                    for h, p in zip(data["hosts"], data["ports"], strict=True))
    cluster = rados.Rados(conffile=str(box.state_dir / "etc" / "ceph" / "ceph.conf"),
                          name=f"client.{user}", conf=conf)
    cluster.connect(timeout=60)
    try:
        yield cluster
    finally:
        cluster.shutdown()


def _image(info: dict) -> tuple[str, str]:
    pool, _, image = info["data"]["name"].partition("/")
    return pool, image


def _open_rw(cluster, pool: str, image: str, payload: bytes) -> bytes:
    with cluster.open_ioctx(pool) as ioctx, rbd.Image(ioctx, image) as img:
        img.write(payload, 1 << 20)
        img.flush()
        return img.read(1 << 20, len(payload))


def _cinder_attachment(sess, attachment_id: str) -> httpx.Response:
    url = sess.get_endpoint(service_type="volumev3", interface="public")
    return httpx.get(f"{url}/attachments/{attachment_id}", timeout=30,
                     headers={**CINDER, "X-Auth-Token": sess.get_token()})


def _ironic_node(box, name: str) -> str:
    r = httpx.get(f"{box.url('ironic')}/v1/nodes/{name}", timeout=30,
                  headers={"X-OpenStack-Ironic-API-Version": "1.80"})
    assert r.status_code == 200, r.text
    return r.json()["uuid"]


def _secrets_of_the_box(box) -> list[str]:
    """Every Ceph key the box has (Cinder's, the admin's, Teapot's own)."""
    keys = []
    for path in (box.state_dir / "etc" / "ceph").glob("*.keyring"):
        keys += re.findall(r"key = (\S+)", path.read_text())
    assert keys
    return keys


@pytest.fixture(scope="module")
def block(storage_box, tenant_clusters):
    """Demo's volume attached to demo's host and store-other's to store-other's, through Teapot;
    both volumes deleted afterwards."""
    box, demo, other = storage_box, tenant_clusters["demo"], tenant_clusters["other"]
    made = {"demo": _volume(demo.user, "block-demo"), "other": _volume(other.user, "block-other")}
    out = {"volumes": made, "attached": {}, "responses": {}}
    try:
        for who, tc in (("demo", demo), ("other", other)):
            host = storage.hosts_of(box, tc.uuid)[0]
            r = api(box, tc.user, "POST", f"/v1/clusters/{tc.uuid}/volume_attachments",
                    json={"volume_id": made[who].id, "host": host})
            assert r.status_code == 201, r.text
            out["attached"][who] = r.json()
            out["responses"][who] = r.text
        yield out
    finally:
        for who, tc in (("demo", demo), ("other", other)):
            a = out["attached"].get(who)
            if a:
                api(box, tc.user, "DELETE",
                    f"/v1/clusters/{tc.uuid}/volume_attachments/{a['id']}")
            conn = _cinder(tc.user)
            with contextlib.suppress(Exception):
                vol = conn.block_storage.wait_for_status(made[who], "available", wait=60)
                conn.block_storage.delete_volume(vol)


def test_attachment_is_cinders_with_the_node_as_instance(storage_box, tenant_clusters, block):
    demo = tenant_clusters["demo"]
    a = block["attached"]["demo"]
    assert a["volume_id"] == block["volumes"]["demo"].id
    assert a["host"]["node_uuid"] == _ironic_node(storage_box, a["host"]["name"])
    r = _cinder_attachment(demo.user, a["id"])
    assert r.status_code == 200, r.text
    assert r.json()["attachment"]["instance"] == a["host"]["node_uuid"]
    vol = _cinder(demo.user).block_storage.get_volume(a["volume_id"])
    assert vol.status == "in-use"


def test_connection_info_names_the_project_user_and_no_key(storage_box, tenant_clusters, block):
    demo = tenant_clusters["demo"]
    info = block["attached"]["demo"]["connection_info"]
    assert info["driver_volume_type"] == "rbd"
    assert info["data"]["name"] == f"volumes/volume-{block['volumes']['demo'].id}"
    assert info["data"]["auth_username"] == f"teapot-{demo.project_id}"
    assert info["data"]["secret_ref"]["name"] == "openstack-block-storage"
    project_key = _ceph_secret(storage_box, demo.uuid)["userKey"]
    keys = [project_key, *_secrets_of_the_box(storage_box)]
    texts = list(block["responses"].values())
    texts += [p.read_text(errors="replace") for p in (storage_box.state_dir / "logs").glob(
        "teapot-*.log")]
    assert "keyring" not in block["responses"]["demo"].lower()
    for text in texts:
        for key in keys:
            assert key not in text
    assert '"auth_username": "cinder"' not in block["responses"]["demo"]


def test_project_user_opens_its_volume_and_no_other(storage_box, tenant_clusters, block):
    demo = tenant_clusters["demo"]
    secret = _ceph_secret(storage_box, demo.uuid)
    assert secret["userID"] == f"teapot-{demo.project_id}"
    info = block["attached"]["demo"]["connection_info"]
    others = block["attached"]["other"]["connection_info"]
    with _rados(storage_box, secret["userID"], secret["userKey"], info) as cluster:
        payload = b"teapot block volume " * 100
        assert _open_rw(cluster, *_image(info), payload) == payload
        pool, image = _image(others)
        with cluster.open_ioctx(pool) as ioctx, pytest.raises(rbd.PermissionError):
            rbd.Image(ioctx, image)
        # nor any raw object of the pool outside its own images
        with cluster.open_ioctx(pool) as ioctx, pytest.raises(rados.PermissionError):
            ioctx.read("rbd_directory", 16)


def test_teapots_ceph_user_manages_only_project_users(storage_box):
    keyring = (storage_box.state_dir / "etc" / "ceph" / "ceph.client.teapot.keyring").read_text()
    key = re.search(r"key = (\S+)", keyring).group(1)
    with _rados(storage_box, "teapot", key) as cluster:
        for cmd in ({"prefix": "auth get", "entity": "client.admin"},
                    {"prefix": "auth get-or-create", "entity": "client.someone"},
                    {"prefix": "auth ls"}):
            ret, _, _ = cluster.mon_command(json.dumps({**cmd, "format": "json"}), b"",
                                            timeout=30)
            assert ret != 0, cmd


def test_other_project_cannot_attach_demos_volume(storage_box, tenant_clusters, block):
    demo, other = tenant_clusters["demo"], tenant_clusters["other"]
    vol = block["volumes"]["demo"].id
    host = storage.hosts_of(storage_box, other.uuid)[0]
    r = api(storage_box, other.user, "POST", f"/v1/clusters/{other.uuid}/volume_attachments",
            json={"volume_id": vol, "host": host})
    assert r.status_code in (400, 404), r.text
    assert vol in r.json()["errors"][0]["detail"]
    # demo's cluster is not the other project's to see
    r = api(storage_box, other.user, "GET", f"/v1/clusters/{demo.uuid}/volume_attachments")
    assert r.status_code == 404, r.text


def test_bad_requests_name_what_is_wrong(storage_box, tenant_clusters, block):
    demo, other = tenant_clusters["demo"], tenant_clusters["other"]
    path = f"/v1/clusters/{demo.uuid}/volume_attachments"
    host = storage.hosts_of(storage_box, demo.uuid)[0]
    r = api(storage_box, demo.user, "POST", path,
            json={"volume_id": block["volumes"]["demo"].id, "host": storage.hosts_of(
                storage_box, other.uuid)[0]})
    assert r.status_code == 400 and "is not a host of cluster" in r.text, r.text
    missing = "00000000-0000-4000-8000-000000000000"
    r = api(storage_box, demo.user, "POST", path, json={"volume_id": missing, "host": host})
    assert r.status_code == 404 and missing in r.text, r.text
    r = api(storage_box, demo.user, "POST", path, json={"volume_id": "nope", "host": host})
    assert r.status_code == 400 and "volume_id" in r.text, r.text
    # an attached volume cannot be attached again (Cinder refuses; Teapot names the volume)
    r = api(storage_box, demo.user, "POST", path,
            json={"volume_id": block["volumes"]["demo"].id, "host": host})
    assert r.status_code == 409 and block["volumes"]["demo"].id in r.text, r.text
    assert "already attached to host" in r.text


def test_reader_lists_but_cannot_attach(storage_box, tenant_clusters, block):
    demo, viewer = tenant_clusters["demo"], tenant_clusters["people"]["viewer"]
    path = f"/v1/clusters/{demo.uuid}/volume_attachments"
    r = api(storage_box, viewer, "GET", path)
    assert r.status_code == 200, r.text
    assert [a["id"] for a in r.json()["volume_attachments"]] == [block["attached"]["demo"]["id"]]
    r = api(storage_box, viewer, "GET", f"{path}/{block['attached']['demo']['id']}")
    assert r.status_code == 200 and r.json()["volume_id"] == block["volumes"]["demo"].id
    r = api(storage_box, viewer, "POST", path, json={"volume_id": block["volumes"]["demo"].id,
                                                     "host": storage.hosts_of(storage_box, demo.uuid)[0]})
    assert r.status_code == 403, r.text
    r = api(storage_box, viewer, "DELETE", f"{path}/{block['attached']['demo']['id']}")
    assert r.status_code == 403, r.text


def test_ceph_failure_leaves_no_attachment(storage_box, tenant_clusters, block):
    """Cinder attaches, but the project's Ceph user cannot be given the image (its id object is
    out of the way, moved by Ceph's admin): Teapot answers an error naming the volume and
    removes the attachment; the project's other volume still opens."""
    demo = tenant_clusters["demo"]
    vol = _volume(demo.user, "block-broken")
    name, hidden = f"volume-{vol.id}", f"hidden-{vol.id}"
    admin = rados.Rados(conffile=str(storage_box.state_dir / "etc" / "ceph" / "ceph.conf"),
                        name="client.admin")
    admin.connect(timeout=60)
    try:
        with admin.open_ioctx("volumes") as ioctx:
            rbd.RBD().rename(ioctx, name, hidden)
            try:
                r = api(storage_box, demo.user, "POST",
                        f"/v1/clusters/{demo.uuid}/volume_attachments",
                        json={"volume_id": vol.id, "host": storage.hosts_of(storage_box, demo.uuid)[0]})
            finally:
                rbd.RBD().rename(ioctx, hidden, name)
    finally:
        admin.shutdown()
    assert r.status_code == 502, r.text
    detail = r.json()["errors"][0]["detail"]
    assert vol.id in detail and "the attachment was removed" in detail, detail
    conn = _cinder(demo.user)
    again = wait_for(lambda: (v := conn.block_storage.get_volume(vol.id)).status == "available"
                     and v, timeout=60, what="volume available again")
    assert not again.attachments
    listed = api(storage_box, demo.user, "GET", f"/v1/clusters/{demo.uuid}/volume_attachments")
    assert vol.id not in listed.text
    secret = _ceph_secret(storage_box, demo.uuid)
    info = block["attached"]["demo"]["connection_info"]
    with _rados(storage_box, secret["userID"], secret["userKey"], info) as cluster:
        assert _open_rw(cluster, *_image(info), b"intact") == b"intact"
    conn.block_storage.delete_volume(vol.id)


def test_cli_lists_and_detaches(storage_box, tenant_clusters, block):
    demo = tenant_clusters["demo"]
    a = block["attached"]["demo"]
    listed = json.loads(storage_box.teapot("volume", "list", demo.uuid, "-f", "json",
                                           cloud="teapot-demo").stdout)
    assert [(r["id"], r["volume_id"], r["node_uuid"]) for r in listed] == [
        (a["id"], a["volume_id"], a["host"]["node_uuid"])]
    secret = _ceph_secret(storage_box, demo.uuid)
    info = a["connection_info"]
    out = storage_box.teapot("volume", "detach", demo.uuid, a["id"], cloud="teapot-demo")
    assert a["id"] in out.stdout
    block["attached"].pop("demo")
    # gone in Cinder (its delete needed no Nova: Teapot's service token went with it)
    assert _cinder_attachment(demo.user, a["id"]).status_code == 404
    conn = _cinder(demo.user)
    vol = wait_for(lambda: (v := conn.block_storage.get_volume(a["volume_id"])).status
                   == "available" and v, timeout=60, what="volume available")
    assert not vol.attachments
    with _rados(storage_box, secret["userID"], secret["userKey"], info) as cluster:
        pool, image = _image(info)
        with cluster.open_ioctx(pool) as ioctx, pytest.raises(rbd.PermissionError):
            rbd.Image(ioctx, image)
    # the other project's attachment is still there and its user still opens it
    others = block["attached"]["other"]
    osecret = _ceph_secret(storage_box, tenant_clusters["other"].uuid)
    assert osecret["userID"] != secret["userID"]
    with _rados(storage_box, osecret["userID"], osecret["userKey"],
                others["connection_info"]) as cluster:
        assert _open_rw(cluster, *_image(others["connection_info"]), b"still") == b"still"
    # and the CLI attaches it again, showing the same project user
    shown = json.loads(storage_box.teapot("volume", "attach", demo.uuid, a["volume_id"], "--host",
                                          a["host"]["uuid"], "-f", "json",
                                          cloud="teapot-demo").stdout)
    assert json.loads(shown["connection_info"])["data"]["auth_username"] == secret["userID"]
    block["attached"]["demo"] = {**a, "id": shown["id"]}
