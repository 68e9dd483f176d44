"""`teapot network ...`: a project's tenant networks (each one VLAN of the top-of-rack switches)."""

from __future__ import annotations

import time

from cliff.command import Command
from cliff.lister import Lister
from cliff.show import ShowOne

from teapot.cli.client import TeapotClient, TeapotError

COLUMNS = ("name", "uuid", "status", "cidr", "is_default", "project_id")
SHOW = ("name", "uuid", "status", "status_reason", "is_default", "description", "project_id",
        "cidr", "gateway_ip", "dns_nameservers", "allocation_pool", "vlan_id",
        "neutron_network_id", "created_at", "updated_at")


class _NetworkCommand:
    def client(self) -> TeapotClient:
        return TeapotClient.from_cloud(self.app.options.os_cloud)


def _flat(network: dict) -> dict:
    """The network with its subnet's fields beside its own."""
    subnet = network.get("subnet") or {}
    pool = subnet.get("allocation_pool") or {}
    return {**network, "cidr": subnet.get("cidr"), "gateway_ip": subnet.get("gateway_ip"),
            "dns_nameservers": ", ".join(subnet.get("dns_nameservers") or ()),
            "allocation_pool": f"{pool['start']}-{pool['end']}" if pool else None}


def _show(network: dict):
    # vlan_id is there for administrators only
    network = _flat(network)
    columns = tuple(c for c in SHOW if c != "vlan_id" or "vlan_id" in network)
    return columns, tuple(network.get(c) for c in columns)


class ListNetworks(_NetworkCommand, Lister):
    """List tenant networks (administrators: every project's, with VLAN ids)."""

    def take_action(self, args):
        rows = [_flat(r) for r in self.client().list_networks()]
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
        parser.add_argument("--cidr", help="Its subnet, e.g. 10.20.0.0/24 (default: the cloud's)")
        parser.add_argument("--gateway", help="The subnet's gateway (default: its first address)")
        parser.add_argument("--dns", action="append", default=[], metavar="ADDRESS",
                            help="A DNS server for its hosts (repeatable)")
        parser.add_argument("--allocation-pool", metavar="START-END",
                            help="Where hosts' addresses come from (default: the rest)")
        parser.add_argument("--wait", action="store_true", help="Wait until it is active")
        parser.add_argument("--timeout", type=float, default=120)
        return parser

    def take_action(self, args):
        api = self.client()
        body = {"name": args.name, "description": args.description}
        if args.cidr:
            body["cidr"] = args.cidr
        if args.gateway:
            body["gateway_ip"] = args.gateway
        if args.dns:
            body["dns_nameservers"] = args.dns
        if args.allocation_pool:
            start, _, end = args.allocation_pool.partition("-")
            body["allocation_pool"] = {"start": start, "end": end}
        network = api.create_network(body)
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
