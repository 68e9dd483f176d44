"""`teapot up` runs the box's top-of-rack switch: Open vSwitch in its own namespace, one host
namespace per emulated host on an access port of the idle VLAN, a trunk, and switches.yaml for the
conductor. Hosts and Ironic's ports say where each NIC is cabled. A switch left by a killed
`teapot up` is stopped by the next one; a stopped box leaves no namespace or daemon behind.
"""

from __future__ import annotations

import configparser
import json
import os
import signal
import stat
import subprocess
from pathlib import Path

import httpx
import pytest
import yaml

from teapot.net.fabric import STATE_FILE, Fabric
from tests.integration.conftest import TEAPOT, VENV_BIN, Box, _free_base, wait_for

HOSTS = ["host-0", "host-1"]


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    b = Box(tmp_path_factory.mktemp("switchbox"), hosts=len(HOSTS))
    try:
        b.start()
        yield b
    finally:
        b.stop()


def fabric_of(box: Box) -> Fabric:
    return Fabric.load(box.state_dir)


def namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]


def fabric_pids(fabric: Fabric) -> dict[str, int]:
    files = {"ovsdb-server": fabric.run_dir / "ovsdb-server.pid",
             "ovs-vswitchd": fabric.run_dir / "ovs-vswitchd.pid",
             "sshd": fabric.ssh_dir / "sshd.pid"}
    return {name: int(path.read_text().split()[0]) for name, path in files.items()}


