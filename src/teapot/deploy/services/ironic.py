"""Ironic in standalone mode, as Metal³ runs it: no RabbitMQ (`rpc_transport = none`), no Keystone."""

from __future__ import annotations

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
            "enabled_hardware_types": ["redfish", "ipmi", "fake-hardware"],
            "enabled_power_interfaces": ["redfish", "ipmitool", "fake"],
            "enabled_management_interfaces": ["redfish", "ipmitool", "fake", "noop"],
            "enabled_boot_interfaces": ["fake", "ipxe", "redfish-virtual-media"],
            "enabled_deploy_interfaces": ["fake", "direct", "ramdisk"],
            "enabled_inspect_interfaces": ["fake", "no-inspect", "redfish"],
            "enabled_bios_interfaces": ["no-bios", "redfish"],
            "enabled_firmware_interfaces": ["no-firmware", "redfish"],
            "enabled_raid_interfaces": ["no-raid", "redfish"],
            "enabled_vendor_interfaces": ["no-vendor", "redfish", "ipmitool"],
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
        },
        "deploy": {"default_boot_option": "local", "fast_track": False},
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
    bootstrap=(Step("dbsync", lambda ctx: ["ironic-dbsync", "--config-file", _conf(ctx), "upgrade"]),),
    command=lambda ctx: ["ironic", "--config-file", _conf(ctx)],
    readiness=Readiness("/v1"),
)
