"""Teapot's COSI driver (Container Object Storage Interface v1alpha2): buckets in RADOS Gateway
for a tenant cluster, in the cluster's own Keystone project.

The driver runs in the tenant cluster beside the COSI sidecar, which calls it over a unix socket
(`teapot-cosi --endpoint unix:///var/lib/cosi/cosi.sock`). Its name is
``cosi.teapot.openstack.org`` and it speaks S3 only: a request for Azure or GCS is
INVALID_ARGUMENT, as is every malformed field (the message names it).

Configuration is the cluster's Secret ``openstack-object-storage``, read from the environment (or,
with ``--config-dir``, from files named like the variables, as a mounted Secret gives them):
``S3_ENDPOINT``, ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (the cluster's EC2 credentials),
``OS_AUTH_URL`` and ``OS_APPLICATION_CREDENTIAL_ID``/``_SECRET`` (the cluster's application
credential), ``OS_REGION_NAME``, ``TEAPOT_CLUSTER_UUID`` (the cluster, in Teapot); ``S3_REGION`` is the
region S3 requests are signed for (RGW's default zonegroup answers to ``us-east-1``).

Buckets. RGW authenticates the cluster's EC2 credentials against Keystone and, with implicit
tenants, keeps each Keystone project's buckets in a namespace of its own: another project may own a
bucket of the same name without either seeing the other's. So ``bucket_id`` is the bucket's name,
CreateBucket is S3 CreateBucket (a bucket the project already owns is fine; one RGW reports as
someone else's is ALREADY_EXISTS), GetExistingBucket is S3 HeadBucket (NOT_FOUND when the project
has no such bucket), DeleteBucket is S3 DeleteBucket (already gone is fine, a bucket with objects
is FAILED_PRECONDITION: COSI never deletes data).

Access. Every EC2 credential of a project reaches all of that project's buckets (RGW maps them all
to the project's one RGW user), so an access is a credential, not a policy. Keystone refuses EC2
credentials to application credentials (its credential APIs reject every delegated token with
403; without an ``identity`` access rule the cluster's credential gets 401 first), so the
credential of an access is made by Teapot, on the cluster's behalf: GrantBucketAccess calls
``POST /v1/clusters/<TEAPOT_CLUSTER_UUID>/bucket_credentials`` of Teapot's API (catalog type
``container-infra``) with the cluster's application credential, whose access rules allow exactly
that, listing and deleting them, for its own cluster. The answer is an EC2 credential of the
project tied to the cluster's application credential (``account_id`` ``ec2-<access key>``);
RevokeBucketAccess deletes it (``DELETE .../bucket_credentials/<access key>``; already gone is
fine) and RGW refuses it from then on, with a delay for a key it has validated already: RGW keeps
such a key in its Keystone secret cache until the Keystone token it got for it expires (see
deploy/services/rgw.py), so a revoked key in use may keep working that long; one never used is
refused at once. Teapot's
API unreachable, or answering 5xx, is UNAVAILABLE (the sidecar retries); a refusal (the cluster's
limit of credentials, object storage not asked for) is FAILED_PRECONDITION with Teapot's reason.
A rotation of the cluster's credentials ends the credentials granted under the old one.

Older clusters, whose Secret has no ``TEAPOT_CLUSTER_UUID``, cannot call Teapot (their
credential has no rule for it): an access then asks Keystone directly (``POST
/v3/users/{user}/credentials/OS-EC2``), which refuses, and gets the cluster's own EC2 credentials
(``account_id`` ``cluster-<access key>``); revoking such an access is a no-op, as those
credentials are the cluster's, live as long as its application credential, and are rotated with
it by Teapot. A Keystone error of another kind is UNAVAILABLE. ServiceAccount authentication cannot be mapped onto Keystone and is
INVALID_ARGUMENT. Access modes are not applied (v1alpha2's AccessMode carries no value on the
wire, and a project's credentials are read-write in RGW).

Secrets (the cluster's and granted keys) never reach logs; the Grant response carries the
granted secret, as the protocol requires.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import re
import signal
import threading
from collections.abc import Mapping
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import grpc
from minio import Minio
from minio.error import S3Error

from teapot.cosi import NAME
from teapot.cosi import cosi_pb2 as pb
from teapot.cosi import cosi_pb2_grpc as pb_grpc

LOG = logging.getLogger("teapot.cosi")
DEFAULT_ENDPOINT = "unix:///var/lib/cosi/cosi.sock"
S3 = pb.ObjectProtocol.S3
PARAMETERS: frozenset[str] = frozenset()  # the driver takes no BucketClass parameters yet
ACCOUNT_OWN, ACCOUNT_CLUSTER = "ec2-", "cluster-"

_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
_BUCKET = re.compile(r"[a-z0-9][-a-z0-9.]{1,61}[a-z0-9]")
_ID = re.compile(r"[-.a-zA-Z0-9]{1,2048}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TEAPOT_SERVICE = "container-infra"  # Teapot's API in the catalog (Magnum's type)


class Refused(Exception):
    """A request the driver answers with a gRPC error: `code` and a message naming the field."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


