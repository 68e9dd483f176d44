"""Barbican, the key manager: its API under gunicorn in a box (`teapot up --storage`), secrets
encrypted by the simple_crypto plugin with a key-encryption key derived from a generated secret,
its database in SQLite in the state directory.
"""

from __future__ import annotations

import base64
import hashlib

from teapot.deploy import ini
from teapot.deploy.service import ConfigFile, Context, Readiness, Service, Step
from teapot.deploy.services import _openstack as osp

NAME = "barbican-api"
PROJECT = "barbican"
USER = "barbican"


def kek(ctx: Context) -> str:
    """simple_crypto's key-encryption key: base64 of 32 bytes."""
    return base64.b64encode(hashlib.sha256(ctx.secret("barbican-kek").encode()).digest()).decode()


def barbican_conf(ctx: Context) -> str:
    return ini.render({
        "DEFAULT": {"use_stderr": True, "host_href": ctx.public_url(NAME)},
        "database": {"connection": ctx.database_url(PROJECT)},
        "secretstore": {"enabled_secretstore_plugins": ["store_crypto"]},
        "crypto": {"enabled_crypto_plugins": ["simple_crypto"]},
        "simple_crypto_plugin": {"kek": kek(ctx)},
        "keystone_authtoken": osp.keystone_authtoken(ctx, USER, "key-manager"),
        "oslo_messaging_notifications": {"driver": "noop"},
    })


def api_paste_ini(ctx: Context) -> str:
    return ini.render({
        **osp.paste_common(),
        "composite:main": {"use": "egg:Paste#urlmap", "/": "barbican_version",
                           "/healthcheck": "healthcheck", "/v1": "barbican_api"},
        "pipeline:barbican_version": {
            "pipeline": "request_id http_proxy_to_wsgi microversion versionapp"},
        "pipeline:barbican_api": {
            "pipeline": "request_id http_proxy_to_wsgi authtoken context microversion apiapp"},
        "app:apiapp": osp.paste_app("barbican.api.app:create_main_app"),
        "app:versionapp": osp.paste_app("barbican.api.app:create_version_app"),
        "filter:context": osp.paste_filter(
            "barbican.api.middleware.context:ContextMiddleware.factory"),
        "filter:microversion": osp.paste_filter(
            "barbican.api.middleware.microversion:MicroversionMiddleware.factory"),
        "filter:request_id": osp.paste_filter("oslo_middleware.request_id:RequestId.factory"),
    })


def _env(ctx: Context) -> dict[str, str]:
    return {"HOME": ctx.config_path(PROJECT, ""),
            "TEAPOT_WSGI_PASTE_FILE": ctx.config_path(PROJECT, "barbican-api-paste.ini")}


SERVICE = Service(
    name=NAME,
    description="OpenStack Key Manager API (Barbican, simple_crypto)",
    package="barbican",
    image="barbican",
    port=9311,
    config_files=(ConfigFile("barbican.conf", barbican_conf, secret=True),
                  ConfigFile("barbican-api-paste.ini", api_paste_ini)),
    config_dir=PROJECT,
    settings_key=PROJECT,
    database=PROJECT,
    bootstrap=(Step("db upgrade", lambda ctx: ["barbican-manage", "db", "upgrade"], env=_env),),
    command=lambda ctx: osp.gunicorn(ctx, NAME, "teapot.deploy.wsgi.barbican:application"),
    env=_env,
    readiness=Readiness("/healthcheck"),
    depends_on=("keystone",),
    keystone=osp.registration("key-manager", "barbican", "", USER),
    ingress="key-manager",
)
