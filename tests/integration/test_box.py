"""The box as a user meets it: ready, clouds.yaml, the catalog, loopback only, hosts available."""

from __future__ import annotations

import json
import stat
import subprocess

import psutil


def test_ready_line_reports_available_hosts(box):
    ready = next(line for line in box.lines if line.startswith("ready:"))
    assert f"{box.hosts} hosts available" in ready


def test_state_files_are_private(box):
    for name in ("clouds.yaml", "secrets.yaml"):
        mode = stat.S_IMODE((box.state_dir / name).stat().st_mode)
        assert mode == 0o600, f"{name} has mode {oct(mode)}"


def test_openstack_client_issues_a_demo_token(box):
    result = subprocess.run(["openstack", "--os-cloud", "teapot-demo", "token", "issue", "-f", "json"],
                            capture_output=True, text=True, env=box.env(), timeout=120)
    assert result.returncode == 0, result.stderr
    token = json.loads(result.stdout)
    assert token["id"] and token["project_id"]


def test_teapot_is_in_the_catalog(box):
    result = subprocess.run(["openstack", "--os-cloud", "teapot-admin", "catalog", "show", "teapot",
                             "-f", "json"], capture_output=True, text=True, env=box.env(), timeout=120)
    assert result.returncode == 0, result.stderr
    entry = json.loads(result.stdout)
    assert entry["type"] == "teapot"
    assert box.url("teapot-api") + "/v1" in json.dumps(entry["endpoints"])


def test_host_list_shows_every_emulated_host_available(box):
    hosts = json.loads(box.teapot("host", "list", "-f", "json").stdout)
    names = {h["name"] for h in hosts}
    assert {f"host-{i}" for i in range(box.hosts)} <= names
    for host in hosts:
        if host["name"].startswith("host-"):
            assert host["state"] in ("available", "provisioned", "provisioning", "deprovisioning")


def test_every_service_listens_on_loopback_only(box):
    pids = set()
    for pid in box.child_pids().values():
        try:
            proc = psutil.Process(pid)
        except psutil.NoSuchProcess:
            continue
        pids.add(pid)
        pids.update(child.pid for child in proc.children(recursive=True))
    listening = [c for c in psutil.net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN and c.pid in pids]
    assert listening, "no listening sockets found for the box's processes"
    for conn in listening:
        assert conn.laddr.ip == "127.0.0.1", f"pid {conn.pid} listens on {conn.laddr}"
    assert {c.laddr.port for c in listening} >= set(box.ports.values())