def invalid(field_name: str, why: str) -> Refused:
    return Refused(grpc.StatusCode.INVALID_ARGUMENT, f"{field_name}: {why}")


# -- configuration ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Config:
    """Where the project's object store is and the cluster's credentials (secrets hidden from
    repr)."""

    s3_endpoint: str
    access_key: str
    secret_key: str = field(repr=False)
    s3_region: str = "us-east-1"
    auth_url: str | None = None
    application_credential_id: str | None = None
    application_credential_secret: str | None = field(default=None, repr=False)
    region_name: str | None = None
    cluster_uuid: str | None = None  # set: access credentials come from Teapot's API

    def __post_init__(self) -> None:
        url = urlsplit(self.s3_endpoint)
        if url.scheme not in ("http", "https") or not url.netloc or url.path not in ("", "/"):
            raise ValueError(f"S3_ENDPOINT must be an http(s) URL without a path, not "
                             f"{self.s3_endpoint!r}")
        if not self.access_key or not self.secret_key:
            raise ValueError("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are required")
        keystone = (self.auth_url, self.application_credential_id,
                    self.application_credential_secret)
        if any(keystone) and not all(keystone):
            raise ValueError("OS_AUTH_URL, OS_APPLICATION_CREDENTIAL_ID and "
                             "OS_APPLICATION_CREDENTIAL_SECRET go together")
        if self.cluster_uuid is not None:
            if not _UUID.fullmatch(self.cluster_uuid):
                raise ValueError(f"TEAPOT_CLUSTER_UUID must be a uuid, not "
                                 f"{self.cluster_uuid[:80]!r}")
            if not all(keystone):
                raise ValueError("TEAPOT_CLUSTER_UUID needs OS_AUTH_URL and the cluster's "
                                 "application credential")

    @classmethod
    def load(cls, environ: Mapping[str, str] = os.environ,
             config_dir: str | None = None) -> Config:
        """From variables named as in the cluster's Secret; a file of that name in `config_dir`
        (a mounted Secret) when the variable is unset."""

        def get(name: str) -> str | None:
            value = environ.get(name)
            if value is None and config_dir and (Path(config_dir) / name).is_file():
                value = (Path(config_dir) / name).read_text().strip()
            return value or None

        endpoint = get("S3_ENDPOINT")
        if not endpoint:
            raise ValueError("S3_ENDPOINT is required")
        return cls(s3_endpoint=endpoint.rstrip("/"), access_key=get("AWS_ACCESS_KEY_ID") or "",
                   secret_key=get("AWS_SECRET_ACCESS_KEY") or "",
                   s3_region=get("S3_REGION") or "us-east-1", auth_url=get("OS_AUTH_URL"),
                   application_credential_id=get("OS_APPLICATION_CREDENTIAL_ID"),
                   application_credential_secret=get("OS_APPLICATION_CREDENTIAL_SECRET"),
                   region_name=get("OS_REGION_NAME"),
                   cluster_uuid=(get("TEAPOT_CLUSTER_UUID") or "").lower() or None)


