"""Server-side commands: the conductor, database migrations."""

from __future__ import annotations

import signal

from cliff.command import Command

from teapot.observability import logs


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
        parser = _config_arg(super().get_parser(prog_name))
        parser.add_argument("--log-format", choices=logs.FORMATS,
                            help="text, or json: one JSON object per line "
                                 "(default: [DEFAULT] log_format, else text)")
        parser.add_argument("--metrics-port", type=int, metavar="PORT",
                            help="port of /metrics and /healthz (default: [conductor] "
                                 "metrics_port; 0: any free port)")
        return parser

    def take_action(self, args):
        from teapot import config

        conf = config.load(args.config_file)
        # before the conductor's imports, some of which log: every line in the chosen format
        logs.setup(args.log_format or conf.log_format)
        from teapot.conductor import build

        if args.metrics_port is not None and not 0 <= args.metrics_port <= 65535:
            raise SystemExit(f"--metrics-port must be 0 to 65535, not {args.metrics_port}")
        loop = build.loop(conf)
        server = build.status_server(conf, loop, args.metrics_port)
        signal.signal(signal.SIGTERM, lambda *_: loop.stop())
        try:
            loop.run()
        except KeyboardInterrupt:
            loop.stop()
        finally:
            if server is not None:
                server.stop()
