"""A box keeps serving while one of its components crash-loops, and keeps its state to its owner.

The box of this module is its own (killing its processes would disturb tests sharing the session
box), with a short cap on the wait between restarts so that ten kills in a row take seconds.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import time

import httpx
import pytest
from keystoneauth1 import session
from keystoneauth1.identity import v3
from magnumclient import exceptions as mexc
from magnumclient.v1 import client as mclient

from teapot import releases as versions

from .conftest import TEAPOT, Box, _alive, running, wait_for

KILLS = 10
MAX_DELAY = 3  # seconds, the box's cap on the wait between restarts


class _Box(Box):
    def env(self) -> dict[str, str]:
        return {**super().env(), "TEAPOT_MAX_RESTART_DELAY": str(MAX_DELAY)}


@pytest.fixture(scope="module")
def sup_box(tmp_path_factory):
    with running(_Box(tmp_path_factory.mktemp("supervision"), hosts=3)) as b:
        yield b


@pytest.fixture(scope="module")
def demo(sup_box):
    auth = sup_box.cloud_auth("teapot-demo")
    sess = session.Session(auth=v3.Password(
        auth_url=sup_box.url("keystone") + "/v3", username="demo", password=auth["password"],
        project_name="demo", user_domain_name="Default", project_domain_name="Default"))
    return mclient.Client(session=sess, service_type="container-infra", interface="public",
                          api_version="1.14")


@pytest.fixture(scope="module")
def template(demo):
    return demo.cluster_templates.create(
        name="k8s-sup", image_id="https://images.example/ubuntu-2404-k8s.raw", coe="kubernetes",
        flavor_id="baremetal", master_flavor_id="baremetal", external_network_id="public",
        labels={"image_checksum": "ab" * 32, "kube_tag": "v1.36.3"})


def _answers(box, service: str) -> bool:
    path = {"keystone": "/v3", "ironic": "/", "teapot-api": "/"}[service]
    try:
        return httpx.get(box.url(service) + path, timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def _live_pid(box, name: str, not_in: list[int]) -> int | None:
    pid = box.child_pids().get(name)
    return pid if pid is not None and pid not in not_in and _alive(pid) else None


def _status(box) -> dict[str, tuple[str, str]]:
    result = subprocess.run([TEAPOT, "status", "--state-dir", str(box.state_dir), "-f", "json"],
                            capture_output=True, text=True, env=box.env(), timeout=60)
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["kubernetes_versions"] == versions.built()
    return {r["component"]: (r["state"], r["detail"]) for r in shown["components"]}


def _kill_in_a_row(box, name: str, after_each, times: int = KILLS) -> list[int]:
    """SIGKILL the component `name` as soon as each new process of it is there, `times` times."""
    killed: list[int] = []
    for _ in range(times):
        pid = wait_for(lambda: _live_pid(box, name, killed), timeout=60, interval=0.05,
                       what=f"a new {name} process")
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)
        after_each(len(killed))
    return killed


def _db_view(box) -> tuple:
    """What the conductor writes: host states and claims, cluster states."""
    db = sqlite3.connect(f"file:{box.state_dir / 'data' / 'teapot' / 'teapot.sqlite'}?mode=ro",
                         uri=True, timeout=10)
    try:
        return (tuple(db.execute("SELECT name, state, cluster_uuid FROM hosts ORDER BY name")),
                tuple(db.execute("SELECT uuid, status FROM clusters ORDER BY uuid")))
    finally:
        db.close()


# The fault suite's short form (bench/faults.py runs every row): each process of the box frozen or
# killed by PID while a list load runs, some in the middle of a cluster create. Goals: no 500, the
# cluster complete once the process is back, nothing left behind once it is deleted. They come
# first: the crash loops below count exits within the supervisor's 5-minute window.
FAULT_ROWS = [
    # frozen past two of the conductor's Ironic timeouts (its refresh, then a host's call)
    ("ironic", "freeze", True, 14),
    ("ironic", "kill", False, 0),
    ("keystone", "freeze", False, 8),  # past the token check's 5 s timeout: 503s for new tokens
    ("keystone", "kill", False, 0),
    ("teapot-api", "kill", False, 0),
    ("teapot-conductor", "freeze", False, 4),
]  # the BMC emulator, the switch's daemons and a frozen API: bench/faults.py


@pytest.fixture(scope="module")
def fault_people(sup_box):
    from . import faults

    return faults.People(sup_box)


@pytest.mark.parametrize("process, mode, during_create, hold", FAULT_ROWS,
                         ids=[f"{p}-{m}{'-create' if c else ''}" for p, m, c, _ in FAULT_ROWS])
def test_a_fault_of_each_process_is_survived(sup_box, fault_people, template, process, mode,
                                             during_create, hold):
    from . import faults

    target = next(t for t in faults.BOX_TARGETS if t.name == process)
    operation = faults.ClusterCreate(fault_people, template.uuid, label=f"fault-{process}") \
        if during_create else None
    try:
        row = faults.run_row(sup_box, fault_people, target, mode, operation, hold=hold)
    finally:
        faults.thawed(sup_box)
    shown = faults.table([row]) + "\nreasons: " + " -> ".join(map(str, row.reasons))
    assert "500" not in row.answers.by_status, f"{shown}\n{row.answers.bodies_500}"
    assert not [k for k in row.answers.by_status if k.startswith("transport")], shown
    if (process, mode) != ("teapot-api", "kill"):
        assert not row.answers.by_status["refused"] + row.answers.by_status["cut"], shown
    assert row.answers.by_status["200"] > 10, shown
    assert not row.left, shown
    if during_create:
        assert row.end == "CREATE_COMPLETE", shown
    if process == "ironic" and during_create:
        assert any("waiting for Ironic: " in str(r) for r in row.reasons), shown
    if process == "keystone" and mode == "freeze":
        assert row.answers.by_status["503"] >= 1, shown  # new tokens, told to retry
    if process == "teapot-api" and mode == "kill":
        assert row.answers.by_status["refused"] >= 1, shown  # the fault happened
    if mode == "freeze" and process == "teapot-api":
        assert row.answers.longest >= hold - 1, shown


def test_the_box_serves_while_the_conductor_crash_loops(sup_box, demo, template):
    box = sup_box
    created = demo.clusters.create(name="through-kills", cluster_template_id=template.uuid,
                                   node_count=1, master_count=1)
    seen_restarting = []

    def after_each(n: int) -> None:
        for service in ("keystone", "ironic", "teapot-api"):
            assert _answers(box, service), f"{service} stopped answering after kill {n} of the conductor"
        if n >= 5 and not seen_restarting:  # the wait is a few seconds now: the status shows it
            status = _status(box)
            if status["teapot-conductor"][0] == "restarting":
                seen_restarting.append(status)

    killed = _kill_in_a_row(box, "teapot-conductor", after_each)

    assert seen_restarting, "`teapot status` never showed the conductor restarting"
    status = seen_restarting[0]
    assert status["box"][0] == "degraded"
    assert status["box"][1].startswith("teapot-conductor restarting (")
    assert "exits in 5 min, next try in" in status["teapot-conductor"][1]
    assert status["keystone"][0] == "running" and status["teapot-api"][0] == "running"

    # it comes back and stays, and the cluster created meanwhile completes
    pid = wait_for(lambda: _live_pid(box, "teapot-conductor", killed), timeout=60,
                   what="the conductor back")
    cluster = wait_for(lambda: (c := demo.clusters.get(created.uuid)).status in
                       ("CREATE_COMPLETE", "CREATE_FAILED") and c, timeout=420, what="cluster done")
    assert cluster.status == "CREATE_COMPLETE", cluster.status_reason
    assert _alive(pid)
    assert wait_for(lambda: _status(box)["box"][0] == "ok", timeout=30, what="the box ok again")
    assert box.process.poll() is None, "teapot up ended:\n" + "\n".join(box.lines)

    # the box said so, each time the wait grew, with the tail of the conductor's log
    output = "\n".join(box.lines)
    assert "teapot-conductor exited with code -9; restarting it" in output
    for exits, delay in ((2, 1), (3, 2), (4, MAX_DELAY)):
        assert (f"teapot-conductor exited with code -9; {exits} exits in 5 min, restarting it in "
                f"{delay:g} s; last lines of {box.state_dir / 'logs' / 'teapot-conductor.log'}:"
                ) in output
    assert "teapot-conductor is running again" in output
    assert "keeps exiting" not in output
    box_log = (box.state_dir / "logs" / "box.log").read_text()
    assert f"{KILLS} exits in 5 min, restarting it in {MAX_DELAY:g} s" in box_log


def test_the_conductor_reconciles_while_the_api_crash_loops(sup_box, demo, template):
    box = sup_box
    clusters = demo.clusters.list()
    assert clusters, "the cluster of the conductor test is needed"
    uuid = clusters[0].uuid
    conductor = box.child_pids()["teapot-conductor"]
    demo.clusters.delete(uuid)
    views_while_down = []

    def after_each(n: int) -> None:
        for service in ("keystone", "ironic"):
            assert _answers(box, service), f"{service} stopped answering after kill {n} of the API"
        assert _alive(conductor), "the conductor went down with the API"
        # look at the database while the API is down: what changes there is the conductor's doing
        while not _answers(box, "teapot-api"):
            views_while_down.append(_db_view(box))
            if _answers(box, "teapot-api"):
                views_while_down.pop()  # the API came back during the look: not proof
                break
            time.sleep(0.1)

    _kill_in_a_row(box, "teapot-api", after_each)

    assert len(set(views_while_down)) >= 2, (
        f"the conductor's state did not change while the API was down: {views_while_down[:1]}")
    wait_for(lambda: _answers(box, "teapot-api"), timeout=60, what="the API back")

    def gone():
        try:
            demo.clusters.get(uuid)
        except mexc.NotFound:
            return True
        return False

    wait_for(gone, timeout=180, what="the cluster deleted")
    hosts = json.loads(box.teapot("host", "list", "-f", "json").stdout)
    assert {h["state"] for h in hosts} == {"available"}
    assert box.child_pids()["teapot-conductor"] == conductor
    assert box.process.poll() is None


def test_a_worker_that_fails_is_replaced_by_auto_healing(sup_box, fault_people, template):
    """A cluster asking for auto-healing (Magnum's label): its worker's Ironic node vanishes (a
    host that died for good); the cluster replaces it with the spare, as an update, and says so;
    the dead host leaves the cluster and its tenant network. (After the crash loops: they need
    every host; the dead one stays out of the pool.)"""
    from . import faults

    people = fault_people
    with people.client() as client:
        made = client.post("/v1/clusters", json={
            "name": "heals", "cluster_template_id": template.uuid, "master_count": 1,
            "node_count": 1, "labels": {"auto_healing_enabled": "true"}, "merge_labels": True})
        assert made.status_code == 202, made.text
        uuid = made.json()["uuid"]
        cluster = faults.ClusterCreate(people, template.uuid)
        cluster.uuid = uuid
        assert cluster.end() == "CREATE_COMPLETE", cluster.reasons

        def held() -> dict[str, dict]:
            with people.client("admin") as admin:
                hosts = admin.get("/v1/hosts").json()["hosts"]
            return {h["consumer"]["nodegroup"]: h for h in hosts
                    if h["consumer"] and h["consumer"]["uuid"] == uuid}

        before = held()
        dead = before["default-worker"]
        node = dead["status"]["provisioning"]["ID"]
        ironic = httpx.Client(base_url=sup_box.url("ironic"),
                              headers={"X-OpenStack-Ironic-API-Version": "1.80"}, timeout=30)
        with ironic:
            assert ironic.put(f"/v1/nodes/{node}/maintenance",
                              json={"reason": "died"}).status_code == 202
            gone = ironic.delete(f"/v1/nodes/{node}")
            assert gone.status_code == 204, gone.text

        healing = wait_for(lambda: (c := client.get(f"/v1/clusters/{uuid}").json())["status"]
                           == "UPDATE_IN_PROGRESS" and c, timeout=180, what="auto-healing")
        assert healing["status_reason"].startswith(
            f"auto-healing (host {dead['name']} failed: the Ironic node is gone): "), healing
        assert cluster.end() == "UPDATE_COMPLETE", cluster.reasons
        done = client.get(f"/v1/clusters/{uuid}").json()
        after = held()
        assert after["default-master"]["name"] == before["default-master"]["name"]
        assert after["default-worker"]["name"] != dead["name"]
        assert done["health_status"] == "HEALTHY"
        assert done["health_status_reason"] == {
            "auto_healing": f"replaced: host {dead['name']} failed: the Ironic node is gone"}

        def dead_now() -> dict:
            with people.client("admin") as admin:
                return admin.get(f"/v1/hosts/{dead['name']}").json()

        # out of the cluster, and off its tenant VLAN; it stays out of the pool (its node is gone)
        shown = wait_for(lambda: (h := dead_now())["network"]["vlan"] != dead["network"]["vlan"]
                         and h, timeout=60, what="the dead host off the tenant VLAN")
        assert shown["consumer"] is None and shown["network"]["address"] is None
        assert shown["state"] != "available"
        cluster.undo()


def test_nothing_in_the_state_dir_is_readable_by_others(sup_box):
    box = sup_box
    # every process has been running for a while and made its files (databases, logs, keys)
    assert (box.state_dir / "data" / "ironic").is_dir()
    checked, wide = 0, []
    for root, dirs, files in os.walk(box.state_dir):
        for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
            st = os.lstat(name)
            if stat.S_ISLNK(st.st_mode):
                continue
            checked += 1
            if st.st_mode & 0o077:
                wide.append(f"{name} {oct(stat.S_IMODE(st.st_mode))}")
    assert checked > 20
    assert not wide, "readable by others:\n" + "\n".join(wide)
    ironic_db = list((box.state_dir / "data").rglob("*.sqlite"))
    assert ironic_db, "no SQLite database found under data/"


def test_sigterm_during_a_backoff_stops_every_child(sup_box):
    box = sup_box
    log = box.state_dir / "logs" / "teapot-conductor.log"
    # four exits in a row: the next start waits the longest (MAX_DELAY)
    _kill_in_a_row(box, "teapot-conductor", lambda n: None, times=4)
    wait_for(lambda: json.loads((box.state_dir / "run" / "status.json").read_text())
             ["components"]["teapot-conductor"]["state"] == "restarting",
             timeout=30, interval=0.05, what="the conductor backed off")
    starts = log.read_text().count("--- starting teapot-conductor")
    children = box.child_pids()
    box.process.send_signal(signal.SIGTERM)
    assert box.process.wait(60) == 0
    assert log.read_text().count("--- starting teapot-conductor") == starts, \
        "the conductor was started again: the stop did not come during its backoff"
    assert [line for line in box.lines if "teapot-conductor" in line][-1].endswith(
        f"restarting it in {MAX_DELAY:g} s")
    assert box.lines[-2:] == ["stopping", "stopped"]
    assert not [name for name, pid in children.items() if _alive(pid)]
    assert not list((box.state_dir / "run").glob("*.pid"))
    assert _status(box)["box"][0] == "stopped"
