"""`teapot deploy ...`: the control plane on Kubernetes from one file (teapot.yaml)."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml
from cliff.command import Command


def _file_args(parser, cluster: bool = True):
    parser.add_argument("-f", "--filename", required=True, help="teapot.yaml")
    if cluster:
        parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
        parser.add_argument("--context", help="kubeconfig context")
    return parser


class _PlainDumper(yaml.SafeDumper):
    """YAML without anchors and aliases: every object reads on its own."""

    def ignore_aliases(self, data):
        return True


def _load(args):
    from teapot.deploy import rollout
    from teapot.resources.errors import ValidationError

    try:
        return rollout.load_file(args.filename)
    except ValidationError as e:
        raise SystemExit(f"error: {args.filename}: {e}") from None
    except FileNotFoundError:
        raise SystemExit(f"error: {args.filename}: no such file") from None


def _cluster(args):
    from teapot.kube import Cluster

    return Cluster(args.kubeconfig, args.context)


class Render(Command):
    """Print (or write to a directory) every Kubernetes object of the control plane."""

    def get_parser(self, prog_name):
        parser = _file_args(super().get_parser(prog_name), cluster=False)
        parser.add_argument("-o", "--output-dir", help="Write one file per object here")
        return parser

    def take_action(self, args):
        from teapot.deploy import rollout

        units = rollout.desired(_load(args))
        objects = [o for u in units for o in u.objects]
        if args.output_dir:
            out = Path(args.output_dir)
            out.mkdir(parents=True, exist_ok=True)
            for i, obj in enumerate(objects):
                name = f"{i:03d}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
                (out / name).write_text(yaml.dump(obj, Dumper=_PlainDumper, sort_keys=False))
            print(f"{len(objects)} objects written to {out}", file=sys.stderr)
        else:
            yaml.dump_all(objects, sys.stdout, Dumper=_PlainDumper, sort_keys=False)


class Plan(Command):
    """Compare with the live cluster: what apply would create, update and delete. Exit 2 if any."""

    def get_parser(self, prog_name):
        return _file_args(super().get_parser(prog_name))

    def take_action(self, args):
        from teapot.deploy import rollout

        _units, changes = rollout.compute_plan(_load(args), _cluster(args))
        for change in changes:
            print(change.line())
        counts = {a: sum(c.action == a for c in changes) for a in ("create", "update", "delete")}
        print(f"plan: {counts['create']} to create, {counts['update']} to update, "
              f"{counts['delete']} to delete")
        return 2 if changes else 0


class Apply(Command):
    """Apply in dependency order (server-side apply), wait for readiness, prune leftovers."""

    def get_parser(self, prog_name):
        parser = _file_args(super().get_parser(prog_name))
        parser.add_argument("--no-wait", action="store_true", help="Do not wait for readiness")
        parser.add_argument("--timeout", type=float, default=900, help="Seconds to wait per object")
        return parser

    def take_action(self, args):
        from teapot.deploy import rollout

        def say(line: str) -> None:
            print(line, flush=True)

        try:
            changes = rollout.apply(_load(args), _cluster(args), say, wait=not args.no_wait,
                                    timeout=args.timeout)
        except RuntimeError as e:
            raise SystemExit(f"error: {e}") from None
        print(f"applied: {len(changes)} change(s)" if changes else "applied: nothing to change")


class Status(Command):
    """Readiness of every service of the control plane. Exit 1 while any is not ready."""

    def get_parser(self, prog_name):
        parser = _file_args(super().get_parser(prog_name))
        parser.add_argument("-o", "--output", choices=["table", "json"], default="table")
        return parser

    def take_action(self, args):
        import json

        from teapot.deploy import rollout

        rows = rollout.status(_load(args), _cluster(args))
        if args.output == "json":
            print(json.dumps([{"service": s, "kind": k, "ready": r, "detail": d}
                              for s, k, r, d in rows], indent=2))
        else:
            width = max((len(r[0]) for r in rows), default=7)
            for service, kind, ready, detail in rows:
                print(f"{service:{width}}  {kind:11}  {'ready' if ready else 'not ready':9}  {detail}")
        return 0 if all(r[2] for r in rows) else 1


class Explain(Command):
    """Every key of teapot.yaml, with its default and description."""

    def take_action(self, args):
        from teapot.deploy import settings

        print("\n".join(settings.explain()))


class Register(Command):
    """Register a service in Keystone (run by registration Jobs; admin credentials from OS_* env)."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("--service", action="append", required=True, metavar="TYPE=NAME",
                            help="Catalog entry to register (repeatable)")
        for opt in ("--region", "--public-url", "--internal-url"):
            parser.add_argument(opt, required=True)
        parser.add_argument("--user", help="Service user (password from $TEAPOT_SERVICE_PASSWORD)")
        parser.add_argument("--roles", default="service")
        return parser

    def take_action(self, args):
        import os

        import openstack

        from teapot.deploy import keystone_setup

        conn = openstack.connection.Connection(
            auth={"auth_url": os.environ["OS_AUTH_URL"], "username": os.environ["OS_USERNAME"],
                  "password": os.environ["OS_PASSWORD"], "project_name": os.environ["OS_PROJECT_NAME"],
                  "user_domain_name": "Default", "project_domain_name": "Default"},
            auth_type="password", region_name=args.region)
        for entry in args.service:
            service_type, _, service_name = entry.partition("=")
            keystone_setup.register_endpoints(conn, service_type, service_name or service_type,
                                              args.region,
                                              {"public": args.public_url, "internal": args.internal_url})
        if args.user:
            keystone_setup.ensure_user(conn, args.user, os.environ["TEAPOT_SERVICE_PASSWORD"],
                                       "service", args.roles.split(","))


class WaitFor(Command):
    """Wait until every tcp://host:port given accepts connections (init containers use it)."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("targets", nargs="+")
        parser.add_argument("--timeout", type=float, default=0, help="Give up after this (0: never)")
        return parser

    def take_action(self, args):
        import socket
        import time
        from urllib.parse import urlsplit

        start = time.monotonic()
        for target in args.targets:
            parts = urlsplit(target)
            while True:
                try:
                    socket.create_connection((parts.hostname, parts.port), timeout=3).close()
                    print(f"{target} is up", flush=True)
                    break
                except OSError:
                    if args.timeout and time.monotonic() - start > args.timeout:
                        raise SystemExit(f"error: {target} not reachable after {args.timeout:.0f} s") from None
                    time.sleep(2)
