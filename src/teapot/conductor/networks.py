"""The network reconciler: a tenant network's VLAN on every switch (and its trunk ports toward the
physical network), and the network registered with Neutron when the cloud has one; undone when the
network is deleted. Every step is idempotent, so a conductor killed half-way is simply repeated."""

from __future__ import annotations

import logging
import time
from typing import Protocol

from sqlalchemy import delete, update
from sqlalchemy.orm import sessionmaker

from teapot.conductor.hosts import Timing
from teapot.db import leases
from teapot.db.models import Network
from teapot.drivers.switch.base import SwitchError
from teapot.resources import network as nsm

LOG = logging.getLogger(__name__)


class Registry(Protocol):
    """Where tenant networks are published for the rest of the cloud (Neutron)."""

    def ensure(self, project_id: str, name: str, vlan: int, network_uuid: str) -> str: ...

    def remove(self, network_uuid: str) -> None: ...


class NeutronRegistry:
    """Tenant networks as Neutron provider networks (`teapot-<network uuid>`), owned by and shared
    with their project only, whenever the catalog has a network service. The catalog is looked at
    again (a new token) at most every `recheck` seconds while it has none: Neutron may be
    registered after the conductor started."""

    def __init__(self, session, physical_network: str, recheck: float = 10.0):
        self.session = session
        self.physical_network = physical_network
        self.recheck = recheck
        self._neutron = None
        self._looked = -recheck

    def _client(self):
        from teapot.drivers.neutron import NeutronNetworks

        now = time.monotonic()
        if self._neutron is None and now - self._looked >= self.recheck:
            self._looked = now
            self.session.invalidate()  # the catalog comes with the next token
            if NeutronNetworks.available(self.session):
                LOG.info("the catalog has a network service: tenant networks go to Neutron")
                self._neutron = NeutronNetworks(self.session)
        return self._neutron

    @staticmethod
    def name(network_uuid: str) -> str:
        return f"teapot-{network_uuid}"

    def ensure(self, project_id: str, name: str, vlan: int, network_uuid: str) -> str | None:
        neutron = self._client()
        if neutron is None:
            return None
        return neutron.ensure(project_id, self.name(network_uuid), vlan, self.physical_network)

    def remove(self, network_uuid: str) -> None:
        neutron = self._client()
        if neutron is not None:
            neutron.remove(self.name(network_uuid))


class NetworkReconciler:
    kind = "network"
    model = Network  # what the loop defers when a reconcile raises

    def __init__(self, sm: sessionmaker, switches, owner: str, timing: Timing,
                 registry: Registry | None = None):
        """`switches`: a callable returning the switch drivers (the port reconciler's)."""
        self.sm, self.switches, self.owner, self.timing = sm, switches, owner, timing
        self.registry = registry

    def due(self, now: float, limit: int) -> list[int]:
        return leases.due(self.sm, Network, now, limit)

    def refresh(self) -> None:
        pass

    def reconcile(self, network_id: int) -> None:
        if not leases.acquire(self.sm, Network, network_id, self.owner, self.timing.lease):
            return
        try:
            self._step(network_id)
        finally:
            leases.release(self.sm, Network, network_id, self.owner)

    def _step(self, network_id: int) -> None:
        with self.sm() as session:
            row = session.get(Network, network_id)
        if row is None:
            return
        step = nsm.plan(nsm.NetworkView(row.status, row.deleting))
        if isinstance(step, nsm.Settled):
            self._save(row, delay=self.timing.resync * 4)
            return
        try:
            if isinstance(step, nsm.SetUp):
                for switch in self.switches():
                    switch.add_vlans([row.vlan_id])
                neutron_id = (self.registry.ensure(row.project_id, row.name, row.vlan_id, row.uuid)
                              if self.registry else None)
                self._save(row, status=nsm.ACTIVE, reason=None, neutron_id=neutron_id,
                           delay=self.timing.resync * 4)
                LOG.info("network %s (%s) active on VLAN %s", row.name, row.uuid, row.vlan_id)
            else:
                if self.registry:
                    self.registry.remove(row.uuid)
                for switch in self.switches():
                    switch.remove_vlans([row.vlan_id])
                with self.sm.begin() as session:
                    session.execute(delete(Network).where(Network.id == row.id,
                                                          Network.lease_owner == self.owner))
                LOG.info("network %s (%s) deleted, VLAN %s free", row.name, row.uuid, row.vlan_id)
        except (SwitchError, Exception) as e:  # recorded on the network, retried with backoff
            count = row.error_count + 1
            LOG.warning("network %s: %s (retrying)", row.name, e)
            self._save(row, reason=f"{'setting up' if isinstance(step, nsm.SetUp) else 'tearing down'}"
                                   f" failed: {e} (retrying)", errors=count,
                       delay=min(2.0 ** min(count, 16), self.timing.max_backoff))

    def _save(self, row: Network, delay: float, errors: int = 0, **values) -> None:
        changes = {"error_count": errors, "next_attempt_at": time.time() + delay}
        for key, value in values.items():
            changes["status_reason" if key == "reason" else key] = value
        if "status" in values or "reason" in values:
            changes["updated_at"] = time.time()
        with self.sm.begin() as session:
            session.execute(update(Network).where(Network.id == row.id,
                                                  Network.lease_owner == self.owner,
                                                  Network.generation == row.generation)
                            .values(**changes))
