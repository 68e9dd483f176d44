"""`teapot volume attach|detach|list`: Cinder volumes attached to a cluster's hosts.

The connection info shown names the project's own Ceph user and where the cluster's hosts hold its
key (an add-on Secret); no key is ever shown."""

from __future__ import annotations

import json

from cliff.command import Command
from cliff.lister import Lister
from cliff.show import ShowOne

from teapot.cli.client import TeapotClient

COLUMNS = ("id", "volume_id", "host", "node_uuid", "status")


class _VolumeCommand:
    def client(self) -> TeapotClient:
        return TeapotClient.from_cloud(self.app.options.os_cloud)


def _row(a: dict) -> tuple:
    return (a["id"], a["volume_id"], a["host"]["name"], a["host"]["node_uuid"], a["status"])


class ListAttachments(_VolumeCommand, Lister):
    """List the volumes attached to a cluster's hosts."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("cluster", help="Cluster name or UUID")
        return parser

    def take_action(self, args):
        return COLUMNS, [_row(a) for a in self.client().list_volume_attachments(args.cluster)]


class Attach(_VolumeCommand, ShowOne):
    """Attach a Cinder volume of your project to a host of a cluster."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("cluster", help="Cluster name or UUID")
        parser.add_argument("volume", help="Cinder volume UUID")
        parser.add_argument("--host", required=True, help="Name or UUID of a host of the cluster")
        return parser

    def take_action(self, args):
        a = self.client().attach_volume(args.cluster, args.volume, args.host)
        return (*COLUMNS, "connection_info"), (*_row(a), json.dumps(a.get("connection_info")))


class Detach(_VolumeCommand, Command):
    """Detach a volume from a cluster's host (by attachment id)."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("cluster", help="Cluster name or UUID")
        parser.add_argument("attachment", help="Attachment id (from `teapot volume list`)")
        return parser

    def take_action(self, args):
        self.client().detach_volume(args.cluster, args.attachment)
        print(f"volume attachment {args.attachment} deleted")
