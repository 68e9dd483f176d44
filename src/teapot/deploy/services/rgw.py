"""RADOS Gateway against an external Ceph cluster: the object store (Swift and S3 APIs) when
teapot.yaml enables `rgw` instead of `swift`, with Keystone authentication.

The bootstrap creates the pools of `ceph.pools` (when missing) and the cephx users of `ceph.users`
with the admin key of `ceph.keyringSecret`, which the target mounts at `ADMIN_KEYRING` (see
`extra["secret_files"]`). Each user's key is derived from a generated secret and rendered into a
keyring file, imported with `ceph auth import` (creating the user or setting its key and caps): the
gateway runs as the first user with its own keyring and needs no admin key.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import shlex
import struct
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from teapot.deploy import ini
from teapot.deploy.service import (
    ConfigFile,
    Context,
    Readiness,
    Service,
    Step,
)
from teapot.deploy.services import _openstack as osp

NAME = "rgw"
USER = "rgw"  # the Keystone user RGW validates tokens with
ADMIN_KEYRING = "/etc/ceph-admin/keyring"
DEFAULT_USER = {"name": "client.rgw.teapot", "caps": {"mon": "allow rw", "osd": "allow rwx"}}


def _ceph(settings: Mapping) -> Mapping:
    return settings.get("ceph") or {}


def ceph_users(settings: Mapping) -> list[Mapping]:
    """The cephx users to create; the first is the gateway's own."""
    return list(_ceph(settings).get("users") or [DEFAULT_USER])


def gateway_user(settings: Mapping) -> str:
    return ceph_users(settings)[0]["name"]


def cephx_key(seed: str) -> str:
    """A cephx secret as Ceph encodes it: base64 of (type 1 = AES, created 0, length, 16 bytes)."""
    secret = hashlib.sha256(seed.encode()).digest()[:16]
    return base64.b64encode(struct.pack("<HIIH", 1, 0, 0, len(secret)) + secret).decode()


def keyring_file(user: str) -> str:
    return f"{user}.keyring"


def keyring(user: Mapping):
    name = user["name"]

    def render(ctx: Context) -> str:
        lines = [f"[{name}]", f"\tkey = {cephx_key(ctx.secret(f'ceph-{name}-key'))}"]
        caps = user.get("caps") or {}
        lines += [f'\tcaps {service} = "{cap}"' for service, cap in caps.items()]
        return "\n".join(lines) + "\n"

    return render


def ceph_conf(ctx: Context) -> str:
    ceph = _ceph(ctx.settings)
    user = gateway_user(ctx.settings)
    public = ctx.public_url(NAME)
    return ini.render({
        "global": {
            "mon_host": ",".join(ceph.get("monitors") or []),
            "auth_cluster_required": "cephx",
            "auth_service_required": "cephx",
            "auth_client_required": "cephx",
            "log_to_stderr": True,
            "err_to_stderr": True,
            "log_to_file": False,
        },
        "client.admin": {"keyring": ADMIN_KEYRING},
        user: {
            "keyring": ctx.config_path(NAME, keyring_file(user)),
            "rgw_frontends": f"beast port={ctx.port(NAME)}",
            "rgw_dns_name": urlsplit(public).hostname,
            **keystone_options(ctx),
        },
    })


def keystone_options(ctx: Context) -> dict:
    """The gateway's options for Keystone: tokens (Swift) and EC2 credentials (S3) of projects."""
    return {
        "rgw_keystone_url": ctx.url("keystone"),
        "rgw_keystone_api_version": 3,
        "rgw_keystone_admin_user": USER,
        "rgw_keystone_admin_password": ctx.secret(osp.password_secret(USER)),
        "rgw_keystone_admin_project": "service",
        "rgw_keystone_admin_domain": "Default",
        "rgw_keystone_accepted_roles": "member, admin",
        "rgw_keystone_accepted_admin_roles": "admin",
        "rgw_keystone_implicit_tenants": True,
        # RGW caches the tokens and EC2 secrets it validated with Keystone (and its own admin
        # token) until those tokens expire, so a deleted EC2 credential that was in use (a rotated
        # cluster's, a revoked bucket access) keeps working until then. Without the cache every
        # S3 request logs RGW in to Keystone again: CreateBucket took 1.2 s instead of 14 ms
        # (bench/storage_provision.py). The cache stays; Keystone's token lifetime bounds the delay.
        "rgw_keystone_token_cache_size": 10000,
        "rgw_s3_auth_use_keystone": True,
        "rgw_swift_account_in_url": True,
        "rgw_swift_versioning_enabled": True,
    }


def _conf(ctx: Context) -> str:
    return ctx.config_path(NAME, "ceph.conf")


def _ceph_cmd(ctx: Context, *args: str) -> str:
    return shlex.join(["ceph", "--conf", _conf(ctx), "--name", "client.admin", *args])


def pool_step(pool: Mapping) -> Step:
    """Create the pool unless it exists (so the step can run again), and tag it for RGW."""
    name, pg = str(pool["name"]), str(pool.get("pgNum", 32))

    def argv(ctx: Context) -> list[str]:
        exists = f"{_ceph_cmd(ctx, 'osd', 'pool', 'ls')} | grep -qxF {shlex.quote(name)}"
        create = _ceph_cmd(ctx, "osd", "pool", "create", name, pg)
        tag = _ceph_cmd(ctx, "osd", "pool", "application", "enable", name, "rgw")
        return ["sh", "-c", f"set -e; {exists} || {create}; {tag}"]

    return Step(f"pool {name}", argv)


def user_step(user: Mapping) -> Step:
    """Create the user, or set its key and caps, from its rendered keyring."""
    name = str(user["name"])
    return Step(f"user {name}", lambda ctx: [
        "ceph", "--conf", _conf(ctx), "--name", "client.admin",
        "auth", "import", "-i", ctx.config_path(NAME, keyring_file(name))])


def _steps(settings: Mapping) -> tuple[Step, ...]:
    pools: Sequence[Mapping] = _ceph(settings).get("pools") or []
    return tuple(pool_step(p) for p in pools) + tuple(user_step(u) for u in ceph_users(settings))


SERVICE = Service(
    name=NAME,
    description="Object storage through RADOS Gateway (Swift and S3 APIs) on an external Ceph",
    package="",
    image="ceph",
    port=7480,
    config_files=(ConfigFile("ceph.conf", ceph_conf, secret=True),),
    config_dir=NAME,
    settings_key=NAME,
    command=lambda ctx: ["radosgw", "--foreground", "--conf", _conf(ctx),
                         "--name", gateway_user(ctx.settings)],
    readiness=Readiness("/swift/healthcheck"),
    depends_on=("keystone",),
    keystone=osp.registration("object-store", "swift", "/swift/v1/AUTH_%(project_id)s", USER),
    ingress="object-store",
)


def service(settings: Mapping) -> Service:
    """RGW for these settings: a keyring per cephx user, and steps creating the pools and users."""
    keyrings = tuple(ConfigFile(keyring_file(u["name"]), keyring(u), secret=True)
                     for u in ceph_users(settings))
    secret_files = ({"secret": _ceph(settings).get("keyringSecret", "ceph-admin-keyring"),
                     "key": "keyring", "path": ADMIN_KEYRING},)
    return dataclasses.replace(SERVICE, config_files=SERVICE.config_files + keyrings,
                               bootstrap=_steps(settings), extra={"secret_files": secret_files})
