"""The ngs switch driver against networking-generic-switch's own `netmiko_fake` device, which
logs every command it is sent instead of opening SSH."""

from __future__ import annotations

import logging

import pytest

from teapot.drivers.switch.base import SwitchConfigError, SwitchError
from teapot.drivers.switch.ngs import (
    OVS_LINE_MAX,
    NgsSwitch,
    device_types,
    ovs_transactions,
    validate_device,
)

IDLE = 3999


def fake(**extra) -> dict:
    return {"device_type": "netmiko_fake", "ngs_port_default_vlan": IDLE, **extra}




def test_many_ports_go_in_one_session(sent):
    sw = NgsSwitch("tor", fake())
    sw.set_many({"p2": 200, "p1": 100, "p3": 100})
    assert sw.sessions == 1
    assert sent() == [
        "delete port p1", "plug port p1 to network 100",
        "delete port p2", "plug port p2 to network 200",
        "delete port p3", "plug port p3 to network 100",
    ]


def test_moving_between_tenants_leaves_the_old_vlan_first(sent):
    sw = NgsSwitch("tor", fake())
    sw.set_access_vlan("p1", 200, current=100)
    assert sent() == ["delete port p1", "add network 3999", "plug port p1 to network 3999",
                      "delete port p1", "plug port p1 to network 200"]
    sw.set_access_vlan("p1", 100, current=IDLE)  # from idle: no extra leave
    assert sent() == ["delete port p1", "plug port p1 to network 100"]


def test_idle_returns_ports_to_the_default_vlan(sent):
    sw = NgsSwitch("tor", fake())
    sw.set_idle({"p1": 100, "p2": 200})
    assert sw.sessions == 1
    assert sent() == ["delete port p1", "add network 3999", "plug port p1 to network 3999",
                      "delete port p2", "add network 3999", "plug port p2 to network 3999"]


def test_vlans_are_created_on_the_switch_and_its_trunk_ports(sent):
    sw = NgsSwitch("tor", fake(ngs_trunk_ports="up1,up2"))
    sw.add_vlans([200, 100, 100])
    assert sent() == ["add network 100", "add network 100 to trunk up1",
                      "add network 100 to trunk up2", "add network 200",
                      "add network 200 to trunk up1", "add network 200 to trunk up2"]
    sw.remove_vlans([100])
    assert sent() == ["remove network 100 from trunk up1", "remove network 100 from trunk up2",
                      "delete network 100"]
    assert sw.sessions == 2


def test_trunk_port_carries_tagged_vlans(sent):
    sw = NgsSwitch("tor", fake())
    assert sw.supports_trunk_ports
    sw.set_trunk("p1", 100, [300, 100, 200])
    assert sent() == ["delete port p1", "add network 200 to trunk p1", "add network 300 to trunk p1"]


@pytest.mark.parametrize("port", ["p1; reboot", "p1\nreboot", "", "-rf", "a" * 65, None, 3])
def test_port_names_that_are_not_interface_names_are_refused(sent, port):
    sw = NgsSwitch("tor", fake())
    with pytest.raises(SwitchError, match="not a plain interface name"):
        sw.set_many({"p1": 100, port: 100})
    assert sent() == [] and sw.sessions == 0


@pytest.mark.parametrize("vlan", [0, 4095, -1, True, "100", 1.5])
def test_vlans_out_of_range_are_refused(sent, vlan):
    sw = NgsSwitch("tor", fake())
    with pytest.raises(SwitchError, match="VLAN must be an integer from 1 to 4094"):
        sw.set_access_vlan("p1", vlan)
    with pytest.raises(SwitchError, match="VLAN must be an integer"):
        sw.add_vlans([vlan])
    assert sent() == []


def test_a_failing_switch_raises_switch_error_naming_it():
    sw = NgsSwitch("rack7", fake(ngs_fake_failure_prob=1))
    with pytest.raises(SwitchError, match=r"switch rack7: plug port failed: GenericSwitch\w+Error"):
        sw.set_many({"p1": 100, "p2": 100})
    assert sw.sessions == 1


def test_device_options_are_not_consumed():
    device = fake(ngs_trunk_ports="up1")
    before = dict(device)
    NgsSwitch("tor", device)
    assert device == before


@pytest.mark.parametrize(("device", "message"), [
    ({"device_type": "netmiko_nosuch", "ngs_port_default_vlan": 1}, "device_type 'netmiko_nosuch'"),
    ({"ngs_port_default_vlan": 1}, "device_type '' is not one of"),
    ({"device_type": "netmiko_fake"}, "ngs_port_default_vlan"),
    (fake(ngs_port_default_vlan=5000), "ngs_port_default_vlan must be a VLAN id"),
    (fake(ngs_port_default_vlan="idle"), "ngs_port_default_vlan must be a VLAN id"),
    (fake(ngs_no_such_option=1), "unknown option.*ngs_no_such_option"),
    (fake(ngs_batch_requests=True), "ngs_batch_requests needs an etcd"),
    ({"device_type": "netmiko_ovs_linux", "ngs_port_default_vlan": 1, "ip": "127.0.0.1",
      "key_file": "/k"}, "username is required"),
    ({"device_type": "netmiko_ovs_linux", "ngs_port_default_vlan": 1, "username": "root",
      "key_file": "/k"}, "ip .or host. is required"),
    ({"device_type": "netmiko_cisco_ios", "ngs_port_default_vlan": 1, "ip": "192.0.2.1",
      "username": "admin"}, "key_file or password is required"),
    ({"device_type": "netmiko_cisco_ios", "ngs_port_default_vlan": 1, "ip": "192.0.2.1",
      "username": "admin", "password": "pw", "port": "ssh"}, "port must be a TCP port number"),
    ({"device_type": "netmiko_cisco_ios", "ngs_port_default_vlan": 1, "ip": "192.0.2.1",
      "username": "admin", "key_file": "/nonexistent/key"}, "key_file /nonexistent/key does not"),
])
def test_bad_device_options_are_named(device, message):
    with pytest.raises(SwitchConfigError, match=message):
        validate_device("tor", device)


