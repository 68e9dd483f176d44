"""The port reconciler against networking-generic-switch's `netmiko_fake` device: every host's port
goes where its state says, in one batch per switch; the first pass re-applies everything (a switch
that lost its configuration converges); failures are recorded on the host and retried."""

from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import select, update

from teapot.conductor.hosts import Timing
from teapot.conductor.ports import PortReconciler
from teapot.db import networks as ndb
from teapot.db.models import Cluster, Host, Network, Switch
from teapot.drivers.switch.base import SwitchError
from teapot.drivers.switch.inventory import SwitchEntry
from teapot.drivers.switch.ngs import NgsSwitch
from teapot.resources import network as nsm
from tests.unit.rows import host_row

VLANS = nsm.Vlans(idle=3999, provisioning=4000, cleaning=4001)
TOR = SwitchEntry("tor", "02:00:00:00:00:01", {"device_type": "netmiko_fake",
                                               "ngs_port_default_vlan": "3999"})


def _cabled(name: str, port: str, switch: str = TOR.mac, **changes) -> Host:
    row = host_row(name, **changes)
    row.spec = {**row.spec, "networkInterfaces": [
        {"macAddress": "52:54:00:aa:bb:cc", "switchPort": {"switchID": switch, "portID": port}}]}
    return row


@pytest.fixture
def world(sm):
    with sm.begin() as session:
        net = ndb.create(session, project_id="p-one", name="blue", ranges=[(150, 160)],
                         subnet=nsm.Subnet.parse("10.20.0.0/24"))
        cluster = str(uuid.uuid4())
        session.add(Cluster(uuid=cluster, name="c", project_id="p-one", user_id="u",
                            cluster_template_id=str(uuid.uuid4()), status="CREATE_IN_PROGRESS",
                            attrs={}, ca_cert=b"", ca_key=b"", secrets=b"", deleting=False,
                            generation=1, next_attempt_at=1e12, lease_expires_at=0.0,
                            created_at=time.time(), network_uuid=net.uuid))
        session.add(_cabled("h0", "p0", state="available"))
        session.add(_cabled("h1", "p1", state="provisioning", cluster_uuid=cluster))
        h2 = _cabled("h2", "p2", state="provisioned", cluster_uuid=cluster)
        h2.spec = {**h2.spec, "image": {"url": "http://x/i"}}
        session.add(h2)
        session.add(host_row("h3", state="available"))  # cabled nowhere Teapot knows
        session.add(_cabled("h4", "p4", switch="02:00:00:00:00:99", state="available"))
    return net.vlan_id




def _ports(sm) -> dict:
    with sm() as session:
        return {h.name: (h.port_vlan, h.port_error) for h in session.scalars(select(Host))}


def _reconciler(sm, connect=lambda e: NgsSwitch(e.name, e.device)) -> tuple[PortReconciler, int]:
    rec = PortReconciler(sm, [TOR], VLANS, "c-1", Timing(max_backoff=60), connect=connect)
    with sm() as session:
        return rec, session.scalars(select(Switch.id).where(Switch.name == "tor")).one()


def test_every_port_goes_where_its_host_state_says_in_one_batch(sm, world, sent):
    rec, switch = _reconciler(sm)
    assert rec.due(time.time(), 10) == [switch]
    rec.reconcile(switch)
    assert _ports(sm) == {"h0": (3999, None), "h1": (4000, None), "h2": (world, None),
                          "h3": (None, None), "h4": (None, None)}
    commands = sent()
    assert f"plug port p2 to network {world}" in commands
    assert "plug port p1 to network 4000" in commands and not any("p4" in c for c in commands)
    assert rec.drivers["tor"].sessions == 1
    rec.reconcile(switch)  # nothing to do: nothing sent
    assert sent() == []
    with sm.begin() as session:  # the cluster lets h2 go: it is cleaned
        session.execute(update(Host).where(Host.name == "h2").values(state="deprovisioning"))
    rec.reconcile(switch)
    assert _ports(sm)["h2"] == (4001, None)
    plugs = [c for c in sent() if c.startswith("plug")]
    assert plugs[-1] == "plug port p2 to network 4001" and all("port p2 " in c for c in plugs)


def test_a_new_conductor_reapplies_every_vlan_and_port(sm, world, sent):
    rec, switch = _reconciler(sm)
    rec.reconcile(switch)
    sent()
    with sm.begin() as session:  # the network's VLAN is on the switch: it is active
        session.execute(update(Network).values(status=nsm.ACTIVE))
    fresh, _ = _reconciler(sm)  # e.g. after the box (and its switch) restarted
    fresh.reconcile(switch)
    commands = sent()
    assert commands.index(f"add network {world}") < commands.index(f"plug port p2 to network {world}")
    assert len([c for c in commands if c.startswith("plug")]) == 3


class Broken:
    sessions = 0

    def set_many(self, assignments, current=None):
        raise SwitchError("switch tor: connection refused")


def test_a_switch_failure_is_recorded_on_the_hosts_and_retried(sm, world, sent):
    rec, switch = _reconciler(sm, connect=lambda e: Broken())
    before = time.time()
    rec.reconcile(switch)
    ports = _ports(sm)
    assert ports["h1"] == (None, "switch tor: connection refused")
    assert ports["h0"][0] is None and ports["h3"] == (None, None)
    with sm() as session:
        row = session.get(Switch, switch)
        assert row.error_count == 1 and "connection refused" in row.error
        assert row.next_attempt_at >= before + 1.5  # backed off
    rec.drivers["tor"] = NgsSwitch(TOR.name, TOR.device)  # the switch is back
    rec.reconcile(switch)
    assert _ports(sm)["h1"] == (4000, None)
    with sm() as session:
        assert session.get(Switch, switch).error is None
