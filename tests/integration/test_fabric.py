"""Tenant isolation on the box's switch, proven by packets.

A fabric (Open vSwitch in its own namespace) with four hosts and a trunk. Two tenants whose hosts
share one IP subnet are put on their VLANs by the ngs switch driver over the fabric's sshd. Within
a tenant, ping, ARP and raw broadcast / unknown-unicast frames arrive; across tenants none do,
counted frame by frame; a host returned to the idle VLAN no longer reaches its former tenant; on
the trunk, each tenant's frames carry its VLAN tag.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import threading
import time

import pytest

from teapot.drivers.switch.base import SwitchError
from teapot.drivers.switch.ngs import NgsSwitch
from teapot.net import probe
from teapot.net.fabric import Fabric, FabricError

from . import l2
from .l2 import ALL, NONE, N, ns, ping

A, B = 100, 200  # the two tenants' VLANs
TENANT = {"h1": A, "h2": A, "h3": B, "h4": B}
IP = {"h1": "10.250.0.11", "h2": "10.250.0.12", "h3": "10.250.0.13", "h4": "10.250.0.14"}


@pytest.fixture(scope="module")
def fabric(tmp_path_factory):
    fab = Fabric(tmp_path_factory.mktemp("box"))
    try:
        fab.start()
        fab.add_hosts(list(TENANT))
        fab.add_trunk()
        for host, ip in IP.items():
            fab.exec_in(host, "ip", "addr", "add", f"{ip}/24", "dev", "eth0", check=True)
        yield fab
    finally:
        fab.stop()


@pytest.fixture(scope="module")
def switch(fabric):
    sw = NgsSwitch(fabric.name, fabric.device_config())
    try:
        sw.add_vlans([A, B])
        sw.set_many({fabric.host(h).port: vlan for h, vlan in TENANT.items()})
        yield sw
    finally:
        sw.close()


def flood(fabric: Fabric, sender: str, receivers: list[str], expect: set[str],
          vlan: int | None = None) -> dict[str, dict[str, int]]:
    return l2.flood(fabric, sender, receivers, expect, vlan, IP.get(sender, "10.250.0.250"))


def test_ports_are_on_their_tenants_vlans(fabric, switch):
    for host, vlan in TENANT.items():
        assert fabric.port_vlan(fabric.host(host).port) == vlan
    assert fabric.trunk_vlans() == {A, B, fabric.vlans.guard}
    assert switch.sessions == 2  # the VLANs, then all four ports: one SSH session each


def test_ports_record_where_hosts_are_cabled(fabric):
    llc = fabric.local_link_connection("h3")
    assert llc == {"switch_id": fabric.mac, "port_id": fabric.host("h3").port,
                   "switch_info": fabric.name}
    bridge = subprocess.run(["ip", "-n", fabric.switch_namespace, "-j", "link", "show",
                             fabric.bridge], capture_output=True, text=True, check=True).stdout
    assert f'"address":"{fabric.mac}"' in bridge
    assert llc["port_id"] in fabric.vsctl("list-ports", fabric.bridge).split()


@pytest.mark.parametrize("sender", ["h1", "h3"])
def test_frames_reach_their_tenant_and_no_other(fabric, switch, sender):
    others = [h for h in TENANT if h != sender]
    same = {h for h in others if TENANT[h] == TENANT[sender]}
    counts = flood(fabric, sender, others, expect=same)
    for host in others:
        assert counts[host] == (ALL if host in same else NONE), (sender, host, counts)


def test_ping_and_arp_stay_within_a_tenant(fabric, switch):
    assert ping(fabric, "h1", IP["h2"])
    assert ping(fabric, "h4", IP["h3"])
    assert not ping(fabric, "h1", IP["h3"])
    assert not ping(fabric, "h3", IP["h2"])
    neigh = fabric.exec_in("h1", "ip", "neigh", "show", IP["h3"]).stdout
    assert fabric.host("h3").mac not in neigh
    assert fabric.host("h2").mac in fabric.exec_in("h1", "ip", "neigh", "show", IP["h2"]).stdout


@pytest.mark.parametrize(("sender", "vlan"), [("h2", A), ("h4", B)])
def test_the_trunk_carries_each_tenant_tagged(fabric, switch, sender, vlan):
    counts = flood(fabric, sender, ["uplink"], expect={"uplink"})
    assert counts["uplink"] == ALL
    marker = b"TEAPOT" + os.urandom(8)
    sock = probe.raw_socket(ns(fabric, "uplink"))
    tx = probe.raw_socket(ns(fabric, sender))
    try:
        src = probe.interface_mac(tx)
        probe.send_all(tx, [probe.probe_frame(src, probe.BROADCAST, marker)] * N)
        seen = probe.collect({"up": sock}, lambda s: sum(f.is_probe(marker) for f in s["up"]) >= N)
        tags = [f.vlan for f in seen["up"] if f.is_probe(marker)]
        assert tags == [vlan] * N
    finally:
        sock.close()
        tx.close()


@pytest.mark.parametrize("vlan", [A, B])
def test_tagged_frames_from_the_trunk_reach_only_that_tenant(fabric, switch, vlan):
    counts = flood(fabric, "uplink", list(TENANT), vlan=vlan,
                   expect={h for h, v in TENANT.items() if v == vlan})
    for host, tenant in TENANT.items():
        assert counts[host] == (ALL if tenant == vlan else NONE), (host, counts)


def test_untagged_and_idle_frames_do_not_leave_by_the_trunk(fabric, switch):
    counts = flood(fabric, "uplink", list(TENANT), expect=set())
    assert all(c == NONE for c in counts.values()), counts


def test_vlans_come_and_go_on_the_trunk(fabric, switch):
    switch.add_vlans([300])
    assert fabric.trunk_vlans() == {A, B, 300, fabric.vlans.guard}
    switch.remove_vlans([300])
    assert fabric.trunk_vlans() == {A, B, fabric.vlans.guard}


def test_a_released_host_no_longer_reaches_its_tenant(fabric, switch):
    h2 = fabric.host("h2")
    switch.set_idle({h2.port: A})
    try:
        assert fabric.port_vlan(h2.port) == fabric.vlans.idle
        assert not ping(fabric, "h1", IP["h2"])
        counts = flood(fabric, "h1", ["h2", "h3", "h4"], expect=set())
        assert all(c == NONE for c in counts.values()), counts
        counts = flood(fabric, "h2", ["h1", "h3", "h4", "uplink"], expect=set())
        assert all(c == NONE for c in counts.values()), counts
    finally:
        switch.set_access_vlan(h2.port, A, current=fabric.vlans.idle)
    assert fabric.port_vlan(h2.port) == A
    assert ping(fabric, "h1", IP["h2"])


def test_no_frame_of_another_tenant_reaches_a_port_while_it_moves(fabric, switch):
    """ngs changes an OVS port in several steps; sent as one transaction, no step between leaves
    the port open to every VLAN."""
    marker = b"TEAPOT" + os.urandom(8)
    rx = probe.raw_socket(fabric.host("h2").namespace)
    tx = probe.raw_socket(fabric.host("h3").namespace)
    src = probe.interface_mac(tx)
    stop = threading.Event()
    sent = 0

    def blast() -> None:  # tenant B floods broadcasts, bounded by the moves below
        nonlocal sent
        frame = probe.probe_frame(src, probe.BROADCAST, marker)
        while not stop.is_set() and sent < 200_000:
            tx.send(frame)
            sent += 1
            time.sleep(0.0005)

    sender = threading.Thread(target=blast)
    sender.start()
    port, idle = fabric.host("h2").port, fabric.vlans.idle
    leaked = []
    try:
        for _ in range(2):
            switch.set_idle({port: A})
            leaked += [f for f in probe.receive(rx) if f.is_probe(marker)]
            switch.set_access_vlan(port, A, current=idle)
            leaked += [f for f in probe.receive(rx) if f.is_probe(marker)]
    finally:
        stop.set()
        sender.join()
        leaked += [f for f in probe.collect({"h2": rx}, lambda s: False, timeout=0.3)["h2"]
                   if f.is_probe(marker)]
        rx.close()
        tx.close()
    assert sent > 1000
    assert leaked == []
    assert fabric.port_vlan(port) == A
    counts = flood(fabric, "h4", ["h3"], expect={"h3"})  # tenant B's traffic did flow meanwhile
    assert counts["h3"] == ALL


def test_a_failed_change_names_the_problem_and_leaves_ports_as_they_were(fabric, switch):
    h1 = fabric.host("h1").port
    with pytest.raises(SwitchError, match='plug port failed: ovs-vsctl: no row "nosuchport"'):
        switch.set_many({h1: B, "nosuchport": B}, {h1: A})
    assert fabric.port_vlan(h1) == A
    assert ping(fabric, "h1", IP["h2"])


def test_a_second_fabric_runs_beside_and_stops_clean(tmp_path, fabric, switch):
    other = Fabric(tmp_path)
    try:
        other.start()
        (host,) = other.add_hosts(["h1"])
        assert other.prefix != fabric.prefix and other.ssh_port != fabric.ssh_port
        assert host.port not in fabric.vsctl("list-ports", fabric.bridge).split()
        assert fabric.host("h1").port not in other.vsctl("list-ports", other.bridge).split()
        ssh = other.ssh_dir
        assert stat.S_IMODE(os.stat(ssh).st_mode) == 0o700
        for name in ("client_ed25519", "host_ed25519", "authorized_keys", "sshd_config"):
            assert stat.S_IMODE(os.stat(ssh / name).st_mode) == 0o600, name
        # the switch's host key is pinned: another key is refused
        device = other.device_config() | {"ngs_ssh_connect_timeout": 1,
                                          "ngs_ssh_connect_interval": 0}
        device["alt_key_file"] = str(fabric.ssh_dir / "known_hosts")
        with pytest.raises(SwitchError, match="plug port failed"):
            NgsSwitch("other", device).set_access_vlan(host.port, A)
        assert other.port_vlan(host.port) == other.vlans.idle
        pids = [int((other.run_dir / f"{d}.pid").read_text()) for d in ("ovsdb-server",
                                                                          "ovs-vswitchd")]
        pids.append(int((ssh / "sshd.pid").read_text()))
        namespaces = [other.switch_namespace, host.namespace]
        with pytest.raises(FabricError, match="already recorded"):
            Fabric(tmp_path).start()
    finally:
        Fabric.load(tmp_path).stop()  # as another process would
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}/cmdline") or not open(
            f"/proc/{pid}/cmdline", "rb").read(), pid
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not [n for n in namespaces if n in listed]
    assert not [line for line in listed.splitlines() if line.startswith(other.prefix)]
    assert not (tmp_path / "fabric" / "fabric.json").exists()
    # the first fabric is untouched
    assert ping(fabric, "h1", IP["h2"])


def test_a_change_the_data_plane_does_not_apply_is_a_switch_error_until_it_does(fabric, switch):
    """ovs-vswitchd frozen: the change reaches the database but not the data plane, and the
    driver says so instead of reporting success; thawed, the same change goes through."""
    h3 = fabric.host("h3").port
    vswitchd = fabric.daemon_pid("ovs-vswitchd")
    os.kill(vswitchd, signal.SIGSTOP)
    try:
        for _ in range(2):  # the second time, the database has the change already
            with pytest.raises(SwitchError, match="not applied by its data plane"):
                switch.set_many({h3: A}, {h3: B})
    finally:
        os.kill(vswitchd, signal.SIGCONT)
    switch.set_many({h3: A}, {h3: B})
    assert fabric.port_vlan(h3) == A
    assert ping(fabric, "h3", IP["h1"])
    switch.set_many({h3: B}, {h3: A})
    assert fabric.port_vlan(h3) == B and not ping(fabric, "h3", IP["h1"])


@pytest.mark.parametrize("daemon", ["ovs-vswitchd", "ovsdb-server", "sshd"])
def test_a_daemon_of_the_switch_that_died_is_started_again_as_it_was(fabric, switch, daemon):
    old = fabric.daemon_pid(daemon)
    assert old is not None
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while fabric.daemon_pid(daemon) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fabric.daemon_pid(daemon) is None
    fabric.restart_daemon(daemon)
    assert fabric.daemon_pid(daemon) not in (None, old)
    # the bridge, its ports and VLANs are as they were, and the switch takes changes again
    assert ping(fabric, "h1", IP["h2"]) and not ping(fabric, "h1", IP["h3"])
    h4 = fabric.host("h4").port
    for attempt in range(2):  # a connection the driver kept to a killed sshd fails once
        try:
            switch.set_many({h4: A}, {h4: B})
            break
        except SwitchError:
            if daemon != "sshd" or attempt:
                raise
    assert ping(fabric, "h4", IP["h1"])
    switch.set_many({h4: B}, {h4: A})
