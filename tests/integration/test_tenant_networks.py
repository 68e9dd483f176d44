"""Tenant networks end to end on a real box: two projects each create a cluster on their own network
with the same subnet; each host carries exactly the address Teapot handed it in its network data
(the SAME addresses in both projects), and no frame of one reaches the other; within a project,
ping, ARP and broadcast work; a host released from a cluster is cleaned and back on the idle VLAN,
and no longer reaches its former tenant; on the trunk, a tenant's frames carry its VLAN tag.
Everything is configured by Teapot's conductor through networking-generic-switch, over SSH, on the
box's Open vSwitch; the test only reads the switch and sends frames."""

from __future__ import annotations

import httpx
import pytest

from teapot.deploy.keystone_setup import admin_connection, ensure_user
from teapot.net.fabric import Fabric

from . import l2
from .conftest import Box, running, wait_for

IMAGE = "https://images.example/ubuntu-2404-k8s.raw"
VERSION = {"OpenStack-API-Version": "container-infra latest"}


class Api:
    def __init__(self, box: Box, user: str, password: str, project: str):
        from keystoneauth1 import session
        from keystoneauth1.identity import v3

        self.session = session.Session(auth=v3.Password(
            auth_url=box.url("keystone") + "/v3", username=user, password=password,
            project_name=project, user_domain_name="Default", project_domain_name="Default"))
        self.base = box.url("teapot-api")

    def __call__(self, method: str, path: str, expect: tuple = (200, 201, 202, 204), **kw):
        r = httpx.request(method, self.base + path, timeout=60,
                          headers={"X-Auth-Token": self.session.get_token(), **VERSION}, **kw)
        assert r.status_code in expect, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else None


@pytest.fixture(scope="module")
def net_box(tmp_path_factory):
    with running(Box(tmp_path_factory.mktemp("netbox"), hosts=4)) as box:
        yield box


@pytest.fixture(scope="module")
def apis(net_box):
    conn = admin_connection(net_box.url("keystone") + "/v3", net_box.secret("admin-password"))
    ensure_user(conn, "rival", "rival-test-password", "rival", ["member"])
    return {"admin": Api(net_box, "admin", net_box.cloud_auth("teapot-admin")["password"], "admin"),
            "demo": Api(net_box, "demo", net_box.cloud_auth("teapot-demo")["password"], "demo"),
            "rival": Api(net_box, "rival", "rival-test-password", "rival")}


def _cluster(api: Api, name: str, network: str, workers: int) -> str:
    template = api("POST", "/v1/clustertemplates", json={
        "name": f"{name}-t", "image_id": IMAGE, "flavor_id": "baremetal",
        "labels": {"image_checksum": "12" * 32}})
    return api("POST", "/v1/clusters", json={"name": name, "cluster_template_id": template["uuid"],
                                              "node_count": workers, "fixed_network": network})["uuid"]


def _complete(api: Api, uuid: str) -> dict:
    def done():
        c = api("GET", f"/v1/clusters/{uuid}")
        assert c["status"] not in ("CREATE_FAILED", "UPDATE_FAILED"), c
        return c if c["status"] in ("CREATE_COMPLETE", "UPDATE_COMPLETE") else None

    return wait_for(done, timeout=240, interval=1, what=f"cluster {uuid} complete")


def _hosts_of(apis, cluster: str) -> list[str]:
    return sorted(h["name"] for h in apis["admin"]("GET", "/v1/hosts")["hosts"]
                  if (h.get("consumer") or {}).get("uuid") == cluster)


@pytest.fixture(scope="module")
def tenants(net_box, apis):
    """demo's network `blue` with a 2-host cluster, rival's `red` with a 2-host cluster, both on
    10.77.0.0/24: Teapot hands the hosts of each 10.77.0.2 and 10.77.0.3."""
    apis["demo"]("POST", "/v1/networks", json={"name": "blue", "cidr": "10.77.0.0/24"})
    apis["rival"]("POST", "/v1/networks", json={"name": "red", "cidr": "10.77.0.0/24"})
    clusters = {"demo": _cluster(apis["demo"], "blue-k8s", "blue", 1),
                "rival": _cluster(apis["rival"], "red-k8s", "red", 1)}
    for who, uuid in clusters.items():
        _complete(apis[who], uuid)
    fabric = Fabric.load(net_box.state_dir)
    hosts = {who: _hosts_of(apis, uuid) for who, uuid in clusters.items()}
    addresses = {}
    for names in hosts.values():
        assert len(names) == 2, hosts
        for name in names:
            addresses[name] = apis["admin"]("GET", f"/v1/hosts/{name}")["network"]["address"]
            wait_for(lambda name=name: _carried(fabric, name) == [f"{addresses[name]}/24"],
                     timeout=60, what=f"{name} configured from its network data")
    # the same addresses in both projects: their VLANs keep them apart
    for names in hosts.values():
        assert sorted(addresses[n] for n in names) == ["10.77.0.2", "10.77.0.3"], addresses
    vlans = {n["name"]: n["vlan_id"] for n in apis["admin"]("GET", "/v1/networks")["networks"]}
    return {"fabric": fabric, "clusters": clusters, "hosts": hosts, "vlans": vlans,
            "addresses": addresses}


