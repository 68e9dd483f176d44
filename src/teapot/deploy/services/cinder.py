"""Cinder, the block storage service: API (uWSGI), scheduler, and a volume service on each
control-plane node serving the LVM volume group `cinder-volumes` of that node over iSCSI (LIO).

The volume group is the operator's to create; a node without it reports its backend down.
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

API = "cinder-api"
SCHEDULER = "cinder-scheduler"
VOLUME = "cinder-volume"
PROJECT = "cinder"
USER = "cinder"
BACKEND = "lvm"
VOLUME_GROUP = "cinder-volumes"
VOLUME_HOST_PATHS = ("/dev", "/lib/modules", "/run/lvm", "/sys/kernel/config", "/etc/target",
                     "/var/lib/cinder")


def cinder_conf(ctx: Context) -> str:
    return osp.service_conf(ctx, PROJECT, USER, {
        "DEFAULT": {
            "auth_strategy": "keystone",
            "enabled_backends": [BACKEND],
            "glance_api_servers": ctx.url("glance-api") if osp.enabled(ctx, "glance") else None,
            "api_paste_config": ctx.config_path(PROJECT, "api-paste.ini"),
            "rootwrap_config": ctx.config_path(PROJECT, "rootwrap.conf"),
        },
        # Cinder tells Nova about extended volumes as the nova user.
        "nova": ({**osp.service_auth(ctx, "nova"), "interface": "internal"}
                 if osp.enabled(ctx, "nova") else {}),
        BACKEND: {
            "volume_driver": "cinder.volume.drivers.lvm.LVMVolumeDriver",
            "volume_backend_name": BACKEND,
            "volume_group": VOLUME_GROUP,
            "target_helper": "lioadm",
            "target_protocol": "iscsi",
        },
    })


def api_paste_ini(ctx: Context) -> str:
    return ini.render({
        **osp.paste_common(),
        "composite:osapi_volume": {"use": "call:cinder.api:root_app_factory", "/": "apiversions",
                                   "/healthcheck": "healthcheck", "/v3": "openstack_volume_api_v3"},
        "composite:openstack_volume_api_v3": {
            "use": "call:cinder.api.middleware.auth:pipeline_factory",
            "keystone": "request_id http_proxy_to_wsgi faultwrap sizelimit authtoken "
                        "keystonecontext apiv3",
        },
        "pipeline:apiversions": {
            "pipeline": "request_id http_proxy_to_wsgi faultwrap osvolumeversionapp"},
        "app:apiv3": osp.paste_app("cinder.api.v3.router:APIRouter.factory"),
        "app:osvolumeversionapp": osp.paste_app("cinder.api.versions:Versions.factory"),
        "filter:request_id": osp.paste_filter("cinder.api.middleware.request_id:RequestId.factory"),
        "filter:faultwrap": osp.paste_filter("cinder.api.middleware.fault:FaultWrapper.factory"),
        "filter:keystonecontext": osp.paste_filter(
            "cinder.api.middleware.auth:CinderKeystoneContext.factory"),
    })


def _conf(ctx: Context) -> str:
    return ctx.config_path(PROJECT, "cinder.conf")


_CONFIG = (ConfigFile("cinder.conf", cinder_conf, secret=True),
           ConfigFile("api-paste.ini", api_paste_ini),
           ConfigFile("rootwrap.conf", lambda ctx: osp.rootwrap_conf(PROJECT)))

API_SERVICE = Service(
    name=API,
    description="OpenStack Block Storage API (Cinder)",
    package="cinder",
    image="cinder",
    port=8776,
    config_files=_CONFIG,
    config_dir=PROJECT,
    settings_key=PROJECT,
    database=PROJECT,
    bootstrap=(Step("db sync", osp.command("cinder-manage", _conf, "db", "sync")),),
    command=lambda ctx: osp.uwsgi(ctx, API, "cinder.wsgi.api:application"),
    readiness=Readiness("/healthcheck"),
    depends_on=("keystone",),
    keystone=osp.registration("block-storage", "cinder", "/v3/%(project_id)s", USER),
    ingress="volume",
    messaging=True,
    cache=True,
)

SCHEDULER_SERVICE = osp.worker(API_SERVICE, SCHEDULER, "OpenStack Block Storage scheduler",
                               osp.command("cinder-scheduler", _conf))

VOLUME_SERVICE = osp.worker(
    API_SERVICE, VOLUME,
    "OpenStack Block Storage volume service (LVM over iSCSI) on control-plane nodes",
    osp.command("cinder-volume", _conf),
    # Host network: the node's address is the iSCSI portal ($my_ip) and the service's host name.
    workload=Workload(kind="DaemonSet", nodes="control-plane", privileged=True, host_network=True,
                      host_paths=VOLUME_HOST_PATHS, scalable=False),
)

SERVICES = (API_SERVICE, SCHEDULER_SERVICE, VOLUME_SERVICE)


# --- Cinder in a box (`teapot up --storage`) ----------------------------------------------------
# The RBD driver on the box's Ceph (pool `volumes`, as the cephx user client.cinder); database in
# the box's MariaDB, RPC over the box's RabbitMQ. Without Nova: attachments are made through the
# attachments API with a connector.

RBD_BACKEND = "ceph"
# The volume type of LUKS-encrypted volumes (front-end: the host opens LUKS with a key it reads
# from Barbican; the back-end only ever stores ciphertext).
ENCRYPTED_TYPE = "luks"
ENCRYPTION = {"provider": "luks", "cipher": "aes-xts-plain64", "key_size": 256,
              "control_location": "front-end"}


def box_cinder_conf(ctx: Context) -> str:
    from teapot.deploy.services import ceph, infrastructure

    return ini.render(osp.sections(
        {
            "DEFAULT": {
                "use_stderr": True,
                "state_path": ctx.data_path(PROJECT, "state"),
                "auth_strategy": "keystone",
                "api_paste_config": ctx.config_path(PROJECT, "api-paste.ini"),
                "rootwrap_config": ctx.config_path(PROJECT, "rootwrap.conf"),
                "enabled_backends": [RBD_BACKEND],
                "host": "teapot-box",
                "osapi_volume_workers": 1,
                # A box stops its services within seconds (then kills them).
                "graceful_shutdown_timeout": 5,
                "transport_url": infrastructure.box_messaging_url(ctx),
            },
            "database": osp.database(ctx, PROJECT),
            "keystone_authtoken": osp.keystone_authtoken(ctx, USER, "volumev3"),
            "oslo_concurrency": osp.oslo_concurrency(ctx, PROJECT),
            "oslo_messaging_notifications": {"driver": "noop"},
            # Keys of encrypted volumes live in Barbican, in the volume's project (made with the
            # caller's token when a volume of an encrypted type is created).
            "key_manager": {"backend": "barbican"},
            "barbican": {"auth_endpoint": osp.keystone_url(ctx),
                         "barbican_endpoint_type": "public"},
            RBD_BACKEND: {
                "volume_driver": "cinder.volume.drivers.rbd.RBDDriver",
                "volume_backend_name": RBD_BACKEND,
                "rbd_pool": ceph.VOLUMES_POOL,
                "rbd_ceph_conf": ceph.conf_path(ctx),
                "rbd_user": ceph.CINDER_USER.removeprefix("client."),
                "rbd_secret_uuid": ceph.libvirt_secret_uuid(ctx),
                "report_discard_supported": True,
            },
        },
    ))


def _box_env(ctx: Context) -> dict[str, str]:
    return {"TEAPOT_WSGI_CONFIG_FILE": _conf(ctx)}


def box_services() -> list:
    """The API (gunicorn), scheduler and volume service of a box, on the box's Ceph."""
    import dataclasses

    from teapot.deploy.services import ceph

    config = (ConfigFile("cinder.conf", box_cinder_conf, secret=True),
              *(cf for cf in _CONFIG if cf.name != "cinder.conf"))
    api = dataclasses.replace(
        API_SERVICE,
        description="OpenStack Block Storage API (Cinder, RBD)",
        config_files=config,
        command=lambda ctx: osp.gunicorn(ctx, API, "teapot.deploy.wsgi.cinder:application"),
        env=_box_env,
        depends_on=("keystone", "mariadb", "rabbitmq"),
        keystone=osp.registration("volumev3", "cinderv3", "/v3/%(project_id)s", USER),
        messaging=False,
        cache=False,
    )
    scheduler = osp.worker(api, SCHEDULER, "OpenStack Block Storage scheduler",
                           osp.command("cinder-scheduler", _conf))
    volume = osp.worker(api, VOLUME, "OpenStack Block Storage volume service (RBD)",
                        osp.command("cinder-volume", _conf), depends_on=(API, ceph.MDS))
    return [api, scheduler, volume]
