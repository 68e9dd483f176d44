"""`teapot host ...`: hosts with Metal³ BareMetalHost semantics (cloud administrators only)."""

from __future__ import annotations

import abc
import getpass
import json
import os
import sys
import time

from cliff.command import Command
from cliff.lister import Lister
from cliff.show import ShowOne

from teapot.cli.client import TeapotClient, TeapotError

LIST_COLUMNS = ("name", "state", "online", "poweredOn", "operationalStatus", "errorType", "cluster", "uuid")
SHOW_COLUMNS = ("name", "uuid", "state", "online", "poweredOn", "operationalStatus", "errorType",
                "errorMessage", "errorCount", "bmcAddress", "bootMACAddress", "image", "provisionedImage",
                "nodeID", "labels", "traits", "cluster", "nodegroup", "deletionRequested", "createdAt", "updatedAt")


def flatten(host: dict) -> dict:
    spec, status = host["spec"], host["status"]
    provisioning = status.get("provisioning", {})
    return {
        "name": host["name"], "uuid": host["uuid"], "state": host["state"],
        "online": spec.get("online", False), "poweredOn": status.get("poweredOn"),
        "operationalStatus": status.get("operationalStatus", ""), "errorType": status.get("errorType", ""),
        "errorMessage": status.get("errorMessage", ""), "errorCount": status.get("errorCount", 0),
        "bmcAddress": spec.get("bmc", {}).get("address"), "bootMACAddress": spec.get("bootMACAddress"),
        "image": (spec.get("image") or {}).get("url", ""),
        "provisionedImage": (provisioning.get("image") or {}).get("url", ""),
        "nodeID": provisioning.get("ID", ""), "labels": host.get("labels", {}),
        "traits": host.get("traits", []),
        "cluster": (host.get("consumer") or {}).get("uuid", ""),
        "nodegroup": (host.get("consumer") or {}).get("nodegroup", ""),
        "deletionRequested": host.get("deletionRequested", False),
        "createdAt": host.get("createdAt"), "updatedAt": host.get("updatedAt"),
    }


class _HostCommand:
    def client(self) -> TeapotClient:
        return TeapotClient.from_cloud(self.app.options.os_cloud)

    def wait(self, api: TeapotClient, name: str, done, what: str, timeout: float) -> dict | None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                host = api.get_host(name)
            except TeapotError:
                if done(None):
                    return None
                raise
            if done(host):
                return host
            if host["status"].get("errorMessage") and host["status"].get("errorCount", 0) >= 3:
                raise TeapotError(f"host {name}: {host['status'].get('errorType')}: "
                                  f"{host['status']['errorMessage']}")
            if time.monotonic() > deadline:
                raise TeapotError(f"host {name} is not {what} after {timeout:.0f} s (state {host['state']})")
            time.sleep(0.5)


def _wait_args(parser):
    parser.add_argument("--wait", action="store_true", help="Wait until the host gets there")
    parser.add_argument("--timeout", type=float, default=600, help="Seconds to wait (with --wait)")
    return parser


class ListHosts(_HostCommand, Lister):
    """List hosts."""

    def take_action(self, args):
        hosts = [flatten(h) for h in self.client().list_hosts()]
        return LIST_COLUMNS, [tuple(h[c] for c in LIST_COLUMNS) for h in hosts]


class _ShowBase(_HostCommand, ShowOne):
    def show(self, host: dict):
        flat = flatten(host)
        return SHOW_COLUMNS, tuple(flat[c] for c in SHOW_COLUMNS)


class ShowHost(_ShowBase):
    """Show a host."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("host", help="Name or UUID")
        return parser

    def take_action(self, args):
        return self.show(self.client().get_host(args.host))


def _key_values(items: list[str], flag: str = "--label") -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise TeapotError(f"{flag} {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def _read_password(path: str | None) -> str:
    if path:
        with open(path) as f:
            return f.read().strip()
    if os.environ.get("TEAPOT_BMC_PASSWORD"):
        return os.environ["TEAPOT_BMC_PASSWORD"]
    if sys.stdin.isatty():
        return getpass.getpass("BMC password: ")
    raise TeapotError("no BMC password: use --bmc-password-file or set TEAPOT_BMC_PASSWORD")


class CreateHost(_ShowBase):
    """Enroll a host by its BMC."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("name")
        parser.add_argument("--bmc-address", required=True,
                            help="redfish://, redfish+http://, redfish+https:// or ipmi:// URL")
        parser.add_argument("--bmc-username", required=True)
        parser.add_argument("--bmc-password-file", help="File holding the BMC password "
                                                        "(or set TEAPOT_BMC_PASSWORD)")
        parser.add_argument("--boot-mac", required=True, help="MAC of the NIC the host boots from")
        parser.add_argument("--disable-certificate-verification", action="store_true")
        parser.add_argument("--online", action="store_true", help="Power the host on")
        parser.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
        parser.add_argument("--trait", action="append", default=[],
                            help="A hardware trait: a standard os-traits name or CUSTOM_*")
        return parser

    def take_action(self, args):
        body = {
            "name": args.name, "labels": _key_values(args.label), "traits": args.trait,
            "spec": {"online": args.online, "bootMACAddress": args.boot_mac,
                     "bmc": {"address": args.bmc_address,
                             "disableCertificateVerification": args.disable_certificate_verification}},
            "bmcCredentials": {"username": args.bmc_username,
                               "password": _read_password(args.bmc_password_file)},
        }
        return self.show(self.client().create_host(body))