def _carried(fabric: Fabric, host: str) -> list[str]:
    """The IPv4 addresses on the host's NIC, as its namespace has them."""
    out = fabric.exec_in(host, "ip", "-4", "-o", "addr", "show", "dev", "eth0").stdout
    return [line.split()[3] for line in out.splitlines()]


def test_each_tenants_hosts_are_on_its_vlan_when_the_cluster_is_complete(tenants, apis):
    fabric, vlans = tenants["fabric"], tenants["vlans"]
    assert vlans["blue"] != vlans["red"]
    for who, network in (("demo", "blue"), ("rival", "red")):
        for host in tenants["hosts"][who]:
            assert fabric.port_vlan(fabric.host(host).port) == vlans[network]
            assert apis["admin"]("GET", f"/v1/hosts/{host}")["network"] == {
                "vlan": vlans[network], "error": None, "address": tenants["addresses"][host]}
    assert {vlans["blue"], vlans["red"]} <= fabric.trunk_vlans()
    # the tenant sees its network active, not its VLAN id, and not the other's network
    mine = apis["demo"]("GET", "/v1/networks")["networks"]
    assert [(n["name"], n["status"]) for n in mine] == [("blue", "active")]
    assert "vlan_id" not in mine[0]


def test_no_frame_crosses_tenants_with_the_same_addresses(tenants):
    fabric, hosts = tenants["fabric"], tenants["hosts"]
    everyone = hosts["demo"] + hosts["rival"]
    for who, other in (("demo", "rival"), ("rival", "demo")):
        sender, peer = hosts[who]
        counts = l2.flood(fabric, sender, [h for h in everyone if h != sender], expect={peer},
                          sender_ip=tenants["addresses"][sender])
        assert counts[peer] == l2.ALL, counts
        for stranger in hosts[other]:
            assert counts[stranger] == l2.NONE, (sender, stranger, counts)


def test_ping_and_arp_reach_only_the_own_tenant(tenants):
    fabric, hosts = tenants["fabric"], tenants["hosts"]
    for who, other in (("demo", "rival"), ("rival", "demo")):
        first, second = hosts[who]
        peer = tenants["addresses"][second]
        assert l2.ping(fabric, first, peer)
        neighbour = fabric.exec_in(first, "ip", "neigh", "show", peer).stdout
        assert fabric.host(second).mac in neighbour
        assert all(fabric.host(h).mac not in neighbour for h in hosts[other])


def test_the_trunk_carries_each_tenants_frames_tagged(tenants):
    fabric, vlans = tenants["fabric"], tenants["vlans"]
    assert l2.tags_on_trunk(fabric, tenants["hosts"]["demo"][0]) == [vlans["blue"]] * l2.N
    assert l2.tags_on_trunk(fabric, tenants["hosts"]["rival"][0]) == [vlans["red"]] * l2.N


def test_a_network_in_use_cannot_be_deleted(apis):
    r = httpx.delete(apis["demo"].base + "/v1/networks/blue",
                     headers={"X-Auth-Token": apis["demo"].session.get_token()})
    assert r.status_code == 409 and "cluster blue-k8s" in r.json()["errors"][0]["detail"]


def test_a_released_host_is_cleaned_back_to_idle_and_reaches_no_one(tenants, apis):
    fabric, vlans = tenants["fabric"], tenants["vlans"]
    uuid = tenants["clusters"]["demo"]
    before = set(_hosts_of(apis, uuid))
    apis["demo"]("POST", f"/v1/clusters/{uuid}/actions/resize", json={"node_count": 0})
    _complete(apis["demo"], uuid)
    (released,) = before - set(_hosts_of(apis, uuid))
    (kept,) = before - {released}

    def idle():
        host = apis["admin"]("GET", f"/v1/hosts/{released}")
        return host["state"] == "available" and host["network"]["vlan"] == fabric.vlans.idle
    wait_for(idle, timeout=120, what=f"{released} cleaned and idle")
    assert fabric.port_vlan(fabric.host(released).port) == fabric.vlans.idle
    assert fabric.port_vlan(fabric.host(kept).port) == vlans["blue"]
    kept_ip = fabric.exec_in(kept, "ip", "-4", "-o", "addr", "show", "eth0").stdout.split()[3]
    assert not l2.ping(fabric, released, kept_ip.split("/")[0])
    counts = l2.flood(fabric, released, [kept] + tenants["hosts"]["rival"], expect=set())
    assert all(c == l2.NONE for c in counts.values()), counts