# -- argument checks (pure) ---------------------------------------------------------------------

def check_bucket_name(field_name: str, name: str) -> str:
    """An S3 bucket name RGW takes: 3-63 lowercase letters, digits, '-' and '.', starting and
    ending with a letter or digit, no '..', not an IPv4 address."""
    if not name:
        raise invalid(field_name, "is required")
    if not _BUCKET.fullmatch(name) or ".." in name:
        raise invalid(field_name, f"{name[:80]!r} is not an S3 bucket name (3 to 63 lowercase "
                                  "letters, digits, '-' and '.', starting and ending with a "
                                  "letter or digit)")
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return name
    raise invalid(field_name, f"{name!r} is an IP address, not a bucket name")


def check_protocol(field_name: str, proto: pb.ObjectProtocol) -> None:
    if proto.type != S3:
        kind = pb.ObjectProtocol.Type.Name(proto.type) if proto.type in (
            pb.ObjectProtocol.Type.values()) else str(proto.type)
        raise invalid(field_name, f"protocol {kind} is not supported: this driver speaks S3 only")


def check_protocols(field_name: str, protocols) -> None:
    """Every protocol asked for must be S3 (none asked for means S3)."""
    for i, proto in enumerate(protocols):
        check_protocol(f"{field_name}[{i}]", proto)


def check_parameters(field_name: str, parameters: Mapping[str, str]) -> None:
    unknown = sorted(set(parameters) - PARAMETERS)
    if unknown:
        raise invalid(f"{field_name}.{unknown[0]}", "is not a parameter of this driver")


def check_account_name(name: str) -> str:
    if not name:
        raise invalid("account_name", "is required")
    if len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
        raise invalid("account_name", f"{name[:80]!r} is not a DNS subdomain name")
    return name


def check_grant(request: pb.DriverGrantBucketAccessRequest) -> list[str]:
    """The bucket ids of a well-formed Grant request."""
    check_account_name(request.account_name)
    if not request.HasField("protocol") or request.protocol.type == pb.ObjectProtocol.UNKNOWN:
        raise invalid("protocol", "is required (S3)")
    check_protocol("protocol", request.protocol)
    check_authentication(request.authentication_type, request.HasField("authentication_type"))
    check_parameters("parameters", request.parameters)
    if not request.buckets:
        raise invalid("buckets", "access to at least one bucket must be requested")
    return [check_bucket_name(f"buckets[{i}].bucket_id", b.bucket_id)
            for i, b in enumerate(request.buckets)]


def check_authentication(auth: pb.AuthenticationType, given: bool) -> None:
    if not given or auth.type == pb.AuthenticationType.UNKNOWN:
        raise invalid("authentication_type", "is required (KEY)")
    if auth.type == pb.AuthenticationType.SERVICE_ACCOUNT:
        raise invalid("authentication_type", "SERVICE_ACCOUNT is not supported: RGW with "
                                             "Keystone knows no Kubernetes ServiceAccounts; "
                                             "ask for KEY")
    if auth.type != pb.AuthenticationType.KEY:
        raise invalid("authentication_type", f"unknown type {auth.type}")


def check_account_id(account_id: str) -> str:
    if not account_id:
        raise invalid("account_id", "is required")
    if not _ID.fullmatch(account_id) or not account_id.startswith((ACCOUNT_OWN, ACCOUNT_CLUSTER)):
        raise invalid("account_id", f"{account_id[:80]!r} is not an access this driver granted")
    return account_id


# -- the backends -------------------------------------------------------------------------------

