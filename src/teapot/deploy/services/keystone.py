"""Keystone, the identity service: fernet tokens, served by gunicorn.

`SERVICE` is Keystone as a box runs it: fernet and credential keys created by `keystone-manage` in
its data directory. `kubernetes_service()` is Keystone for the Kubernetes target.
"""

from __future__ import annotations

import dataclasses
import getpass
import grp
import os
import shlex

from teapot.deploy import ini
from teapot.deploy.service import ConfigFile, Context, Readiness, Service, Step
from teapot.deploy.services import _openstack as osp

NAME = "keystone"
# On Kubernetes, key files derived from generated secrets, and the repository each is installed in
# under the number Keystone reads (the highest number is the primary key, 0 the staged one).
KEY_FILES = {"fernet-0": ("fernet-keys", "0"), "fernet-1": ("fernet-keys", "1"),
             "credential-0": ("credential-keys", "0"), "credential-1": ("credential-keys", "1")}


def _kubernetes(ctx: Context) -> bool:
    return ctx.settings.get("profile") == "kubernetes"


def _cache(ctx: Context) -> dict:
    servers = ctx.cache_servers()
    if servers is None:
        # Keystone runs several workers: a cache of each process's own would let one of them
        # accept a credential or token another has deleted or revoked. No shared cache, no cache.
        return {"enabled": False}
    return {"enabled": True, "backend": "dogpile.cache.pymemcache", "memcache_servers": servers}


def keystone_conf(ctx: Context) -> str:
    box = ctx.settings.get("profile") == "box"
    return ini.render({
        "DEFAULT": {"log_file": None, "use_stderr": True},
        "database": {"connection": ctx.database_url(NAME)},
        "token": {"provider": "fernet", "expiration": 3600 * 12},
        "fernet_tokens": {"key_repository": ctx.data_path(NAME, "fernet-keys")},
        "fernet_receipts": {"key_repository": ctx.data_path(NAME, "fernet-keys")},
        "credential": {"key_repository": ctx.data_path(NAME, "credential-keys")},
        # A box trades password hashing cost for speed; a real deployment keeps the default.
        "identity": {"password_hash_rounds": 4 if box else None},
        "cache": _cache(ctx),
        # Behind the ingress: URLs in responses follow X-Forwarded-Proto/Host.
        "oslo_middleware": {"enable_proxy_headers_parsing": True if _kubernetes(ctx) else None},
    })


def _conf(ctx: Context) -> str:
    return ctx.config_path(NAME, "keystone.conf")


def _owner() -> list[str]:
    return ["--keystone-user", getpass.getuser(), "--keystone-group", grp.getgrgid(os.getgid()).gr_name]


def _bootstrap_env(ctx: Context) -> dict[str, str]:
    return {"OS_BOOTSTRAP_PASSWORD": ctx.secret("admin-password")}


def _env(ctx: Context) -> dict[str, str]:
    return {"OS_KEYSTONE_CONFIG_FILES": _conf(ctx)}


SERVICE = Service(
    name=NAME,
    description="OpenStack Identity",
    package="keystone==30.0.0",
    image="keystone",
    port=5000,
    config_files=(ConfigFile("keystone.conf", keystone_conf),),
    database="keystone",
    bootstrap=(
        Step("db_sync", lambda ctx: ["keystone-manage", "--config-file", _conf(ctx), "db_sync"]),
        # The key repositories need no database: they are made alongside the schema.
        Step("fernet_setup", lambda ctx: ["keystone-manage", "--config-file", _conf(ctx), "fernet_setup", *_owner()],
             once=True, after=()),
        Step("credential_setup", lambda ctx: ["keystone-manage", "--config-file", _conf(ctx), "credential_setup",
                                              *_owner()], once=True, after=()),
        Step(
            "bootstrap",
            lambda ctx: [
                "keystone-manage", "--config-file", _conf(ctx), "bootstrap",
                "--bootstrap-username", "admin", "--bootstrap-project-name", "admin",
                "--bootstrap-role-name", "admin",
                "--bootstrap-region-id", str(ctx.settings.get("region") or "RegionOne"),
                "--bootstrap-public-url", ctx.public_url(NAME) + "/v3",
                "--bootstrap-internal-url", ctx.url(NAME) + "/v3",
            ],
            env=_bootstrap_env,
            once=True,
            after=("db_sync",),
        ),
    ),
    command=lambda ctx: [
        "gunicorn", "--bind", f"{ctx.bind_host}:{ctx.port(NAME)}", "--workers", "2", "--threads", "4",
        "--access-logfile", "-", "--graceful-timeout", "5", "teapot.deploy.wsgi.keystone:application",
    ],
    env=_env,
    readiness=Readiness("/v3"),
    ingress="identity",
    cache=True,
)


def _key_file(name: str):
    return lambda ctx: osp.fernet_key(ctx, f"keystone-{name}-key")


def _install_keys(ctx: Context) -> str:
    """Shell that copies the key files from the (read-only, shared) config into the repositories."""
    repositories = sorted({ctx.data_path(NAME, kind) for kind, _number in KEY_FILES.values()})
    lines = [shlex.join(["mkdir", "-p", *repositories])]
    for name, (kind, number) in KEY_FILES.items():
        lines.append(shlex.join(["cp", ctx.config_path(NAME, name),
                                 os.path.join(ctx.data_path(NAME, kind), number)]))
    return " && ".join(lines)


def _kubernetes_command(ctx: Context) -> list[str]:
    return ["sh", "-c", f"{_install_keys(ctx)} && exec {shlex.join(SERVICE.command(ctx))}"]


def kubernetes_service() -> Service:
    """Keystone on Kubernetes. Its bootstrap runs as a Job that keeps no file, and its replicas must
    share their keys: the fernet and credential keys are config files derived from generated
    secrets, installed into the key repositories as the container starts; no step writes keys."""
    keys = tuple(ConfigFile(name, _key_file(name), secret=True) for name in KEY_FILES)
    return dataclasses.replace(
        SERVICE,
        config_files=SERVICE.config_files + keys,
        command=_kubernetes_command,
        bootstrap=tuple(s for s in SERVICE.bootstrap
                        if s.name not in ("fernet_setup", "credential_setup")),
    )
