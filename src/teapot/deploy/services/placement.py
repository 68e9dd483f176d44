"""Placement, the resource inventory Nova schedules against, under uWSGI."""

from __future__ import annotations

from teapot.deploy import ini
from teapot.deploy.service import (
    ConfigFile,
    Context,
    Readiness,
    Service,
    Step,
)
from teapot.deploy.services import _openstack as osp

NAME = "placement-api"
PROJECT = "placement"
USER = "placement"


def placement_conf(ctx: Context) -> str:
    return ini.render({
        "DEFAULT": {"use_stderr": True},
        "api": {"auth_strategy": "keystone"},
        "placement_database": osp.database(ctx, PROJECT),
        "keystone_authtoken": osp.keystone_authtoken(ctx, USER, "placement"),
        "oslo_middleware": {"enable_proxy_headers_parsing": True},
    })


def _conf(ctx: Context) -> str:
    return ctx.config_path(PROJECT, "placement.conf")


SERVICE = Service(
    name=NAME,
    description="OpenStack Placement",
    package="openstack-placement",
    image="placement",
    port=8778,
    config_files=(ConfigFile("placement.conf", placement_conf, secret=True),),
    config_dir=PROJECT,
    settings_key=PROJECT,
    database=PROJECT,
    bootstrap=(Step("db sync", osp.command("placement-manage", _conf, "db", "sync")),),
    command=lambda ctx: osp.uwsgi(ctx, NAME, "placement.wsgi.api:application"),
    env=lambda ctx: {"OS_PLACEMENT_CONFIG_DIR": ctx.config_path(PROJECT, "")},
    readiness=Readiness("/"),
    depends_on=("keystone",),
    keystone=osp.registration("placement", "placement", "", USER),
    ingress="placement",
    cache=True,
)
