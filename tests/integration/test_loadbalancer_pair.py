"""An active/standby load balancer in the box's data plane, proven by requests.

A switch with two hosts on a tenant VLAN, each running an HTTP server that answers with its name,
and the box's public network. A pair (two instances, HAProxy and keepalived in each) holds the
VIPs on one instance. When the active instance is lost (its legs down, its processes killed, as a
machine losing power), or only its HAProxy dies, the standby takes the VIPs over and requests from
the outside world and from the tenant network are answered again by both hosts; made again, the
lost instance stays the standby. Removed, the pair leaves no process, namespace or file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from teapot.drivers.loadbalancer.base import Listener, Peer, Spec
from teapot.drivers.loadbalancer.box import BoxLoadBalancers, Instance, running
from teapot.net.fabric import Fabric
from teapot.net.public import PublicNetwork, choose_cidr

from .conftest import wait_for

VLAN = 100
HOSTS = {"h1": "10.250.0.11", "h2": "10.250.0.12"}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    state = tmp_path_factory.mktemp("pair")
    fabric = Fabric(state)
    public = None
    servers = []
    try:
        fabric.start()
        fabric.add_hosts(list(HOSTS))
        public = PublicNetwork(state, fabric.prefix, choose_cidr()).start()
        for host, address in HOSTS.items():
            fabric.vsctl("set", "port", fabric.host(host).port, f"tag={VLAN}")
            fabric.exec_in(host, "ip", "addr", "add", f"{address}/24", "dev", "eth0", check=True)
            folder = state / "www" / host
            folder.mkdir(parents=True)
            (folder / "index.html").write_text(host)
            servers.append(subprocess.Popen(
                ["ip", "netns", "exec", fabric.host(host).namespace, sys.executable, "-m",
                 "http.server", "8080", "--bind", address, "--directory", str(folder)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        yield {"state": state, "fabric": fabric, "public": public}
    finally:
        for proc in servers:
            proc.terminate()
            proc.wait(timeout=10)
        BoxLoadBalancers(state).remove_all()
        if public is not None:
            public.stop()
        fabric.stop()


@pytest.fixture(scope="module")
def pair(site):
    public: PublicNetwork = site["public"]
    net = public.network
    spec = Spec(name="l1", vlan=VLAN, tenant_address="10.250.0.250/24",
                public_address=str(net[10]), listeners=(Listener(80, 8080),),
                members=tuple(HOSTS.values()), check_interval=0.5, check_fall=2,
                peers=(Peer("10.250.0.251/24", str(net[11])), Peer("10.250.0.252/24",
                                                                    str(net[12]))))
    driver = BoxLoadBalancers(site["state"])
    driver.ensure(spec)
    return {"spec": spec, "driver": driver}


def get(namespace: str, url: str) -> str | None:
    proc = subprocess.run(["ip", "netns", "exec", namespace, "curl", "-s", "--max-time", "1",
                           url], capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else None


def answers(site, pair, n: int = 8) -> dict[str, list]:
    """n requests to each VIP: from the outside world and from a host on the tenant network."""
    spec = pair["spec"]
    tenant_vip = spec.tenant_address.split("/")[0]
    return {"public": [get(site["public"].namespace, f"http://{spec.public_address}/")
                       for _ in range(n)],
            "tenant": [get(site["fabric"].host("h1").namespace, f"http://{tenant_vip}/")
                       for _ in range(n)]}


def holder(pair) -> Instance | None:
    return pair["driver"].active(pair["spec"].name)


def vips_held(instance: Instance, spec: Spec) -> set[str]:
    out = set()
    for leg in ("eth0", "pub0"):
        text = subprocess.run(["ip", "-n", instance.namespace, "-4", "-o", "addr", "show", "dev",
                               leg], capture_output=True, text=True).stdout
        out |= {w.split("/")[0] for w in text.split()
                if w.split("/")[0] in (spec.public_address, spec.tenant_address.split("/")[0])}
    return out


def settled(site, pair) -> Instance:
    """Once the VIPs are held by one instance: that instance, after requests to both VIPs are
    answered by both hosts, none failing."""
    active = wait_for(lambda: holder(pair), timeout=20, interval=0.2, what="an instance with the VIPs")
    wait_for(lambda: all(x is not None for xs in answers(site, pair, 2).values() for x in xs),
             timeout=20, interval=0.5, what="both VIPs answering")
    got = answers(site, pair)
    for where, xs in got.items():
        assert set(xs) == set(HOSTS), (where, xs)
    return active


def test_one_instance_holds_both_vips_and_both_check_the_members(site, pair):
    spec, driver = pair["spec"], pair["driver"]
    active = settled(site, pair)
    instances = driver.instances(spec.name)
    assert len(instances) == 2 and driver.running(spec.name)
    (standby,) = [i for i in instances if i != active]
    assert vips_held(active, spec) == {spec.public_address, "10.250.0.250"}
    assert vips_held(standby, spec) == set()
    # the standby checks the members too, from its own address, ready to take over
    assert driver.health(spec.name) == {a: True for a in HOSTS.values()}
    stat = subprocess.run(["ip", "netns", "exec", standby.namespace, "curl", "-s",
                           "--max-time", "2", "http://10.250.0.11:8080/"], capture_output=True,
                          text=True)
    assert stat.stdout == "h1"


def _kill(instance: Instance) -> None:
    for name in ("keepalived-vrrp", "keepalived", "haproxy"):
        pid = running(instance.folder / f"{name}.pid", name.split("-")[0])
        if pid:
            os.kill(pid, signal.SIGKILL)


def test_the_standby_takes_over_when_the_active_instance_is_lost(site, pair):
    spec, driver = pair["spec"], pair["driver"]
    lost = settled(site, pair)
    for leg in ("pub0", "eth0"):  # power lost: its links first, then its processes
        subprocess.run(["ip", "-n", lost.namespace, "link", "set", leg, "down"], check=True)
    _kill(lost)
    wait_for(lambda: not driver.running(spec.name), timeout=10, interval=0.1,
             what="the lost instance seen as not running")
    taken = wait_for(lambda: (h := holder(pair)) is not None and h != lost and h, timeout=20,
                     interval=0.2, what="the standby holding the VIPs")
    assert settled(site, pair) == taken
    # the conductor makes the lost instance again: it comes back as the standby
    driver.ensure(spec)
    assert driver.running(spec.name)
    assert settled(site, pair) == taken
    assert vips_held(lost, spec) == set()


def test_the_standby_takes_over_when_the_active_haproxy_dies(site, pair):
    spec, driver = pair["spec"], pair["driver"]
    active = settled(site, pair)
    os.kill(running(active.folder / "haproxy.pid"), signal.SIGKILL)
    taken = wait_for(lambda: (h := holder(pair)) is not None and h != active and h, timeout=20,
                     interval=0.2, what="the VIPs moved off the instance without HAProxy")
    assert settled(site, pair) == taken
    driver.ensure(spec)
    assert driver.running(spec.name) and settled(site, pair) == taken


def test_removed_it_leaves_no_process_namespace_or_file(site, pair):
    spec, driver = pair["spec"], pair["driver"]
    instances = driver.instances(spec.name)
    pids = [running(i.folder / f"{p}.pid", p) for i in instances for p in ("haproxy",
                                                                             "keepalived")]
    assert all(pids)
    driver.remove(spec.name)
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or b"Z" in Path(f"/proc/{pid}/stat").read_bytes()
    for i in instances:
        assert not Path(f"/run/netns/{i.namespace}").exists()
        assert i.port not in site["fabric"].vsctl("list-ports", site["fabric"].bridge).split()
    assert not (site["state"] / "loadbalancers" / spec.name).exists()
    assert get(site["public"].namespace, f"http://{spec.public_address}/") is None
