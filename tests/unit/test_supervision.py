"""The supervisor with tiny real processes: backoff schedule, a crash loop beside a steady service,
the status file and `teapot status`; the state directory kept to its owner."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time

import pytest

from teapot.deploy.box import Box
from teapot.deploy.secrets import SecretStore, private_dir
from teapot.deploy.service import Readiness, Service
from teapot.deploy.supervisor import Backoff, Supervisor, read_status
from teapot.deploy.targets.local import DeployError, LocalContext, LocalTarget


def _py(code: str):
    return lambda ctx: [sys.executable, "-c", code]


def _service(name: str, code: str, port: int | None = None, readiness: Readiness | None = None):
    return Service(name=name, description="", package="", image="", command=_py(code), port=port,
                   readiness=readiness)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _target(tmp_path, ports=None) -> LocalTarget:
    return LocalTarget(LocalContext(tmp_path, ports or {}, SecretStore(tmp_path / "secrets.yaml")))


def _until(predicate, supervisor: Supervisor, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        supervisor.step()
        if result := predicate():
            return result
        time.sleep(0.02)
    raise AssertionError("condition not reached")


# -- the schedule ----------------------------------------------------------------------------------
def test_backoff_restarts_at_once_then_doubles_up_to_the_cap():
    backoff = Backoff(base=1.0, cap=60.0)
    assert [backoff.delay(n) for n in range(1, 11)] == [0, 1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert backoff.delay(0) == 0
    assert backoff.delay(10_000) == 60  # no overflow however long the loop


def test_backoff_base_and_cap_are_the_callers():
    assert [Backoff(base=0.5, cap=3.0).delay(n) for n in range(1, 7)] == [0, 0.5, 1, 2, 3, 3]


# -- a crash loop beside a steady service ---------------------------------------------------------
def test_a_crash_looping_service_is_backed_off_while_the_others_keep_running(tmp_path):
    target = _target(tmp_path)
    steady = _service("steady", "import time; time.sleep(120)")
    flaky = _service("flaky", "print('cannot reach the database'); raise SystemExit(3)")
    lines: list[str] = []
    for service in (steady, flaky):
        target.start(service)
    steady_pid = target.running["steady"].process.pid
    supervisor = Supervisor(target, [steady, flaky], lines.append, Backoff(base=0.2, cap=0.8))
    try:
        supervisor.write_status()
        _until(lambda: len(supervisor.components["flaky"].exits) >= 6, supervisor)
        flaky_state = supervisor.components["flaky"]
        assert flaky_state.delay == 0.8 and flaky_state.last_code == 3
        assert target.running["steady"].process.pid == steady_pid
        assert target.running["steady"].process.poll() is None
        assert lines[0] == "flaky exited with code 3; restarting it"
        grown = [ln for ln in lines if "restarting it in" in ln and "last lines of" in ln]
        # 0.2, 0.4, 0.8: the backoff grew three times, each time with the log's tail
        assert len(grown) == 3, lines
        assert all("cannot reach the database" in ln for ln in grown)
        assert lines[1].startswith("flaky exited with code 3; 2 exits in 5 min, restarting it in 0.2 s")
        assert "flaky exited with code 3; 6 exits in 5 min, restarting it in 0.8 s" in lines

        # what `teapot status` shows while it is restarting
        _until(lambda: supervisor.components["flaky"].state == "restarting", supervisor)
        rows = {name: (state, detail) for name, state, detail in read_status(tmp_path)}
        assert rows["box"][0] == "degraded"
        assert rows["box"][1].startswith("flaky restarting (")
        assert rows["steady"] == ("running", f"pid {steady_pid}")
        assert rows["flaky"][0] == "restarting"
        assert "exits in 5 min, next try in" in rows["flaky"][1]
        assert "last exit code 3" in rows["flaky"][1]
        status = json.loads((tmp_path / "run" / "status.json").read_text())
        assert status["components"]["flaky"]["pid"] is None
        assert stat.S_IMODE((tmp_path / "run" / "status.json").stat().st_mode) == 0o600
    finally:
        target.stop_all()
        supervisor.close()
    rows = read_status(tmp_path)
    assert rows[0][:2] == ("box", "stopped")
    assert {state for _, state, _ in rows[1:]} == {"stopped"}


def test_a_service_slow_to_get_ready_does_not_hold_up_the_others(tmp_path):
    port = _free_port()
    target = _target(tmp_path, {"slow": port})
    # never answers on its port: stays `starting` until its start timeout
    slow = _service("slow", "import time; time.sleep(120)", port=port, readiness=Readiness("/"))
    flaky = _service("flaky", "raise SystemExit(1)")
    target.start(flaky)
    supervisor = Supervisor(target, [slow, flaky], lambda line: None, Backoff(base=0.05, cap=0.1),
                            start_timeout=60)
    supervisor.components["slow"].state = "restarting"  # as after an exit: due now
    try:
        supervisor.step()
        assert supervisor.components["slow"].state == "starting"
        restarts_before = len(supervisor.components["flaky"].exits)
        _until(lambda: len(supervisor.components["flaky"].exits) >= restarts_before + 5, supervisor)
        assert supervisor.components["slow"].state == "starting"
        assert target.running["slow"].process.poll() is None
    finally:
        target.stop_all()
        supervisor.close()


def test_a_restarted_server_is_running_once_it_answers(tmp_path):
    port = _free_port()
    target = _target(tmp_path, {"web": port})
    server = (f"import http.server; http.server.HTTPServer(('127.0.0.1', {port}), "
              f"http.server.SimpleHTTPRequestHandler).serve_forever()")
    web = _service("web", server, port=port, readiness=Readiness("/"))
    target.launch(web)
    lines: list[str] = []
    supervisor = Supervisor(target, [web], lines.append, Backoff(base=0.1, cap=0.2))
    try:
        for _ in range(3):
            first = target.running["web"].process.pid
            os.kill(first, 9)
            _until(lambda f=first: supervisor.components["web"].state == "running"
                   and target.running.get("web") and target.running["web"].process.pid != f,
                   supervisor)
        assert lines[0] == "web exited with code -9; restarting it"
        assert lines[1].startswith("web exited with code -9; 2 exits in 5 min, restarting it in 0.1 s")
        assert lines[2] == "web is running again"
        assert lines[3].startswith("web exited with code -9; 3 exits in 5 min, restarting it in 0.2 s")
        assert (tmp_path / "run" / "web.pid").read_text() == str(target.running["web"].process.pid)
    finally:
        target.stop_all()
        supervisor.close()


def test_no_status_file_is_a_clear_error(tmp_path):
    with pytest.raises(DeployError, match="`teapot up` is not running with this state directory"):
        read_status(tmp_path)


def test_status_of_a_box_whose_teapot_up_died_is_stopped(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "status.json").write_text(json.dumps({
        "pid": gone.pid, "window": 300, "components": {
            "keystone": {"state": "running", "pid": 1, "exits": [], "last_code": None}}}))
    rows = read_status(tmp_path)
    assert rows[0] == ("box", "stopped", f"teapot up (pid {gone.pid}) has stopped")
    assert rows[1][:2] == ("keystone", "stopped")


# -- the state directory is its owner's ------------------------------------------------------------
def test_private_dir_tightens_files_and_directories_but_not_links(tmp_path):
    state = tmp_path / "state"
    (state / "data").mkdir(parents=True)
    (state / "data" / "ironic.sqlite").write_text("bmc passwords")
    os.chmod(state, 0o755)
    os.chmod(state / "data", 0o775)
    os.chmod(state / "data" / "ironic.sqlite", 0o644)
    (state / "private").write_text("x")
    os.chmod(state / "private", 0o600)
    outside = tmp_path / "outside"
    outside.write_text("not ours")
    os.chmod(outside, 0o644)
    (state / "link").symlink_to(outside)
    assert private_dir(state) == 3
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "data").stat().st_mode) == 0o700
    assert stat.S_IMODE((state / "data" / "ironic.sqlite").stat().st_mode) == 0o600
    assert stat.S_IMODE(outside.stat().st_mode) == 0o644
    assert private_dir(state) == 0


def test_a_new_state_dir_is_private(tmp_path):
    assert private_dir(tmp_path / "new" / "state") == 0
    assert stat.S_IMODE((tmp_path / "new" / "state").stat().st_mode) == 0o700


def test_a_box_on_a_wide_open_state_dir_tightens_it_and_says_so(tmp_path):
    state = tmp_path / "box"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)
    (state / "clouds.yaml").write_text("clouds: {}\n")
    os.chmod(state / "clouds.yaml", 0o644)
    lines: list[str] = []
    Box(state, hosts=0, say=lines.append)
    assert lines == [f"made 2 files and directories in {state} readable by their owner only "
                     "(the state directory holds passwords)"]
    for path in [state, *state.rglob("*")]:
        assert not path.stat().st_mode & 0o077, f"{path} is {oct(path.stat().st_mode)}"


def test_services_and_their_steps_create_owner_only_files(tmp_path):
    target = _target(tmp_path)
    made = tmp_path / "data" / "made-by-service.sqlite"
    service = _service("maker", f"open({str(made)!r}, 'w').write('x'); import time; time.sleep(30)")
    target.render(service)
    running = target.start(service)
    try:
        deadline = time.monotonic() + 20
        while not made.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stat.S_IMODE(made.stat().st_mode) == 0o600
        assert stat.S_IMODE(running.log.stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "run" / "maker.pid").stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "data" / "maker").stat().st_mode) == 0o700
    finally:
        target.stop_all()


def test_stop_all_during_a_backoff_stops_the_rest(tmp_path):
    target = _target(tmp_path)
    steady = _service("steady", "import time; time.sleep(120)")
    flaky = _service("flaky", "raise SystemExit(2)")
    target.start(steady)
    target.start(flaky)
    supervisor = Supervisor(target, [steady, flaky], lambda line: None, Backoff(base=30, cap=60))
    stop = threading.Event()
    loop = threading.Thread(target=supervisor.run, args=(stop.wait,), kwargs={"tick": 0.05})
    loop.start()
    try:
        deadline = time.monotonic() + 20
        while len(supervisor.components["flaky"].exits) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert supervisor.components["flaky"].state == "restarting"  # 30 s to wait
        steady_process = target.running["steady"].process
    finally:
        stop.set()
        loop.join(10)
        target.stop_all()
        supervisor.close()
    assert not loop.is_alive()
    assert steady_process.poll() is not None
    assert not list((tmp_path / "run").glob("*.pid"))
