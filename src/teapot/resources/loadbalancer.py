"""Load balancers: a project's VIP on the public network sending TCP connections to members on one
of its tenant networks, with a health check. Statuses are Octavia's: `provisioning_status` says
where the load balancer is in its life, `operating_status` what its health checks see.

The rules of a request (`parse`) and the state machine (`plan`) are here; the conductor allocates
the addresses and drives the data plane. Pure.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from teapot.resources.errors import ValidationError

PENDING_CREATE = "PENDING_CREATE"
PENDING_UPDATE = "PENDING_UPDATE"
PENDING_DELETE = "PENDING_DELETE"
ACTIVE = "ACTIVE"
ERROR = "ERROR"

ONLINE = "ONLINE"
DEGRADED = "DEGRADED"
OFFLINE = "OFFLINE"
NO_MONITOR = "NO_MONITOR"
OP_ERROR = "ERROR"

# Octavia's topologies: one instance, or an active/standby pair whose VIPs move to the standby
# when the active instance is lost
SINGLE = "SINGLE"
ACTIVE_STANDBY = "ACTIVE_STANDBY"
TOPOLOGIES = (SINGLE, ACTIVE_STANDBY)

PROTOCOLS = ("TCP",)  # HAProxy, the data plane, balances TCP; UDP needs another one
MAX_LISTENERS = 16
MAX_MEMBERS = 256


@dataclass(frozen=True)
class ListenerSpec:
    protocol: str
    port: int
    member_port: int


@dataclass(frozen=True)
class HealthCheck:
    interval: float = 2.0  # seconds between checks of a member
    retries: int = 2  # failed checks before it is taken out

    @property
    def detection(self) -> float:
        """How long a dead member may still be sent connections (interval × retries)."""
        return self.interval * self.retries


@dataclass(frozen=True)
class LoadBalancerSpec:
    listeners: tuple[ListenerSpec, ...]
    members: tuple[str, ...]  # addresses on the network
    cluster: str | None  # a cluster uuid: its hosts are members too
    health_check: HealthCheck
    topology: str = SINGLE  # chosen at create, kept for life

    def record(self) -> dict:
        return {"listeners": [{"protocol": x.protocol, "port": x.port, "member_port": x.member_port}
                              for x in self.listeners],
                "members": list(self.members), "cluster": self.cluster,
                "health_check": {"interval": self.health_check.interval,
                                 "retries": self.health_check.retries},
                "topology": self.topology}

    @classmethod
    def from_record(cls, record: dict) -> LoadBalancerSpec:
        return cls(tuple(ListenerSpec(**x) for x in record["listeners"]), tuple(record["members"]),
                   record.get("cluster"), HealthCheck(**record["health_check"]),
                   record.get("topology", SINGLE))


def parse(body: dict, subnet_cidr: str, cluster_uuid: str | None) -> LoadBalancerSpec:
    """A create request's load balancer, its members checked against the network's subnet."""
    listeners = []
    ports = set()
    for i, x in enumerate(body.get("listeners") or ()):
        protocol = str(x.get("protocol", "TCP")).upper()
        if protocol not in PROTOCOLS:
            raise ValidationError(f"listeners[{i}].protocol",
                                  f"{protocol} is not balanced here; this cloud balances "
                                  f"{', '.join(PROTOCOLS)}")
        port = x["port"]
        if port in ports:
            raise ValidationError(f"listeners[{i}].port", f"{port} is already a listener's port")
        ports.add(port)
        listeners.append(ListenerSpec(protocol, port, x.get("member_port") or port))
    network = ipaddress.IPv4Network(subnet_cidr)
    members = []
    for i, m in enumerate(body.get("members") or ()):
        try:
            address = ipaddress.IPv4Address(m["address"])
        except ValueError:
            raise ValidationError(f"members[{i}].address",
                                  f"{m['address']!r} is not an IPv4 address") from None
        if address not in network:
            raise ValidationError(f"members[{i}].address",
                                  f"{address} is not on the load balancer's network ({network})")
        if str(address) in members:
            raise ValidationError(f"members[{i}].address", f"{address} is a member already")
        members.append(str(address))
    check = body.get("health_check") or {}
    topology = str(body.get("topology") or SINGLE).upper()
    if topology not in TOPOLOGIES:
        raise ValidationError("topology", f"{topology} is not one of {', '.join(TOPOLOGIES)}")
    return LoadBalancerSpec(tuple(listeners), tuple(members), cluster_uuid,
                            HealthCheck(float(check.get("interval", 2)),
                                        int(check.get("retries", 2))), topology)


def merged(record: dict, change: dict) -> dict:
    """An update request's whole load balancer, as a create request's body: what `change` names
    replaces what the load balancer has; the rest stays."""
    spec = LoadBalancerSpec.from_record(record)
    out = {"listeners": [{"protocol": x.protocol, "port": x.port, "member_port": x.member_port}
                         for x in spec.listeners],
           "members": [{"address": a} for a in spec.members],
           "health_check": {"interval": spec.health_check.interval,
                            "retries": spec.health_check.retries}}
    out.update({k: v for k, v in change.items() if k in out})
    return {**out, "topology": spec.topology}


# -- the state machine -------------------------------------------------------------------------------
@dataclass(frozen=True)
class View:
    provisioning_status: str
    deleting: bool
    generation: int
    applied_generation: int
    running: bool  # its data plane runs with what was last applied
    members: tuple[str, ...]  # its members now (a cluster's hosts change)
    applied_members: tuple[str, ...]


@dataclass(frozen=True)
class Ensure:
    """Addresses allocated, the data plane made or brought up to date (or back after dying)."""


@dataclass(frozen=True)
class Remove:
    """The data plane and the addresses gone, then the record."""


@dataclass(frozen=True)
class Observe:
    """Running as asked: look at what the health checks see."""


Step = Ensure | Remove | Observe


def plan(view: View) -> Step:
    if view.deleting:
        return Remove()
    if view.applied_generation < view.generation or not view.running \
            or view.members != view.applied_members:
        return Ensure()
    return Observe()


def operating_status(members_up: dict[str, bool]) -> str:
    """Octavia's operating_status from each member's health check."""
    if not members_up:
        return OFFLINE
    up = sum(members_up.values())
    return ONLINE if up == len(members_up) else DEGRADED if up else OP_ERROR


# Magnum's label for a cluster's cloud provider (its Services of type LoadBalancer); off unless asked
SERVICE_LABEL = "cloud_provider_enabled"


def services_wanted(labels: dict | None) -> bool:
    """Whether the labels ask for Services of type LoadBalancer; anything but true or false is a
    ValidationError naming the label."""
    value = str((labels or {}).get(SERVICE_LABEL, "false")).strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise ValidationError(f"labels.{SERVICE_LABEL}", f"must be true or false, not {value!r}")
    return value in ("true", "1", "yes")


def access_rules(cluster_uuid: str, service: str) -> list[dict]:
    """Keystone access rules for a cluster's own credential: its cluster's load balancers (listed,
    made, read, changed, deleted below /v1/clusters/{uuid}/loadbalancers), nothing else of Teapot's
    `service`."""
    if not cluster_uuid or "/" in cluster_uuid or "*" in cluster_uuid:
        raise ValueError(f"not a cluster uuid: {cluster_uuid!r}")
    path = f"/v1/clusters/{cluster_uuid}/loadbalancers"
    return [{"service": service, "method": m, "path": path} for m in ("GET", "POST")] + \
        [{"service": service, "method": m, "path": path + "/*"} for m in ("GET", "PATCH", "DELETE")]
