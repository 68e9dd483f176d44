"""Octavia, the load-balancer service, as a box runs it (`teapot up --with-octavia`): Octavia's API
and its driver agent, in front of Teapot's own load balancers.

The API (gunicorn, one worker) has one provider, `teapot` (`teapot.octavia.driver`), which turns
Octavia's load balancers, listeners, pools, members and health monitors into Teapot load balancers
(`/v1/loadbalancers`), and Teapot's network driver (`teapot.octavia.network`), for which a VIP
network is a Teapot tenant network. Nothing of Octavia's amphora machinery runs: no worker, health
manager, housekeeping, RabbitMQ (`transport_url = fake:/`), Nova or Neutron. The driver agent
takes the provider's status updates over unix sockets in Octavia's data directory and writes them
into Octavia's database, which is in the box's MariaDB (Octavia's migrations need a server).
"""

from __future__ import annotations

from teapot.deploy import ini
from teapot.deploy.service import ConfigFile, Context, Readiness, Service, Step
from teapot.deploy.services import _openstack as osp

API = "octavia-api"
DRIVER_AGENT = "octavia-driver-agent"
PROJECT = "octavia"
USER = "octavia"
PROVIDER = "teapot"
SOCKETS = ("status", "stats", "get")
MAX_SOCKET_PATH = 107  # a unix socket's path (sun_path), its final NUL aside


def socket_path(ctx: Context, kind: str) -> str:
    path = ctx.data_path(PROJECT, f"{kind}.sock")
    if len(path.encode()) > MAX_SOCKET_PATH:
        raise ValueError(f"Octavia's driver agent socket {path} is longer than a unix socket's "
                         f"path may be ({MAX_SOCKET_PATH} bytes): use a shorter --state-dir")
    return path


def octavia_conf(ctx: Context) -> str:
    return ini.render(osp.sections(
        {
            "DEFAULT": {"use_stderr": True, "transport_url": "fake:/"},
            "api_settings": {
                "auth_strategy": "keystone",
                # a DictOpt: no comma or colon in the description
                "enabled_provider_drivers": f"{PROVIDER}:Teapot load balancers (TCP; HAProxy "
                                            "with a VIP on the public network)",
                "default_provider_driver": PROVIDER,
            },
            "database": osp.database(ctx, PROJECT),
            "keystone_authtoken": osp.keystone_authtoken(ctx, USER, "load-balancer"),
            # The VIP network is a Teapot tenant network: Teapot's network driver reads it.
            "controller_worker": {"network_driver": PROVIDER, "loadbalancer_topology": "SINGLE"},
            "networking": {"allow_vip_network_id": True, "allow_vip_subnet_id": True,
                           "allow_vip_port_id": False},
            "driver_agent": {f"{kind}_socket_path": socket_path(ctx, kind) for kind in SOCKETS},
            # Where the provider and the network driver reach Teapot: as Octavia's own service
            # user (admin and service roles), Teapot's endpoint from the catalog.
            "teapot": osp.service_auth(ctx, USER),
            "oslo_messaging_notifications": {"driver": "noop"},
            "oslo_policy": {"enforce_scope": True, "enforce_new_defaults": True},
        },
        {"oslo_concurrency": osp.oslo_concurrency(ctx, PROJECT)},
    ))


def _conf(ctx: Context) -> str:
    return ctx.config_path(PROJECT, "octavia.conf")


def _env(ctx: Context) -> dict[str, str]:
    return {"TEAPOT_WSGI_CONFIG_FILE": _conf(ctx)}


_CONFIG = (ConfigFile("octavia.conf", octavia_conf, secret=True),)

API_SERVICE = Service(
    name=API,
    description="OpenStack Load-balancing API (Octavia) with Teapot's provider driver",
    package="octavia",
    image="octavia",
    port=9876,
    config_files=_CONFIG,
    config_dir=PROJECT,
    settings_key=PROJECT,
    database=PROJECT,
    bootstrap=(Step("upgrade head", lambda ctx: ["octavia-db-manage", "--config-file",
                                                  _conf(ctx), "upgrade", "head"]),),
    # One worker: the provider's status threads live in it.
    command=lambda ctx: osp.gunicorn(ctx, API, "teapot.deploy.wsgi.octavia:application"),
    env=_env,
    readiness=Readiness("/"),
    depends_on=("keystone", "mariadb", "teapot-api"),
    keystone=osp.registration("load-balancer", "octavia", "", USER),
    ingress="load-balancer",
)

DRIVER_AGENT_SERVICE = osp.worker(
    API_SERVICE, DRIVER_AGENT, "Octavia's driver agent: provider status updates into its database",
    lambda ctx: ["octavia-driver-agent", "--config-file", _conf(ctx)],
)


def box_services() -> list[Service]:
    return [API_SERVICE, DRIVER_AGENT_SERVICE]
