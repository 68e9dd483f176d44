"""The local target with tiny real processes: bootstrap, readiness, failures with log tails, stop."""

from __future__ import annotations

import socket
import sys
import time

import pytest

from teapot.deploy.secrets import SecretStore
from teapot.deploy.service import Readiness, Service, Step
from teapot.deploy.targets.local import DeployError, LocalContext, LocalTarget


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _target(tmp_path, port: int = 0) -> LocalTarget:
    ctx = LocalContext(tmp_path, {"web": port or _free_port()}, SecretStore(tmp_path / "secrets.yaml"))
    return LocalTarget(ctx)


def _py(code: str):
    return lambda ctx: [sys.executable, "-c", code]


def test_failing_bootstrap_step_names_the_step_and_shows_the_log(tmp_path):
    service = Service(name="web", description="", package="", image="", command=_py("pass"),
                      bootstrap=(Step("migrate", _py("print('schema is broken'); raise SystemExit(3)")),))
    with pytest.raises(DeployError) as err:
        _target(tmp_path).up(service)
    assert "bootstrap step 'migrate' failed (exit 3)" in str(err.value)
    assert "schema is broken" in str(err.value)


def test_a_service_that_dies_while_starting_is_reported_with_its_log(tmp_path):
    service = Service(name="web", description="", package="", image="", port=1,
                      command=_py("import sys; print('cannot open database'); sys.exit(7)"),
                      readiness=Readiness("/"))
    with pytest.raises(DeployError) as err:
        _target(tmp_path).up(service)
    assert "web exited with code 7" in str(err.value)
    assert "cannot open database" in str(err.value)


def test_a_taken_port_is_refused_before_starting(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        service = Service(name="web", description="", package="", image="", port=port,
                          command=_py("pass"))
        with pytest.raises(DeployError, match=f"port 127.0.0.1:{port} is already in use"):
            _target(tmp_path, port).start(service)


def test_once_steps_run_once_and_others_every_time(tmp_path):
    counter = tmp_path / "count"
    code = f"open({str(counter)!r}, 'a').write('x')"
    service = Service(name="web", description="", package="", image="", command=_py("pass"),
                      bootstrap=(Step("init", _py(code), once=True), Step("sync", _py(code))))
    target = _target(tmp_path)
    target.bootstrap(service)
    target.bootstrap(service)
    assert counter.read_text() == "xxx"


def test_ready_service_is_served_and_stop_all_ends_its_process_group(tmp_path):
    port = _free_port()
    server = (f"import http.server, subprocess, sys; "
              f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
              f"http.server.HTTPServer(('127.0.0.1', {port}), "
              f"http.server.SimpleHTTPRequestHandler).serve_forever()")
    service = Service(name="web", description="", package="", image="", port=port,
                      command=_py(server), readiness=Readiness("/"))
    target = _target(tmp_path, port)
    running = target.up(service)
    pid = running.process.pid
    assert (tmp_path / "run" / "web.pid").read_text() == str(pid)
    target.stop_all()
    assert running.process.poll() is not None
    assert not (tmp_path / "run" / "web.pid").exists()
    time.sleep(0.2)
    import psutil

    leftovers = [p for p in psutil.process_iter(["pid", "status"])
                 if _pgid(p.pid) == pid and p.info["status"] != psutil.STATUS_ZOMBIE]
    assert not leftovers, "a child of the service outlived stop_all"


def _pgid(pid: int) -> int | None:
    import os

    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def test_steps_run_in_waves_with_independent_steps_together():
    from teapot.deploy.service import Step, step_waves

    def argv(ctx):
        return ["true"]

    steps = [Step("schema", argv), Step("keys", argv, after=()), Step("more-keys", argv, after=()),
             Step("bootstrap", argv, after=("schema",)), Step("last", argv)]
    assert [[s.name for s in w] for w in step_waves(steps)] == [
        ["schema", "keys", "more-keys"], ["bootstrap"], ["last"]]
    # by default each step follows the one before it
    plain = [Step("a", argv), Step("b", argv), Step("c", argv)]
    assert [[s.name for s in w] for w in step_waves(plain)] == [["a"], ["b"], ["c"]]
    with pytest.raises(ValueError, match="not earlier steps"):
        step_waves([Step("a", argv, after=("b",)), Step("b", argv)])


def test_a_wave_runs_its_steps_at_once_and_logs_each_whole(tmp_path):
    # Each step waits for the other's file: they can only both finish if they run at the same time.
    def meet(mine: str, other: str) -> str:
        return (f"import pathlib, time; pathlib.Path({str(tmp_path / mine)!r}).touch(); "
                f"end = time.time() + 20\n"
                f"while not pathlib.Path({str(tmp_path / other)!r}).exists() and time.time() < end: "
                f"time.sleep(0.05)\n"
                f"assert pathlib.Path({str(tmp_path / other)!r}).exists(); print({mine!r} * 3)")

    service = Service(name="web", description="", package="", image="", command=_py("pass"),
                      bootstrap=(Step("a", _py(meet("a", "b")), after=()),
                                 Step("b", _py(meet("b", "a")), after=()),
                                 Step("after", _py("print('last')"), after=("a", "b"))))
    target = _target(tmp_path)
    target.bootstrap(service)
    log = target.ctx.log_path("web").read_text()
    assert "--- bootstrap step a\naaa\n" in log and "--- bootstrap step b\nbbb\n" in log
    assert log.endswith("--- bootstrap step after\nlast\n")
