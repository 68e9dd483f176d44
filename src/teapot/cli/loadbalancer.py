"""`teapot loadbalancer ...`: a project's load balancers (a public VIP, members on a tenant
network)."""

from __future__ import annotations

import time

from cliff.command import Command
from cliff.lister import Lister
from cliff.show import ShowOne

from teapot.cli.client import TeapotClient, TeapotError

COLUMNS = ("name", "id", "vip_address", "provisioning_status", "operating_status")
SHOW = ("name", "id", "project_id", "network_id", "cluster_id", "vip_address", "tenant_address",
        "provisioning_status", "operating_status", "status_reason", "listeners", "members",
        "health_check", "topology", "created_at", "updated_at")


class _Command:
    def client(self) -> TeapotClient:
        return TeapotClient.from_cloud(self.app.options.os_cloud)


def _show(lb: dict):
    out = dict(lb)
    out["listeners"] = ", ".join(f"{x.get('protocol', 'TCP')} {x['port']}->{x['member_port']}"
                                 for x in lb.get("listeners") or ())
    out["members"] = ", ".join(f"{m['address']} {m['operating_status']}"
                               for m in lb.get("members") or ())
    check = lb.get("health_check") or {}
    out["health_check"] = f"every {check.get('interval')} s, {check.get('retries')} retries"
    return SHOW, tuple(out.get(c) for c in SHOW)


class ListLoadBalancers(_Command, Lister):
    """List load balancers (administrators: every project's)."""

    def take_action(self, args):
        return COLUMNS, [tuple(r.get(c) for c in COLUMNS) for r in self.client().list_loadbalancers()]


class ShowLoadBalancer(_Command, ShowOne):
    """Show a load balancer."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("loadbalancer", help="Name or ID")
        return parser

    def take_action(self, args):
        return _show(self.client().get_loadbalancer(args.loadbalancer))


def _listeners(texts: list[str]) -> list[dict]:
    out = []
    for text in texts:
        port, _, member = text.partition(":")
        try:
            out.append({"protocol": "TCP", "port": int(port), "member_port": int(member or port)})
        except ValueError:
            raise TeapotError(f"--listener {text!r} is not PORT or PORT:MEMBER_PORT") from None
    return out


def _add_spec_arguments(parser) -> None:
    parser.add_argument("--listener", action="append", metavar="PORT[:MEMBER_PORT]",
                        help="TCP port of the VIP and the members' port (repeatable)")
    parser.add_argument("--member", action="append", metavar="ADDRESS",
                        help="A member's address on the network (repeatable)")
    parser.add_argument("--check-interval", type=float, help="Seconds between health checks")
    parser.add_argument("--check-retries", type=int,
                        help="Failed checks before a member is taken out")
    parser.add_argument("--wait", action="store_true", help="Wait until it is ACTIVE")
    parser.add_argument("--timeout", type=float, default=120)


def _spec_body(args) -> dict:
    body: dict = {}
    if args.listener is not None:
        body["listeners"] = _listeners(args.listener)
    if args.member is not None:
        body["members"] = [{"address": a} for a in args.member]
    check = {k: v for k, v in (("interval", args.check_interval),
                               ("retries", args.check_retries)) if v is not None}
    if check:
        body["health_check"] = check
    return body


def _settled(api: TeapotClient, lb: dict, args) -> dict:
    deadline = time.monotonic() + args.timeout
    while args.wait and lb["provisioning_status"] != "ACTIVE":
        if time.monotonic() > deadline or lb["provisioning_status"] == "ERROR":
            raise TeapotError(f"load balancer {lb['name']} is {lb['provisioning_status']}: "
                              f"{lb.get('status_reason') or ''}")
        time.sleep(0.5)
        lb = api.get_loadbalancer(lb["id"])
    return lb


class CreateLoadBalancer(_Command, ShowOne):
    """Create a load balancer: a VIP on the public network, sending to members on a tenant network."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("name")
        parser.add_argument("--network", help="Tenant network (default: the project's default)")
        parser.add_argument("--cluster", help="A cluster on the network: its hosts are members")
        parser.add_argument("--topology", choices=("SINGLE", "ACTIVE_STANDBY"),
                            help="One instance (default), or an active/standby pair whose VIPs "
                                 "move to the standby when the active instance is lost")
        _add_spec_arguments(parser)
        return parser

    def take_action(self, args):
        body = {"name": args.name, **_spec_body(args)}
        for key, value in (("network", args.network), ("cluster", args.cluster),
                           ("topology", args.topology)):
            if value:
                body[key] = value
        api = self.client()
        return _show(_settled(api, api.create_loadbalancer(body), args))


class SetLoadBalancer(_Command, ShowOne):
    """Change a load balancer: each option given replaces what it has (`--listener` all its
    listeners, `--member` all its members; `--no-members` leaves none)."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("loadbalancer", help="Name or ID")
        parser.add_argument("--no-members", action="store_true", help="Remove every member")
        _add_spec_arguments(parser)
        return parser

    def take_action(self, args):
        body = _spec_body(args)
        if args.no_members:
            if args.member:
                raise TeapotError("--no-members and --member contradict each other")
            body["members"] = []
        if not body:
            raise TeapotError("nothing to change: give --listener, --member, --no-members or "
                              "--check-*")
        api = self.client()
        return _show(_settled(api, api.update_loadbalancer(args.loadbalancer, body), args))


class DeleteLoadBalancer(_Command, Command):
    """Delete a load balancer."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("loadbalancer", help="Name or ID")
        return parser

    def take_action(self, args):
        self.client().delete_loadbalancer(args.loadbalancer)
