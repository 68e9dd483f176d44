"""Manila, the shared file system service: API (uWSGI), scheduler, and a share service on each
control-plane node exporting NFS shares carved from the LVM volume group `lvm-shares` of that node
(driver_handles_share_servers = False).

The volume group and the kernel NFS server are the operator's; a share type is an admin's to create
(`openstack share type create default False`).
"""

from __future__ import annotations

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

API = "manila-api"
SCHEDULER = "manila-scheduler"
SHARE = "manila-share"
PROJECT = "manila"
USER = "manila"
BACKEND = "lvm"
SHARE_HOST_PATHS = ("/dev", "/lib/modules", "/run/lvm", "/var/lib/manila", "/var/lib/nfs")


def manila_conf(ctx: Context) -> str:
    return osp.service_conf(ctx, PROJECT, USER, {
        "DEFAULT": {
            "auth_strategy": "keystone",
            "enabled_share_backends": [BACKEND],
            "enabled_share_protocols": ["NFS"],
            "default_share_type": "default",
            "api_paste_config": ctx.config_path(PROJECT, "api-paste.ini"),
            "rootwrap_config": ctx.config_path(PROJECT, "rootwrap.conf"),
        },
        BACKEND: {
            "share_driver": "manila.share.drivers.lvm.LVMShareDriver",
            "share_backend_name": BACKEND,
            "driver_handles_share_servers": False,
            "lvm_share_volume_group": "lvm-shares",
            # $my_ip: Manila's own option, the node's address (host network).
            "lvm_share_export_ips": "$my_ip",
        },
    })


def api_paste_ini(ctx: Context) -> str:
    return ini.render({
        **osp.paste_common(),
        "composite:osapi_share": {"use": "call:manila.api:root_app_factory", "/": "apiversions",
                                  "/healthcheck": "healthcheck", "/v2": "openstack_share_api_v2"},
        "composite:openstack_share_api_v2": {
            "use": "call:manila.api.middleware.auth:pipeline_factory",
            "keystone": "request_id faultwrap http_proxy_to_wsgi sizelimit authtoken "
                        "keystonecontext apiv2",
        },
        "pipeline:apiversions": {
            "pipeline": "request_id faultwrap http_proxy_to_wsgi osshareversionapp"},
        "app:apiv2": osp.paste_app("manila.api.v2.router:APIRouter.factory"),
        "app:osshareversionapp": osp.paste_app("manila.api.versions:VersionsRouter.factory"),
        "filter:request_id": osp.paste_filter("oslo_middleware.request_id:RequestId.factory"),
        "filter:faultwrap": osp.paste_filter("manila.api.middleware.fault:FaultWrapper.factory"),
        "filter:keystonecontext": osp.paste_filter(
            "manila.api.middleware.auth:ManilaKeystoneContext.factory"),
    })


def _conf(ctx: Context) -> str:
    return ctx.config_path(PROJECT, "manila.conf")


_CONFIG = (ConfigFile("manila.conf", manila_conf, secret=True),
           ConfigFile("api-paste.ini", api_paste_ini),
           ConfigFile("rootwrap.conf", lambda ctx: osp.rootwrap_conf(PROJECT)))

API_SERVICE = Service(
    name=API,
    description="OpenStack Shared File Systems API (Manila)",
    package="manila",
    image="manila",
    port=8786,
    config_files=_CONFIG,
    config_dir=PROJECT,
    settings_key=PROJECT,
    database=PROJECT,
    bootstrap=(Step("db sync", osp.command("manila-manage", _conf, "db", "sync")),),
    command=lambda ctx: osp.uwsgi(ctx, API, "manila.wsgi.api:application"),
    readiness=Readiness("/healthcheck"),
    depends_on=("keystone",),
    keystone=osp.registration("shared-file-system", "manila", "/v2", USER),
    ingress="share",
    messaging=True,
    cache=True,
)

SCHEDULER_SERVICE = osp.worker(API_SERVICE, SCHEDULER, "OpenStack Shared File Systems scheduler",
                               osp.command("manila-scheduler", _conf))

