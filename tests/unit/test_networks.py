"""Tenant networks: the API (two projects, the reader role, administrators), VLAN allocation under
concurrency, clusters on networks, and where each host's switch port belongs."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from teapot.db import networks as ndb
from teapot.db.models import Network
from teapot.resources import host as hsm
from teapot.resources import network as nsm
from tests.unit.conftest import call
from tests.unit.rows import host_row

VLANS = nsm.Vlans(idle=3999, provisioning=4000, cleaning=4001)
SUBNET = nsm.Subnet.parse("10.20.0.0/24")


@pytest.fixture
def net_client(tmp_path, db_url):
    """The API with tenant networks on, VLANs 100 to 104."""
    from starlette.testclient import TestClient

    from teapot import config
    from teapot.api import app as api_app
    from tests.unit.conftest import Tokens

    conf_file = tmp_path / "teapot-net.conf"
    conf_file.write_text(
        f"[database]\nconnection = {db_url}\n"
        "[keystone_authtoken]\nauth_url = http://127.0.0.1:9/v3\npassword = unused\n"
        "[ironic]\nendpoint = http://127.0.0.1:9\n"
        f"[secrets]\nkey_file = {tmp_path / 'secret.key'}\n"
        "[network]\nenabled = true\nvlan_ranges = 100:102,104:104\n")
    with TestClient(api_app.build(config.load(str(conf_file)), validator=Tokens()),
                    base_url="http://teapot") as c:
        yield c


def test_members_create_readers_read_and_nothing_crosses_projects(net_client):
    made = call(net_client, "alice", "POST", "/v1/networks", json={"name": "blue"})
    assert made.status_code == 201, made.text
    blue = made.json()
    assert blue["project_id"] == "p-one" and blue["status"] == "creating"
    assert "vlan_id" not in blue  # a tenant never learns its VLAN id
    assert call(net_client, "rita", "GET", f"/v1/networks/{blue['uuid']}").status_code == 200
    assert [n["name"] for n in call(net_client, "rita", "GET", "/v1/networks").json()["networks"]] \
        == ["blue"]
    refused = call(net_client, "rita", "POST", "/v1/networks", json={"name": "red"})
    assert refused.status_code == 403 and "teapot:network:create" in refused.text
    assert call(net_client, "rita", "DELETE", f"/v1/networks/{blue['uuid']}").status_code == 403
    # another project sees nothing of it, and cannot delete it
    assert call(net_client, "bob", "GET", "/v1/networks").json()["networks"] == []
    assert call(net_client, "bob", "GET", f"/v1/networks/{blue['uuid']}").status_code == 404
    assert call(net_client, "bob", "DELETE", f"/v1/networks/{blue['uuid']}").status_code == 404
    # the same name in another project is another network on another VLAN
    theirs = call(net_client, "bob", "POST", "/v1/networks", json={"name": "blue"}).json()
    # administrators see every project's networks, with the VLAN ids
    seen = call(net_client, "admin", "GET", "/v1/networks").json()["networks"]
    vlans = {n["uuid"]: n["vlan_id"] for n in seen}
    assert set(vlans) == {blue["uuid"], theirs["uuid"]} and vlans[blue["uuid"]] != vlans[theirs["uuid"]]
    assert call(net_client, "alice", "POST", "/v1/networks", json={"name": "blue"}).status_code == 409


def test_bad_names_are_400(net_client):
    for name, words in (("", "must not be empty"), ("has space", "is not valid"), ("x" * 300, "at most")):
        r = call(net_client, "alice", "POST", "/v1/networks", json={"name": name})
        assert r.status_code == 400 and r.json()["errors"][0]["detail"].startswith("name: ")
        assert words in r.json()["errors"][0]["detail"]


def test_vlans_run_out_with_a_clear_409(net_client):
    for i in range(4):  # 100, 101, 102, 104
        assert call(net_client, "alice", "POST", "/v1/networks", json={"name": f"n{i}"}).status_code == 201
    full = call(net_client, "alice", "POST", "/v1/networks", json={"name": "n5"})
    assert full.status_code == 409 and "every VLAN" in full.json()["errors"][0]["detail"]
    vlans = sorted(n["vlan_id"] for n in call(net_client, "admin", "GET", "/v1/networks").json()["networks"])
    assert vlans == [100, 101, 102, 104]


def test_concurrent_creates_never_share_a_vlan(sm):
    ranges = [(200, 260)]
    results, errors = [], []

    def make(i: int):
        try:
            with sm.begin() as session:
                results.append(ndb.create(session, project_id=f"p{i % 3}", name=f"n{i}",
                                          ranges=ranges, subnet=SUBNET).vlan_id)
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=make, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results) == list(range(200, 240))
    with sm() as session:
        assert len(set(session.scalars(select(Network.vlan_id)))) == 40


def _template_and_class(client, sm):
    with sm.begin() as session:
        session.add(host_row("node-0", labels={"kind": "bm"}, state="available"))
    call(client, "admin", "POST", "/v1/hostclasses", json={"name": "bm", "labels": {"kind": "bm"}})
    return call(client, "alice", "POST", "/v1/clustertemplates",
                json={"name": "k8s", "image_id": "https://x/i.raw", "flavor_id": "bm"}).json()["uuid"]


def test_a_cluster_joins_its_projects_default_network_or_the_one_it_names(net_client, sm):
    template = _template_and_class(net_client, sm)
    first = call(net_client, "alice", "POST", "/v1/clusters",
                 json={"name": "a", "cluster_template_id": template, "node_count": 0}).json()
    shown = call(net_client, "alice", "GET", f"/v1/clusters/{first['uuid']}").json()
    default = call(net_client, "alice", "GET", "/v1/networks").json()["networks"]
    assert [n["name"] for n in default] == ["default"] and default[0]["is_default"]
    assert shown["fixed_network"] == default[0]["uuid"]
    blue = call(net_client, "alice", "POST", "/v1/networks", json={"name": "blue"}).json()
    second = call(net_client, "alice", "POST", "/v1/clusters",
                  json={"name": "b", "cluster_template_id": template, "node_count": 0,
                        "fixed_network": "blue"}).json()
    assert call(net_client, "alice", "GET", f"/v1/clusters/{second['uuid']}").json()[
        "fixed_network"] == blue["uuid"]
    # another project's network cannot be named
    theirs = call(net_client, "bob", "POST", "/v1/networks", json={"name": "red"}).json()
    refused = call(net_client, "alice", "POST", "/v1/clusters",
                   json={"name": "c", "cluster_template_id": template, "fixed_network": theirs["uuid"]})
    assert refused.status_code == 400 and "fixed_network" in refused.json()["errors"][0]["detail"]
    # a network in use cannot be deleted; the 409 says by what
    busy = call(net_client, "alice", "DELETE", "/v1/networks/blue")
    assert busy.status_code == 409 and "cluster b" in busy.json()["errors"][0]["detail"]
    assert len(call(net_client, "admin", "GET", "/v1/networks").json()["networks"]) == 3


def test_deleting_a_free_network_marks_it_for_the_conductor(net_client, sm):
    made = call(net_client, "alice", "POST", "/v1/networks", json={"name": "temp"}).json()
    assert call(net_client, "alice", "DELETE", f"/v1/networks/{made['uuid']}").status_code == 204
    with sm() as session:
        row = session.scalars(select(Network)).one()
        assert row.deleting and row.status == nsm.DELETING


@pytest.mark.parametrize("state, claimed, image, tenant, wanted", [
    (hsm.REGISTERING, False, False, None, 4000),
    (hsm.INSPECTING, False, False, None, 4000),
    (hsm.PREPARING, False, False, None, 4001),
    (hsm.AVAILABLE, False, False, None, 3999),
    (hsm.AVAILABLE, True, False, 150, 3999),
    (hsm.AVAILABLE, True, True, 150, 4000),
    (hsm.PROVISIONING, True, True, 150, 4000),
    (hsm.PROVISIONED, True, True, 150, 150),
    (hsm.PROVISIONED, False, True, None, 3999),
    (hsm.DEPROVISIONING, True, False, 150, 4001),
    (hsm.DELETING, False, False, None, 3999),
])
def test_where_a_hosts_port_belongs(state, claimed, image, tenant, wanted):
    assert nsm.port_vlan(state, claimed, image, tenant, VLANS) == wanted


def test_cleaning_and_deploying_wait_for_the_port():
    assert nsm.gate("deprovision", 150, 4001) and "VLAN 150 to VLAN 4001" in nsm.gate("deprovision", 150, 4001)
    assert nsm.gate("provision", None, 4000)
    assert nsm.gate("deprovision", 4001, 4001) is None
    assert nsm.gate("power", 150, 3999) is None  # power needs no network


@pytest.mark.parametrize("text, ranges", [("100:200", [(100, 200)]), ("7", [(7, 7)])])
def test_vlan_ranges_parse(text, ranges):
    assert nsm.parse_ranges([text]) == ranges


@pytest.mark.parametrize("text", ["a:b", "0:10", "10:5", "4000:5000"])
def test_bad_vlan_ranges_are_named(text):
    with pytest.raises(ValueError, match=text):
        nsm.parse_ranges([text])


def test_a_cluster_waits_for_its_hosts_ports_and_says_why():
    from dataclasses import replace

    from teapot.resources import cluster as csm

    group = csm.NodeGroupView("default-master", "master", 1, "bm")
    host = csm.HostView("h0", "u0", "default-master", "provisioned", True, on_network=False,
                        port_error="switch tor: connection refused")
    step = csm.plan(csm.ClusterView(csm.CREATE_IN_PROGRESS, False, (group,), (host,)))
    assert isinstance(step, csm.Wait)
    assert "tenant network" in step.reason and "switch tor: connection refused" in step.reason
    settled = replace(host, on_network=True, port_error="")
    assert isinstance(csm.plan(csm.ClusterView(csm.CREATE_IN_PROGRESS, False, (group,), (settled,))),
                      csm.Verify)
