"""Each cluster reaches its project's storage with its own credential, and nothing of another
project's: a CephFS share made as manila-csi makes it (with the cluster's application credential),
written and read through libcephfs as the share's cephx user and refused outside the share; an S3
bucket with the cluster's EC2 credentials; the key of an encrypted volume in Barbican. The other
project's cluster is refused each time, by the storage services themselves."""

from __future__ import annotations

import base64
import errno
import io
import secrets
import uuid
from urllib.parse import urlsplit

import pytest

from .conftest import Box, wait_for
from .storage import TenantCluster, api, hosts_of

pytestmark = pytest.mark.integration

MANILA = {"X-OpenStack-Manila-API-Version": "2.65"}
SHARE = {"service_type": "sharev2", "interface": "public"}


def _manila(sess, method: str, path: str, **kw):
    return sess.request(path, method, endpoint_filter=SHARE, headers=MANILA, raise_exc=False, **kw)


def _ok(response, status: int = 200) -> dict:
    assert response.status_code == status, (response.status_code, response.text[:300])
    return response.json() if response.content else {}


def _share_with_rule(box: Box, cluster: TenantCluster, name: str) -> tuple[str, str, str, str]:
    """(export path inside CephFS, cephx user, its key, share id) of a new share of the cluster's project,
    made with the cluster's own credential: share, wait, cephx rule, wait, export location."""
    sess = cluster.app(box)
    share = _ok(_manila(sess, "POST", "/shares", json={"share": {
        "share_proto": "CEPHFS", "size": 1, "name": name}}), 200)["share"]
    wait_for(lambda: _ok(_manila(sess, "GET", f"/shares/{share['id']}"))["share"]["status"]
             in ("available", "error"), timeout=120, what="share available")
    assert _ok(_manila(sess, "GET", f"/shares/{share['id']}"))["share"]["status"] == "available"
    user = f"{name}-{uuid.uuid4().hex[:8]}"
    _ok(_manila(sess, "POST", f"/shares/{share['id']}/action", json={"allow_access": {
        "access_type": "cephx", "access_to": user, "access_level": "rw"}}))

    def active():
        rules = _ok(_manila(sess, "GET", "/share-access-rules",
                            params={"share_id": share["id"]}))["access_list"]
        rule = next((r for r in rules if r["access_to"] == user), None)
        return rule if rule and rule["state"] in ("active", "error") else None

    rule = wait_for(active, timeout=60, what="cephx access rule")
    assert rule["state"] == "active" and rule["access_key"], rule
    locations = _ok(_manila(sess, "GET", f"/shares/{share['id']}/export_locations"))
    path = locations["export_locations"][0]["path"]  # "mon:port[,mon:port]:/volumes/..."
    return "/" + path.split(":/", 1)[1], user, rule["access_key"], share["id"]


def _mount(box: Box, user: str, key: str, root: str):
    import cephfs

    from teapot.deploy.services import ceph

    fs = cephfs.LibCephFS(conffile=str(box.state_dir / "etc" / "ceph" / "ceph.conf"),
                          auth_id=user)
    fs.conf_set("key", key)
    fs.conf_set("keyring", "/nonexistent")  # only the key given: never the box's admin keyring
    try:
        fs.mount(mount_root=root.encode(), filesystem_name=ceph.FS_NAME.encode())
    except cephfs.Error:
        fs.shutdown()
        raise
    return fs


def _refused(box: Box, user: str, key: str, root: str) -> int:
    import cephfs

    try:
        fs = _mount(box, user, key, root)
    except cephfs.Error as e:
        return e.errno if hasattr(e, "errno") else errno.EPERM
    try:  # some Ceph versions mount and refuse the first operation
        fs.open(b"/intruder", "w", 0o644)
    except cephfs.Error as e:
        return getattr(e, "errno", errno.EPERM)
    finally:
        fs.shutdown()
    return 0


def test_a_share_made_with_the_clusters_credential_is_its_projects_alone(storage_box,
                                                                          tenant_clusters):
    demo, other = tenant_clusters["demo"], tenant_clusters["other"]
    root, user, key, share_id = _share_with_rule(storage_box, demo, "demo-share")

    # The granted cephx user writes and reads inside the share.
    fs = _mount(storage_box, user, key, root)
    try:
        body = secrets.token_bytes(4096)
        fd = fs.open(b"/data", "w", 0o644)
        fs.write(fd, body, 0)
        fs.close(fd)
        fd = fs.open(b"/data", "r")
        assert fs.read(fd, 0, len(body)) == body
        fs.close(fd)
    finally:
        fs.shutdown()
    # ... and is refused at CephFS's root, outside the share.
    assert _refused(storage_box, user, key, "/") in (errno.EPERM, errno.EACCES)

    # The other project's cluster sees nothing of the share and cannot grant itself access.
    theirs = other.app(storage_box)
    assert _manila(theirs, "GET", f"/shares/{share_id}").status_code == 404
    assert share_id not in {s["id"] for s in _ok(_manila(theirs, "GET", "/shares"))["shares"]}
    grab = _manila(theirs, "POST", f"/shares/{share_id}/action", json={"allow_access": {
        "access_type": "cephx", "access_to": "thief", "access_level": "rw"}})
    assert grab.status_code == 404, grab.text
    # Its own share's cephx user does not open demo's share.
    _, their_user, their_key, _ = _share_with_rule(storage_box, other, "other-share")
    assert _refused(storage_box, their_user, their_key, root) in (errno.EPERM, errno.EACCES)

    # The credential reaches only what manila-csi calls: Manila's quotas are outside its rules.
    mine = demo.app(storage_box)
    outside = _manila(mine, "GET", f"/quota-sets/{demo.project_id}")
    assert outside.status_code == 401, outside.status_code


