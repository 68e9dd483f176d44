"""The switches Teapot drives, read from the switches file (`[network] switches_file`), and where each
host is cabled (its BareMetalHost spec's `networkInterfaces[].switchPort`, as Metal³ records it).

    - name: tor
      macAddress: "02:00:00:00:00:01"   # the switch id hosts' switchPort.switchID name
      device:                            # a networking-generic-switch device's options
        device_type: netmiko_ovs_linux
        ip: 127.0.0.1
        ...
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from teapot.drivers.switch.base import Switch, SwitchConfigError

MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


@dataclass(frozen=True)
class SwitchEntry:
    name: str
    mac: str  # lower case
    device: dict = field(repr=False)  # holds credentials


def load(path: str | Path) -> list[SwitchEntry]:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise SwitchConfigError(f"switches file {path} does not exist") from None
    except yaml.YAMLError as e:
        raise SwitchConfigError(f"switches file {path} is not valid YAML: {e}") from None
    if not isinstance(data, list):
        raise SwitchConfigError(f"switches file {path} must hold a list of switches")
    out, seen = [], set()
    for i, item in enumerate(data):
        where = f"{path}: switch {i}"
        if not isinstance(item, dict) or set(item) - {"name", "macAddress", "device"}:
            raise SwitchConfigError(f"{where}: expected name, macAddress and device")
        name, mac, device = item.get("name"), str(item.get("macAddress", "")).lower(), item.get("device")
        if not isinstance(name, str) or not name:
            raise SwitchConfigError(f"{where}: name is required")
        if not MAC_RE.match(mac):
            raise SwitchConfigError(f"{where} ({name}): macAddress must be a MAC address")
        if not isinstance(device, dict):
            raise SwitchConfigError(f"{where} ({name}): device must be a map of ngs options")
        if name in seen or mac in {e.mac for e in out}:
            raise SwitchConfigError(f"{where}: switch {name} ({mac}) is listed twice")
        seen.add(name)
        out.append(SwitchEntry(name, mac, {str(k): str(v) for k, v in device.items()}))
    return out


def connect(entry: SwitchEntry) -> Switch:
    from teapot.drivers.switch.ngs import NgsSwitch

    return NgsSwitch(entry.name, entry.device)


def host_port(spec: dict) -> tuple[str, str] | None:
    """(switch MAC, port) where the host's first cabled NIC is, or None when it says nothing."""
    for nic in spec.get("networkInterfaces") or ():
        port = (nic or {}).get("switchPort")
        if port and port.get("switchID") and port.get("portID"):
            return port["switchID"].lower(), port["portID"]
    return None
