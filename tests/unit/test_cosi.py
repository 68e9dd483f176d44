"""Teapot's COSI driver without an object store: its argument checks answered through a real gRPC
server and client on a unix socket, its configuration, the `teapot-cosi` command's start and
SIGTERM, and the add-on objects that run it in a cluster."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import grpc
import jsonschema
import kubernetes_validate
import pytest

from teapot.cosi import NAME
from teapot.cosi import cosi_pb2 as pb
from teapot.cosi import cosi_pb2_grpc as pb_grpc
from teapot.cosi.driver import Config, Driver, server
from teapot.drivers.bootstrap import cosi as cosi_addons
from teapot.drivers.bootstrap import storage as addons
from teapot.resources import storage
from tests import addon_schemas

from .test_storage_addons import EC2_A, SECRET_A, _cfg

S3, AZURE, GCS = pb.ObjectProtocol.S3, pb.ObjectProtocol.AZURE, pb.ObjectProtocol.GCS
KEY, SA = pb.AuthenticationType.KEY, pb.AuthenticationType.SERVICE_ACCOUNT
INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(scope="module")
def stubs(tmp_path_factory):
    """(Identity, Provisioner) clients of a driver with no object store behind it."""
    endpoint = f"unix://{tmp_path_factory.mktemp('cosi')}/cosi.sock"
    srv = server(None, endpoint, workers=2)
    channel = grpc.insecure_channel(endpoint)
    try:
        yield pb_grpc.IdentityStub(channel), pb_grpc.ProvisionerStub(channel)
    finally:
        channel.close()
        srv.stop(grace=None).wait()


def _refused(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=10)
    return caught.value


def _grant(**changes) -> pb.DriverGrantBucketAccessRequest:
    fields = {"account_name": "ba-1234", "protocol": pb.ObjectProtocol(type=S3),
              "authentication_type": pb.AuthenticationType(type=KEY),
              "buckets": [pb.DriverGrantBucketAccessRequest.AccessedBucket(bucket_id="bc-1")]}
    fields.update(changes)
    return pb.DriverGrantBucketAccessRequest(**{k: v for k, v in fields.items() if v is not None})


def test_get_info_names_the_driver_and_s3(stubs):
    identity, _ = stubs
    info = identity.DriverGetInfo(pb.DriverGetInfoRequest(), timeout=10)
    assert info.name == NAME == "cosi.teapot.openstack.org"
    assert [p.type for p in info.supported_protocols] == [S3]


@pytest.mark.parametrize(("request_", "field"), [
    (pb.DriverCreateBucketRequest(), "name"),
    (pb.DriverCreateBucketRequest(name="Upper-Case"), "name"),
    (pb.DriverCreateBucketRequest(name="ab"), "name"),
    (pb.DriverCreateBucketRequest(name="a" * 64), "name"),
    (pb.DriverCreateBucketRequest(name="a..b"), "name"),
    (pb.DriverCreateBucketRequest(name="192.168.1.10"), "name"),
    (pb.DriverCreateBucketRequest(name="bucket-a", protocols=[
        pb.ObjectProtocol(type=S3), pb.ObjectProtocol(type=AZURE)]), "protocols[1]"),
    (pb.DriverCreateBucketRequest(name="bucket-a", protocols=[pb.ObjectProtocol(type=GCS)]),
     "protocols[0]"),
    (pb.DriverCreateBucketRequest(name="bucket-a", parameters={"quota": "1"}), "parameters.quota"),
])
def test_create_bucket_refuses_bad_arguments_naming_the_field(stubs, request_, field):
    error = _refused(stubs[1].DriverCreateBucket, request_)
    assert error.code() == INVALID, error.details()
    assert error.details().startswith(f"{field}: ")


def test_unsupported_protocols_are_named(stubs):
    error = _refused(stubs[1].DriverCreateBucket, pb.DriverCreateBucketRequest(
        name="bucket-a", protocols=[pb.ObjectProtocol(type=AZURE)]))
    assert "AZURE is not supported" in error.details() and "S3 only" in error.details()
    error = _refused(stubs[1].DriverGetExistingBucket, pb.DriverGetExistingBucketRequest(
        existing_bucket_id="bucket-a", protocols=[pb.ObjectProtocol(type=GCS)]))
    assert error.code() == INVALID and error.details().startswith("protocols[0]: protocol GCS")


@pytest.mark.parametrize(("request_", "field"), [
    (_grant(account_name=""), "account_name"),
    (_grant(account_name="Not_A_Name"), "account_name"),
    (_grant(protocol=None), "protocol"),
    (_grant(protocol=pb.ObjectProtocol(type=AZURE)), "protocol"),
    (_grant(authentication_type=None), "authentication_type"),
    (_grant(authentication_type=pb.AuthenticationType(type=SA), service_account_name="app"),
     "authentication_type"),
    (_grant(buckets=[]), "buckets"),
    (_grant(buckets=[pb.DriverGrantBucketAccessRequest.AccessedBucket(bucket_id="bc-1"),
                     pb.DriverGrantBucketAccessRequest.AccessedBucket(bucket_id="B_2")]),
     "buckets[1].bucket_id"),
    (_grant(parameters={"mode": "ro"}), "parameters.mode"),
])
def test_grant_refuses_bad_arguments_naming_the_field(stubs, request_, field):
    error = _refused(stubs[1].DriverGrantBucketAccess, request_)
    assert error.code() == INVALID, error.details()
    assert error.details().startswith(f"{field}: ")


def test_service_account_authentication_is_refused_with_the_reason(stubs):
    error = _refused(stubs[1].DriverGrantBucketAccess, _grant(
        authentication_type=pb.AuthenticationType(type=SA), service_account_name="app"))
    assert "SERVICE_ACCOUNT is not supported" in error.details()


@pytest.mark.parametrize(("account_id", "why"), [
    ("", "is required"), ("someone-else", "not an access this driver granted"),
    ("ec2-a/b", "not an access this driver granted")])
def test_revoke_and_delete_refuse_bad_ids(stubs, account_id, why):
    error = _refused(stubs[1].DriverRevokeBucketAccess, pb.DriverRevokeBucketAccessRequest(
        account_id=account_id, protocol=pb.ObjectProtocol(type=S3),
        authentication_type=pb.AuthenticationType(type=KEY)))
    assert error.code() == INVALID and error.details().startswith("account_id: ")
    assert why in error.details()
    error = _refused(stubs[1].DriverDeleteBucket, pb.DriverDeleteBucketRequest(bucket_id=""))
    assert error.code() == INVALID and error.details() == "bucket_id: is required"


def test_well_formed_requests_reach_the_backend(stubs):
    """Past the checks, a driver without an object store answers UNAVAILABLE: the checks above
    refused for their own reasons, not for the missing store."""
    _, provisioner = stubs
    for call, request in (
            (provisioner.DriverCreateBucket, pb.DriverCreateBucketRequest(
                name="bc-0c1d", protocols=[pb.ObjectProtocol(type=S3)])),
            (provisioner.DriverCreateBucket, pb.DriverCreateBucketRequest(name="no.protocols")),
            (provisioner.DriverGrantBucketAccess, _grant()),
            (provisioner.DriverRevokeBucketAccess, pb.DriverRevokeBucketAccessRequest(
                account_id="ec2-0123abcd")),
            (provisioner.DriverDeleteBucket, pb.DriverDeleteBucketRequest(bucket_id="bc-0c1d"))):
        assert _refused(call, request).code() == grpc.StatusCode.UNAVAILABLE


# -- configuration --------------------------------------------------------------------------------

ENV = {"S3_ENDPOINT": "http://127.0.0.1:7480", "AWS_ACCESS_KEY_ID": "access",
       "AWS_SECRET_ACCESS_KEY": "ec2-secret-value"}


def test_config_from_the_environment_and_files(tmp_path):
    cfg = Config.load(ENV)
    assert (cfg.s3_endpoint, cfg.access_key, cfg.s3_region) == (
        "http://127.0.0.1:7480", "access", "us-east-1")
    assert cfg.auth_url is None and "ec2-secret-value" not in repr(cfg)
    (tmp_path / "OS_AUTH_URL").write_text("http://127.0.0.1:5000/v3\n")
    (tmp_path / "OS_APPLICATION_CREDENTIAL_ID").write_text("appcred")
    (tmp_path / "OS_APPLICATION_CREDENTIAL_SECRET").write_text("app-secret-value")
    (tmp_path / "AWS_ACCESS_KEY_ID").write_text("from-a-file")
    cfg = Config.load(ENV, config_dir=str(tmp_path))
    assert cfg.access_key == "access"  # the variable wins over the file
    assert (cfg.auth_url, cfg.application_credential_id) == ("http://127.0.0.1:5000/v3",
                                                             "appcred")
    assert "app-secret-value" not in repr(cfg)
    driver = Driver(cfg)
    assert driver.keystone is not None and driver.keystone.auth_url.endswith("/v3")


@pytest.mark.parametrize(("env", "message"), [
    ({}, "S3_ENDPOINT is required"),
    ({**ENV, "S3_ENDPOINT": "ftp://x"}, "S3_ENDPOINT must be an http(s) URL"),
    ({**ENV, "S3_ENDPOINT": "http://x/path"}, "S3_ENDPOINT must be an http(s) URL"),
    ({**ENV, "AWS_SECRET_ACCESS_KEY": ""}, "AWS_SECRET_ACCESS_KEY are required"),
    ({**ENV, "OS_AUTH_URL": "http://127.0.0.1:5000/v3"}, "go together"),
])
def test_bad_configuration_is_named(env, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Config.load(env)


def test_the_command_serves_and_stops_on_sigterm(tmp_path):
    socket = tmp_path / "cosi.sock"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("OS_", "AWS_"))}, **ENV}
    proc = subprocess.Popen([sys.executable, "-m", "teapot.cosi.driver",
                             "--endpoint", f"unix://{socket}"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while not socket.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert socket.exists(), proc.stdout.read() if proc.poll() is not None else "no socket"
        with grpc.insecure_channel(f"unix://{socket}") as channel:
            info = pb_grpc.IdentityStub(channel).DriverGetInfo(pb.DriverGetInfoRequest(),
                                                               timeout=10)
        assert info.name == NAME
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        out = proc.stdout.read()
        assert "serving on" in out and "stopping" in out
        assert "ec2-secret-value" not in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_command_refuses_a_public_endpoint_and_a_missing_config():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "AWS_", "S3_"))}
    run = subprocess.run([sys.executable, "-m", "teapot.cosi.driver", "--endpoint",
                          "0.0.0.0:9000"], env={**env, **ENV}, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 2 and "--endpoint must be" in run.stderr
    run = subprocess.run([sys.executable, "-m", "teapot.cosi.driver"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "S3_ENDPOINT is required" in run.stderr


# -- the add-on objects ---------------------------------------------------------------------------

def _cosi_objects() -> list[dict]:
    objects = addons.objects(_cfg((storage.OBJECT,)))
    first = next(i for i, o in enumerate(objects) if o["metadata"]["name"] == "teapot-cosi")
    return objects[first:]


@pytest.mark.parametrize("version", ["1.31", kubernetes_validate.latest_version()])
def test_cosi_objects_validate_strictly(version):
    objects = _cosi_objects()
    kinds = [o["kind"] for o in objects]
    assert kinds == ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment",
                     "BucketClass", "BucketAccessClass"]
    for obj in objects:
        addon_schemas.validate(obj, version)


def test_the_class_schema_would_catch_a_mistake():
    bad = next(o for o in _cosi_objects() if o["kind"] == "BucketAccessClass")
    bad["spec"]["authenticationType"] = "KEY"
    with pytest.raises(jsonschema.ValidationError):
        addon_schemas.validate(bad)


def test_the_driver_deployment_is_wired_together():
    objects = addons.objects(_cfg((storage.OBJECT,)))
    by = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    pod = by[("Deployment", "teapot-cosi")]["spec"]["template"]["spec"]
    assert ("ServiceAccount", pod["serviceAccountName"]) in by
    binding = by[("ClusterRoleBinding", "teapot-cosi")]
    assert binding["subjects"][0]["namespace"] == addons.NAMESPACE
    sidecar, driver = pod["containers"]
    # one non-root user makes and opens the socket (no container runs as another)
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"]
    assert not [c for c in pod["containers"] if "runAsUser" in c.get("securityContext", {})]
    assert "objectstorage-sidecar" in sidecar["image"] and driver["command"] == ["teapot-cosi"]
    # one socket on a shared emptyDir, found by both through COSI_ENDPOINT
    (volume,) = pod["volumes"]
    assert "emptyDir" in volume
    for container in (sidecar, driver):
        (mount,) = container["volumeMounts"]
        assert mount["name"] == volume["name"]
        (env,) = [e for e in container["env"] if e["name"] == "COSI_ENDPOINT"]
        assert env["value"] == f"unix://{mount['mountPath']}/cosi.sock"
    # the driver's configuration is the cluster's object storage Secret, rendered beside it
    (source,) = driver["envFrom"]
    assert ("Secret", source["secretRef"]["name"]) in by
    assert source["secretRef"]["name"] == addons.OBJECT_SECRET
    for kind in ("BucketClass", "BucketAccessClass"):
        (cls,) = [o for o in objects if o["kind"] == kind]
        assert cls["spec"]["driverName"] == NAME


def test_cosi_objects_carry_no_secret_and_come_only_with_object_storage():
    text = repr(_cosi_objects())
    assert SECRET_A not in text and EC2_A not in text
    assert not [o for o in addons.objects(_cfg((storage.FILE,)))
                if o["apiVersion"].startswith("objectstorage.k8s.io/")
                or o["metadata"]["name"] == "teapot-cosi"]
    assert cosi_addons.ENDPOINT.endswith(".sock")  # the sidecar accepts only *.sock sockets


# -- access credentials from Teapot's API ---------------------------------------------------------
CLUSTER = "0b5c1f3e-7d2a-4c1b-9e8f-1a2b3c4d5e6f"
TEAPOT_ENV = {**ENV, "OS_AUTH_URL": "http://127.0.0.1:5000/v3",
              "OS_APPLICATION_CREDENTIAL_ID": "appcred",
              "OS_APPLICATION_CREDENTIAL_SECRET": "app-secret-value",
              "TEAPOT_CLUSTER_UUID": CLUSTER}


def test_the_cluster_uuid_switches_access_to_teapot():
    cfg = Config.load(TEAPOT_ENV)
    assert cfg.cluster_uuid == CLUSTER
    driver = Driver(cfg)
    assert driver.teapot is not None and driver.keystone is None
    assert driver.teapot.path == f"clusters/{CLUSTER}/bucket_credentials"
    assert driver.teapot.filter["service_type"] == "container-infra"
    older = Driver(Config.load({k: v for k, v in TEAPOT_ENV.items()
                                if k != "TEAPOT_CLUSTER_UUID"}))
    assert older.teapot is None and older.keystone is not None
    with pytest.raises(ValueError, match="TEAPOT_CLUSTER_UUID must be a uuid"):
        Config.load({**TEAPOT_ENV, "TEAPOT_CLUSTER_UUID": "../other"})
    with pytest.raises(ValueError, match="TEAPOT_CLUSTER_UUID needs OS_AUTH_URL"):
        Config.load({**ENV, "TEAPOT_CLUSTER_UUID": CLUSTER})


class _Answer:
    def __init__(self, status: int, body=None):
        self.status_code, self._body = status, body

    def json(self):
        if self._body is None:
            raise ValueError("no JSON")
        return self._body


class _Teapot:
    """Teapot's bucket credentials API as the driver sees it: the answers it is given, in turn
    (an exception is raised, as keystoneauth raises a connection failure)."""

    def __init__(self, *answers):
        self.answers, self.calls = list(answers), []

    def _next(self, *call):
        self.calls.append(call)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def create(self, name):
        return self._next("create", name)

    def delete(self, access):
        return self._next("delete", access)


def test_grant_and_revoke_through_teapot():
    from keystoneauth1 import exceptions as ksa_exc

    from teapot.cosi.driver import Refused

    made = {"access": "a1b2", "secret": "granted-secret", "created_at": "2026-01-01T00:00:00"}
    teapot = _Teapot(_Answer(201, made), _Answer(204), _Answer(404))
    driver = Driver(Config.load(TEAPOT_ENV), teapot=teapot)
    assert driver.grant("ba-1") == ("ec2-a1b2", "a1b2", "granted-secret")
    driver.revoke("ec2-a1b2")
    driver.revoke("ec2-a1b2")  # already gone is fine
    assert teapot.calls == [("create", "ba-1"), ("delete", "a1b2"), ("delete", "a1b2")]
    # unreachable, or 5xx: UNAVAILABLE (the sidecar retries); a refusal names Teapot's reason
    for answer, code in [(ksa_exc.ConnectFailure("down"), grpc.StatusCode.UNAVAILABLE),
                         (_Answer(503, None), grpc.StatusCode.UNAVAILABLE),
                         (_Answer(500, {"errors": [{"detail": "internal error"}]}),
                          grpc.StatusCode.UNAVAILABLE),
                         (_Answer(201, {"access": "x"}), grpc.StatusCode.UNAVAILABLE),
                         (_Answer(409, {"errors": [{"detail": "delete one first"}]}),
                          grpc.StatusCode.FAILED_PRECONDITION)]:
        driver.teapot = _Teapot(answer)
        with pytest.raises(Refused) as caught:
            driver.grant("ba-2")
        assert caught.value.code == code, answer
    assert "delete one first" in str(caught.value)
    for answer, code in [(ksa_exc.ConnectFailure("down"), grpc.StatusCode.UNAVAILABLE),
                         (_Answer(502), grpc.StatusCode.UNAVAILABLE),
                         (_Answer(401), grpc.StatusCode.FAILED_PRECONDITION)]:
        driver.teapot = _Teapot(answer)
        with pytest.raises(Refused) as caught:
            driver.revoke("ec2-a1b2")
        assert caught.value.code == code, answer
    # the cluster's own keys are never granted by a driver that can ask Teapot
    driver.teapot = _Teapot(_Answer(403, {"errors": [{"detail": "no"}]}))
    with pytest.raises(Refused):
        driver.grant("ba-3")


def test_the_object_secret_names_the_cluster():
    objects = addons.objects(_cfg((storage.OBJECT,), cluster_uuid=CLUSTER))
    (secret,) = [o for o in objects if o["kind"] == "Secret"
                 and o["metadata"]["name"] == addons.OBJECT_SECRET]
    assert secret["stringData"]["TEAPOT_CLUSTER_UUID"] == CLUSTER
    assert Config.load(secret["stringData"]).cluster_uuid == CLUSTER
