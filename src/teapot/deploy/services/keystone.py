"""Keystone, the identity service: fernet tokens, served by gunicorn."""

from __future__ import annotations

import getpass
import grp
import os

from teapot.deploy import ini
from teapot.deploy.service import ConfigFile, Context, Readiness, Service, Step

NAME = "keystone"


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
        "cache": {"enabled": True, "backend": "dogpile.cache.memory"},
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
        Step("fernet_setup", lambda ctx: ["keystone-manage", "--config-file", _conf(ctx), "fernet_setup", *_owner()], once=True),
        Step("credential_setup", lambda ctx: ["keystone-manage", "--config-file", _conf(ctx), "credential_setup", *_owner()], once=True),
        Step(
            "bootstrap",
            lambda ctx: [
                "keystone-manage", "--config-file", _conf(ctx), "bootstrap",
                "--bootstrap-username", "admin", "--bootstrap-project-name", "admin",
                "--bootstrap-role-name", "admin", "--bootstrap-region-id", "RegionOne",
                "--bootstrap-public-url", ctx.url(NAME) + "/v3",
                "--bootstrap-internal-url", ctx.url(NAME) + "/v3",
            ],
            env=_bootstrap_env,
            once=True,
        ),
    ),
    command=lambda ctx: [
        "gunicorn", "--bind", f"{ctx.bind_host}:{ctx.port(NAME)}", "--workers", "2", "--threads", "4",
        "--access-logfile", "-", "--graceful-timeout", "5", "teapot.deploy.wsgi.keystone:application",
    ],
    env=_env,
    readiness=Readiness("/v3"),
)
