"""Storage a cluster asks for, and what its own Keystone credential may do. Pure.

A cluster asks for storage with Magnum-style labels. Each kind of storage names the OpenStack APIs
its in-cluster plugin calls; the cluster's application credential carries exactly those as Keystone
access rules (service type, method, path), so a stolen credential opens nothing else: not Keystone's
API, not Teapot's, not compute or networking.

With object storage the credential also reaches Teapot's own API, for exactly one thing: the
bucket credentials of its own cluster (the COSI driver makes one per bucket access and deletes it
when the access is revoked), under the catalog type Teapot is enforced as (`container-infra`).

Paths are written twice where the service accepts the project id in the URL (older catalog entries
such as `/v2/%(project_id)s`) and without it; `*` matches one path segment, `**` any number.
"""

from __future__ import annotations

from dataclasses import dataclass

from teapot.resources.errors import ValidationError

FILE, OBJECT, BLOCK, KEYS = "file", "object", "block", "keys"
LABELS = {
    "manila_csi_enabled": FILE,  # manila-csi with its CephFS node plugin, a default RWX class
    "object_storage_enabled": OBJECT,  # an S3/Swift Secret (EC2 credentials for S3)
    "cinder_attachments_enabled": BLOCK,  # volumes attached to hosts through Cinder attachments
    "barbican_enabled": KEYS,  # encryption keys of volumes, read from Barbican
}
TRUE, FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off", "")


def wanted(labels: dict | None) -> tuple[str, ...]:
    """The kinds of storage the labels ask for, in a stable order; a label that is neither true
    nor false is a ValidationError naming it."""
    out = []
    for label, kind in LABELS.items():
        value = str((labels or {}).get(label, "false")).strip().lower()
        if value in TRUE:
            out.append(kind)
        elif value not in FALSE:
            raise ValidationError(f"labels.{label}", f"must be true or false, not {value!r}")
    if KEYS in out and BLOCK not in out:
        raise ValidationError("labels.barbican_enabled",
                              "keys are for encrypted volumes: set cinder_attachments_enabled too")
    return tuple(out)


def _both(service: str, method: str, path: str) -> list[dict]:
    """`path` below the API version, with and without the project id segment."""
    version, _, rest = path.lstrip("/").partition("/")
    return [{"service": service, "method": method, "path": f"/{version}/{rest}"},
            {"service": service, "method": method, "path": f"/{version}/*/{rest}"}]


# What manila-csi (its controller and the CephFS share adapter) calls in the Shared File Systems
# API v2: share types by name, shares (create, show, list by name, delete, extend and shrink and
# access rules through the action resource), export locations, access rules, snapshots.
_MANILA = [
    ("GET", "/v2/types"), ("GET", "/v2/types/*"),
    ("POST", "/v2/shares"), ("GET", "/v2/shares"), ("GET", "/v2/shares/detail"),
    ("GET", "/v2/shares/*"), ("DELETE", "/v2/shares/*"), ("POST", "/v2/shares/*/action"),
    ("GET", "/v2/shares/*/export_locations"), ("GET", "/v2/shares/*/export_locations/*"),
    ("GET", "/v2/share-access-rules"), ("GET", "/v2/share-access-rules/*"),
    ("POST", "/v2/snapshots"), ("GET", "/v2/snapshots/*"), ("DELETE", "/v2/snapshots/*"),
    ("GET", "/v2/availability-zones"),
]
# Swift: the project's account, containers and objects (Swift itself, and RGW's Swift API under
# /swift), nothing of the cluster-wide info API.
_SWIFT = [(method, f"{prefix}/v1/AUTH_*{rest}") for method in ("GET", "HEAD", "PUT", "POST", "DELETE")
          for prefix in ("", "/swift") for rest in ("", "/**")]
