"""`teapot status`: the health of a box, per component, as its `teapot up` last wrote it, and the
pinned Kubernetes releases whose programs are built here (what the box's clusters can run)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from cliff.command import Command


class Status(Command):
    """Show whether a box is ok or degraded, the state of each of its services, and the
    Kubernetes releases built here."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("--state-dir", default=os.environ.get("TEAPOT_STATE_DIR", ".teapot"),
                            help="The box's state directory (default: ./.teapot)")
        parser.add_argument("-f", "--format", choices=["table", "json"], default="table",
                            help="table (default), or json: an object with the components and "
                                 "kubernetes_versions")
        return parser

    def take_action(self, args):
        from teapot import releases as versions
        from teapot.deploy.supervisor import read_status
        from teapot.deploy.targets.local import DeployError

        try:
            rows = read_status(Path(args.state_dir).resolve())
        except DeployError as e:
            raise SystemExit(f"error: {e}") from None
        built = versions.built()
        public = _public(Path(args.state_dir).resolve())
        if args.format == "json":
            print(json.dumps({
                "components": [{"component": c, "state": s, "detail": d} for c, s, d in rows],
                "kubernetes_versions": built,
                **public,
            }, indent=2))
            return 0
        width = max(len(c) for c, _, _ in rows)
        for component, state, detail in rows:
            print(f"{component:{width}}  {state:10}  {detail}".rstrip())
        missing = [v for v in versions.KUBERNETES if v not in built]
        line = ", ".join(built) if built else "none built"
        if missing:
            line += f" (`make install` builds {', '.join(missing)})"
        print(f"kubernetes: {line}")
        if public:
            print(f"public network: {public['public_cidr']} (the outside world: namespace "
                  f"{public['public_namespace']})")
        return 0


def _public(state_dir: Path) -> dict:
    """The box's public network, when it runs one: its range and the namespace standing for the
    outside world, from which load balancers' VIPs are reached."""
    from teapot.net.public import PublicNetwork, PublicNetworkError

    try:
        net = PublicNetwork.load(state_dir)
    except PublicNetworkError:
        return {}
    return {"public_cidr": net.cidr, "public_namespace": net.namespace}
