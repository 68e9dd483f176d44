"""Neutron, the network service, with ML2 and Open vSwitch: the API (uWSGI), the RPC server the
agents talk to, the periodic workers, and on every node Open vSwitch and its agent (VXLAN tenant
networks between nodes, security groups in OVS flows).

No DHCP, L3 or metadata agent: instances get their addresses from the config drive Nova writes.

`box_service()` is Neutron as a box runs it (`teapot up --with-neutron`): the API alone, with ML2's
VLAN type driver and no agents, where Teapot registers its tenant VLANs as provider networks. Its
database is in the box's MariaDB (Neutron's migrations do not run on SQLite); no RabbitMQ: the
API's notifications and RPC casts go nowhere (`transport_url = fake:/`).
"""

from __future__ import annotations

import dataclasses
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

SERVER = "neutron-server"
RPC = "neutron-rpc-server"
PERIODIC = "neutron-periodic-workers"
OVS_AGENT = "neutron-openvswitch-agent"
OVS = "openvswitch"
PROJECT = "neutron"
USER = "neutron"
OVS_RUN = "/run/openvswitch"
OVS_DB = "/var/lib/openvswitch/conf.db"
OVS_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
OVSDB_LOCAL = "ptcp:6640:127.0.0.1"  # the agent's default ovsdb_connection


PHYSICAL_NETWORK = "physnet1"  # the box's provider network, toward which its switch trunks VLANs
BOX_VLAN_RANGE = "100:3000"


def _box(ctx: Context) -> bool:
    return ctx.settings.get("profile") == "box"


def physical_network(ctx: Context) -> str:
    return str(ctx.settings.get("physical_network") or PHYSICAL_NETWORK)


def box_neutron_conf(ctx: Context) -> str:
    return ini.render(osp.sections(
        {
            "DEFAULT": {
                "use_stderr": True,
                "state_path": ctx.data_path(PROJECT, "state"),
                "core_plugin": "ml2",
                # Routers as API objects: tenants attach theirs to Teapot's networks.
                "service_plugins": ["router"],
                "auth_strategy": "keystone",
                "api_paste_config": ctx.config_path(PROJECT, "api-paste.ini"),
                "transport_url": "fake:/",
                "enable_traditional_dhcp": False,
                "notify_nova_on_port_status_changes": False,
                "notify_nova_on_port_data_changes": False,
            },
            "database": osp.database(ctx, PROJECT),
            "keystone_authtoken": osp.keystone_authtoken(ctx, USER, "network"),
            "oslo_messaging_notifications": {"driver": "noop"},
        },
        {"oslo_concurrency": osp.oslo_concurrency(ctx, PROJECT)},
    ))


def box_ml2_conf(ctx: Context) -> str:
    return ini.render({
        "ml2": {
            "type_drivers": ["vlan"],
            "tenant_network_types": [],  # only provider networks, made by admins (Teapot)
            "mechanism_drivers": [],  # no agents: Teapot itself puts hosts on the VLANs
            "extension_drivers": ["port_security"],
        },
        "ml2_type_vlan": {"network_vlan_ranges": f"{physical_network(ctx)}:{BOX_VLAN_RANGE}"},
    })


def neutron_conf(ctx: Context) -> str:
    if _box(ctx):
        return box_neutron_conf(ctx)
    nova = osp.enabled(ctx, "nova")
    return osp.service_conf(ctx, PROJECT, USER, {
        "DEFAULT": {
            "core_plugin": "ml2",
            "auth_strategy": "keystone",
            "api_paste_config": ctx.config_path(PROJECT, "api-paste.ini"),
            # No DHCP agent: ports must not wait for one to provision them.
            "enable_traditional_dhcp": False,
            "notify_nova_on_port_status_changes": nova,
            "notify_nova_on_port_data_changes": nova,
            "rpc_workers": 1,
            "rpc_state_report_workers": 1,
        },
        "nova": {**osp.service_auth(ctx, "nova"), "endpoint_type": "internal"} if nova else {},
    })


