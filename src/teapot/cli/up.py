"""`teapot up`: the whole cloud on this machine."""

from __future__ import annotations

import os
from pathlib import Path

from cliff.command import Command


class Up(Command):
    """Run Teapot in a box: Keystone, Ironic, a Redfish emulator and Teapot, with emulated hosts."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("--state-dir", default=os.environ.get("TEAPOT_STATE_DIR", ".teapot"),
                            help="Where everything is kept (default: ./.teapot)")
        parser.add_argument("--hosts", type=int, default=None,
                            help="Emulated hosts (default: 4, or as many as last time)")
        parser.add_argument("--port-base", type=int, default=None,
                            help="Use consecutive ports from this one instead of the standard ports")
        parser.add_argument("--max-restart-delay", type=float, metavar="SECONDS",
                            default=float(os.environ.get("TEAPOT_MAX_RESTART_DELAY", 60)),
                            help="The longest wait before restarting a service that keeps exiting "
                                 "(default: 60, or $TEAPOT_MAX_RESTART_DELAY)")
        parser.add_argument("--no-switch", dest="switch", action="store_false",
                            help="Run without the top-of-rack switch (Open vSwitch): no tenant "
                                 "networks")
        return parser

    def take_action(self, args):
        import logging

        from teapot.deploy import box

        logging.getLogger("httpx").setLevel(logging.WARNING)

        def say(line: str) -> None:
            print(line, flush=True)

        code = box.run(Path(args.state_dir), args.hosts, args.port_base, say,
                       max_restart_delay=args.max_restart_delay, switch=args.switch)
        if code:
            raise SystemExit(code)