class ApplyHosts(_HostCommand, Command):
    """Create or update hosts from Metal³ BareMetalHost YAML with their BMC credentials Secrets."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("-f", "--filename", dest="filename", required=True,
                            help="Multi-document YAML ('-' for standard input), as for kubectl apply")
        parser.add_argument("-o", "--output", choices=["text", "json"], default="text")
        return parser

    def take_action(self, args):
        from teapot.resources.host_schema import hosts_from_manifests, load_manifests

        text = sys.stdin.read() if args.filename == "-" else open(args.filename).read()
        try:
            requests = hosts_from_manifests(load_manifests(text))
        except ValueError as e:
            raise TeapotError(f"{args.filename}: {e}") from None
        api = self.client()
        existing = {h["name"] for h in api.list_hosts()}
        rows = []
        for request in requests:
            if request["name"] in existing:
                patch = {k: v for k, v in request.items() if k != "name"}
                host, action = api.update_host(request["name"], patch), "configured"
            else:
                host, action = api.create_host(request), "created"
            rows.append({"name": host["name"], "action": action, "state": host["state"]})
        if args.output == "json":
            print(json.dumps(rows, indent=2))
        else:
            for row in rows:
                print(f"baremetalhost/{row['name']} {row['action']}")


class DeleteHost(_HostCommand, Command):
    """Delete a host: deprovision it if needed and remove it from Ironic."""

    def get_parser(self, prog_name):
        parser = _wait_args(super().get_parser(prog_name))
        parser.add_argument("host", nargs="+")
        return parser

    def take_action(self, args):
        api = self.client()
        for name in args.host:
            api.delete_host(name)
        if args.wait:
            for name in args.host:
                self.wait(api, name, lambda h: h is None, "deleted", args.timeout)


class _Change(_ShowBase):
    target_state: str | None = None

    def get_parser(self, prog_name):
        parser = _wait_args(super().get_parser(prog_name))
        parser.add_argument("host", help="Name or UUID")
        return parser

    @abc.abstractmethod
    def patch(self, args) -> dict:
        """The merge patch this command sends."""

    def reached(self, host: dict, args) -> bool:
        return host["state"] == self.target_state and host["status"].get("operationalStatus") == "OK"

    def take_action(self, args):
        api = self.client()
        host = api.update_host(args.host, self.patch(args))
        if args.wait:
            host = self.wait(api, args.host, lambda h: h is not None and self.reached(h, args),
                             self.target_state or "there", args.timeout)
        return self.show(host)


class _Power(_Change):
    on = True

    def patch(self, args):
        return {"spec": {"online": self.on}}

    def reached(self, host, args):
        return host["status"].get("poweredOn") == self.on


class PowerOn(_Power):
    """Power a host on (sets online)."""

    target_state = "powered on"


class PowerOff(_Power):
    """Power a host off (clears online)."""

    on = False
    target_state = "powered off"


class Provision(_Change):
    """Provision a host with an image and optional cloud-init user data."""

    target_state = "provisioned"

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("--image-url", required=True)
        parser.add_argument("--image-checksum", help="Digest, or URL of a checksum file")
        parser.add_argument("--image-checksum-type", choices=["md5", "sha256", "sha512", "auto"])
        parser.add_argument("--image-format", choices=["raw", "qcow2", "vdi", "vmdk", "live-iso"])
        parser.add_argument("--user-data-file", help="cloud-init user data")
        parser.add_argument("--online", action="store_true",
                            help="Also power the host on")
        return parser

    def patch(self, args):
        image = {"url": args.image_url}
        for key, value in (("checksum", args.image_checksum), ("checksumType", args.image_checksum_type),
                           ("format", args.image_format)):
            if value:
                image[key] = value
        patch: dict = {"spec": {"image": image}}
        if args.online:
            patch["spec"]["online"] = True
        if args.user_data_file:
            with open(args.user_data_file) as f:
                patch["userData"] = f.read()
        return patch


class Deprovision(_Change):
    """Deprovision a host: remove its image, clean it, and return it to available."""

    target_state = "available"

    def patch(self, args):
        return {"spec": {"image": None}, "userData": None}


class _Traits(_Change):
    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("trait", nargs="+")
        return parser

    def reached(self, host, args):
        return True

    def patch(self, args):
        current = set(self.client().get_host(args.host).get("traits", []))
        return {"traits": sorted(self.change(current, set(args.trait)))}


class AddTraits(_Traits):
    """Add hardware traits to a host (standard os-traits names or CUSTOM_*)."""

    @staticmethod
    def change(current: set, given: set) -> set:
        return current | given


class RemoveTraits(_Traits):
    """Remove hardware traits from a host."""

    @staticmethod
    def change(current: set, given: set) -> set:
        return current - given


class ListHostClasses(_HostCommand, Lister):
    """List host classes: the flavors of clusters (host labels and traits a host must carry)."""

    def take_action(self, args):
        rows = self.client().list_hostclasses()
        columns = ("name", "labels", "traits", "hosts", "free_hosts", "description")
        return columns, [tuple(r.get(c) for c in columns) for r in rows]


class CreateHostClass(_HostCommand, Command):
    """Define a host class (admin): hosts with all these labels and traits belong to it."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("name")
        parser.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
        parser.add_argument("--trait", action="append", default=[],
                            help="A hardware trait hosts of the class must have")
        parser.add_argument("--description", default="")
        return parser

    def take_action(self, args):
        self.client().create_hostclass({"name": args.name, "labels": _key_values(args.label),
                                        "traits": args.trait, "description": args.description})
        print(f"hostclass/{args.name} created")


class DeleteHostClass(_HostCommand, Command):
    """Delete a host class (admin)."""

    def get_parser(self, prog_name):
        parser = super().get_parser(prog_name)
        parser.add_argument("name")
        return parser

    def take_action(self, args):
        self.client().delete_hostclass(args.name)
