"""The load balancer reconciler: addresses allocated (the VIP on the public network, a leg on the
tenant network), the data plane made and kept as asked (a cluster's hosts as members follow its
resizes; a data plane that died is made again), health checks read into `operating_status`; on
delete, the data plane and the addresses go, then the record. Every step is idempotent."""

from __future__ import annotations

import ipaddress
import logging
import time

from sqlalchemy import delete, select, update
from sqlalchemy.orm import sessionmaker

from teapot.conductor.hosts import Timing
from teapot.db import addresses as adb
from teapot.db import leases
from teapot.db import networks as ndb
from teapot.db.models import Host, LoadBalancer, Network
from teapot.drivers.loadbalancer.base import Listener, LoadBalancerError, Peer, Spec
from teapot.resources import loadbalancer as lbr
from teapot.resources import network as nsm

LOG = logging.getLogger(__name__)
HEALTH_EVERY = 5.0  # seconds between looks at the health checks of a running load balancer


def allocate_legs(session, net: Network, subnet: nsm.Subnet, public_cidr: str, kind: str,
                  owner: str, cluster_uuid: str | None, pair: bool) -> tuple[str, str, tuple[Peer, ...]]:
    """The addresses a load balancer holds (in the caller's transaction): its VIP on the tenant
    network (from the top of the pool), its VIP on the public network, and for a pair each
    instance's own address on both (kinds `<kind>-a`, `<kind>-b`)."""
    public_subnet = nsm.public_subnet(public_cidr)

    def both(k: str) -> tuple[str, str]:
        return (adb.allocate(session, net.uuid, subnet, k, owner, cluster_uuid, highest=True),
                adb.allocate(session, adb.PUBLIC, public_subnet, k, owner, cluster_uuid))

    tenant, public = both(kind)
    peers = tuple(Peer(f"{t}/{subnet.prefixlen}", p)
                  for t, p in (both(f"{kind}-{s}") for s in "ab")) if pair else ()
    return tenant, public, peers


class LoadBalancerReconciler:
    kind = "loadbalancer"
    model = LoadBalancer  # what the loop defers when a reconcile raises

    def __init__(self, sm: sessionmaker, driver, owner: str, timing: Timing,
                 default_subnet: nsm.Subnet):
        self.sm, self.driver, self.owner, self.timing = sm, driver, owner, timing
        self.default_subnet = default_subnet

    def due(self, now: float, limit: int) -> list[int]:
        return leases.due(self.sm, LoadBalancer, now, limit)

    def refresh(self) -> None:
        pass

    def reconcile(self, lb_id: int) -> None:
        if not leases.acquire(self.sm, LoadBalancer, lb_id, self.owner, self.timing.lease):
            return
        try:
            self._step(lb_id)
        finally:
            leases.release(self.sm, LoadBalancer, lb_id, self.owner)

    @staticmethod
    def name(row: LoadBalancer) -> str:
        return f"l{row.id}"

    def _members(self, session, row: LoadBalancer, spec: lbr.LoadBalancerSpec) -> tuple[str, ...]:
        members = list(spec.members)
        if spec.cluster:
            hosts = session.scalars(select(Host.uuid).where(Host.cluster_uuid == spec.cluster))
            held = adb.of_hosts(session, list(hosts))
            members += [a for a in held.values() if a not in members]
        return tuple(sorted(members, key=lambda a: ipaddress.IPv4Address(a)))

    def _step(self, lb_id: int) -> None:
        with self.sm() as session:
            row = session.get(LoadBalancer, lb_id)
            if row is None:
                return
            spec = lbr.LoadBalancerSpec.from_record(row.spec)
            members = self._members(session, row, spec)
        name = self.name(row)
        status = row.status or {}
        view = lbr.View(row.provisioning_status, row.deleting, row.generation,
                        row.applied_generation, self.driver.running(name), members,
                        tuple(status.get("applied_members") or ()))
        step = lbr.plan(view)
        try:
            if isinstance(step, lbr.Remove):
                self._remove(row, name)
            elif isinstance(step, lbr.Ensure):
                self._ensure(row, name, spec, members)
            else:
                self._observe(row, name)
        except (LoadBalancerError, adb.NoFreeAddress) as e:
            count = row.error_count + 1
            LOG.warning("load balancer %s: %s (retry %d)", row.name, e, count)
            self._save(row, errors=count, reason=f"{e} (retrying)",
                       provisioning_status=lbr.ERROR if count >= 3 and not row.deleting
                       else row.provisioning_status,
                       delay=min(2.0 ** min(count, 16), self.timing.max_backoff))

    def _ensure(self, row: LoadBalancer, name: str, spec: lbr.LoadBalancerSpec,
                members: tuple[str, ...]) -> None:
        with self.sm.begin() as session:
            net = session.scalars(select(Network).where(Network.uuid == row.network_uuid)).one()
            subnet = ndb.subnet_of(net, self.default_subnet)
            tenant, public, peers = allocate_legs(
                session, net, subnet, self.driver.public_cidr(), adb.LOADBALANCER, row.uuid, None,
                spec.topology == lbr.ACTIVE_STANDBY)
            vlan = net.vlan_id
        if tenant in members or any(p.tenant_address.split("/")[0] in members for p in peers):
            raise LoadBalancerError(f"member {tenant} has the address Teapot gave the load "
                                    "balancer's own leg on the network; choose members Teapot "
                                    "gave their addresses to")
        self.driver.ensure(Spec(
            name=name, vlan=vlan, tenant_address=f"{tenant}/{subnet.prefixlen}",
            public_address=public,
            listeners=tuple(Listener(x.port, x.member_port) for x in spec.listeners),
            members=members, check_interval=spec.health_check.interval,
            check_fall=spec.health_check.retries, peers=peers))
        LOG.info("load balancer %s: %s (%s on the tenant network) to %s", row.name, public,
                 tenant, ", ".join(members) or "no member")
        self._save(row, delay=0.5, reason=None, vip_address=public, tenant_address=tenant,
                   provisioning_status=lbr.ACTIVE, applied_generation=row.generation,
                   status={**(row.status or {}), "applied_members": list(members)})

    def _observe(self, row: LoadBalancer, name: str) -> None:
        health = self.driver.health(name)
        members = {a: lbr.ONLINE if up else lbr.OP_ERROR for a, up in health.items()}
        self._save(row, delay=HEALTH_EVERY, operating_status=lbr.operating_status(health),
                   status={**(row.status or {}), "members": members})

    def _remove(self, row: LoadBalancer, name: str) -> None:
        self.driver.remove(name)
        with self.sm.begin() as session:
            adb.release_owner(session, row.uuid)
            session.execute(delete(LoadBalancer).where(LoadBalancer.id == row.id,
                                                       LoadBalancer.lease_owner == self.owner))
        LOG.info("load balancer %s (%s) deleted", row.name, row.uuid)

    def _save(self, row: LoadBalancer, delay: float, errors: int = 0, **values) -> None:
        changes = {"error_count": errors, "next_attempt_at": time.time() + delay}
        for key, value in values.items():
            changes["status_reason" if key == "reason" else key] = value
        if set(values) - {"status", "operating_status"} or \
                values.get("operating_status", row.operating_status) != row.operating_status:
            changes["updated_at"] = time.time()
        with self.sm.begin() as session:
            session.execute(update(LoadBalancer).where(
                LoadBalancer.id == row.id, LoadBalancer.lease_owner == self.owner,
                LoadBalancer.generation == row.generation).values(**changes))