class Keystone:
    """EC2 credentials of the cluster's project user, made and deleted with the cluster's
    application credential (keystoneauth1)."""

    def __init__(self, auth_url: str, credential_id: str, secret: str):
        from keystoneauth1 import session
        from keystoneauth1.identity import v3

        self.auth_url = auth_url.rstrip("/")
        if not self.auth_url.endswith("/v3"):
            self.auth_url += "/v3"
        self.session = session.Session(auth=v3.ApplicationCredential(
            auth_url=self.auth_url, application_credential_id=credential_id,
            application_credential_secret=secret), timeout=30)

    def _scope(self) -> tuple[str, str]:
        return self.session.get_user_id(), self.session.get_project_id()

    def create(self) -> tuple[int, str, str]:
        """(status, access, secret) of a new EC2 credential; status 201 when made, else
        Keystone's refusal with empty keys."""
        user_id, project_id = self._scope()
        resp = self.session.post(f"{self.auth_url}/users/{user_id}/credentials/OS-EC2",
                                 json={"tenant_id": project_id}, raise_exc=False, log=False)
        if resp.status_code != 201:
            return resp.status_code, "", ""
        made = resp.json()["credential"]
        return 201, made["access"], made["secret"]

    def delete(self, access: str) -> int:
        user_id, _ = self._scope()
        return self.session.delete(
            f"{self.auth_url}/users/{user_id}/credentials/OS-EC2/{access}",
            raise_exc=False).status_code


class Teapot:
    """The cluster's bucket credentials in Teapot's API, with the cluster's application
    credential (keystoneauth1; Teapot's endpoint from the catalog of the credential's token)."""

    def __init__(self, auth_url: str, credential_id: str, secret: str, cluster_uuid: str,
                 region_name: str | None = None):
        from keystoneauth1 import session
        from keystoneauth1.identity import v3

        url = auth_url.rstrip("/")
        if not url.endswith("/v3"):
            url += "/v3"
        self.session = session.Session(auth=v3.ApplicationCredential(
            auth_url=url, application_credential_id=credential_id,
            application_credential_secret=secret), timeout=30)
        self.path = f"clusters/{cluster_uuid}/bucket_credentials"
        self.filter = {"service_type": TEAPOT_SERVICE, "interface": "public"}
        if region_name:
            self.filter["region_name"] = region_name

    def _request(self, method: str, path: str, **kw):
        # log=False: keystoneauth logs bodies at DEBUG, and a made credential's carries its secret
        return self.session.request(path, method, endpoint_filter=self.filter, raise_exc=False,
                                    headers={"Accept": "application/json"}, log=False, **kw)

    def create(self, name: str):
        """Teapot's answer to making a credential named `name` (a requests Response)."""
        return self._request("POST", self.path, json={"name": name})

    def delete(self, access: str):
        return self._request("DELETE", f"{self.path}/{access}")


def _teapot_reason(resp) -> str:
    """Teapot's own words for a refusal (its API-SIG error body), never more than a line."""
    try:
        detail = resp.json()["errors"][0]["detail"]
    except (ValueError, KeyError, IndexError, TypeError):
        detail = ""
    return f"{resp.status_code} {str(detail)[:300]}".rstrip()


def _s3_error(error: S3Error, what: str) -> Refused:
    return Refused(grpc.StatusCode.UNAVAILABLE, f"RGW: {what} failed: {error.code}")