def test_bad_switch_name_is_refused():
    with pytest.raises(SwitchConfigError, match="switch name"):
        NgsSwitch("tor\n", fake())


def test_every_ngs_device_type_is_known():
    types = device_types()
    assert {"netmiko_ovs_linux", "netmiko_fake", "netmiko_cisco_ios", "netmiko_juniper"} <= set(types)


def test_secrets_stay_out_of_repr_errors_and_logs(caplog, unused_tcp_port):
    caplog.set_level(logging.DEBUG)
    password = "pw-6f1d2c-not-for-logs"
    sw = NgsSwitch("leaf1", {
        "device_type": "netmiko_cisco_ios", "ip": "127.0.0.1", "port": unused_tcp_port,
        "username": "admin", "password": password, "secret": password + "-enable",
        "ngs_port_default_vlan": 3999, "ngs_ssh_connect_timeout": 1,
        "ngs_ssh_connect_interval": 0, "conn_timeout": 1,
    })
    assert password not in repr(sw)
    with pytest.raises(SwitchError) as err:
        sw.set_access_vlan("Ethernet1/1", 100)
    assert "switch leaf1: plug port failed" in str(err.value)
    assert password not in str(err.value)
    assert err.value.__cause__ is None and err.value.__suppress_context__
    assert password not in caplog.text
    assert caplog.records  # ngs did log the failure, sanitised


@pytest.fixture
def unused_tcp_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- Open vSwitch: ngs's commands as OVSDB transactions ------------------------------------------


def test_each_ovs_operation_is_one_transaction():
    ops = [["ovs-vsctl clear port p1 tag", "ovs-vsctl set port p1 tag=100"],
           ["ovs-vsctl clear port p2 tag", "ovs-vsctl set port p2 tag=200"]]
    assert ovs_transactions(ops) == [
        "ovs-vsctl clear port p1 tag -- set port p1 tag=100 -- clear port p2 tag -- "
        "set port p2 tag=200"]


def test_ovs_transactions_split_between_operations_only():
    op = [f"ovs-vsctl set port port{i:03d} vlan_mode=access" for i in range(5)]
    lines = ovs_transactions([op] * 40)
    assert len(lines) > 1
    assert all(len(line) <= OVS_LINE_MAX for line in lines)
    for line in lines:
        parts = line.removeprefix("ovs-vsctl ").split(" -- ")
        assert len(parts) % 5 == 0 and parts[:5] == [c.removeprefix("ovs-vsctl ") for c in op]
    assert sum(line.count(" -- ") + 1 for line in lines) == 200


def test_ovs_transactions_refuse_other_commands():
    with pytest.raises(SwitchError, match="not an ovs-vsctl command"):
        ovs_transactions([["ovs-vsctl set port p1 tag=1", "reboot"]])


def test_each_ovs_transaction_waits_for_the_data_plane_and_says_how_it_ended():
    from teapot.drivers.switch.ngs import OVS_WAIT, ovs_confirmed, ovs_outcome

    lines = ovs_confirmed(["ovs-vsctl set port p1 tag=100", "ovs-vsctl set port p2 tag=200"], "n1")
    assert lines == [
        f"ovs-vsctl --timeout={OVS_WAIT} set port p1 tag=100 -- set Open_vSwitch . "
        "external_ids:teapot-change=n1-0; echo teapot-rc-n1-0 $?",
        f"ovs-vsctl --timeout={OVS_WAIT} set port p2 tag=200 -- set Open_vSwitch . "
        "external_ids:teapot-change=n1-1; echo teapot-rc-n1-1 $?"]
    echoed = "\n".join(lines)  # the terminal echoes the commands themselves
    assert ovs_outcome(echoed + "\nteapot-rc-n1-0 0\nteapot-rc-n1-1 0\n", "n1", 2) is None
    assert "did not confirm" in ovs_outcome(echoed + "\nteapot-rc-n1-0 0\n", "n1", 2)
    assert "not applied by its data plane" in ovs_outcome(
        echoed + "\nteapot-rc-n1-0 0\nteapot-rc-n1-1 142\n", "n1", 2)
    assert "status 1" in ovs_outcome("teapot-rc-n1-0 1\nteapot-rc-n1-1 0\n", "n1", 2)
    # an answer left over from an earlier session is not this one's
    assert "did not confirm" in ovs_outcome("teapot-rc-old-0 0\n", "n1", 1)