# Cinder v3 without Nova: the volumes the cluster's hosts attach, and their attachments.
_CINDER = [
    ("GET", "/v3/volumes/*"), ("GET", "/v3/volumes/detail"), ("POST", "/v3/attachments"),
    ("GET", "/v3/attachments/*"), ("PUT", "/v3/attachments/*"), ("DELETE", "/v3/attachments/*"),
    ("POST", "/v3/attachments/*/action"),
]
# Barbican: reading the keys of encrypted volumes (os-brick's key manager).
_BARBICAN = [("GET", "/v1/secrets/*"), ("GET", "/v1/secrets/*/payload")]


# Clients first ask the API's version documents (microversion discovery).
_VERSIONS = {"sharev2": "v2", "share": "v2", "volumev3": "v3", "block-storage": "v3",
             "key-manager": "v1"}
# The service types a service's own keystonemiddleware may be configured with
# ([keystone_authtoken] service_type), which it compares with the rules' service.
SERVICE_TYPES = {FILE: ("sharev2", "share"), OBJECT: ("object-store",),
                 BLOCK: ("volumev3", "block-storage"), KEYS: ("key-manager",)}


def _versions(service: str) -> list[dict]:
    version = _VERSIONS[service]
    return [{"service": service, "method": "GET", "path": p}
            for p in ("/", f"/{version}", f"/{version}/")]


# Teapot's catalog type as its API enforces access rules (Magnum's; also registered as `teapot`).
TEAPOT_SERVICE = "container-infra"


def bucket_credential_rules(cluster_uuid: str) -> list[dict]:
    """Teapot's API for the cluster's own bucket credentials: make, list, delete one."""
    if not cluster_uuid or "/" in cluster_uuid or "*" in cluster_uuid:
        raise ValueError(f"not a cluster uuid: {cluster_uuid!r}")
    path = f"/v1/clusters/{cluster_uuid}/bucket_credentials"
    return [{"service": TEAPOT_SERVICE, "method": "POST", "path": path},
            {"service": TEAPOT_SERVICE, "method": "GET", "path": path},
            {"service": TEAPOT_SERVICE, "method": "DELETE", "path": path + "/*"}]


def access_rules(kinds: tuple[str, ...], cluster_uuid: str) -> list[dict]:
    """Keystone access rules for a credential used by the plugins of these kinds of storage in
    the cluster `cluster_uuid`."""
    rules: list[dict] = []
    if FILE in kinds:
        for service in SERVICE_TYPES[FILE]:
            rules += _versions(service)
            for method, path in _MANILA:
                rules += _both(service, method, path)
    if OBJECT in kinds:
        rules += [{"service": "object-store", "method": m, "path": p} for m, p in _SWIFT]
        rules += bucket_credential_rules(cluster_uuid)
    if BLOCK in kinds:
        for service in SERVICE_TYPES[BLOCK]:
            rules += _versions(service)
            for method, path in _CINDER:
                rules += _both(service, method, path)
    if KEYS in kinds:
        rules += _versions("key-manager")
        rules += [{"service": "key-manager", "method": m, "path": p} for m, p in _BARBICAN]
    return rules


@dataclass(frozen=True)
class Credentials:
    """What Teapot knows of a cluster's credentials (ids only; secrets stay encrypted)."""

    application_credential_id: str | None = None
    ec2_access: str | None = None
    generation: int = 0  # the rotation they were made for


def view(kinds: tuple[str, ...], creds: Credentials, rotation: int, error: str = "") -> dict:
    """The cluster's `storage` attribute as the API shows it: what it has, never a secret."""
    if not kinds:
        return {"kinds": [], "credential": "none"}
    state = ("error" if error else "ready" if creds.application_credential_id and
             creds.generation >= rotation else "pending")
    out = {"kinds": list(kinds), "credential": state,
           "application_credential_id": creds.application_credential_id,
           "rotation": rotation}
    if OBJECT in kinds:
        out["ec2_access"] = creds.ec2_access
    if error:
        out["error"] = error
    return out