class Driver:
    """What the servicers do, over RGW (S3) and Keystone."""

    def __init__(self, config: Config, keystone: Keystone | None = None,
                 teapot: Teapot | None = None):
        self.config = config
        url = urlsplit(config.s3_endpoint)
        self.s3 = Minio(url.netloc, access_key=config.access_key, secret_key=config.secret_key,
                        secure=url.scheme == "https", region=config.s3_region)
        if teapot is None and config.cluster_uuid and config.auth_url:
            teapot = Teapot(config.auth_url, config.application_credential_id or "",
                            config.application_credential_secret or "", config.cluster_uuid,
                            config.region_name)
        self.teapot = teapot
        if keystone is None and config.auth_url and teapot is None:
            keystone = Keystone(config.auth_url, config.application_credential_id or "",
                                config.application_credential_secret or "")
        self.keystone = keystone

    def bucket_info(self, bucket: str) -> pb.ObjectProtocolAndBucketInfo:
        return pb.ObjectProtocolAndBucketInfo(s3=pb.S3BucketInfo(
            bucket_id=bucket, endpoint=self.config.s3_endpoint, region=self.config.s3_region,
            addressing_style=pb.S3AddressingStyle(style=pb.S3AddressingStyle.PATH)))

    # -- buckets --
    def create_bucket(self, name: str) -> None:
        try:
            self.s3.make_bucket(name)
            LOG.info("bucket %s created", name)
        except S3Error as e:
            if e.code == "BucketAlreadyOwnedByYou":
                return
            if e.code == "BucketAlreadyExists":
                if self.bucket_exists(name):  # RGW says so of the project's own, too
                    return
                raise Refused(grpc.StatusCode.ALREADY_EXISTS,
                              f"name: bucket {name!r} belongs to someone else") from None
            if e.code in ("InvalidBucketName", "InvalidArgument"):
                raise invalid("name", f"RGW refuses the bucket name {name!r}: {e.code}") from None
            raise _s3_error(e, f"creating bucket {name}") from None

    def bucket_exists(self, name: str) -> bool:
        try:
            return self.s3.bucket_exists(name)
        except S3Error as e:
            if e.code in ("AccessDenied", "Forbidden"):
                return False
            raise _s3_error(e, f"looking up bucket {name}") from None

    def delete_bucket(self, name: str) -> None:
        try:
            self.s3.remove_bucket(name)
            LOG.info("bucket %s deleted", name)
        except S3Error as e:
            if e.code == "NoSuchBucket":
                return
            if e.code == "BucketNotEmpty":
                raise Refused(grpc.StatusCode.FAILED_PRECONDITION,
                              f"bucket_id: bucket {name!r} is not empty; its objects are "
                              "never deleted by the driver") from None
            raise _s3_error(e, f"deleting bucket {name}") from None

    # -- access --
    def grant(self, account_name: str) -> tuple[str, str, str]:
        """(account_id, access key, secret key) for a new access."""
        if self.teapot is not None:
            return self._grant_from_teapot(account_name)
        if self.keystone is not None:
            try:
                status, access, secret = self.keystone.create()
            except Exception as e:  # keystoneauth: connection, authentication
                raise Refused(grpc.StatusCode.UNAVAILABLE,
                              f"Keystone: creating EC2 credentials failed: {type(e).__name__}") \
                    from None
            if status == 201:
                LOG.info("access %s: EC2 credentials %s of its own", account_name, access)
                return ACCOUNT_OWN + access, access, secret
            if status not in (401, 403):
                raise Refused(grpc.StatusCode.UNAVAILABLE,
                              f"Keystone: creating EC2 credentials failed: {status}")
            LOG.warning("access %s: Keystone refuses EC2 credentials to the cluster's "
                        "application credential (%d); granting the cluster's own",
                        account_name, status)
        access = self.config.access_key
        return ACCOUNT_CLUSTER + access, access, self.config.secret_key

    def _grant_from_teapot(self, account_name: str) -> tuple[str, str, str]:
        assert self.teapot is not None
        try:
            resp = self.teapot.create(account_name)
        except Exception as e:  # keystoneauth: connection, authentication, no endpoint
            raise Refused(grpc.StatusCode.UNAVAILABLE,
                          f"Teapot: creating bucket credentials failed: {type(e).__name__}") \
                from None
        if resp.status_code == 201:
            try:
                made = resp.json()
                access, secret = str(made["access"]), str(made["secret"])
            except (ValueError, KeyError, TypeError):
                raise Refused(grpc.StatusCode.UNAVAILABLE,
                              "Teapot: creating bucket credentials: malformed answer") from None
            LOG.info("access %s: bucket credentials %s", account_name, access)
            return ACCOUNT_OWN + access, access, secret
        code = (grpc.StatusCode.UNAVAILABLE if resp.status_code >= 500 or resp.status_code == 429
                else grpc.StatusCode.FAILED_PRECONDITION)
        raise Refused(code, f"Teapot: creating bucket credentials failed: {_teapot_reason(resp)}")

    def revoke(self, account_id: str) -> None:
        if account_id.startswith(ACCOUNT_CLUSTER):
            LOG.info("access %s: the cluster's own credentials stay (revoking is a no-op)",
                     account_id)
            return
        access = account_id[len(ACCOUNT_OWN):]
        if self.teapot is not None:
            try:
                resp = self.teapot.delete(access)
            except Exception as e:
                raise Refused(grpc.StatusCode.UNAVAILABLE,
                              f"Teapot: deleting bucket credentials failed: {type(e).__name__}") \
                    from None
            if resp.status_code in (204, 404):
                LOG.info("access %s revoked", account_id)
                return
            code = (grpc.StatusCode.UNAVAILABLE if resp.status_code >= 500
                    or resp.status_code == 429 else grpc.StatusCode.FAILED_PRECONDITION)
            raise Refused(code,
                          f"Teapot: deleting bucket credentials failed: {_teapot_reason(resp)}")
        if self.keystone is None:
            raise Refused(grpc.StatusCode.FAILED_PRECONDITION,
                          "account_id: deleting EC2 credentials needs OS_AUTH_URL and the "
                          "cluster's application credential")
        try:
            status = self.keystone.delete(access)
        except Exception as e:
            raise Refused(grpc.StatusCode.UNAVAILABLE,
                          f"Keystone: deleting EC2 credentials failed: {type(e).__name__}") \
                from None
        if status in (204, 404):
            LOG.info("access %s revoked", account_id)
            return
        raise Refused(grpc.StatusCode.UNAVAILABLE,
                      f"Keystone: deleting EC2 credentials failed: {status}")