def ml2_conf(ctx: Context) -> str:
    if _box(ctx):
        return box_ml2_conf(ctx)
    return ini.render({
        "ml2": {
            "type_drivers": ["flat", "vlan", "vxlan"],
            "tenant_network_types": ["vxlan"],
            "mechanism_drivers": ["openvswitch", "l2population"],
            "extension_drivers": ["port_security"],
        },
        "ml2_type_flat": {"flat_networks": "*"},
        "ml2_type_vxlan": {"vni_ranges": "1:65535"},
    })


def openvswitch_agent_ini(ctx: Context) -> str:
    return ini.render({
        # $my_ip: Neutron's own option, the node's address (the agent runs in the host network).
        "ovs": {"local_ip": "$my_ip", "integration_bridge": "br-int"},
        "agent": {"tunnel_types": ["vxlan"], "l2_population": True},
        "securitygroup": {"firewall_driver": "openvswitch", "enable_security_group": True},
    })


def api_paste_ini(ctx: Context) -> str:
    return ini.render({
        **osp.paste_common(),
        "composite:neutron": {"use": "egg:Paste#urlmap", "/": "neutronversions_composite",
                              "/healthcheck": "healthcheck", "/v2.0": "neutronapi_v2_0"},
        "composite:neutronapi_v2_0": {
            "use": "call:neutron.auth:pipeline_factory",
            "keystone": "http_proxy_to_wsgi request_id catch_errors authtoken keystonecontext "
                        "extensions neutronapiapp_v2_0",
        },
        "composite:neutronversions_composite": {"use": "call:neutron.auth:pipeline_factory",
                                                "keystone": "http_proxy_to_wsgi neutronversions"},
        "filter:request_id": osp.paste_filter("oslo_middleware:RequestId.factory"),
        "filter:catch_errors": osp.paste_filter("oslo_middleware:CatchErrors.factory"),
        "filter:keystonecontext": osp.paste_filter("neutron.auth:NeutronKeystoneContext.factory"),
        "filter:extensions": osp.paste_filter(
            "neutron.api.extensions:plugin_aware_extension_middleware_factory"),
        "app:neutronversions": osp.paste_app("neutron.pecan_wsgi.app:versions_factory"),
        "app:neutronapiapp_v2_0": osp.paste_app("neutron.api.v2.router:APIRouter.factory"),
    })


def _conf(ctx: Context, name: str = "neutron.conf") -> str:
    return ctx.config_path(PROJECT, name)


def _server_args(ctx: Context) -> list[str]:
    return ["--config-file", _conf(ctx), "--config-file", _conf(ctx, "ml2_conf.ini")]


_CONFIG = (ConfigFile("neutron.conf", neutron_conf, secret=True),
           ConfigFile("ml2_conf.ini", ml2_conf),
           ConfigFile("openvswitch_agent.ini", openvswitch_agent_ini),
           ConfigFile("api-paste.ini", api_paste_ini))


def _server_env(ctx: Context) -> dict[str, str]:
    # The WSGI entry point reads these (default: plugins/ml2/ml2_conf.ini, a subdirectory).
    return {"OS_NEUTRON_CONFIG_DIR": _conf(ctx, ""),
            "OS_NEUTRON_CONFIG_FILES": "neutron.conf;ml2_conf.ini"}


SERVER_SERVICE = Service(
    name=SERVER,
    description="OpenStack Networking API (Neutron, ML2/Open vSwitch)",
    package="neutron",
    image="neutron",
    port=9696,
    config_files=_CONFIG,
    config_dir=PROJECT,
    settings_key=PROJECT,
    database=PROJECT,
    bootstrap=(Step("upgrade heads", lambda ctx: ["neutron-db-manage", *_server_args(ctx),
                                                  "upgrade", "heads"]),),
    command=lambda ctx: osp.uwsgi(ctx, SERVER, "neutron.wsgi.api:application"),
    env=_server_env,
    readiness=Readiness("/healthcheck"),
    depends_on=("keystone",),
    keystone=osp.registration("network", "neutron", "", USER),
    ingress="network",
    messaging=True,
    cache=True,
)

