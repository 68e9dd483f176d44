"""What the conductor asks of a load balancer data plane."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class LoadBalancerError(RuntimeError):
    pass


@dataclass(frozen=True)
class Listener:
    port: int  # on both VIPs
    backend_port: int
    protocol: str = "tcp"


@dataclass(frozen=True)
class Peer:
    """One instance of an active/standby pair: its own addresses, which it keeps while the VIPs
    move between the two."""

    tenant_address: str  # "10.20.0.252/24"
    public_address: str  # "172.31.250.11"


@dataclass(frozen=True)
class Spec:
    """One load balancer: its VIP on the tenant network (`tenant_address`, on `vlan`), its VIP on
    the public network, and where it sends connections. With two `peers` it is an active/standby
    pair: both instances run and check the members, the active one holds the VIPs, and the
    standby takes them over when the active one is lost."""

    name: str  # short and unique: names the namespace and ports
    vlan: int
    tenant_address: str  # "10.20.0.250/24"
    public_address: str  # "172.31.250.10"
    listeners: tuple[Listener, ...]
    members: tuple[str, ...]  # addresses on the tenant network
    check_interval: float = 2.0  # seconds between health checks
    check_fall: int = 2  # failed checks before a member is taken out
    peers: tuple[Peer, ...] = ()  # none: a single instance holds the VIPs


class LoadBalancers(Protocol):
    def ensure(self, spec: Spec) -> None:
        """Make it so (idempotent): also restores a data plane that died."""

    def remove(self, name: str) -> None:
        """Gone, with everything it used (idempotent)."""

    def running(self, name: str) -> bool:
        """Whether every instance of it runs."""

    def health(self, name: str) -> dict[str, bool]:
        """Member address → whether its health checks pass, as the active instance sees them."""

    def public_cidr(self) -> str:
        """The public network VIPs come from."""
