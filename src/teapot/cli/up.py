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
        parser.add_argument("--with-neutron", dest="neutron", action="store_const", const=True,
                            default=True if os.environ.get("TEAPOT_WITH_NEUTRON") else None,
                            help="Also run Neutron's API (and MariaDB for it), where tenant "
                                 "networks are shared as provider networks (remembered; default: "
                                 "$TEAPOT_WITH_NEUTRON, or as last time, off at first)")
        parser.add_argument("--without-neutron", dest="neutron", action="store_const",
                            const=False, help="Run without Neutron again")
        parser.add_argument("--with-octavia", dest="octavia", action="store_const", const=True,
                            default=True if os.environ.get("TEAPOT_WITH_OCTAVIA") else None,
                            help="Also run Octavia's API (and MariaDB for it) with Teapot's "
                                 "provider driver: `openstack loadbalancer create --provider "
                                 "teapot` makes Teapot load balancers (remembered; default: "
                                 "$TEAPOT_WITH_OCTAVIA, or as last time, off at first)")
        parser.add_argument("--without-octavia", dest="octavia", action="store_const",
                            const=False, help="Run without Octavia again")
        parser.add_argument("--storage", dest="storage", action="store_const", const=True,
                            default=True if os.environ.get("TEAPOT_STORAGE") else None,
                            help="Also run shared storage: Ceph (with RADOS Gateway for S3 and "
                                 "Swift), Manila (CephFS), Cinder (RBD), Barbican, and RabbitMQ "
                                 "and MariaDB for them (remembered; default: $TEAPOT_STORAGE, or "
                                 "as last time, off at first)")
        parser.add_argument("--without-storage", dest="storage", action="store_const",
                            const=False, help="Run without the storage services again")
        return parser

    def take_action(self, args):
        import logging

        from teapot.deploy import box

        logging.getLogger("httpx").setLevel(logging.WARNING)

        def say(line: str) -> None:
            print(line, flush=True)

        code = box.run(Path(args.state_dir), args.hosts, args.port_base, say,
                       max_restart_delay=args.max_restart_delay, switch=args.switch,
                       neutron=args.neutron, storage=args.storage, octavia=args.octavia)
        if code:
            raise SystemExit(code)
