"""Provisioning and power from the CLI, checked against Ironic and the emulated BMC themselves."""

from __future__ import annotations

import json
import os
import signal

import httpx

from teapot.deploy.services.sushy_emulator import BMC_USERNAME, emulated_hosts

from .conftest import wait_for

CHECKSUM = "ab" * 32


def _node(box, name: str) -> dict:
    return httpx.get(f"{box.url('ironic')}/v1/nodes/{name}",
                     headers={"X-OpenStack-Ironic-API-Version": "latest"}).json()


def _bmc_power(box, name: str) -> str:
    system = next(h["uuid"] for h in emulated_hosts(box.hosts) if h["name"] == name)
    response = httpx.get(f"{box.url('sushy-emulator')}/redfish/v1/Systems/{system}",
                         auth=(BMC_USERNAME, box.secret("bmc-password")))
    response.raise_for_status()
    return response.json()["PowerState"]


def _show(box, name: str) -> dict:
    return json.loads(box.teapot("host", "show", name, "-f", "json").stdout)


def test_provision_and_deprovision_from_the_cli(box, tmp_path):
    user_data = tmp_path / "user-data"
    user_data.write_text("#cloud-config\nhostname: host-0\n")
    shown = json.loads(box.teapot(
        "host", "provision", "host-0", "--image-url", "http://images.example/node.qcow2",
        "--image-checksum", CHECKSUM, "--image-checksum-type", "sha256", "--image-format", "qcow2",
        "--user-data-file", str(user_data), "--wait", "-f", "json").stdout)
    assert shown["state"] == "provisioned"
    assert shown["provisionedImage"] == "http://images.example/node.qcow2"
    node = _node(box, "host-0")
    assert node["provision_state"] == "active"
    assert node["instance_info"]["image_source"] == "http://images.example/node.qcow2"
    assert node["instance_info"]["image_os_hash_algo"] == "sha256"
    assert node["instance_info"]["image_os_hash_value"] == CHECKSUM

    shown = json.loads(box.teapot("host", "deprovision", "host-0", "--wait", "-f", "json").stdout)
    assert shown["state"] == "available"
    assert shown["provisionedImage"] == ""
    assert _node(box, "host-0")["provision_state"] == "available"


def test_power_follows_the_real_bmc(box):
    shown = json.loads(box.teapot("host", "power", "on", "host-1", "--wait", "-f", "json").stdout)
    assert shown["poweredOn"] is True
    assert _bmc_power(box, "host-1") == "On"
    assert _node(box, "host-1")["power_state"] == "power on"
    shown = json.loads(box.teapot("host", "power", "off", "host-1", "--wait", "-f", "json").stdout)
    assert shown["poweredOn"] is False
    assert _bmc_power(box, "host-1") == "Off"


def test_conductor_killed_mid_provisioning_converges(box):
    """SIGKILL the conductor while a host is provisioning; the restarted one finishes the job."""
    killed = None
    box.teapot("host", "provision", "host-2", "--image-url", "http://images.example/a.raw",
               "--image-checksum", CHECKSUM, "--image-checksum-type", "sha256", "--online")

    def provisioning_seen():
        state = _show(box, "host-2")["state"]
        return state if state in ("provisioning", "provisioned") else None

    state = wait_for(provisioning_seen, interval=0.02, timeout=60, what="host-2 provisioning")
    pid = box.child_pids()["teapot-conductor"]
    os.kill(pid, signal.SIGKILL)
    killed = pid
    assert state in ("provisioning", "provisioned")
    wait_for(lambda: box.child_pids().get("teapot-conductor") not in (None, killed), timeout=60,
             what="the conductor restarted")
    host = wait_for(lambda: (h := _show(box, "host-2"))["state"] == "provisioned" and h["poweredOn"]
                    and h, timeout=120, what="host-2 provisioned and powered on")
    assert host["operationalStatus"] == "OK"
    assert _node(box, "host-2")["provision_state"] == "active"
    assert any("teapot-conductor exited with code -9" in line for line in box.lines)
    box.teapot("host", "deprovision", "host-2", "--wait")
