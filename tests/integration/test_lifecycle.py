"""Stopping and resuming a box: nothing left running, nothing bootstrapped twice, hosts keep state."""

from __future__ import annotations

import json
import subprocess

import httpx
import psutil
import pytest

from .conftest import TEAPOT, Box, _alive, running


@pytest.fixture(scope="module")
def small_box(tmp_path_factory):
    with running(Box(tmp_path_factory.mktemp("lifecycle"), hosts=2)) as b:
        yield b


def _admin_user_id(box) -> str:
    auth = box.cloud_auth("teapot-admin")
    response = httpx.post(box.url("keystone") + "/v3/auth/tokens", json={"auth": {"identity": {
        "methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"name": "Default"}, "password": auth["password"]}}}}})
    response.raise_for_status()
    return response.json()["token"]["user"]["id"]


def test_a_taken_port_stops_a_second_box_with_a_clear_message(small_box, tmp_path):
    result = subprocess.run(
        [TEAPOT, "up", "--state-dir", str(tmp_path / "other"), "--hosts", "1",
         "--port-base", str(small_box.port_base)],
        capture_output=True, text=True, env=small_box.env(), timeout=120)
    assert result.returncode != 0
    assert f"port 127.0.0.1:{small_box.ports['keystone']} is already in use" in result.stdout
    assert small_box.process.poll() is None, "the first box must keep running"


def test_stop_and_resume_keeps_everything(small_box):
    box = small_box
    user_id = _admin_user_id(box)
    box.teapot("host", "provision", "host-0", "--image-url", "http://images.example/k8s.raw",
               "--image-checksum", "ef" * 32, "--image-checksum-type", "sha256", "--wait")
    before = {h["name"]: h for h in json.loads(box.teapot("host", "list", "-f", "json").stdout)}
    children = box.child_pids()
    assert set(children) >= {"keystone", "ironic", "sushy-emulator", "teapot-api", "teapot-conductor"}

    assert box.stop() == 0
    assert not [name for name, pid in children.items() if _alive(pid)]
    listening = {c.laddr.port for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}
    assert not listening & set(box.ports.values())
    assert not list((box.state_dir / "run").glob("*.pid"))

    box.start()
    after = {h["name"]: h for h in json.loads(box.teapot("host", "list", "-f", "json").stdout)}
    assert after["host-0"]["state"] == "provisioned"
    assert {n: h["uuid"] for n, h in after.items()} == {n: h["uuid"] for n, h in before.items()}
    assert _admin_user_id(box) == user_id
    keystone_log = (box.state_dir / "logs" / "keystone.log").read_text()
    assert keystone_log.count("--- bootstrap step bootstrap") == 1
    assert keystone_log.count("--- starting keystone") == 2
