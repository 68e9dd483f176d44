"""Server-side commands: the conductor, database migrations."""

from __future__ import annotations

import logging
import signal

from cliff.command import Command


def _config_arg(parser):
    parser.add_argument("--config-file", help="teapot.conf (default: $TEAPOT_CONFIG)")
    return parser


class DbUpgrade(Command):
    """Bring Teapot's database to the newest schema."""

    def get_parser(self, prog_name):
        return _config_arg(super().get_parser(prog_name))

    def take_action(self, args):
        from teapot import config, crypto
        from teapot.db import engine

        conf = config.load(args.config_file)
        engine.upgrade(conf.database.connection)
        crypto.load_or_create_key(conf.secrets.key_file)


class Conductor(Command):
    """Run a conductor: reconcile hosts until stopped (SIGTERM or Ctrl-C)."""

    def get_parser(self, prog_name):
        return _config_arg(super().get_parser(prog_name))

    def take_action(self, args):
        from teapot import config
        from teapot.conductor import build

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
        for noisy in ("openstack", "keystoneauth", "urllib3", "httpx", "stevedore"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        loop = build.loop(config.load(args.config_file))
        signal.signal(signal.SIGTERM, lambda *_: loop.stop())
        try:
            loop.run()
        except KeyboardInterrupt:
            loop.stop()
