"""Teapot's COSI driver against the storage box's RADOS Gateway, Keystone and Teapot's API:
`teapot-cosi` runs as a process on a unix socket, configured exactly as the cluster's add-ons
configure it (the Secret `openstack-object-storage` the demo cluster received), and is called
through a real gRPC client as the COSI sidecar calls it. Access credentials come from Teapot's
bucket credentials API, which the cluster's own application credential reaches for its own
cluster only."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import grpc
import httpx
import pytest

from teapot.cosi import NAME
from teapot.cosi import cosi_pb2 as pb
from teapot.cosi import cosi_pb2_grpc as pb_grpc
from teapot.cosi.driver import Config, Driver
from teapot.drivers.bootstrap import storage as addons

from .conftest import VENV_BIN, wait_for
from .storage import addons_of, api, app_session

pytestmark = pytest.mark.integration

S3 = pb.ObjectProtocol(type=pb.ObjectProtocol.S3)
KEY = pb.AuthenticationType(type=pb.AuthenticationType.KEY)


def _secret_of(box, cluster) -> dict[str, str]:
    """The object storage Secret of the cluster's add-ons, checked to be what the driver's
    Deployment reads."""
    objects = addons_of(box, cluster.uuid)
    by = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    pod = by[("Deployment", "teapot-cosi")]["spec"]["template"]["spec"]
    driver = next(c for c in pod["containers"] if c.get("command") == ["teapot-cosi"])
    (source,) = driver["envFrom"]
    return by[("Secret", source["secretRef"]["name"])]["stringData"]


@pytest.fixture(scope="module")
def cosi(storage_box, tenant_clusters, tmp_path_factory):
    """(Provisioner and Identity stubs, the driver's log file, the Secret it runs with) of a
    `teapot-cosi` process serving the demo cluster; stopped by PID afterwards."""
    secret = _secret_of(storage_box, tenant_clusters["demo"])
    run = tmp_path_factory.mktemp("cosi")
    endpoint = f"unix://{run}/cosi.sock"
    log = run / "driver.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "AWS_", "S3_"))}
    env.update(secret)
    env["COSI_ENDPOINT"] = endpoint
    with log.open("w") as out:
        proc = subprocess.Popen([str(VENV_BIN / "teapot-cosi"), "--log-level", "DEBUG"],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    channel = None
    try:
        wait_for(lambda: (run / "cosi.sock").exists() or proc.poll() is not None, timeout=60,
                 what="the driver's socket")
        assert proc.poll() is None, log.read_text()
        channel = grpc.insecure_channel(endpoint)
        yield (pb_grpc.ProvisionerStub(channel), pb_grpc.IdentityStub(channel), log, secret)
    finally:
        if channel is not None:
            channel.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _minio(endpoint: str, access: str, secret: str, region: str = "us-east-1"):
    from minio import Minio

    url = urlsplit(endpoint)
    return Minio(url.netloc, access_key=access, secret_key=secret,
                 secure=url.scheme == "https", region=region)


def _error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=60)
    return caught.value


def test_keystone_refuses_ec2_credentials_to_application_credentials(storage_box,
                                                                     tenant_clusters):
    """Why Teapot makes the driver's access credentials: Keystone applies the
    cluster credential's access rules to its own API (no `identity` rule: 401), and refuses the
    EC2 credential API to every application credential, even one whose rules allow the call
    (403: delegated tokens may not touch credentials)."""
    box, demo = storage_box, tenant_clusters["demo"]
    ks = box.url("keystone") + "/v3"
    cluster = demo.app(box)
    user = cluster.get_user_id()
    made = cluster.post(f"{ks}/users/{user}/credentials/OS-EC2", raise_exc=False,
                        json={"tenant_id": demo.project_id})
    assert made.status_code == 401, made.text
    person, me = demo.user, demo.user.get_user_id()
    rules = [{"service": "identity", "method": "POST", "path": "/v3/users/*/credentials/OS-EC2"},
             {"service": "identity", "method": "DELETE",
              "path": "/v3/users/*/credentials/OS-EC2/*"}]
    app = person.post(f"{ks}/users/{me}/application_credentials", json={
        "application_credential": {"name": f"cosi-probe-{uuid.uuid4().hex[:8]}",
                                   "access_rules": rules}}).json()["application_credential"]
    try:
        ruled = app_session(box, app["id"], app["secret"])
        made = ruled.post(f"{ks}/users/{me}/credentials/OS-EC2", raise_exc=False,
                          json={"tenant_id": demo.project_id})
        assert made.status_code == 403, made.text
        assert "Delegated tokens cannot access credentials" in made.text
    finally:
        person.delete(f"{ks}/users/{me}/application_credentials/{app['id']}")


def test_buckets_and_access_through_the_driver(storage_box, tenant_clusters, cosi):
    from minio.error import S3Error

    provisioner, identity, log, secret = cosi
    box, demo, other = storage_box, tenant_clusters["demo"], tenant_clusters["other"]
    info = identity.DriverGetInfo(pb.DriverGetInfoRequest(), timeout=30)
    assert info.name == NAME and [p.type for p in info.supported_protocols] == [S3.type]

    # CreateBucket, twice: the second finds the project's own bucket
    name = f"bc-{uuid.uuid4().hex[:12]}"
    request = pb.DriverCreateBucketRequest(name=name, protocols=[S3])
    first = provisioner.DriverCreateBucket(request, timeout=60)
    again = provisioner.DriverCreateBucket(request, timeout=60)
    assert first.bucket_id == again.bucket_id == name
    s3_info = first.protocols.s3
    assert s3_info.endpoint == secret["S3_ENDPOINT"] and s3_info.bucket_id == name
    assert s3_info.addressing_style.style == pb.S3AddressingStyle.PATH
    assert not first.protocols.HasField("azure") and not first.protocols.HasField("gcs")
    found = provisioner.DriverGetExistingBucket(
        pb.DriverGetExistingBucketRequest(existing_bucket_id=name), timeout=60)
    assert found.bucket_id == name
    missing = _error(provisioner.DriverGetExistingBucket, pb.DriverGetExistingBucketRequest(
        existing_bucket_id=f"bc-missing-{uuid.uuid4().hex[:8]}"))
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    assert missing.details().startswith("existing_bucket_id: ")

    # GrantBucketAccess: S3 credentials that put and get an object in the bucket
    account = f"ba-{uuid.uuid4().hex[:12]}"
    grant = pb.DriverGrantBucketAccessRequest(
        account_name=account, protocol=S3, authentication_type=KEY,
        buckets=[pb.DriverGrantBucketAccessRequest.AccessedBucket(bucket_id=name)])
    granted = provisioner.DriverGrantBucketAccess(grant, timeout=60)
    creds = granted.credentials.s3
    assert [b.bucket_id for b in granted.buckets] == [name]
    assert granted.buckets[0].bucket_info.s3.endpoint == s3_info.endpoint
    # a credential of the access's own, made by Teapot for the cluster: not the cluster's keys
    assert secret["TEAPOT_CLUSTER_UUID"] == demo.uuid
    assert granted.account_id == f"ec2-{creds.access_key_id}"
    assert creds.access_key_id != secret["AWS_ACCESS_KEY_ID"]
    assert creds.access_secret_key != secret["AWS_SECRET_ACCESS_KEY"]
    listed = api(box, demo.user, "GET", f"/v1/clusters/{demo.uuid}/bucket_credentials")
    assert listed.status_code == 200, listed.text
    held = {c["access"]: c for c in listed.json()["bucket_credentials"]}
    assert held[creds.access_key_id]["name"] == account
    assert creds.access_secret_key not in listed.text
    s3 = _minio(s3_info.endpoint, creds.access_key_id, creds.access_secret_key, s3_info.region)
    body = b"written with a COSI access"
    s3.put_object(name, "greeting", io.BytesIO(body), len(body))
    assert s3.get_object(name, "greeting").read() == body
    # a second access is another credential
    second = provisioner.DriverGrantBucketAccess(pb.DriverGrantBucketAccessRequest(
        account_name=f"{account}-2", protocol=S3, authentication_type=KEY,
        buckets=[pb.DriverGrantBucketAccessRequest.AccessedBucket(bucket_id=name)]), timeout=60)
    assert second.credentials.s3.access_key_id not in (creds.access_key_id,
                                                        secret["AWS_ACCESS_KEY_ID"])
    nowhere = _error(provisioner.DriverGrantBucketAccess, pb.DriverGrantBucketAccessRequest(
        account_name=account, protocol=S3, authentication_type=KEY,
        buckets=[pb.DriverGrantBucketAccessRequest.AccessedBucket(bucket_id="bc-nowhere-0")]))
    assert nowhere.code() == grpc.StatusCode.NOT_FOUND
    assert nowhere.details().startswith("buckets[0].bucket_id: ")

    # The other project's cluster cannot reach the bucket: by S3 its name is in the other
    # project's own namespace (RGW's implicit tenants), and by Swift the demo account refuses it.
    theirs = other.credentials
    s3_other = _minio(s3_info.endpoint, theirs["ec2_access"], theirs["ec2_secret"])
    with pytest.raises(S3Error) as refused:
        list(s3_other.list_objects(name))
    assert refused.value.code == "NoSuchBucket"
    with pytest.raises(S3Error) as refused:
        s3_other.get_object(name, "greeting")
    assert refused.value.code == "NoSuchBucket"
    swift = other.app(box)
    url = swift.get_endpoint(service_type="object-store", interface="public")
    demo_url = url.replace(f"AUTH_{other.project_id}", f"AUTH_{demo.project_id}")
    assert demo_url != url
    answer = httpx.get(f"{demo_url}/{name}", headers={"X-Auth-Token": swift.get_token()},
                       timeout=30)
    assert answer.status_code in (401, 403), answer.text
    # The same name in the other project is a bucket of its own (RGW namespaces buckets per
    # project): the other project's driver creates it, and sees none of demo's objects.
    other_driver = Driver(Config(
        s3_endpoint=s3_info.endpoint, access_key=theirs["ec2_access"],
        secret_key=theirs["ec2_secret"]))
    other_driver.create_bucket(name)
    try:
        assert [o.object_name for o in s3_other.list_objects(name)] == []
        assert [o.object_name for o in s3.list_objects(name)] == ["greeting"]
    finally:
        other_driver.delete_bucket(name)

    # RevokeBucketAccess deletes the access's credential in Keystone; revoking again is fine.
    # RGW keeps a key it validated in its Keystone secret cache until the Keystone token it got
    # for it expires (deploy/services/rgw.py), so the key just used is not checked against RGW
    # here; the second access's key, never used, is refused as soon as it is revoked.
    revoke = pb.DriverRevokeBucketAccessRequest(
        account_id=granted.account_id, protocol=S3, authentication_type=KEY,
        buckets=[pb.DriverRevokeBucketAccessRequest.AccessedBucket(bucket_id=name)])
    provisioner.DriverRevokeBucketAccess(revoke, timeout=60)
    provisioner.DriverRevokeBucketAccess(revoke, timeout=60)
    admin, ks = tenant_clusters["people"]["admin"], box.url("keystone") + "/v3"
    for revoked in (creds.access_key_id, second.credentials.s3.access_key_id):
        cred_id = hashlib.sha256(revoked.encode()).hexdigest()
        if revoked == second.credentials.s3.access_key_id:
            held = admin.get(f"{ks}/credentials/{cred_id}", raise_exc=False)
            assert held.status_code == 200, held.text  # there until its access is revoked
            provisioner.DriverRevokeBucketAccess(pb.DriverRevokeBucketAccessRequest(
                account_id=second.account_id), timeout=60)
        assert admin.get(f"{ks}/credentials/{cred_id}", raise_exc=False).status_code == 404
    listed = api(box, demo.user, "GET", f"/v1/clusters/{demo.uuid}/bucket_credentials")
    assert not {creds.access_key_id, second.credentials.s3.access_key_id} & {
        c["access"] for c in listed.json()["bucket_credentials"]}
    unused = _minio(s3_info.endpoint, second.credentials.s3.access_key_id,
                    second.credentials.s3.access_secret_key, s3_info.region)

    def refused_now() -> str | None:
        try:
            unused.get_object(name, "greeting").read()
        except S3Error as e:
            return e.code if e.code in ("InvalidAccessKeyId", "AccessDenied") else None
        return None

    wait_for(refused_now, timeout=60, what="the revoked credential refused by RGW")
    # the cluster's own credentials are untouched
    s3 = _minio(s3_info.endpoint, secret["AWS_ACCESS_KEY_ID"], secret["AWS_SECRET_ACCESS_KEY"],
                s3_info.region)
    assert s3.get_object(name, "greeting").read() == body

    # DeleteBucket: never with objects in it; then gone, and gone again is fine
    delete = pb.DriverDeleteBucketRequest(bucket_id=name)
    full = _error(provisioner.DriverDeleteBucket, delete)
    assert full.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert full.details().startswith("bucket_id: ") and "not empty" in full.details()
    assert s3.get_object(name, "greeting").read() == body
    s3.remove_object(name, "greeting")
    provisioner.DriverDeleteBucket(delete, timeout=60)
    assert not s3.bucket_exists(name)
    provisioner.DriverDeleteBucket(delete, timeout=60)
    gone = _error(provisioner.DriverGetExistingBucket,
                  pb.DriverGetExistingBucketRequest(existing_bucket_id=name))
    assert gone.code() == grpc.StatusCode.NOT_FOUND

    # what the driver logged: the credentials it was given and revoked, and no secret
    text = Path(log).read_text()
    assert f"access {account}: bucket credentials {creds.access_key_id}" in text
    assert f"access ec2-{creds.access_key_id} revoked" in text
    for value in (secret["AWS_SECRET_ACCESS_KEY"], secret["OS_APPLICATION_CREDENTIAL_SECRET"],
                  creds.access_secret_key, second.credentials.s3.access_secret_key):
        assert value not in text


def test_bucket_credentials_belong_to_their_cluster(storage_box, tenant_clusters):
    """Who reaches a cluster's bucket credentials in Teapot's API: its project's members make
    and delete them, readers list them, another project sees no such cluster (404); a cluster's
    own credential reaches its own cluster's bucket credentials and nothing else of Teapot (401,
    its access rules as Teapot enforces them)."""
    box, demo, other = storage_box, tenant_clusters["demo"], tenant_clusters["other"]
    people = tenant_clusters["people"]
    path = f"/v1/clusters/{demo.uuid}/bucket_credentials"
    made = api(box, demo.user, "POST", path, json={"name": "made-by-a-member"})
    assert made.status_code == 201, made.text
    access = made.json()["access"]
    try:
        # the reader lists, without secrets, and cannot make or delete
        listed = api(box, people["viewer"], "GET", path)
        assert listed.status_code == 200, listed.text
        assert access in {c["access"] for c in listed.json()["bucket_credentials"]}
        assert made.json()["secret"] not in listed.text
        assert api(box, people["viewer"], "POST", path).status_code == 403
        assert api(box, people["viewer"], "DELETE", f"{path}/{access}").status_code == 403
        # the other project: no such cluster
        for method, where in [("GET", path), ("POST", path), ("DELETE", f"{path}/{access}")]:
            answer = api(box, other.user, method, where)
            assert answer.status_code == 404, (method, answer.text)
        # the other project's cluster credential: its rules name its own cluster only
        theirs = other.app(box)
        for method, where in [("GET", path), ("POST", path), ("DELETE", f"{path}/{access}")]:
            answer = api(box, theirs, method, where)
            assert answer.status_code == 401, (method, answer.text)
        own = api(box, theirs, "GET", f"/v1/clusters/{other.uuid}/bucket_credentials")
        assert own.status_code == 200, own.text
        # demo's cluster credential: its own bucket credentials, nothing else of Teapot
        cluster = demo.app(box)
        mine = api(box, cluster, "GET", path)
        assert mine.status_code == 200 and access in mine.text, mine.text
        for method, where in [
                ("GET", f"/v1/clusters/{other.uuid}/bucket_credentials"),
                ("POST", f"/v1/clusters/{other.uuid}/bucket_credentials"),
                ("GET", "/v1/clusters"), ("GET", f"/v1/clusters/{demo.uuid}"),
                ("DELETE", f"/v1/clusters/{demo.uuid}"), ("PATCH", f"/v1/clusters/{demo.uuid}"),
                ("GET", f"/v1/clusters/{demo.uuid}/volume_attachments"),
                ("POST", f"/v1/clusters/{demo.uuid}/actions/rotate_credentials"),
                ("GET", "/v1/clustertemplates"), ("GET", f"/v1/certificates/{demo.uuid}"),
                ("GET", "/v1/networks"), ("GET", "/v1/hosts"), ("GET", "/v1/stats")]:
            answer = api(box, cluster, method, where, json={})
            assert answer.status_code == 401, (method, where, answer.text)
        # what the people see of the cluster's own EC2 credentials: not a bucket credential
        assert demo.credentials["ec2_access"] not in {
            c["access"] for c in api(box, demo.user, "GET", path).json()["bucket_credentials"]}
        assert api(box, demo.user, "DELETE",
                   f"{path}/{demo.credentials['ec2_access']}").status_code == 404
    finally:
        gone = api(box, demo.user, "DELETE", f"{path}/{access}")
        assert gone.status_code in (204, 404), gone.text
    assert access not in {c["access"] for c in api(box, demo.user, "GET", path).json()[
        "bucket_credentials"]}


def test_the_driver_deployment_rides_with_the_clusters_add_ons(storage_box, tenant_clusters):
    objects = addons_of(storage_box, tenant_clusters["other"].uuid)
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert {("Deployment", "teapot-cosi"), ("BucketClass", "teapot-s3"),
            ("BucketAccessClass", "teapot-s3"), ("Secret", addons.OBJECT_SECRET)} <= names
