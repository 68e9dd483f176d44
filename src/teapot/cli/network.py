"""`teapot network ...`: a project's tenant networks (each one VLAN of the top-of-rack switches)."""

from __future__ import annotations

import time

from cliff.command import Command
from cliff.lister import Lister
from cliff.show import ShowOne

from teapot.cli.client import TeapotClient, TeapotError

COLUMNS = ("name", "uuid", "status", "is_default", "project_id")
SHOW = ("name", "uuid", "status", "status_reason", "is_default", "description", "project_id",
        "vlan_id", "neutron_network_id", "created_at", "updated_at")


class _NetworkCommand:
    def client(self) -> TeapotClient:
        return TeapotClient.from_cloud(self.app.options.os_cloud)


def _show(network: dict):
    # vlan_id is there for administrators only
    columns = tuple(c for c in SHOW if c != "vlan_id" or "vlan_id" in network)
    return columns, tuple(network.get(c) for c in columns)


class ListNetworks(_NetworkCommand, Lister):
    """List tenant networks (administrators: every project's, with VLAN ids)."""

    def take_action(self, args):
        rows = self.client().list_networks()
        columns = COLUMNS + (("vlan_id",) if any("vlan_id" in r for r in rows) else ())
        return columns, [tuple(r.get(c) for c in columns) for r in rows]


class ShowNetwork(_NetworkCommand, ShowOne):
    """Show a tenant network."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("network", help="Name or UUID")
        return parser

    def take_action(self, args):
        return _show(self.client().get_network(args.network))


class CreateNetwork(_NetworkCommand, ShowOne):
    """Create a tenant network in your project: a VLAN of its own."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("name")
        parser.add_argument("--description", default="")
        parser.add_argument("--wait", action="store_true", help="Wait until it is active")
        parser.add_argument("--timeout", type=float, default=120)
        return parser

    def take_action(self, args):
        api = self.client()
        network = api.create_network({"name": args.name, "description": args.description})
        deadline = time.monotonic() + args.timeout
        while args.wait and network["status"] != "active":
            if time.monotonic() > deadline:
                raise TeapotError(f"network {args.name} is not active after {args.timeout:.0f} s: "
                                  f"{network.get('status_reason') or network['status']}")
            time.sleep(0.5)
            network = api.get_network(network["uuid"])
        return _show(network)


class DeleteNetwork(_NetworkCommand, Command):
    """Delete a tenant network (refused while clusters or hosts use it)."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("network", help="Name or UUID")
        return parser

    def take_action(self, args):
        self.client().delete_network(args.network)
        print(f"network/{args.network} deleted")
