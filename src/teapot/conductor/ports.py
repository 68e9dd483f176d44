"""The port reconciler: puts every host's switch port on the VLAN its state calls for.

One switch is one object of this reconciler (leased like hosts and clusters, so two conductors never
configure one switch at once). A pass over a switch reads every host cabled to it, asks
`resources.network.port_vlan` where each belongs, and moves all the ports that are elsewhere in one
call of the switch driver (networking-generic-switch batches them into one session). A failure is
recorded on the switch and on each host that could not move, and retried with backoff; ports stay
on their old VLAN, never on a wrong one. The first pass of a conductor re-applies every network's
VLAN and every port, so a switch that lost its configuration (a restarted box) converges.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import select, update
from sqlalchemy.orm import sessionmaker

from teapot.conductor.hosts import Timing
from teapot.db import leases
from teapot.db.models import Cluster, Host, Network, Switch
from teapot.drivers.switch import inventory
from teapot.drivers.switch.base import SwitchError
from teapot.resources import network as nsm

LOG = logging.getLogger(__name__)


def wanted_ports(session, mac: str, vlans: nsm.Vlans) -> list[tuple[int, str, str, int | None, int]]:
    """(host id, host name, port, current VLAN, wanted VLAN) of every host cabled to switch `mac`."""
    rows = session.execute(
        select(Host.id, Host.name, Host.state, Host.cluster_uuid, Host.spec, Host.port_vlan,
               Network.vlan_id)
        .outerjoin(Cluster, Cluster.uuid == Host.cluster_uuid)
        .outerjoin(Network, Network.uuid == Cluster.network_uuid)
        .order_by(Host.name)).all()
    out = []
    for host_id, name, state, cluster, spec, current, tenant in rows:
        where = inventory.host_port(spec)
        if where is None or where[0] != mac:
            continue
        wanted = nsm.port_vlan(state, cluster is not None, bool(spec.get("image")), tenant, vlans)
        out.append((host_id, name, where[1], current, wanted))
    return out


class PortReconciler:
    kind = "switch"
    model = Switch  # what the loop defers when a reconcile raises

    def __init__(self, sm: sessionmaker, switches: list[inventory.SwitchEntry], vlans: nsm.Vlans,
                 owner: str, timing: Timing, poll: float = 0.5, connect=inventory.connect):
        self.sm, self.vlans, self.owner, self.timing, self.poll = sm, vlans, owner, timing, poll
        self.entries = {e.name: e for e in switches}
        self.connect = connect
        self.drivers: dict = {}
        self.reapplied: set[str] = set()  # switches whose every port this process has set
        # Drivers are made here, in the thread that builds the conductor: networking-generic-switch
        # brings eventlet in on first use, and a worker thread that did that first can never be
        # joined again (the conductor would not stop on SIGTERM).
        for name in sorted(self.entries):
            self.driver(name)
        with sm.begin() as session:
            known = set(session.scalars(select(Switch.name)))
            for name in self.entries.keys() - known:
                session.add(Switch(name=name, error_count=0, next_attempt_at=0.0,
                                   lease_expires_at=0.0))

    def driver(self, name: str):
        """The one driver of switch `name` in this process (it keeps its session and lock)."""
        if name not in self.drivers:
            self.drivers[name] = self.connect(self.entries[name])
        return self.drivers[name]

    def all_drivers(self) -> list:
        return [self.driver(name) for name in sorted(self.entries)]

    def due(self, now: float, limit: int) -> list[int]:
        return leases.due(self.sm, Switch, now, limit)

    def refresh(self) -> None:
        pass

    def reconcile(self, switch_id: int) -> None:
        if not leases.acquire(self.sm, Switch, switch_id, self.owner, self.timing.lease):
            return
        delay = self.poll
        try:
            with self.sm() as session:
                row = session.get(Switch, switch_id)
                entry = self.entries.get(row.name) if row else None
                if entry is None:  # no longer in the switches file
                    delay = self.timing.resync * 4
                    return
                ports = wanted_ports(session, entry.mac, self.vlans)
                errors = row.error_count
                tenant_vlans = [] if entry.name in self.reapplied else list(session.scalars(
                    select(Network.vlan_id).where(Network.status == nsm.ACTIVE,
                                                  Network.deleting.is_(False))))
            delay = self._apply(switch_id, entry, ports, errors, tenant_vlans)
        finally:
            with self.sm.begin() as session:
                session.execute(update(Switch).where(Switch.id == switch_id,
                                                     Switch.lease_owner == self.owner)
                                .values(next_attempt_at=time.time() + delay, lease_owner=None,
                                        lease_expires_at=0.0))

    def _apply(self, switch_id: int, entry: inventory.SwitchEntry, ports: list, errors: int,
               tenant_vlans: list[int]) -> float:
        """Move the ports that are elsewhere; on this process's first pass over the switch, first
        put back every active network's VLAN and then every port."""
        first = entry.name not in self.reapplied
        moves = [p for p in ports if first or p[3] != p[4]]
        if not moves and not tenant_vlans:
            self.reapplied.add(entry.name)
            return self.poll
        try:
            if tenant_vlans:
                self.driver(entry.name).add_vlans(sorted(tenant_vlans))
            self.driver(entry.name).set_many({port: wanted for _, _, port, _, wanted in moves},
                            current={port: cur for _, _, port, cur, _ in moves if cur is not None})
        except SwitchError as e:
            message = str(e)  # names the switch, never its credentials
            LOG.warning("%s (%d port(s) not moved; retrying)", message, len(moves))
            count = errors + 1
            with self.sm.begin() as session:
                session.execute(update(Switch).where(Switch.id == switch_id)
                                .values(error=message, error_count=count))
                session.execute(update(Host).where(Host.id.in_([m[0] for m in moves]))
                                .values(port_error=message))
            return min(2.0 ** min(count, 16), self.timing.max_backoff)
        self.reapplied.add(entry.name)
        with self.sm.begin() as session:
            session.execute(update(Switch).where(Switch.id == switch_id)
                            .values(error=None, error_count=0))
            for host_id, name, port, current, wanted in moves:
                session.execute(update(Host).where(Host.id == host_id)
                                .values(port_vlan=wanted, port_error=None))
                if current != wanted:
                    LOG.info("host %s: port %s of %s moved from VLAN %s to %s", name, port,
                             entry.name, current, wanted)
        return self.poll