SHARE_SERVICE = osp.worker(
    API_SERVICE, SHARE,
    "OpenStack Shared File Systems share service (LVM, NFS) on control-plane nodes",
    osp.command("manila-share", _conf),
    workload=Workload(kind="DaemonSet", nodes="control-plane", privileged=True, host_network=True,
                      host_paths=SHARE_HOST_PATHS, scalable=False),
)

SERVICES = (API_SERVICE, SCHEDULER_SERVICE, SHARE_SERVICE)


# --- Manila in a box (`teapot up --storage`) ----------------------------------------------------
# The CephFS native driver on the box's Ceph: shares are subvolumes made through the Ceph
# manager's volumes module, and access rules are cephx users of the tenants. Its database is in
# the box's MariaDB (Manila's migrations do not run on SQLite); RPC over the box's RabbitMQ.

CEPHFS_BACKEND = "cephfsnative"
SHARE_TYPE = "cephfs"  # made by the box once the API answers (see deploy.storage_setup)


def box_manila_conf(ctx: Context) -> str:
    from teapot.deploy.services import ceph, infrastructure

    return ini.render(osp.sections(
        {
            "DEFAULT": {
                "use_stderr": True,
                "state_path": ctx.data_path(PROJECT, "state"),
                "auth_strategy": "keystone",
                "api_paste_config": ctx.config_path(PROJECT, "api-paste.ini"),
                "rootwrap_config": ctx.config_path(PROJECT, "rootwrap.conf"),
                "enabled_share_backends": [CEPHFS_BACKEND],
                "enabled_share_protocols": ["CEPHFS"],
                "default_share_type": SHARE_TYPE,
                "host": "teapot-box",
                "osapi_share_workers": 1,
                # A box stops its services within seconds (then kills them).
                "graceful_shutdown_timeout": 5,
                "transport_url": infrastructure.box_messaging_url(ctx),
            },
            "database": osp.database(ctx, PROJECT),
            "keystone_authtoken": osp.keystone_authtoken(ctx, USER, "sharev2"),
            "oslo_concurrency": osp.oslo_concurrency(ctx, PROJECT),
            "oslo_messaging_notifications": {"driver": "noop"},
            CEPHFS_BACKEND: {
                "driver_handles_share_servers": False,
                "share_backend_name": "CEPHFS",
                "share_driver": "manila.share.drivers.cephfs.driver.CephFSDriver",
                "cephfs_conf_path": ceph.conf_path(ctx),
                "cephfs_auth_id": ceph.MANILA_USER.removeprefix("client."),
                "cephfs_cluster_name": "ceph",
                "cephfs_filesystem_name": ceph.FS_NAME,
                "cephfs_protocol_helper_type": "CEPHFS",
            },
        },
    ))


def _box_env(ctx: Context) -> dict[str, str]:
    return {"TEAPOT_WSGI_CONFIG_FILE": _conf(ctx)}


def box_services() -> list:
    """The API (gunicorn), scheduler and share service of a box, on the box's Ceph."""
    import dataclasses

    from teapot.deploy.services import ceph

    config = (ConfigFile("manila.conf", box_manila_conf, secret=True),
              *(cf for cf in _CONFIG if cf.name != "manila.conf"))
    api = dataclasses.replace(
        API_SERVICE,
        description="OpenStack Shared File Systems API (Manila, CephFS)",
        config_files=config,
        command=lambda ctx: osp.gunicorn(ctx, API, "teapot.deploy.wsgi.manila:application"),
        env=_box_env,
        depends_on=("keystone", "mariadb", "rabbitmq"),
        keystone=dataclasses.replace(osp.registration("sharev2", "manilav2", "/v2", USER),
                                     also_types=(("share", "manila"),)),
        messaging=False,  # the box's RabbitMQ is a dependency of its own
        cache=False,
    )
    scheduler = osp.worker(api, SCHEDULER, "OpenStack Shared File Systems scheduler",
                           osp.command("manila-scheduler", _conf))
    share = osp.worker(api, SHARE, "OpenStack Shared File Systems share service (CephFS)",
                       osp.command("manila-share", _conf), depends_on=(API, ceph.MDS))
    return [api, scheduler, share]
