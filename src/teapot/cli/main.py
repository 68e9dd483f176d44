"""`teapot`: the command line (cliff, like the OpenStack client: `-f json|yaml|table|value`)."""

from __future__ import annotations

import os
import sys

from cliff.app import App
from cliff.commandmanager import CommandManager

from teapot import __version__

COMMANDS = {
    "up": "teapot.cli.up:Up",
    "status": "teapot.cli.status:Status",
    "conductor": "teapot.cli.server:Conductor",
    "db upgrade": "teapot.cli.server:DbUpgrade",
    "deploy render": "teapot.cli.deploy:Render",
    "deploy plan": "teapot.cli.deploy:Plan",
    "deploy apply": "teapot.cli.deploy:Apply",
    "deploy status": "teapot.cli.deploy:Status",
    "deploy explain": "teapot.cli.deploy:Explain",
    "deploy register": "teapot.cli.deploy:Register",
    "wait-for": "teapot.cli.deploy:WaitFor",
    "hostclass list": "teapot.cli.host:ListHostClasses",
    "hostclass create": "teapot.cli.host:CreateHostClass",
    "hostclass delete": "teapot.cli.host:DeleteHostClass",
    "network list": "teapot.cli.network:ListNetworks",
    "network show": "teapot.cli.network:ShowNetwork",
    "network create": "teapot.cli.network:CreateNetwork",
    "network delete": "teapot.cli.network:DeleteNetwork",
    "loadbalancer list": "teapot.cli.loadbalancer:ListLoadBalancers",
    "loadbalancer show": "teapot.cli.loadbalancer:ShowLoadBalancer",
    "loadbalancer create": "teapot.cli.loadbalancer:CreateLoadBalancer",
    "loadbalancer set": "teapot.cli.loadbalancer:SetLoadBalancer",
    "loadbalancer delete": "teapot.cli.loadbalancer:DeleteLoadBalancer",
    "volume list": "teapot.cli.volume:ListAttachments",
    "volume attach": "teapot.cli.volume:Attach",
    "volume detach": "teapot.cli.volume:Detach",
    "host list": "teapot.cli.host:ListHosts",
    "host show": "teapot.cli.host:ShowHost",
    "host create": "teapot.cli.host:CreateHost",
    "host apply": "teapot.cli.host:ApplyHosts",
    "host delete": "teapot.cli.host:DeleteHost",
    "host power on": "teapot.cli.host:PowerOn",
    "host power off": "teapot.cli.host:PowerOff",
    "host provision": "teapot.cli.host:Provision",
    "host deprovision": "teapot.cli.host:Deprovision",
    "host trait add": "teapot.cli.host:AddTraits",
    "host trait remove": "teapot.cli.host:RemoveTraits",
}


class _LazyCommand:
    """Import a command's module only when it runs, so `teapot` starts fast."""

    def __init__(self, target: str):
        self.target = target

    def load(self):
        module, _, attr = self.target.partition(":")
        return getattr(__import__(module, fromlist=[attr]), attr)


class Commands(CommandManager):
    def load_commands(self, namespace):
        for name, target in COMMANDS.items():
            self.commands[name] = _LazyCommand(target)


class TeapotApp(App):
    def __init__(self):
        super().__init__(
            description="Teapot: bare-metal Kubernetes clouds beside OpenStack",
            version=__version__, command_manager=Commands("teapot.cli"), deferred_help=True,
        )

    def build_option_parser(self, description, version, argparse_kwargs=None):
        parser = super().build_option_parser(description, version, argparse_kwargs)
        parser.add_argument("--os-cloud", metavar="CLOUD", default=os.environ.get("OS_CLOUD"),
                            help="Cloud from clouds.yaml (default: $OS_CLOUD)")
        return parser


def main(argv: list[str] | None = None) -> int:
    return TeapotApp().run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