def running(pid: int, binary: str) -> bool:
    """The process lives and is still `binary` (not a zombie, not another that took its PID)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except FileNotFoundError:
        return False
    return os.path.basename(cmdline).startswith(binary)


def processes_under(path: Path) -> list[int]:
    """Processes whose command line names `path` (the fabric's daemons all do)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(path).encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                pass
    return found


def ironic_links(box: Box) -> dict[str, dict]:
    """Boot MAC -> local_link_connection of every Ironic port.

    The conductor re-cables a node's port by making it again, so a MAC may be missing for a moment."""
    response = httpx.get(f"{box.url('ironic')}/v1/ports",
                         params={"fields": "address,local_link_connection"},
                         headers={"X-OpenStack-Ironic-API-Version": "1.80"}, timeout=10)
    response.raise_for_status()
    return {p["address"]: p["local_link_connection"] for p in response.json()["ports"]}


def hosts_by_name(admin) -> dict[str, dict]:
    return {h["name"]: h for h in admin.list_hosts()}


@pytest.fixture
def admin(box):
    from teapot.cli.client import TeapotClient

    return TeapotClient.from_cloud("teapot-admin", str(box.clouds))


def expected_interfaces(fabric: Fabric, host: dict) -> list[dict]:
    return [{"macAddress": host["spec"]["bootMACAddress"],
             "switchPort": {"switchID": fabric.mac, "portID": fabric.host(host["name"]).port}}]


def test_the_switch_runs_with_every_host_on_the_idle_vlan(box):
    fabric = fabric_of(box)
    assert fabric.dir == box.state_dir.resolve() / "fabric"
    for name, pid in fabric_pids(fabric).items():
        assert running(pid, name), name
    listed = namespaces()
    assert fabric.switch_namespace in listed
    assert sorted(fabric.hosts) == HOSTS
    ports = fabric.vsctl("list-ports", fabric.bridge).split()
    for name in HOSTS:
        host = fabric.host(name)
        assert host.namespace in listed
        assert host.port in ports
    # available hosts wait on the idle VLAN (the conductor may still be moving them there from
    # the cleaning VLAN)
    wait_for(lambda: {fabric.port_vlan(fabric.host(h).port) for h in HOSTS} == {
        fabric.vlans.idle}, timeout=60, what="every host's port on the idle VLAN")
    assert fabric.trunk is not None and fabric.trunk.port in ports
    assert fabric.trunk_vlans() == {fabric.vlans.guard}


def _components(box: Box) -> dict[str, dict]:
    proc = subprocess.run([TEAPOT, "status", "--state-dir", str(box.state_dir), "-f", "json"],
                          capture_output=True, text=True, check=True, env=box.env())
    return {c["component"]: c for c in json.loads(proc.stdout)["components"]}


@pytest.mark.parametrize("daemon", ["ovs-vswitchd", "ovsdb-server", "sshd"])
def test_the_switchs_daemons_are_components_started_again_when_they_die(box, daemon):
    """`teapot status` lists the switch's daemons; one killed is started again by the box's
    supervisor (by its pid file), with the switch as it was: ports, VLANs, the SSH the switch
    driver uses."""
    fabric = fabric_of(box)
    name = "switch-sshd" if daemon == "sshd" else daemon
    shown = _components(box)
    old = fabric.daemon_pid(daemon)
    assert shown[name]["state"] == "running" and shown[name]["detail"] == f"pid {old}"
    os.kill(old, signal.SIGKILL)
    again = wait_for(lambda: (c := _components(box)[name])["state"] == "running"
                     and c["detail"].startswith("pid ") and c["detail"] != f"pid {old}" and c,
                     timeout=30, interval=0.2, what=f"{daemon} running again")
    assert "1 exits" in again["detail"]
    assert fabric.daemon_pid(daemon) not in (None, old)
    assert f"{name} is not running; restarting it" in "\n".join(box.lines)
    assert _components(box)["box"]["state"] == "ok"
    ports = fabric.vsctl("list-ports", fabric.bridge).split()
    assert all(fabric.host(h).port in ports for h in HOSTS)
    assert {fabric.port_vlan(fabric.host(h).port) for h in HOSTS} == {fabric.vlans.idle}
    # the switch driver's SSH reaches the switch again
    ssh = fabric.ssh_dir
    got = subprocess.run(["ssh", "-i", str(ssh / "client_ed25519"), "-o",
                          f"UserKnownHostsFile={ssh / 'known_hosts'}", "-o", "BatchMode=yes",
                          "-p", str(fabric.ssh_port), "root@127.0.0.1", "ovs-vsctl", "br-exists",
                          fabric.bridge], capture_output=True, text=True, timeout=30)
    assert got.returncode == 0, got.stderr


@pytest.mark.parametrize("daemon", ["ovs-vswitchd", "sshd"])
def test_a_frozen_switch_daemon_is_shown_not_answering_until_it_answers_again(box, daemon):
    """A daemon that runs and does not answer (SIGSTOP) is no `running` component: the box is
    degraded naming it, and ok again once it answers."""
    fabric = fabric_of(box)
    name = "switch-sshd" if daemon == "sshd" else daemon
    pid = fabric.daemon_pid(daemon)
    os.kill(pid, signal.SIGSTOP)
    try:
        frozen = wait_for(lambda: (c := _components(box))[name]["state"] == "not answering" and c,
                          timeout=30, interval=0.5, what=f"{daemon} shown not answering")
        assert frozen[name]["detail"] == f"pid {pid} runs but does not answer (frozen or hung)"
        assert frozen["box"]["state"] == "degraded" and f"{name} not answering" in \
            frozen["box"]["detail"]
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for(lambda: _components(box)[name]["state"] == "running", timeout=30, interval=0.5,
             what=f"{daemon} answering again")
    assert fabric.daemon_pid(daemon) == pid  # shown, not restarted
    output = "\n".join(box.lines)
    assert f"{name} runs but does not answer" in output and f"{name} answers again" in output


def test_switches_file_reaches_the_switch_and_teapot_conf_points_at_it(box):
    fabric = fabric_of(box)
    path = box.state_dir / "etc" / "teapot" / "switches.yaml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    (switch,) = yaml.safe_load(path.read_text())
    assert switch == {"name": fabric.name, "macAddress": fabric.mac,
                      "device": fabric.device_config()}
    conf = configparser.ConfigParser()
    conf.read(box.config_file)
    network = conf["network"]
    assert network["enabled"] == "true"
    assert network["switches_file"] == str(path.resolve())
    assert int(network["idle_vlan"]) == fabric.vlans.idle
    assert int(network["provisioning_vlan"]) == fabric.vlans.provisioning
    assert int(network["cleaning_vlan"]) == fabric.vlans.cleaning
    assert network["vlan_ranges"] == "100:3000"
    assert network["physical_network"] == "physnet1"
    # the device options log in to the switch, its host key pinned, and see the hosts' ports
    device = switch["device"]
    result = subprocess.run(
        ["ssh", "-p", device["port"], "-i", device["key_file"], "-o", "BatchMode=yes",
         "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={device['alt_key_file']}",
         "-o", "GlobalKnownHostsFile=/dev/null", f"{device['username']}@{device['ip']}",
         "ovs-vsctl", "list-ports", device["ngs_ovs_bridge"]],
        capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == {fabric.host(h).port for h in HOSTS} | {
        fabric.trunk.port}


def test_nothing_of_the_switch_credentials_is_logged(box):
    device = yaml.safe_load((box.state_dir / "etc" / "teapot" / "switches.yaml").read_text())[0][
        "device"]
    key = Path(device["key_file"]).read_text()
    body = "".join(line for line in key.splitlines() if "PRIVATE KEY" not in line)
    secrets = [body[i:i + 40] for i in range(0, len(body), 40)] + [
        device["key_file"], device["alt_key_file"], f"127.0.0.1:{device['port']}",
        f"port {device['port']}"]
    logs = {p.name: p.read_text(errors="replace") for p in (box.state_dir / "logs").glob("*")}
    logs["teapot up output"] = "\n".join(box.lines)
    assert "switch tor running" in logs["teapot up output"]  # the switch is mentioned, plainly
    for where, text in logs.items():
        for secret in secrets:
            assert secret not in text, (where, secret)


def test_hosts_and_ironic_ports_say_where_each_nic_is_cabled(box, admin):
    fabric = fabric_of(box)
    hosts = hosts_by_name(admin)
    assert sorted(hosts) == HOSTS
    for name, host in hosts.items():
        assert host["spec"]["networkInterfaces"] == expected_interfaces(fabric, host), name
    links = ironic_links(box)
    for name, host in hosts.items():
        assert links[host["spec"]["bootMACAddress"]] == fabric.local_link_connection(name)


def test_a_second_up_after_a_killed_one_replaces_its_switch(box, admin):
    fabric = fabric_of(box)
    old_pids = fabric_pids(fabric)
    # A host enrolled before the box had a switch, or cabled elsewhere: the next run recables it.
    moved = hosts_by_name(admin)["host-1"]
    mac = moved["spec"]["bootMACAddress"]
    elsewhere = [{"macAddress": mac, "switchPort": {"switchID": fabric.mac, "portID": "moved1"}}]
    admin.update_host(moved["uuid"], {"spec": {"networkInterfaces": elsewhere}})
    # the conductor tells Ironic (an available node's port is made again with its new link)
    wait_for(lambda: ironic_links(box).get(mac, {}).get("port_id") == "moved1", timeout=60,
             what="Ironic's port to follow the host's networkInterfaces")

    box.process.send_signal(signal.SIGKILL)
    box.process.wait(30)
    for pid in box.child_pids().values():  # a harness kills the services by their pid files ...
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert (box.state_dir / "fabric" / STATE_FILE).exists()  # ... but leaves its switch
    for name, pid in old_pids.items():
        assert running(pid, name), f"{name} of the killed box should still run"

    box.start()
    said = "stopping the switch a former run left behind"
    log = (box.state_dir / "logs" / "box.log").read_text()
    assert said in box.lines or said in log, "\n".join(box.lines)
    for name, pid in old_pids.items():
        assert not running(pid, name), name
    fabric = fabric_of(box)
    new_pids = fabric_pids(fabric)
    for name, pid in new_pids.items():
        assert running(pid, name) and pid != old_pids[name], name
    listed = namespaces()
    for name in HOSTS:
        assert fabric.host(name).namespace in listed
    wait_for(lambda: {fabric.port_vlan(fabric.host(h).port) for h in HOSTS} == {
        fabric.vlans.idle}, timeout=60, what="every host's port on the idle VLAN")
    hosts = hosts_by_name(admin)
    for name, host in hosts.items():
        assert host["spec"]["networkInterfaces"] == expected_interfaces(fabric, host), name
    wait_for(lambda: ironic_links(box).get(mac) == fabric.local_link_connection("host-1"),
             timeout=60, what="Ironic's port back on the host's switch port")


def test_a_stopped_box_leaves_no_switch_behind(box):
    fabric = fabric_of(box)
    pids = fabric_pids(fabric)
    assert box.stop() == 0
    for name, pid in pids.items():
        assert not running(pid, name), name
    assert not [ns for ns in namespaces() if ns.startswith(fabric.prefix)]
    assert processes_under(fabric.dir) == []
    assert not (fabric.dir / STATE_FILE).exists()
    assert "stopped" in box.lines


def test_up_without_open_vswitch_names_the_package_and_starts_nothing(tmp_path):
    env = {**os.environ, "PATH": f"{VENV_BIN}:/usr/bin:/bin"}  # no /usr/sbin: no ovs-vswitchd
    result = subprocess.run([TEAPOT, "up", "--state-dir", str(tmp_path), "--hosts", "1",
                             "--port-base", str(_free_base())], capture_output=True, text=True, env=env,
                            timeout=120)
    assert result.returncode == 1
    assert "openvswitch-switch" in result.stdout and "--no-switch" in result.stdout, result.stdout
    assert "starting" not in result.stdout
    assert not (tmp_path / "fabric" / STATE_FILE).exists()
    assert not list((tmp_path / "run").glob("*.pid"))
