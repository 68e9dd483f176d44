"""Nova, the compute service: API (uWSGI), conductor, scheduler, and on compute nodes nova-compute
beside libvirt. All of them read one nova.conf; one cell (cell1) besides cell0.

nova-api carries the bootstrap and the databases: `nova` (cell1), plus `nova_api` and `nova_cell0`
in `extra["databases"]`. Nova's service users: `nova` (tokens, service tokens, calls to Cinder),
`placement` and `neutron` for its calls to those (their passwords are theirs).
"""

from __future__ import annotations

import shlex

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

API = "nova-api"
CONDUCTOR = "nova-conductor"
SCHEDULER = "nova-scheduler"
COMPUTE = "nova-compute"
LIBVIRT = "libvirt"
PROJECT = "nova"
USER = "nova"
CELL = "cell1"
DATABASES = ("nova_api", "nova_cell0")
LIBVIRT_CONFIG_DIR = "nova-libvirt"  # not /etc/libvirt: libvirt writes domain definitions there

STATE = "/var/lib/nova"
COMPUTE_HOST_PATHS = ("/var/lib/nova", "/var/lib/libvirt", "/run/libvirt", "/run/openvswitch",
                      "/lib/modules", "/dev", "/etc/iscsi")
LIBVIRT_HOST_PATHS = ("/var/lib/nova", "/var/lib/libvirt", "/run/libvirt", "/etc/libvirt/qemu",
                      "/run/openvswitch", "/lib/modules", "/dev", "/sys/fs/cgroup")


def nova_conf(ctx: Context) -> str:
    cinder = osp.enabled(ctx, "cinder")
    return ini.render(osp.sections(
        {
            "DEFAULT": {
                "use_stderr": True,
                "state_path": STATE,
                "compute_driver": "libvirt.LibvirtDriver",
                # Without Neutron's metadata agent, instances read their metadata and network
                # configuration from a config drive.
                "force_config_drive": True,
                "allow_resize_to_same_host": True,
                "rootwrap_config": ctx.config_path(PROJECT, "rootwrap.conf"),
            },
            "api": {"auth_strategy": "keystone"},
            "api_database": osp.database(ctx, "nova_api"),
            "database": osp.database(ctx, PROJECT),
            "keystone_authtoken": osp.keystone_authtoken(ctx, USER, "compute"),
            "service_user": {"send_service_user_token": True,
                             **osp.service_auth(ctx, USER), "region_name": None},
            "placement": osp.service_auth(ctx, "placement", ctx.url("placement-api")),
            "neutron": {**osp.service_auth(ctx, "neutron", ctx.url("neutron-server")),
                        "service_metadata_proxy": False},
            "glance": {"endpoint_override": ctx.url("glance-api"), "region_name": osp.region(ctx),
                       "num_retries": 3},
            "cinder": {
                **osp.service_auth(ctx, USER), "endpoint_override": None,
                "os_region_name": osp.region(ctx),
                "endpoint_template": ctx.url("cinder-api") + "/v3/%(project_id)s",
            } if cinder else {},
            "conductor": {"workers": 2},
            "scheduler": {"workers": 2, "discover_hosts_in_cells_interval": 60},
            "libvirt": {"virt_type": "kvm"},
            "vnc": {"enabled": False},
            "upgrade_levels": {"compute": "auto"},
            "wsgi": {"api_paste_config": ctx.config_path(PROJECT, "api-paste.ini")},
            **osp.common_sections(ctx, PROJECT),
            # Read by the map_cell0 bootstrap step only (nova ignores the section): the cell0 URL
            # carries a password, which must not appear in a command line.
            "teapot": {"cell0_connection": ctx.database_url("nova_cell0")},
        },
        osp.messaging(ctx, PROJECT),
    ))


def api_paste_ini(ctx: Context) -> str:
    v21 = ("http_proxy_to_wsgi compute_req_id faultwrap request_log sizelimit authtoken "
           "keystonecontext")
    return ini.render({
        **osp.paste_common(),
        "composite:osapi_compute": {
            "use": "call:nova.api.openstack.urlmap:urlmap_factory",
            "/": "oscomputeversions",
            "/v2.1": "oscomputeversion_v2",
            "/v2.1/+": "openstack_compute_api_v21",
        },
        "composite:openstack_compute_api_v21": {
            "use": "call:nova.api.auth:pipeline_factory_v21",
            "keystone": f"{v21} osapi_compute_app_v21",
        },
        "pipeline:oscomputeversions": {
            "pipeline": "faultwrap request_log http_proxy_to_wsgi oscomputeversionapp"},
        "pipeline:oscomputeversion_v2": {
            "pipeline": "compute_req_id faultwrap request_log http_proxy_to_wsgi "
                        "oscomputeversionapp_v2"},
        "app:osapi_compute_app_v21": osp.paste_app(
            "nova.api.openstack.compute:APIRouterV21.factory"),
        "app:oscomputeversionapp": osp.paste_app(
            "nova.api.openstack.compute.versions:Versions.factory"),
        "app:oscomputeversionapp_v2": osp.paste_app(
            "nova.api.openstack.compute.versions:VersionsV2.factory"),
        "filter:request_log": osp.paste_filter("nova.api.openstack.requestlog:RequestLog.factory"),
        "filter:compute_req_id": osp.paste_filter(
            "nova.api.compute_req_id:ComputeReqIdMiddleware.factory"),
        "filter:faultwrap": osp.paste_filter("nova.api.openstack:FaultWrapper.factory"),
        "filter:keystonecontext": osp.paste_filter("nova.api.auth:NovaKeystoneContext.factory"),
    })