def test_a_switch_failure_keeps_the_host_out_shows_and_converges_after_restart(net_box, tenants,
                                                                               apis):
    """The switch's database goes away mid-assignment: the host being added stays where it was
    (never on a wrong VLAN), the error is on the host and on the cluster; once the switch is back
    and the conductor restarted, the cluster completes with the host on its tenant's VLAN."""
    import os
    import signal
    import subprocess

    fabric, vlans = tenants["fabric"], tenants["vlans"]
    uuid = tenants["clusters"]["rival"]
    socket = fabric.run_dir / "db.sock"
    away = socket.with_name("db.sock.away")
    os.rename(socket, away)
    try:
        apis["rival"]("POST", f"/v1/clusters/{uuid}/actions/resize", json={"node_count": 2})

        def failing():
            held = [apis["admin"]("GET", f"/v1/hosts/{h}") for h in _hosts_of(apis, uuid)]
            return [h for h in held if h["network"]["error"]]
        (stuck, *_) = wait_for(failing, timeout=90, what="a switch error on the new host")
        assert "switch" in stuck["network"]["error"]
        assert stuck["network"]["vlan"] != vlans["red"]
        cluster = apis["rival"]("GET", f"/v1/clusters/{uuid}")
        assert cluster["status"] == "UPDATE_IN_PROGRESS"
        wait_for(lambda: "switch" in apis["rival"]("GET", f"/v1/clusters/{uuid}")["status_reason"],
                 timeout=60, what="the switch error on the cluster")
        # the port never left the VLAN it was on (read through the moved database socket)
        tag = subprocess.run(["ovs-vsctl", f"--db=unix:{away}", "get", "Port",
                              fabric.host(stuck["name"]).port, "tag"],
                             capture_output=True, text=True, check=True).stdout.strip()
        assert int(tag) == fabric.vlans.idle
    finally:
        os.rename(away, socket)
    os.kill(net_box.child_pids()["teapot-conductor"], signal.SIGKILL)
    _complete(apis["rival"], uuid)
    for host in _hosts_of(apis, uuid):
        assert fabric.port_vlan(fabric.host(host).port) == vlans["red"]
        assert apis["admin"]("GET", f"/v1/hosts/{host}")["network"]["error"] is None


def test_hosts_keep_their_vlans_across_a_restart_of_the_box(net_box, tenants, apis):
    vlans = tenants["vlans"]
    members = {h: vlans["red"] for h in _hosts_of(apis, tenants["clusters"]["rival"])}
    assert net_box.stop() == 0
    net_box.start()
    fabric = Fabric.load(net_box.state_dir)  # a new switch: it starts with every port idle
    wait_for(lambda: all(fabric.port_vlan(fabric.host(h).port) == v for h, v in members.items()),
             timeout=60, what="ports back on their tenant's VLAN")
    assert vlans["red"] in fabric.trunk_vlans()


def test_a_frozen_data_plane_holds_the_port_change_with_the_reason_until_it_applies(net_box,
                                                                                     tenants, apis):
    """ovs-vswitchd frozen (SIGSTOP): a host released from a cluster cannot leave its tenant's
    VLAN; the switch's database would take the change but the data plane does not apply it, so
    Teapot does not count it as done and shows why on the host; thawed, the host is moved, cleaned
    and idle."""
    import os
    import signal

    fabric = Fabric.load(net_box.state_dir)
    uuid = tenants["clusters"]["rival"]
    before = set(_hosts_of(apis, uuid))
    vswitchd = fabric.daemon_pid("ovs-vswitchd")
    os.kill(vswitchd, signal.SIGSTOP)
    try:
        apis["rival"]("POST", f"/v1/clusters/{uuid}/actions/resize", json={"node_count": 1})

        def held():
            for name in before:
                host = apis["admin"]("GET", f"/v1/hosts/{name}")
                if "data plane" in (host["network"]["error"] or ""):
                    return host
            return None
        host = wait_for(held, timeout=120, what="the data plane named on the released host")
        released = host["name"]
        assert host["network"]["vlan"] == tenants["vlans"]["red"]  # not counted as moved
        assert host["state"] != "available"
    finally:
        os.kill(vswitchd, signal.SIGCONT)

    def idle():
        host = apis["admin"]("GET", f"/v1/hosts/{released}")
        return host["state"] == "available" and host["network"]["vlan"] == fabric.vlans.idle \
            and host["network"]["error"] is None
    wait_for(idle, timeout=180, what=f"{released} moved, cleaned and idle")
    assert fabric.port_vlan(fabric.host(released).port) == fabric.vlans.idle
