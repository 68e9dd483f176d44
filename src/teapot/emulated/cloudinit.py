"""The part of cloud-init an emulated host carries out: a `#cloud-config` document's `hostname`,
`write_files` and `runcmd`, and OpenStack `network_data.json`. Pure: parsing only."""

from __future__ import annotations

import base64
import ipaddress
import shlex
from dataclasses import dataclass

import yaml

# Modules an emulated host has nothing to do for (no users, no sshd of its own).
IGNORED = frozenset({"preserve_hostname", "ssh_authorized_keys"})


class CloudInitError(ValueError):
    pass


@dataclass(frozen=True)
class File:
    path: str
    content: bytes
    mode: int


@dataclass(frozen=True)
class UserData:
    hostname: str | None
    files: tuple[File, ...]
    commands: tuple[str, ...]  # shell command lines, in order
    unsupported: tuple[str, ...]  # modules the emulated host does not carry out


def parse_user_data(text: str) -> UserData:
    if not text.startswith("#cloud-config"):
        # a script: cloud-init runs it as it is
        return UserData(None, (), (text,) if text.strip() else (), ())
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise CloudInitError(f"user data is not YAML: {e}") from None
    if not isinstance(doc, dict):
        raise CloudInitError("user data #cloud-config is not a mapping")
    files = []
    for i, f in enumerate(doc.get("write_files") or ()):
        try:
            content = f.get("content", "")
            if f.get("encoding") in ("b64", "base64"):
                data = base64.b64decode(content)
            else:
                data = content.encode() if isinstance(content, str) else bytes(content)
            path = f["path"]
            if not path.startswith("/") or ".." in path.split("/"):
                raise CloudInitError(f"write_files[{i}].path {path!r} is not an absolute path")
            files.append(File(path, data, int(str(f.get("permissions", "0644")), 8)))
        except (KeyError, TypeError, ValueError) as e:
            raise CloudInitError(f"write_files[{i}]: {e}") from None
    commands = []
    for i, cmd in enumerate(doc.get("runcmd") or ()):
        if isinstance(cmd, list):
            commands.append(shlex.join(str(part) for part in cmd))
        elif isinstance(cmd, str):
            commands.append(cmd)
        else:
            raise CloudInitError(f"runcmd[{i}] is neither a command line nor a list")
    known = {"hostname", "write_files", "runcmd"} | IGNORED
    return UserData(doc.get("hostname"), tuple(files), tuple(commands),
                    tuple(sorted(k for k in doc if k not in known)))


@dataclass(frozen=True)
class Interface:
    mac: str
    address: str  # "10.20.0.7/24"
    gateway: str | None
    mtu: int
    dns: tuple[str, ...]


def parse_network_data(data: dict) -> list[Interface]:
    """The IPv4 static configuration of each link that has one."""
    links = {link.get("id"): link for link in data.get("links") or ()}
    dns = tuple(s["address"] for s in data.get("services") or () if s.get("type") == "dns")
    out = []
    for net in data.get("networks") or ():
        if net.get("type") != "ipv4":
            continue
        link = links.get(net.get("link"))
        if link is None or not link.get("ethernet_mac_address"):
            raise CloudInitError(f"network {net.get('id')!r} names no link with a MAC address")
        prefix = ipaddress.IPv4Network(f"0.0.0.0/{net['netmask']}").prefixlen
        gateway = next((r["gateway"] for r in net.get("routes") or ()
                        if r.get("network") == "0.0.0.0"), None)
        out.append(Interface(link["ethernet_mac_address"].lower(), f"{net['ip_address']}/{prefix}",
                             gateway, int(link.get("mtu") or 1500), dns))
    return out
