"""Subnets of tenant networks and the addresses allocated on them: the API (two projects, readers,
bad input), allocation under concurrency (never one address twice on one network, the same address
on two projects' networks), release with the host, and the network_data.json a host is handed."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from teapot.db import addresses as adb
from teapot.db import networks as ndb
from teapot.db.models import Address
from teapot.drivers.bootstrap.network_data import address_of, network_data
from teapot.resources import network as nsm
from teapot.resources.errors import ValidationError
from tests.unit.conftest import call
from tests.unit.test_networks import net_client  # noqa: F401 - the fixture

SUBNET = nsm.Subnet.parse("10.20.0.0/24")


def test_defaults_follow_neutrons():
    s = nsm.Subnet.parse("10.20.0.0/24", dns_nameservers=["10.20.0.53"])
    assert (s.gateway_ip, s.pool_start, s.pool_end) == ("10.20.0.1", "10.20.0.2", "10.20.0.254")
    assert s.netmask == "255.255.255.0" and s.dns_nameservers == ("10.20.0.53",)
    assert nsm.Subnet.from_record(s.record()) == s
    own = nsm.Subnet.parse("10.9.0.0/24", "10.9.0.254", allocation_pool={"start": "10.9.0.10",
                                                                         "end": "10.9.0.20"})
    assert (own.gateway_ip, own.pool()) == ("10.9.0.254", (0x0A09000A, 0x0A090014))


@pytest.mark.parametrize("args,field,words", [
    (("10.20.0.1/24",), "cidr", "host bits set"),
    (("10.20.0.0/30",), "cidr", "too small"),
    (("127.1.0.0/16",), "cidr", "overlaps 127.0.0.0/8"),
    (("nonsense",), "cidr", "is not an IPv4 network"),
    (("10.20.0.0/24", "10.21.0.1"), "gateway_ip", "not a host address of 10.20.0.0/24"),
    (("10.20.0.0/24", "10.20.0.255"), "gateway_ip", "not a host address"),
    (("10.20.0.0/24", "10.20.0.9", (), {"start": "10.20.0.5", "end": "10.20.0.50"}),
     "gateway_ip", "inside the allocation pool"),
    (("10.20.0.0/24", None, (), {"start": "10.20.0.50", "end": "10.20.0.5"}),
     "allocation_pool", "comes after"),
    (("10.20.0.0/24", None, ("10.0.0.300",)), "dns_nameservers[0]", "not an IPv4 address"),
])
def test_bad_subnets_name_the_field(args, field, words):
    with pytest.raises(ValidationError) as e:
        nsm.Subnet.parse(*args)
    assert e.value.field == field and words in e.value.message


def test_the_api_takes_a_subnet_or_gives_the_default(net_client):  # noqa: F811
    made = call(net_client, "alice", "POST", "/v1/networks",
                json={"name": "blue", "cidr": "10.30.0.0/24", "dns_nameservers": ["10.30.0.53"]})
    assert made.status_code == 201, made.text
    assert made.json()["subnet"] == {"cidr": "10.30.0.0/24", "gateway_ip": "10.30.0.1",
                                     "dns_nameservers": ["10.30.0.53"],
                                     "allocation_pool": {"start": "10.30.0.2",
                                                         "end": "10.30.0.254"}}
    plain = call(net_client, "alice", "POST", "/v1/networks", json={"name": "plain"}).json()
    assert plain["subnet"]["cidr"] == "10.20.0.0/24"  # [network] default_cidr
    # another project may use the same CIDR: its VLAN keeps it apart
    theirs = call(net_client, "bob", "POST", "/v1/networks",
                  json={"name": "blue", "cidr": "10.30.0.0/24"})
    assert theirs.status_code == 201 and theirs.json()["subnet"]["cidr"] == "10.30.0.0/24"
    # readers read it, and cannot make one
    assert call(net_client, "rita", "GET", f"/v1/networks/{made.json()['uuid']}").json()["subnet"] \
        == made.json()["subnet"]
    assert call(net_client, "rita", "POST", "/v1/networks",
                json={"name": "r", "cidr": "10.40.0.0/24"}).status_code == 403
    assert call(net_client, "bob", "GET", f"/v1/networks/{made.json()['uuid']}").status_code == 404


@pytest.mark.parametrize("body,field", [
    ({"cidr": "10.20.0.0/31"}, "cidr"),
    ({"cidr": "10.20.0.0/24", "gateway_ip": "10.99.0.1"}, "gateway_ip"),
    ({"gateway_ip": "10.20.0.1"}, "gateway_ip"),
    ({"cidr": "10.20.0.0/24", "dns_nameservers": ["dns.example"]}, "dns_nameservers"),
    ({"cidr": "10.20.0.0/24", "allocation_pool": {"start": "10.20.0.9"}, "gateway_ip": "10.20.0.10"},
     "gateway_ip"),
])
def test_bad_subnets_are_400_and_leave_no_network(net_client, body, field):  # noqa: F811
    r = call(net_client, "alice", "POST", "/v1/networks", json={"name": "bad", **body})
    assert r.status_code == 400, r.text
    assert r.json()["errors"][0]["detail"].startswith(field), r.text
    assert call(net_client, "alice", "GET", "/v1/networks").json()["networks"] == []


def test_addresses_are_the_lowest_free_and_never_given_twice(sm):
    with sm.begin() as session:
        blue = ndb.create(session, project_id="p1", name="blue", ranges=[(100, 200)], subnet=SUBNET)
        red = ndb.create(session, project_id="p2", name="red", ranges=[(100, 200)], subnet=SUBNET)
        blue_uuid, red_uuid = blue.uuid, red.uuid
    results, errors = [], []

    def take(i: int):
        try:
            with sm.begin() as session:
                results.append(adb.allocate(session, blue_uuid, SUBNET, adb.HOST, f"h{i}", "c1"))
        except Exception as e:  # noqa: BLE001 - asserted below
            errors.append(e)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results, key=lambda a: int(a.split(".")[-1])) == \
        [f"10.20.0.{i}" for i in range(2, 32)]
    with sm.begin() as session:
        # the same owner asking again gets its own address; another project's network starts over
        assert adb.allocate(session, blue_uuid, SUBNET, adb.HOST, "h0", "c1") in results
        assert adb.allocate(session, red_uuid, SUBNET, adb.HOST, "x", "c2") == "10.20.0.2"
        held = adb.of_hosts(session, ["h3", "h4"])
        adb.release_hosts(session, ["h3", "h4"])
    with sm.begin() as session:
        again = {adb.allocate(session, blue_uuid, SUBNET, adb.HOST, n, "c3") for n in ("n1", "n2")}
        assert again == set(held.values())  # the released addresses are the lowest free ones
        adb.release_cluster(session, "c1")
        assert session.scalar(select(func.count(Address.id)).where(
            Address.network_uuid == blue_uuid)) == 2


def test_a_full_pool_says_so(sm):
    tiny = nsm.Subnet.parse("10.20.0.0/29")  # pool .2-.6
    with sm.begin() as session:
        net = ndb.create(session, project_id="p1", name="t", ranges=[(100, 200)], subnet=tiny)
        got = [adb.allocate(session, net.uuid, tiny, adb.HOST, f"h{i}", "c") for i in range(5)]
        assert got == [f"10.20.0.{i}" for i in range(2, 7)]
        with pytest.raises(adb.NoFreeAddress, match="10.20.0.2-10.20.0.6"):
            adb.allocate(session, net.uuid, tiny, adb.HOST, "one-more", "c")


def test_network_data_is_what_cloud_init_reads():
    s = nsm.Subnet.parse("10.20.0.0/24", dns_nameservers=["10.20.0.53"])
    data = network_data("52:54:00:AA:BB:01", "10.20.0.7", s, "net-uuid")
    assert data["links"] == [{"id": "tenant0", "type": "phy",
                              "ethernet_mac_address": "52:54:00:aa:bb:01", "mtu": 1500}]
    (net,) = data["networks"]
    assert (net["link"], net["ip_address"], net["netmask"]) == ("tenant0", "10.20.0.7",
                                                                "255.255.255.0")
    assert net["routes"] == [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.20.0.1"}]
    assert data["services"] == [{"type": "dns", "address": "10.20.0.53"}]
    assert address_of(data) == "10.20.0.7" and address_of(None) is None


def test_legs_of_load_balancers_take_the_top_of_the_pool(sm):
    with sm.begin() as session:
        net = ndb.create(session, project_id="p1", name="t", ranges=[(100, 200)], subnet=SUBNET)
        assert adb.allocate(session, net.uuid, SUBNET, adb.ENDPOINT, "c", "c", highest=True) \
            == "10.20.0.254"
        assert adb.allocate(session, net.uuid, SUBNET, adb.LOADBALANCER, "l", None,
                            highest=True) == "10.20.0.253"
        assert adb.allocate(session, net.uuid, SUBNET, adb.HOST, "h", "c") == "10.20.0.2"
