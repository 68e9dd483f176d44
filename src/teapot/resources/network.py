"""Tenant networks and switch ports: the network state machine, and which VLAN a host's switch port
belongs on. Pure: the conductor reads rows, asks here, and does what is returned.

A network is `creating` until its VLAN is on every switch's trunk ports (and registered with Neutron
when the cloud has it), then `active`; once asked to be deleted it is `deleting` until both are
undone, then it is gone (a network still used by a cluster cannot be asked to). Failures are kept in `status_reason` and retried with backoff; a network
never has an error state.

A host's port is on exactly one VLAN, chosen by the host's state: deployment and inspection on the
provisioning VLAN, cleaning on the cleaning VLAN, a provisioned host of a cluster on its tenant's
VLAN, and everything else (free, or without a tenant) on the idle VLAN. The host reconciler does not
start inspecting, cleaning, deploying or deprovisioning a host until its port is where that step
needs it, so a host is never cleaned on a tenant VLAN.
"""

from __future__ import annotations

from dataclasses import dataclass

from teapot.resources import host as hsm

CREATING = "creating"
ACTIVE = "active"
DELETING = "deleting"

# Host steps that need the host on a particular network before they start.
GATED_OPERATIONS = frozenset({"inspect", "prepare", "provision", "deprovision"})


@dataclass(frozen=True)
class Vlans:
    idle: int
    provisioning: int
    cleaning: int

    def infrastructure(self) -> frozenset[int]:
        return frozenset({self.idle, self.provisioning, self.cleaning})


def parse_ranges(ranges: list[str]) -> list[tuple[int, int]]:
    """["100:3000", "3500:3600"] → [(100, 3000), (3500, 3600)]; ValueError naming the bad one."""
    out = []
    for text in ranges:
        low, sep, high = text.strip().partition(":")
        try:
            lo, hi = int(low), int(high if sep else low)
        except ValueError:
            raise ValueError(f"VLAN range {text!r} is not MIN:MAX") from None
        if not 1 <= lo <= hi <= 4094:
            raise ValueError(f"VLAN range {text!r} must lie within 1 to 4094, MIN before MAX")
        out.append((lo, hi))
    if not out:
        raise ValueError("no VLAN range to allocate tenant networks from")
    return out


def port_vlan(state: str, claimed: bool, has_image: bool, tenant_vlan: int | None,
              vlans: Vlans) -> int:
    """The VLAN a host's port belongs on now."""
    if state in (hsm.REGISTERING, hsm.INSPECTING, hsm.PROVISIONING):
        return vlans.provisioning
    if state in (hsm.PREPARING, hsm.DEPROVISIONING):
        return vlans.cleaning
    if state == hsm.AVAILABLE and claimed and has_image:
        return vlans.provisioning  # about to be deployed
    if state == hsm.PROVISIONED and claimed and tenant_vlan is not None:
        return tenant_vlan
    return vlans.idle


def gate(operation: str, current: int | None, wanted: int) -> str | None:
    """Why `operation` must wait for the switch (None: it may start)."""
    if operation in GATED_OPERATIONS and current != wanted:
        where = "unknown" if current is None else f"VLAN {current}"
        return f"waiting for the switch to move the host's port from {where} to VLAN {wanted}"
    return None


# -- networks --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NetworkView:
    status: str
    deleting: bool


@dataclass(frozen=True)
class SetUp:
    """Put the VLAN on every switch's trunk ports and register it with Neutron (both idempotent)."""


@dataclass(frozen=True)
class TearDown:
    """Remove it from Neutron and from the switches (both idempotent), then the record."""


@dataclass(frozen=True)
class Settled:
    pass


NetworkStep = SetUp | TearDown | Settled


def plan(view: NetworkView) -> NetworkStep:
    if view.deleting:
        return TearDown()
    if view.status != ACTIVE:
        return SetUp()
    return Settled()