def test_a_bucket_made_with_the_clusters_ec2_credentials_is_refused_to_another_project(
        storage_box, tenant_clusters):
    from minio import Minio
    from minio.error import S3Error

    demo, other = tenant_clusters["demo"], tenant_clusters["other"]
    endpoint = urlsplit(demo.user.get_endpoint(service_type="s3", interface="public")).netloc

    def s3(cluster: TenantCluster) -> Minio:
        return Minio(endpoint, access_key=cluster.credentials["ec2_access"],
                     secret_key=cluster.credentials["ec2_secret"], secure=False,
                     region="us-east-1")

    bucket = f"tenant-{uuid.uuid4().hex[:12]}"
    body = secrets.token_bytes(1024)
    mine = s3(demo)
    mine.make_bucket(bucket)
    mine.put_object(bucket, "object", io.BytesIO(body), len(body))
    assert mine.get_object(bucket, "object").read() == body

    theirs = s3(other)
    assert bucket not in {b.name for b in theirs.list_buckets()}
    for attempt in (lambda: theirs.get_object(bucket, "object"),
                    lambda: list(theirs.list_objects(bucket)),
                    lambda: theirs.put_object(bucket, "x", io.BytesIO(b"x"), 1)):
        with pytest.raises(S3Error) as refused:
            attempt()
        assert refused.value.response.status in (403, 404), refused.value
    assert [o.object_name for o in mine.list_objects(bucket)] == ["object"]  # nothing written


def test_an_encrypted_volume_has_its_key_in_barbican_for_its_project_only(storage_box,
                                                                          tenant_clusters):
    demo, other = tenant_clusters["demo"], tenant_clusters["other"]
    volumes = {"service_type": "volumev3", "interface": "public"}
    made = demo.user.post("/volumes", endpoint_filter=volumes, raise_exc=False, json={"volume": {
        "size": 1, "name": "secret-volume", "volume_type": "luks"}})
    volume = _ok(made, 202)["volume"]

    def settled():
        v = demo.user.get(f"/volumes/{volume['id']}", endpoint_filter=volumes).json()["volume"]
        return v if v["status"] in ("available", "error") else None

    volume = wait_for(settled, timeout=120, what="encrypted volume available")
    assert volume["status"] == "available" and volume["encrypted"] is True, volume
    key_id = demo.user.get(f"/volumes/{volume['id']}/encryption", endpoint_filter=volumes,
                           headers={"OpenStack-API-Version": "volume 3.64"}).json()
    keys = {"service_type": "key-manager", "interface": "public"}
    secret_id = volume.get("encryption_key_id") or key_id.get("encryption_key_id")
    assert secret_id, (volume, key_id)

    # The key is the project's: its cluster's credential reads it (as a host opening LUKS would)...
    reader = demo.app(storage_box)
    payload = reader.get(f"/v1/secrets/{secret_id}/payload", endpoint_filter=keys,
                         headers={"Accept": "application/octet-stream"}, raise_exc=False)
    assert payload.status_code == 200, payload.text
    assert len(payload.content) == 256 // 8  # the type's key size
    # ... the other project's cluster and member do not.
    for sess in (other.app(storage_box), other.user):
        refused = sess.get(f"/v1/secrets/{secret_id}/payload", endpoint_filter=keys,
                           headers={"Accept": "application/octet-stream"}, raise_exc=False)
        assert refused.status_code in (403, 404), refused.status_code
    # Attached to the cluster's host through Teapot: the connection info says it is encrypted
    # (the host reads the key from Barbican itself), and carries no key.
    host = hosts_of(storage_box, demo.uuid)[0]
    base = f"/v1/clusters/{demo.uuid}/volume_attachments"
    attached = api(storage_box, demo.user, "POST", base,
                   json={"volume_id": volume["id"], "host": host})
    assert attached.status_code == 201, attached.text
    assert attached.json()["connection_info"]["data"]["encrypted"] is True
    for form in (payload.content.hex(), base64.b64encode(payload.content).decode()):
        assert form not in attached.text
    detached = api(storage_box, demo.user, "DELETE", f"{base}/{attached.json()['id']}")
    assert detached.status_code == 204, detached.text
    # The key appears in none of the box's logs (Teapot's included).
    for log in (storage_box.state_dir / "logs").glob("*.log"):
        text = log.read_text(errors="replace")
        assert payload.content.hex() not in text, log
        assert base64.b64encode(payload.content).decode() not in text, log
