"""Ironic in standalone mode, as Metal³ runs it: no RabbitMQ (`rpc_transport = none`), no Keystone."""

from __future__ import annotations

import dataclasses

from teapot.deploy import ini
from teapot.deploy.service import ConfigFile, Context, Readiness, Service, Step

NAME = "ironic"


def ironic_conf(ctx: Context) -> str:
    return ini.render({
        "DEFAULT": {
            "auth_strategy": "noauth",
            "rpc_transport": "none",
            "use_stderr": True,
            "host": "teapot-box",
            # IPMI hosts need a PXE environment, which a box does not have: ipmi:// hosts are
            # accepted by Teapot and fail registration here with Ironic's reason.
            "enabled_hardware_types": ["redfish", "fake-hardware"],
            "enabled_power_interfaces": ["redfish", "fake"],
            "enabled_management_interfaces": ["redfish", "fake", "noop"],
            "enabled_boot_interfaces": ["fake", "redfish-virtual-media"],
            "enabled_deploy_interfaces": ["fake", "direct", "ramdisk"],
            "enabled_inspect_interfaces": ["fake", "no-inspect", "redfish"],
            "enabled_bios_interfaces": ["no-bios", "redfish"],
            "enabled_firmware_interfaces": ["no-firmware", "redfish"],
            "enabled_raid_interfaces": ["no-raid", "redfish"],
            "enabled_vendor_interfaces": ["no-vendor", "redfish"],
            "enabled_console_interfaces": ["no-console"],
            "enabled_network_interfaces": ["noop"],
            "default_network_interface": "noop",
        },
        "api": {"host_ip": ctx.bind_host, "port": ctx.port(NAME), "api_workers": 1},
        "database": {"connection": ctx.database_url(NAME), "sqlite_synchronous": False},
        "conductor": {
            "automated_clean": True,
            "deploy_callback_timeout": 1800,
            "send_sensor_data": False,
            "power_state_sync_max_retries": 3,
            # Teapot, not Ironic, decides what power a host should have (spec.online), as Metal³
            # does: Ironic records the real power state instead of forcing its own back.
            "force_power_state_during_sync": False,
        },
        "deploy": {"fast_track": False, "http_root": ctx.data_path(NAME, "httpboot"),
                   "http_url": f"http://{ctx.bind_host}:{ctx.port(NAME)}/httpboot"},
        "redfish": {"kernel_append_params": "nofb nomodeset vga=normal"},
        "json_rpc": {"auth_strategy": "noauth"},
        "oslo_concurrency": {"lock_path": ctx.data_path(NAME, "locks")},
        "dhcp": {"dhcp_provider": "none"},
    })


def _conf(ctx: Context) -> str:
    return ctx.config_path(NAME, "ironic.conf")


SERVICE = Service(
    name=NAME,
    description="OpenStack Bare Metal (standalone)",
    package="ironic==39.0.0",
    image="ironic",
    port=6385,
    config_files=(ConfigFile("ironic.conf", ironic_conf),),
    database="ironic",
    # A new SQLite database is created from the models (Ironic's migrations need ALTER, which SQLite
    # lacks); later starts run the migrations, a no-op until Ironic is upgraded.
    bootstrap=(
        Step("create_schema", lambda ctx: ["ironic-dbsync", "--config-file", _conf(ctx), "create_schema"],
             once=True),
        Step("upgrade", lambda ctx: ["ironic-dbsync", "--config-file", _conf(ctx), "upgrade"]),
    ),
    command=lambda ctx: ["ironic", "--config-file", _conf(ctx)],
    readiness=Readiness("/v1"),
    # No ingress: this Ironic runs without authentication and is reachable only by Teapot.
)


def kubernetes_service() -> Service:
    """Ironic on Kubernetes, against MySQL: the bootstrap Job runs again whenever the config or the
    release changes, and `create_schema` fails on a database that has one, so only the migrations
    run (they create the schema on MySQL, which has the ALTER they need)."""
    return dataclasses.replace(
        SERVICE, bootstrap=tuple(s for s in SERVICE.bootstrap if s.name != "create_schema"))