# -- the servicers ------------------------------------------------------------------------------

def _answer(method):
    """Turn `Refused` into the gRPC status it names; anything else is INTERNAL without
    details (which could carry a secret) in the answer, logged by type only."""

    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except Refused as e:
            LOG.info("%s: %s %s", method.__name__, e.code.name, e)
            context.abort(e.code, str(e))
        except Exception as e:
            LOG.error("%s failed: %s", method.__name__, type(e).__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"{method.__name__} failed")

    wrapper.__name__ = method.__name__
    return wrapper


class IdentityServicer(pb_grpc.IdentityServicer):
    @_answer
    def DriverGetInfo(self, request, context):  # noqa: N802 (the protocol's names)
        return pb.DriverGetInfoResponse(name=NAME,
                                        supported_protocols=[pb.ObjectProtocol(type=S3)])


class ProvisionerServicer(pb_grpc.ProvisionerServicer):
    def __init__(self, driver: Driver | None):
        self.driver = driver  # None: arguments are checked, nothing is reached (unit tests)

    def _backend(self) -> Driver:
        if self.driver is None:
            raise Refused(grpc.StatusCode.UNAVAILABLE, "the driver has no object store")
        return self.driver

    @_answer
    def DriverCreateBucket(self, request, context):  # noqa: N802
        name = check_bucket_name("name", request.name)
        check_protocols("protocols", request.protocols)
        check_parameters("parameters", request.parameters)
        driver = self._backend()
        driver.create_bucket(name)
        return pb.DriverCreateBucketResponse(bucket_id=name, protocols=driver.bucket_info(name))

    @_answer
    def DriverGetExistingBucket(self, request, context):  # noqa: N802
        name = check_bucket_name("existing_bucket_id", request.existing_bucket_id)
        check_protocols("protocols", request.protocols)
        check_parameters("parameters", request.parameters)
        driver = self._backend()
        if not driver.bucket_exists(name):
            raise Refused(grpc.StatusCode.NOT_FOUND,
                          f"existing_bucket_id: the project has no bucket {name!r}")
        return pb.DriverGetExistingBucketResponse(bucket_id=name,
                                                  protocols=driver.bucket_info(name))

    @_answer
    def DriverDeleteBucket(self, request, context):  # noqa: N802
        name = check_bucket_name("bucket_id", request.bucket_id)
        self._backend().delete_bucket(name)
        return pb.DriverDeleteBucketResponse()

    @_answer
    def DriverGrantBucketAccess(self, request, context):  # noqa: N802
        buckets = check_grant(request)
        driver = self._backend()
        for i, bucket in enumerate(buckets):
            if not driver.bucket_exists(bucket):
                raise Refused(grpc.StatusCode.NOT_FOUND,
                              f"buckets[{i}].bucket_id: the project has no bucket {bucket!r}")
        account_id, access, secret = driver.grant(request.account_name)
        return pb.DriverGrantBucketAccessResponse(
            account_id=account_id,
            buckets=[pb.DriverGrantBucketAccessResponse.BucketInfo(
                bucket_id=b, bucket_info=driver.bucket_info(b)) for b in buckets],
            credentials=pb.CredentialInfo(s3=pb.S3CredentialInfo(
                access_key_id=access, access_secret_key=secret)))

    @_answer
    def DriverRevokeBucketAccess(self, request, context):  # noqa: N802
        account_id = check_account_id(request.account_id)
        if request.HasField("protocol") and request.protocol.type != pb.ObjectProtocol.UNKNOWN:
            check_protocol("protocol", request.protocol)
        if request.HasField("authentication_type"):
            check_authentication(request.authentication_type, True)
        self._backend().revoke(account_id)
        return pb.DriverRevokeBucketAccessResponse()


