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

import ipaddress
from dataclasses import dataclass

from teapot.resources import host as hsm
from teapot.resources.errors import ValidationError

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


# -- subnets ---------------------------------------------------------------------------------------
SMALLEST_PREFIX = 29  # a gateway, an endpoint and at least two hosts
# Never handed out: loopback, link-local, multicast and the like.
_RESERVED = [ipaddress.ip_network(n) for n in ("0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16",
                                               "224.0.0.0/4", "240.0.0.0/4")]


@dataclass(frozen=True)
class Subnet:
    """A tenant network's IPv4 subnet: where its hosts' and endpoints' addresses come from.
    Projects may use the same CIDR: their VLANs keep them apart."""

    cidr: str
    gateway_ip: str
    dns_nameservers: tuple[str, ...]
    pool_start: str
    pool_end: str

    @classmethod
    def parse(cls, cidr: str, gateway_ip: str | None = None,
              dns_nameservers: list[str] | tuple[str, ...] = (),
              allocation_pool: dict | None = None) -> Subnet:
        """Defaults as Neutron's: the gateway is the first address, the pool the rest but the
        broadcast address."""
        try:
            net = ipaddress.IPv4Network(cidr, strict=True)
        except ValueError as e:
            raise ValidationError("cidr", f"{cidr!r} is not an IPv4 network: {e}") from None
        if net.prefixlen > SMALLEST_PREFIX:
            raise ValidationError("cidr", f"{cidr} is too small: a subnet needs at least /{SMALLEST_PREFIX}")
        for reserved in _RESERVED:
            if net.overlaps(reserved):
                raise ValidationError("cidr", f"{cidr} overlaps {reserved}, which is never handed out")
        gateway = _address_in(net, gateway_ip, "gateway_ip") if gateway_ip else net[1]
        pool = allocation_pool or {}
        start = _address_in(net, pool.get("start"), "allocation_pool.start") \
            if pool.get("start") else net[1]
        end = _address_in(net, pool.get("end"), "allocation_pool.end") \
            if pool.get("end") else net[-2]
        if start == gateway and not pool.get("start"):
            start = gateway + 1
        if end < start:
            raise ValidationError("allocation_pool", f"start {start} comes after end {end}")
        if start <= gateway <= end:
            raise ValidationError("gateway_ip", f"{gateway} lies inside the allocation pool {start}-{end}")
        if int(end) - int(start) < 2:
            raise ValidationError("allocation_pool", f"{start}-{end} holds fewer than three addresses")
        dns = []
        for i, server in enumerate(dns_nameservers or ()):
            try:
                dns.append(str(ipaddress.IPv4Address(server)))
            except ValueError:
                raise ValidationError(f"dns_nameservers[{i}]",
                                      f"{server!r} is not an IPv4 address") from None
        return cls(str(net), str(gateway), tuple(dns), str(start), str(end))

    @classmethod
    def from_record(cls, record: dict) -> Subnet:
        pool = record["allocation_pool"]
        return cls(record["cidr"], record["gateway_ip"], tuple(record.get("dns_nameservers") or ()),
                   pool["start"], pool["end"])

    def record(self) -> dict:
        return {"cidr": self.cidr, "gateway_ip": self.gateway_ip,
                "dns_nameservers": list(self.dns_nameservers),
                "allocation_pool": {"start": self.pool_start, "end": self.pool_end}}

    @property
    def prefixlen(self) -> int:
        return ipaddress.IPv4Network(self.cidr).prefixlen

    @property
    def netmask(self) -> str:
        return str(ipaddress.IPv4Network(self.cidr).netmask)

    def pool(self) -> tuple[int, int]:
        """The allocation pool as integers (what the database allocates from)."""
        return int(ipaddress.IPv4Address(self.pool_start)), int(ipaddress.IPv4Address(self.pool_end))


def public_subnet(cidr: str) -> Subnet:
    """The public network as a pool of VIPs: the first ten addresses are the network's own (the
    gateway, the machine's in a box), the rest is handed out."""
    net = ipaddress.IPv4Network(cidr)
    return Subnet.parse(str(net), allocation_pool={"start": str(net[10]), "end": str(net[-2])})


def address_text(value: int) -> str:
    return str(ipaddress.IPv4Address(value))


def _address_in(net: ipaddress.IPv4Network, text: str, field: str) -> ipaddress.IPv4Address:
    try:
        address = ipaddress.IPv4Address(text)
    except ValueError:
        raise ValidationError(field, f"{text!r} is not an IPv4 address") from None
    if address not in net or address in (net.network_address, net.broadcast_address):
        raise ValidationError(field, f"{address} is not a host address of {net}")
    return address