RPC_SERVICE = osp.worker(
    SERVER_SERVICE, RPC, "OpenStack Networking RPC server (the agents' side of Neutron)",
    lambda ctx: ["neutron-rpc-server", *_server_args(ctx)],
)

PERIODIC_SERVICE = osp.worker(
    SERVER_SERVICE, PERIODIC, "OpenStack Networking periodic workers",
    lambda ctx: ["neutron-periodic-workers", *_server_args(ctx)],
    workload=Workload(scalable=False),
)


def _openvswitch_command(ctx: Context) -> list[str]:
    run, db, schema = OVS_RUN, OVS_DB, OVS_SCHEMA
    script = "\n".join([
        "set -e",
        f"mkdir -p {run} {shlex.quote(db.rsplit('/', 1)[0])}",
        f"rm -f {run}/ovsdb-server.pid {run}/ovs-vswitchd.pid",
        f"if [ ! -f {db} ]; then ovsdb-tool create {db} {schema};",
        f"elif [ \"$(ovsdb-tool needs-conversion {db} {schema})\" = yes ]; then "
        f"ovsdb-tool convert {db} {schema}; fi",
        f"ovsdb-server {db} --remote=punix:{run}/db.sock --remote={OVSDB_LOCAL} "
        f"--pidfile={run}/ovsdb-server.pid --detach",
        f"ovs-vsctl --db=unix:{run}/db.sock --no-wait init",
        f"exec ovs-vswitchd unix:{run}/db.sock --pidfile={run}/ovs-vswitchd.pid",
    ])
    return ["sh", "-c", script]


OVS_SERVICE = Service(
    name=OVS,
    description="Open vSwitch (ovsdb-server and ovs-vswitchd) on every node",
    package="",
    image="openvswitch",
    command=_openvswitch_command,
    settings_key=PROJECT,
    workload=Workload(kind="DaemonSet", nodes="all", privileged=True, host_network=True,
                      host_paths=(OVS_RUN, "/var/lib/openvswitch", "/lib/modules"),
                      scalable=False, cpu="100m", memory="256Mi"),
)

OVS_AGENT_SERVICE = osp.worker(
    SERVER_SERVICE, OVS_AGENT, "OpenStack Networking Open vSwitch agent on every node",
    lambda ctx: ["neutron-openvswitch-agent", "--config-file", _conf(ctx),
                 "--config-file", _conf(ctx, "openvswitch_agent.ini")],
    depends_on=(OVS, RPC),
    workload=Workload(kind="DaemonSet", nodes="all", privileged=True, host_network=True,
                      host_paths=(OVS_RUN, "/lib/modules"), scalable=False),
    cache=False,  # the agent does not wait for memcached
)

SERVICES = (SERVER_SERVICE, RPC_SERVICE, PERIODIC_SERVICE, OVS_SERVICE, OVS_AGENT_SERVICE)


def box_service() -> Service:
    """The API as a box runs it: one uWSGI worker, its database in the box's MariaDB (whose
    server must run before the migrations: the local target bootstraps it after MariaDB starts)."""
    return dataclasses.replace(
        SERVER_SERVICE,
        description="OpenStack Networking API (Neutron, ML2 VLAN provider networks, no agents)",
        config_files=tuple(cf for cf in _CONFIG if cf.name != "openvswitch_agent.ini"),
        # uWSGI's http-socket closes the connection after each answer without saying so; clients
        # that keep connections (keystoneauth) then send their next request into a closed one.
        command=lambda ctx: osp.uwsgi(ctx, SERVER, "neutron.wsgi.api:application",
                                      processes=1, threads=4,
                                      extra=("--add-header", "Connection: close")),
        depends_on=("keystone", "mariadb"),
        messaging=False,
        cache=False,
    )