def libvirtd_conf(ctx: Context) -> str:
    # libvirt's own syntax: strings quoted. Only the local socket, which nova-compute reaches
    # through the shared /run/libvirt.
    return "\n".join([
        "# Generated by Teapot.",
        "listen_tls = 0",
        "listen_tcp = 0",
        'unix_sock_group = "root"',
        'unix_sock_rw_perms = "0770"',
        'auth_unix_ro = "none"',
        'auth_unix_rw = "none"',
        'log_outputs = "3:stderr"',
        "",
    ])


def qemu_conf(ctx: Context) -> str:
    return "\n".join([
        "# Generated by Teapot.",
        'stdio_handler = "file"',
        "max_files = 32768",
        "max_processes = 131072",
        "",
    ])


def _conf(ctx: Context) -> str:
    return ctx.config_path(PROJECT, "nova.conf")


def _libvirt_command(ctx: Context) -> list[str]:
    qemu = shlex.quote(ctx.config_path(LIBVIRT_CONFIG_DIR, "qemu.conf"))
    libvirtd = shlex.quote(ctx.config_path(LIBVIRT_CONFIG_DIR, "libvirtd.conf"))
    return ["sh", "-c", f"cp {qemu} /etc/libvirt/qemu.conf && exec libvirtd --config {libvirtd}"]


def _manage(ctx: Context, *args: str) -> list[str]:
    return ["nova-manage", "--config-file", _conf(ctx), *args]


def _map_cell0(ctx: Context) -> list[str]:
    read = ("import configparser, sys; c = configparser.ConfigParser(interpolation=None); "
            'c.read(sys.argv[1]); print(c["teapot"]["cell0_connection"])')
    url = f"$(python3 -c {shlex.quote(read)} {shlex.quote(_conf(ctx))})"
    return ["sh", "-c", f'{shlex.join(_manage(ctx, "cell_v2", "map_cell0"))} '
                        f'--database_connection "{url}"']


def _create_cell(ctx: Context) -> list[str]:
    # create_cell fails when the cell exists; the bootstrap runs again on every config change.
    listed = f"{shlex.join(_manage(ctx, 'cell_v2', 'list_cells'))} | grep -q ' {CELL} '"
    create = shlex.join(_manage(ctx, "cell_v2", "create_cell", "--name", CELL, "--verbose"))
    return ["sh", "-c", f"{listed} || {create}"]


_CONFIG = (ConfigFile("nova.conf", nova_conf, secret=True),
           ConfigFile("api-paste.ini", api_paste_ini),
           ConfigFile("rootwrap.conf", lambda ctx: osp.rootwrap_conf(PROJECT)))

API_SERVICE = Service(
    name=API,
    description="OpenStack Compute API (Nova)",
    package="nova",
    image="nova",
    port=8774,
    config_files=_CONFIG,
    config_dir=PROJECT,
    settings_key=PROJECT,
    database=PROJECT,
    bootstrap=(
        Step("api_db sync", lambda ctx: _manage(ctx, "api_db", "sync")),
        Step("map_cell0", _map_cell0),
        Step("create_cell", _create_cell),
        Step("db sync", lambda ctx: _manage(ctx, "db", "sync")),
    ),
    command=lambda ctx: osp.uwsgi(ctx, API, "nova.wsgi.osapi_compute:application"),
    env=lambda ctx: {"OS_NOVA_CONFIG_DIR": ctx.config_path(PROJECT, "")},
    readiness=Readiness("/"),
    depends_on=("keystone", "placement-api", "glance-api", "neutron-server"),
    keystone=osp.registration("compute", "nova", "/v2.1", USER),
    ingress="compute",
    messaging=True,
    cache=True,
    extra={"databases": DATABASES},
)

CONDUCTOR_SERVICE = osp.worker(API_SERVICE, CONDUCTOR, "OpenStack Compute conductor",
                               osp.command("nova-conductor", _conf))

SCHEDULER_SERVICE = osp.worker(API_SERVICE, SCHEDULER, "OpenStack Compute scheduler",
                               osp.command("nova-scheduler", _conf),
                               depends_on=(API, "placement-api"))

LIBVIRT_SERVICE = Service(
    name=LIBVIRT,
    description="libvirt and QEMU/KVM on every compute node",
    package="",
    image="libvirt",
    config_files=(ConfigFile("libvirtd.conf", libvirtd_conf), ConfigFile("qemu.conf", qemu_conf)),
    config_dir=LIBVIRT_CONFIG_DIR,
    settings_key=PROJECT,
    # qemu.conf is read from /etc/libvirt only; the rest of /etc/libvirt stays the image's.
    command=_libvirt_command,
    depends_on=("openvswitch",),
    workload=Workload(kind="DaemonSet", nodes="compute", privileged=True, host_network=True,
                      host_paths=LIBVIRT_HOST_PATHS, scalable=False, cpu="100m", memory="256Mi"),
)

COMPUTE_SERVICE = osp.worker(
    API_SERVICE, COMPUTE, "OpenStack Compute agent (libvirt driver) on every compute node",
    osp.command("nova-compute", _conf),
    depends_on=(CONDUCTOR, LIBVIRT, "placement-api", "neutron-openvswitch-agent"),
    workload=Workload(kind="DaemonSet", nodes="compute", privileged=True, host_network=True,
                      host_paths=COMPUTE_HOST_PATHS, scalable=False, cpu="100m", memory="512Mi"),
)

SERVICES = (API_SERVICE, CONDUCTOR_SERVICE, SCHEDULER_SERVICE, LIBVIRT_SERVICE, COMPUTE_SERVICE)
