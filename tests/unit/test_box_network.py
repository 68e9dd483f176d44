"""The box's tenant-network settings: teapot.conf's [network] as Teapot reads it, and where a
host's NIC is cabled as Ironic's ports record it."""

from __future__ import annotations

import pytest

from teapot import config
from teapot.deploy.services import teapot as teapot_mod
from teapot.drivers.provisioner.ironic import local_link_connection
from teapot.net.fabric import FabricVlans
from tests.unit.test_deploy_services import FakeContext


def _load(tmp_path, settings):
    ctx = FakeContext(tmp_path, settings)
    path = tmp_path / "teapot.conf"
    path.write_text(teapot_mod.teapot_conf(ctx))
    return ctx, config.load(str(path))


def test_a_box_with_its_switch_enables_tenant_networks(tmp_path):
    ctx, conf = _load(tmp_path, {"profile": "box", "hosts": 2, "switch": True,
                                 "state_dir": str(tmp_path)})
    net = conf.network
    vlans = FabricVlans()
    assert net.enabled is True
    assert net.switches_file == ctx.config_path("teapot", "switches.yaml")
    assert net.vlan_ranges == ["100:3000"]
    assert (net.idle_vlan, net.provisioning_vlan, net.cleaning_vlan) == (
        vlans.idle, vlans.provisioning, vlans.cleaning)
    assert net.physical_network == "physnet1"
    # clusters' API endpoints: load balancers on the box's switch and public network
    assert (conf.loadbalancer.driver, conf.loadbalancer.box_state_dir) == ("box", str(tmp_path))


@pytest.mark.parametrize("settings", [{"profile": "box", "hosts": 2, "switch": False},
                                      {"profile": "box", "hosts": 2}])
def test_a_box_without_a_switch_has_no_tenant_networks(tmp_path, settings):
    _, conf = _load(tmp_path, settings)
    assert conf.network.enabled is False
    assert conf.network.switches_file is None
    assert conf.loadbalancer.driver == "none" and conf.clusters.readiness == "provisioned"


SPEC = {"bootMACAddress": "52:54:00:a0:00:01",
        "networkInterfaces": [
            {"macAddress": "52:54:00:A0:00:02",
             "switchPort": {"switchID": "02:AA:bb:cc:dd:ee", "portID": "other"}},
            {"macAddress": "52:54:00:A0:00:01",
             "switchPort": {"switchID": "02:AA:bb:cc:dd:ee", "portID": "tp1p2"}},
        ]}


def test_the_boot_nic_link_comes_from_its_network_interface():
    link = local_link_connection(SPEC, "52:54:00:a0:00:01", {"02:aa:bb:cc:dd:ee": "tor"})
    assert link == {"switch_id": "02:aa:bb:cc:dd:ee", "port_id": "tp1p2", "switch_info": "tor"}
    # an unknown switch: no switch_info
    assert local_link_connection(SPEC, "52:54:00:a0:00:02", {}) == {
        "switch_id": "02:aa:bb:cc:dd:ee", "port_id": "other"}


@pytest.mark.parametrize("spec", [
    {"bootMACAddress": "52:54:00:a0:00:01"},
    {"networkInterfaces": [{"macAddress": "52:54:00:a0:00:09",
                            "switchPort": {"switchID": "02:aa:bb:cc:dd:ee", "portID": "p"}}]},
    {"networkInterfaces": [{"macAddress": "52:54:00:a0:00:01"}]},  # no switchPort
])
def test_no_link_when_the_spec_does_not_say(spec):
    assert local_link_connection(spec, "52:54:00:a0:00:01") is None
