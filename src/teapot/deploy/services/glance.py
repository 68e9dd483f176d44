"""Glance, the image service, under uWSGI.

Images go to the object store when one is enabled (Swift, or RADOS Gateway through its Swift API),
as the service user `glance` in project `service`; without one, to a volume of a single-replica
StatefulSet.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from teapot.deploy import ini
from teapot.deploy.service import (
    ConfigFile,
    Context,
    Readiness,
    Service,
    Step,
    Workload,
)
from teapot.deploy.services import _openstack as osp

NAME = "glance-api"
PROJECT = "glance"
USER = "glance"
DATA = "/var/lib/glance"
IMAGE_STORAGE = "20Gi"  # the images' volume without an object store (teapot.yaml has no key)


def object_store(settings: Mapping) -> str | None:
    """The name of the enabled object store service, if any."""
    services = settings.get("services") or {}
    if (services.get("swift") or {}).get("enabled"):
        return "swift-proxy"
    if (services.get("rgw") or {}).get("enabled"):
        return "rgw"
    return None


def _store(ctx: Context) -> dict[str, dict]:
    if object_store(ctx.settings):
        return {
            "DEFAULT": {"enabled_backends": "objects:swift"},
            "glance_store": {"default_backend": "objects"},
            "objects": {
                "swift_store_container": "glance",
                "swift_store_create_container_on_put": True,
                "swift_store_large_object_size": 5120,
                "swift_store_large_object_chunk_size": 200,
                "swift_store_endpoint_type": "internalURL",
                "swift_store_region": osp.region(ctx),
                "default_swift_reference": "service",
                "swift_store_config_file": ctx.config_path(PROJECT, "glance-swift.conf"),
            },
        }
    return {
        "DEFAULT": {"enabled_backends": "images:file"},
        "glance_store": {"default_backend": "images"},
        "images": {"filesystem_store_datadir": f"{DATA}/images"},
    }


def glance_api_conf(ctx: Context) -> str:
    return ini.render(osp.sections(
        {
            "DEFAULT": {"use_stderr": True, "show_image_direct_url": False},
            "database": osp.database(ctx, PROJECT),
            "keystone_authtoken": osp.keystone_authtoken(ctx, USER, "image"),
            "paste_deploy": {"flavor": "keystone",
                             "config_file": ctx.config_path(PROJECT, "glance-api-paste.ini")},
            "os_glance_staging_store": {"filesystem_store_datadir": f"{DATA}/staging"},
            "os_glance_tasks_store": {"filesystem_store_datadir": f"{DATA}/tasks"},
            "oslo_concurrency": osp.oslo_concurrency(ctx, PROJECT),
            "oslo_middleware": {"enable_proxy_headers_parsing": True},
        },
        _store(ctx),
    ))


def glance_api_paste_ini(ctx: Context) -> str:
    return ini.render({
        "composite:glance-api-keystone": {
            "paste.composite_factory": "glance.api:root_app_factory",
            "/": "api", "/healthcheck": "healthcheck",
        },
        "composite:api": {
            "paste.composite_factory": "glance.api:pipeline_factory",
            "keystone": "http_proxy_to_wsgi versionnegotiation authtoken context rootapp",
        },
        "composite:rootapp": {
            "paste.composite_factory": "glance.api:root_app_factory",
            "/": "apiversions", "/v2": "apiv2app",
        },
        "app:apiversions": osp.paste_app("glance.api.versions:create_resource"),
        "app:apiv2app": osp.paste_app("glance.api.v2.router:API.factory"),
        "app:healthcheck": osp.paste_healthcheck(),
        "filter:versionnegotiation": osp.paste_filter(
            "glance.api.middleware.version_negotiation:VersionNegotiationFilter.factory"),
        "filter:context": osp.paste_filter(
            "glance.api.middleware.context:ContextMiddleware.factory"),
        "filter:authtoken": {"paste.filter_factory": "keystonemiddleware.auth_token:filter_factory",
                             "delay_auth_decision": True},
        "filter:http_proxy_to_wsgi": osp.paste_filter("oslo_middleware:HTTPProxyToWSGI.factory"),
    })


def glance_swift_conf(ctx: Context) -> str:
    """The Swift account images go to: the glance user's, through Keystone."""
    return ini.render({"service": {
        "auth_version": 3,
        "auth_address": osp.keystone_url(ctx),
        "user": f"service:{USER}",
        "key": ctx.secret(osp.password_secret(USER)),
        "user_domain_id": "default",
        "project_domain_id": "default",
    }})


def _conf(ctx: Context) -> str:
    return ctx.config_path(PROJECT, "glance-api.conf")


SERVICE = Service(
    name=NAME,
    description="OpenStack Image (Glance API)",
    package="glance",
    image="glance",
    port=9292,
    config_files=(ConfigFile("glance-api.conf", glance_api_conf, secret=True),
                  ConfigFile("glance-api-paste.ini", glance_api_paste_ini)),
    config_dir=PROJECT,
    settings_key=PROJECT,
    database=PROJECT,
    bootstrap=(Step("db_sync", osp.command("glance-manage", _conf, "db_sync")),),
    command=lambda ctx: osp.uwsgi(ctx, NAME, "glance.wsgi.api:application"),
    env=lambda ctx: {"OS_GLANCE_CONFIG_DIR": ctx.config_path(PROJECT, "")},
    readiness=Readiness("/healthcheck"),
    depends_on=("keystone",),
    keystone=osp.registration("image", "glance", "", USER),
    ingress="image",
    cache=True,
)


def service(settings: Mapping) -> Service:
    """Glance for these settings: on the object store when there is one, else on a volume."""
    store = object_store(settings)
    if store:
        return dataclasses.replace(
            SERVICE, depends_on=SERVICE.depends_on + (store,),
            config_files=SERVICE.config_files + (
                ConfigFile("glance-swift.conf", glance_swift_conf, secret=True),))
    return dataclasses.replace(SERVICE, workload=Workload(
        kind="StatefulSet", storage=IMAGE_STORAGE, data_dir=DATA, scalable=False))
