"""Teapot's COSI driver against the storage box's RADOS Gateway and Keystone: `teapot-cosi` runs
as a process on a unix socket, configured exactly as the cluster's add-ons configure it (the
Secret `openstack-object-storage` the demo cluster received), and is called through a real gRPC
client as the COSI sidecar calls it."""

from __future__ import annotations

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
from .storage import addons_of, app_session

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
    """Why the driver hands out the cluster's own EC2 credentials: Keystone applies the
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
    # Keystone refuses per-access credentials (above): the access carries the cluster's own
    assert granted.account_id == f"cluster-{creds.access_key_id}"
    assert creds.access_key_id == secret["AWS_ACCESS_KEY_ID"]
    s3 = _minio(s3_info.endpoint, creds.access_key_id, creds.access_secret_key, s3_info.region)
    body = b"written with a COSI access"
    s3.put_object(name, "greeting", io.BytesIO(body), len(body))
    assert s3.get_object(name, "greeting").read() == body
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

    # RevokeBucketAccess: the cluster's own credentials stay (documented no-op), again is OK
    revoke = pb.DriverRevokeBucketAccessRequest(
        account_id=granted.account_id, protocol=S3, authentication_type=KEY,
        buckets=[pb.DriverRevokeBucketAccessRequest.AccessedBucket(bucket_id=name)])
    provisioner.DriverRevokeBucketAccess(revoke, timeout=60)
    provisioner.DriverRevokeBucketAccess(revoke, timeout=60)
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

    # what the driver logged: the refusal it fell back on, and no secret
    text = Path(log).read_text()
    assert f"access {account}: Keystone refuses EC2 credentials" in text
    for value in (secret["AWS_SECRET_ACCESS_KEY"], secret["OS_APPLICATION_CREDENTIAL_SECRET"]):
        assert value not in text


def test_the_driver_deployment_rides_with_the_clusters_add_ons(storage_box, tenant_clusters):
    objects = addons_of(storage_box, tenant_clusters["other"].uuid)
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert {("Deployment", "teapot-cosi"), ("BucketClass", "teapot-s3"),
            ("BucketAccessClass", "teapot-s3"), ("Secret", addons.OBJECT_SECRET)} <= names
