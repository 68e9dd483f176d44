"""`teapot status`: the health of a box, per component, as its `teapot up` last wrote it."""

from __future__ import annotations

import os
from pathlib import Path

from cliff.lister import Lister


class Status(Lister):
    """Show whether a box is ok or degraded, and the state of each of its services."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("--state-dir", default=os.environ.get("TEAPOT_STATE_DIR", ".teapot"),
                            help="The box's state directory (default: ./.teapot)")
        return parser

    def take_action(self, args):
        from teapot.deploy.supervisor import read_status
        from teapot.deploy.targets.local import DeployError

        try:
            rows = read_status(Path(args.state_dir).resolve())
        except DeployError as e:
            raise SystemExit(f"error: {e}") from None
        return ("Component", "State", "Detail"), rows