# -- the server ---------------------------------------------------------------------------------

def server(driver: Driver | None, endpoint: str, workers: int = 4) -> grpc.Server:
    """A started gRPC server of both services on `endpoint` (unix:///path or 127.0.0.1:port);
    a stale socket file from an earlier run is removed first."""
    if endpoint.startswith("unix://"):
        path = Path(endpoint[len("unix://"):])
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_socket():
            path.unlink()
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    pb_grpc.add_IdentityServicer_to_server(IdentityServicer(), srv)
    pb_grpc.add_ProvisionerServicer_to_server(ProvisionerServicer(driver), srv)
    if not srv.add_insecure_port(endpoint):
        raise OSError(f"cannot listen on {endpoint}")
    srv.start()
    return srv


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="teapot-cosi", description=__doc__.split("\n")[0])
    parser.add_argument("--endpoint", default=os.environ.get("COSI_ENDPOINT", DEFAULT_ENDPOINT),
                        help="where to listen: unix:///path (default %(default)s)")
    parser.add_argument("--config-dir", help="a directory of files named like the variables "
                                             "(a mounted Secret), read when a variable is unset")
    parser.add_argument("--workers", type=int, default=4, help="gRPC worker threads")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not (args.endpoint.startswith("unix://") or args.endpoint.startswith("127.0.0.1:")):
        parser.error("--endpoint must be unix:///path or 127.0.0.1:port")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    try:
        config = Config.load(config_dir=args.config_dir)
    except (ValueError, OSError) as e:
        parser.error(str(e))
    srv = server(Driver(config), args.endpoint, args.workers)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    LOG.info("%s serving on %s (S3 at %s)", NAME, args.endpoint, config.s3_endpoint)
    stop.wait()
    LOG.info("stopping")
    srv.stop(grace=5).wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
