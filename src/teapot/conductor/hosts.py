"""The host reconciler: one step of the host state machine, with the provisioner, under a lease."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from cryptography.fernet import Fernet
from sqlalchemy.orm import sessionmaker

from teapot import dependencies
from teapot.db import hosts as host_db
from teapot.db.models import Host, HostEvent
from teapot.drivers.provisioner.base import HostTarget, Provisioner
from teapot.drivers.switch import inventory
from teapot.resources import host as hsm
from teapot.resources import network as nsm

LOG = logging.getLogger(__name__)
MAX_STEPS = 8  # state changes that need no waiting are taken in one go


@dataclass(frozen=True)
class Timing:
    busy: float = 1.0
    resync: float = 15.0
    lease: float = 30.0
    max_backoff: float = 300.0


class HostReconciler:
    kind = "host"
    model = Host  # what the loop defers when a reconcile raises

    def __init__(self, sm: sessionmaker, provisioner: Provisioner, fernet: Fernet, owner: str,
                 timing: Timing, vlans: nsm.Vlans | None = None):
        self.sm = sm
        self.provisioner = provisioner
        self.fernet = fernet
        self.owner = owner
        self.timing = timing
        self.vlans = vlans  # tenant networks: steps wait for the host's switch port

    def _network_gate(self, row: Host, operation: str) -> str | None:
        if self.vlans is None or inventory.host_port(row.spec) is None:
            return None
        wanted = nsm.port_vlan(row.state, row.cluster_uuid is not None,
                               bool(row.spec.get("image")), None, self.vlans)
        return nsm.gate(operation, row.port_vlan, wanted)

    def due(self, now: float, limit: int) -> list[int]:
        return host_db.due(self.sm, now, limit)

    def refresh(self) -> None:
        self.provisioner.refresh()

    def reconcile(self, host_id: int) -> None:
        if not host_db.acquire_lease(self.sm, host_id, self.owner, self.timing.lease):
            return
        try:
            for _ in range(MAX_STEPS):
                if not self._step(host_id):
                    break
        finally:
            host_db.release_lease(self.sm, host_id, self.owner)

    def hold(self, host_id: int, down: dependencies.Down) -> None:
        """The provisioner could not be read (Ironic down): no step can be planned on what it
        said before. The host says what it waits for (its clusters show it) and is looked at
        again shortly; nothing counts as the host's error."""
        if not host_db.acquire_lease(self.sm, host_id, self.owner, self.timing.lease):
            return
        try:
            row = self._load(host_id)
            if row is not None:
                host_db.save_status(self.sm, host_id, self.owner, row.generation, row.state,
                                    {**row.status, "waiting": str(down)},
                                    time.time() + hsm.WAITING_DELAY, self.timing.lease)
        finally:
            host_db.release_lease(self.sm, host_id, self.owner)

    def _load(self, host_id: int) -> Host | None:
        with self.sm() as session:
            return session.get(Host, host_id)

    def _target(self, row: Host) -> HostTarget:
        return HostTarget(
            name=row.name, uuid=row.uuid, spec=row.spec,
            node_id=row.status.get("provisioning", {}).get("ID", ""),
            username=row.bmc_username,
            password=self.fernet.decrypt(row.bmc_password).decode(),
            user_data=self.fernet.decrypt(row.user_data).decode() if row.user_data else None,
            issued=row.status.get("issued"),
            traits=tuple(row.traits or ()),
            network_data=row.network_data,
        )

    def _step(self, host_id: int) -> bool:
        """One step; True when the next step can follow at once."""
        row = self._load(host_id)
        if row is None:
            return False
        view = hsm.HostView(name=row.name, spec=row.spec, state=row.state, status=row.status,
                            deleting=row.deleting, bmc_version=row.bmc_version)
        now = time.time()
        step = hsm.plan(view)
        if isinstance(step, hsm.Transition):
            nxt = hsm.transition(view, step.to, now)
            operation, outcome_text = f"-> {step.to}", "transition"
        else:
            started = now
            waiting = self._network_gate(row, step.name)
            try:
                if waiting:
                    outcome = hsm.Outcome()  # not yet: the port reconciler moves the port first
                else:
                    outcome = getattr(self.provisioner, step.name)(self._target(row), **step.args)
            except Exception as e:  # a driver failure is recorded on the host, never lost
                down = dependencies.classify(e)
                if down is not None:  # not the host's fault: wait, without counting an error
                    LOG.warning("host %s: %s: %s", row.name, step.name, down)
                    outcome = hsm.Outcome(waiting=str(down))
                else:
                    LOG.warning("host %s: %s failed: %s", row.name, step.name, e)
                    outcome = hsm.Outcome(error=f"{step.name} failed: {e}")
            now = time.time()
            nxt = hsm.advance(view, step, outcome, now, busy=self.timing.busy,
                              resync=self.timing.resync, max_backoff=self.timing.max_backoff)
            operation = step.name
            outcome_text = outcome.error or ("done" if outcome.done else f"in progress ({outcome.issued or 'waiting'})")
            if outcome.issued or outcome.done or outcome.error:
                host_db.record_event(self.sm, HostEvent(
                    host_uuid=row.uuid, conductor=self.owner, state=row.state, operation=operation,
                    started_at=started, finished_at=now, outcome=outcome_text))
        if nxt.state == hsm.GONE:
            host_db.remove(self.sm, host_id, self.owner)
            LOG.info("host %s deleted", row.name)
            return False
        if nxt.state != row.state:
            LOG.info("host %s: %s -> %s", row.name, row.state, nxt.state)
        saved = host_db.save_status(self.sm, host_id, self.owner, row.generation, nxt.state, nxt.status,
                                    now + nxt.delay, self.timing.lease)
        return saved and nxt.delay == 0.0
