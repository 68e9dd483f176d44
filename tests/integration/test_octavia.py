"""Octavia on Teapot: `teapot up --with-octavia` runs Octavia's API and driver agent with Teapot's
provider, and the real `openstack loadbalancer` CLI makes a Teapot load balancer.

A one-host cluster of the demo project stands for the member: an HTTP server in the host's
namespace, bound to the address Teapot gave it on the project's default network. The load balancer
(TCP 80 → 8080, that host as member, a TCP health monitor) is ACTIVE in Octavia, the same one is in
Teapot's /v1/loadbalancers with the same VIP, and the VIP answers from the box's public namespace
with the member's reply. A reader cannot create, another project sees nothing, what Teapot cannot do
(UDP) is refused saying so, and a delete takes it out of both APIs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest
import yaml

from teapot.deploy import keystone_setup
from teapot.net.fabric import Fabric

from .conftest import VENV_BIN, Box, _free_base, wait_for
from .test_tenant_networks import Api, _hosts_of

pytestmark = pytest.mark.integration

OPENSTACK = str(VENV_BIN / "openstack")
BOX_PORTS = 8  # the five services of a box, MariaDB, Neutron and Octavia


@pytest.fixture(scope="module")
def obox(tmp_path_factory):
    b = Box(tmp_path_factory.mktemp("octavia-box"), hosts=1, port_base=_free_base(BOX_PORTS),
            args=("--with-octavia",))
    try:
        b.start(timeout=600)
        yield b
    finally:
        b.stop()


@pytest.fixture(scope="module")
def clouds(obox, tmp_path_factory):
    """clouds.yaml (0600) with the box's clouds and `reader` (reader of demo) and `other` (member
    of another project)."""
    conn = keystone_setup.admin_connection(obox.url("keystone") + "/v3",
                                           obox.secret("admin-password"))
    data = yaml.safe_load(obox.clouds.read_text())
    for cloud, user, project, role in (("reader", "lb-reader", "demo", "reader"),
                                       ("other", "lb-other", "lb-other", "member")):
        password = uuid.uuid4().hex
        keystone_setup.ensure_user(conn, user, password, project, [role])
        data["clouds"][cloud] = {**data["clouds"]["teapot-demo"], "auth": {
            **data["clouds"]["teapot-demo"]["auth"], "username": user, "password": password,
            "project_name": project}}
    path = tmp_path_factory.mktemp("octavia-clouds") / "clouds.yaml"
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(data))
    return path


def lb_cli(box: Box, clouds, cloud: str, *args: str, check: bool = True):
    env = {**box.env(), "OS_CLIENT_CONFIG_FILE": str(clouds)}
    result = subprocess.run([OPENSTACK, "--os-cloud", cloud, "loadbalancer", *args],
                            capture_output=True, text=True, env=env, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"openstack loadbalancer {' '.join(args)} failed "
                             f"({result.returncode}):\n{result.stdout}\n{result.stderr}")
    if check and "json" in args:
        return json.loads(result.stdout)
    return result


@pytest.fixture(scope="module")
def apis(obox):
    return {"admin": Api(obox, "admin", obox.cloud_auth("teapot-admin")["password"], "admin"),
            "demo": Api(obox, "demo", obox.cloud_auth("teapot-demo")["password"], "demo")}


@pytest.fixture(scope="module")
def member(obox, apis, tmp_path_factory):
    """demo's one-host cluster on its default network, with an HTTP server on port 8080 of the
    host answering with the host's name: {"host", "address", "network"} (the network as
    /v1/networks shows it, once Neutron has it). The server is stopped by PID at the end."""
    template = apis["demo"]("POST", "/v1/clustertemplates", json={
        "name": "lb-member", "image_id": "https://images.example/node.raw",
        "flavor_id": "baremetal", "master_flavor_id": "baremetal",
        "labels": {"image_checksum": "56" * 32}})
    cluster = apis["demo"]("POST", "/v1/clusters", json={
        "name": "lb-member", "cluster_template_id": template["uuid"], "master_count": 1,
        "node_count": 0})["uuid"]
    host = wait_for(lambda: next(iter(_hosts_of(apis, cluster)), None), timeout=60,
                    what="the cluster's host")
    address = wait_for(lambda: (apis["admin"]("GET", f"/v1/hosts/{host}").get("network") or {})
                       .get("address"), timeout=240, interval=1, what="the host's address")
    namespace = Fabric.load(obox.state_dir).host(host).namespace
    wait_for(lambda: f" {address}/" in subprocess.run(
        ["ip", "-n", namespace, "-4", "-o", "addr"], capture_output=True, text=True).stdout,
        timeout=240, interval=1, what="the address on the host's interface")
    folder = tmp_path_factory.mktemp("member")
    (folder / "index.html").write_text(host)
    server = subprocess.Popen(["ip", "netns", "exec", namespace, sys.executable, "-m",
                               "http.server", "8080", "--bind", address, "--directory",
                               str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        network = wait_for(lambda: next((n for n in apis["demo"]("GET", "/v1/networks")["networks"]
                                         if n["is_default"] and n["neutron_network_id"]), None),
                           timeout=120, interval=1, what="the default network in Neutron")
        yield {"host": host, "address": address, "network": network}
    finally:
        server.terminate()
        server.wait(timeout=10)


def _status_of(box: Box, clouds, name: str) -> str | None:
    shown = lb_cli(box, clouds, "teapot-demo", "show", name, "-f", "json", check=False)
    if shown.returncode != 0:
        return None
    status = json.loads(shown.stdout)["provisioning_status"]
    assert status != "ERROR", shown.stdout
    return status


def _active(box: Box, clouds, name: str) -> None:
    wait_for(lambda: _status_of(box, clouds, name) == "ACTIVE", timeout=120, interval=1,
             what=f"Octavia's load balancer {name} ACTIVE")


@pytest.fixture(scope="module")
def lb(obox, clouds, member):
    """`web`: made through Octavia step by step, as its users do, until ACTIVE."""
    network = member["network"]["neutron_network_id"]
    made = lb_cli(obox, clouds, "teapot-demo", "create", "--provider", "teapot", "--name", "web",
                  "--vip-network-id", network, "-f", "json")
    assert made["provider"] == "teapot" and made["vip_address"]
    _active(obox, clouds, "web")
    lb_cli(obox, clouds, "teapot-demo", "listener", "create", "--name", "web-80", "--protocol",
           "TCP", "--protocol-port", "80", "web")
    _active(obox, clouds, "web")
    lb_cli(obox, clouds, "teapot-demo", "pool", "create", "--name", "web-pool", "--listener",
           "web-80", "--protocol", "TCP", "--lb-algorithm", "ROUND_ROBIN")
    _active(obox, clouds, "web")
    lb_cli(obox, clouds, "teapot-demo", "healthmonitor", "create", "--type", "TCP", "--delay",
           "1", "--timeout", "1", "--max-retries", "2", "web-pool")
    _active(obox, clouds, "web")
    lb_cli(obox, clouds, "teapot-demo", "member", "create", "--address", member["address"],
           "--protocol-port", "8080", "web-pool")
    _active(obox, clouds, "web")
    return made


def _get(namespace: str, url: str) -> str | None:
    proc = subprocess.run(["ip", "netns", "exec", namespace, "curl", "-s", "--max-time", "3", url],
                          capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else None


def test_the_octavia_load_balancer_is_teapots_and_answers_at_its_vip(obox, clouds, apis, member,
                                                                    lb):
    ours = [x for x in apis["demo"]("GET", "/v1/loadbalancers")["loadbalancers"]
            if x["name"] == f"octavia-{lb['id']}"]
    assert len(ours) == 1, ours
    teapot_lb = ours[0]
    assert teapot_lb["vip_address"] == lb["vip_address"]
    assert teapot_lb["id"] == lb["vip_port_id"]
    assert teapot_lb["network_id"] == member["network"]["uuid"]
    assert teapot_lb["listeners"] == [{"protocol": "TCP", "port": 80, "member_port": 8080}]
    assert [m["address"] for m in teapot_lb["members"]] == [member["address"]]
    assert teapot_lb["health_check"] == {"interval": 1.0, "retries": 2}

    status = subprocess.run([str(VENV_BIN / "teapot"), "status", "--state-dir",
                             str(obox.state_dir), "-f", "json"], capture_output=True, text=True,
                            check=True)
    outside = json.loads(status.stdout)["public_namespace"]
    wait_for(lambda: _get(outside, f"http://{lb['vip_address']}/") == member["host"], timeout=60,
             interval=1, what="the member's answer through the VIP")
    shown = lb_cli(obox, clouds, "teapot-demo", "status", "show", "web")
    assert member["address"] in shown.stdout


def test_a_reader_cannot_create_and_another_project_sees_nothing(obox, clouds, member, lb):
    refused = lb_cli(obox, clouds, "reader", "create", "--provider", "teapot", "--name", "nope",
                     "--vip-network-id", member["network"]["neutron_network_id"], check=False)
    assert refused.returncode != 0 and "403" in refused.stderr, refused.stderr
    assert lb_cli(obox, clouds, "reader", "show", "web", "-f", "json")["id"] == lb["id"]

    assert lb_cli(obox, clouds, "other", "list", "-f", "json") == []
    # Octavia's own answer for another project's load balancer is a 403 (its policy, checked on
    # the object's project), not a 404
    hidden = lb_cli(obox, clouds, "other", "show", lb["id"], check=False)
    assert hidden.returncode != 0 and ("403" in hidden.stderr or "Unable to locate"
                                       in hidden.stderr), hidden.stderr


def test_what_teapot_cannot_do_is_refused_saying_so(obox, clouds, lb):
    refused = lb_cli(obox, clouds, "teapot-demo", "listener", "create", "--protocol", "UDP",
                     "--protocol-port", "53", "web", check=False)
    assert refused.returncode != 0 and "TCP only" in refused.stderr, refused.stderr
    _active(obox, clouds, "web")  # Octavia rolled it back: the load balancer is not stuck


def test_delete_takes_it_out_of_both_apis(obox, clouds, apis, lb):
    """Last: deletes the load balancer."""
    lb_cli(obox, clouds, "teapot-demo", "delete", "--cascade", "web")
    wait_for(lambda: _status_of(obox, clouds, lb["id"]) is None, timeout=120, interval=1,
             what="the load balancer gone from Octavia")
    apis["demo"]("GET", f"/v1/loadbalancers/{lb['vip_port_id']}", expect=(404,))
    assert lb_cli(obox, clouds, "teapot-demo", "list", "-f", "json") == []
