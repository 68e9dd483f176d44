"""The switch interface: what tenant networking asks of a top-of-rack switch.

A host's NIC is cabled to a switch port (Ironic's `local_link_connection`: switch id, port id,
switch info). Teapot puts that port in exactly one access VLAN at a time: idle, provisioning,
cleaning, or its tenant's. Tenant VLANs are created on the switch (and on its trunk ports, toward
the physical network shared with Neutron) before ports join them. A call that returns has applied
all of its changes; one that raises `SwitchError` may have applied some of them, but each port is
always on exactly one VLAN, its old one or its new one. Callers record the outcome and retry:
repeating a call is harmless.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Protocol

PORT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./:-]{0,63}$")


class SwitchError(Exception):
    """A switch could not be configured. The message names the switch and what failed; it never
    holds credentials."""


class SwitchConfigError(SwitchError, ValueError):
    """A switch's configuration is invalid (names the option)."""


def check_vlan(vlan: object, what: str = "VLAN") -> int:
    if not isinstance(vlan, int) or isinstance(vlan, bool) or not 1 <= vlan <= 4094:
        raise SwitchError(f"{what} must be an integer from 1 to 4094, not {vlan!r}")
    return vlan


def check_port(port: object) -> str:
    """Port names go into switch commands: only plain interface names are accepted."""
    if not isinstance(port, str) or not PORT_RE.fullmatch(port):
        raise SwitchError(f"switch port name {port!r} is not a plain interface name "
                          "(letters, digits and _ . / : -, at most 64)")
    return port


class Switch(Protocol):
    name: str
    idle_vlan: int | None

    def add_vlans(self, vlans: Iterable[int]) -> None:
        """Create VLANs on the switch and carry them on its trunk ports."""

    def remove_vlans(self, vlans: Iterable[int]) -> None:
        """Remove VLANs from the switch and its trunk ports."""

    def set_access_vlan(self, port: str, vlan: int, current: int | None = None) -> None:
        """Put `port` in access mode on `vlan` (`current`: the VLAN it leaves, if known)."""

    def set_many(self, assignments: Mapping[str, int],
                 current: Mapping[str, int] | None = None) -> None:
        """Apply many port → VLAN assignments at once, as one change where the switch allows."""

    def set_trunk(self, port: str, native_vlan: int, vlans: Iterable[int]) -> None:
        """Make `port` a trunk: untagged frames on `native_vlan`, tagged ones on `vlans`."""

    def set_idle(self, ports: Mapping[str, int]) -> None:
        """Return ports (port → the VLAN each leaves) to the idle VLAN."""

    def close(self) -> None:
        """Drop any connection kept open to the switch."""
