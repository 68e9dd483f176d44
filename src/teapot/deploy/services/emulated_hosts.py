"""The box's emulated hosts (`teapot.emulated.agent`): booted from the config drive Ironic holds
for them once deployed, halted and wiped as Ironic cleans them. Only in a box with a switch: the
hosts are the switch's namespaces."""

from __future__ import annotations

import sys

from teapot.deploy.service import Context, Service

NAME = "teapot-hosts"


def _command(ctx: Context) -> list[str]:
    ironic_db = ctx.database_url("ironic").removeprefix("sqlite:///")
    return [sys.executable, "-m", "teapot.emulated.agent",
            "--box-state", str(ctx.settings["state_dir"]),
            "--ironic-database", ironic_db, "--data", ctx.data_path(NAME, "")]


SERVICE = Service(
    name=NAME,
    description="Emulated hosts: act on the network data and user data Ironic deployed them with",
    package="teapot",
    image="teapot",
    command=_command,
    depends_on=("ironic",),
)
