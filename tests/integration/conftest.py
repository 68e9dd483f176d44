"""A real Teapot box for integration tests: `teapot up` as a subprocess on free loopback ports.

The box's processes are stopped by PID when the fixture ends, also when a test failed: first
`teapot up` itself (SIGTERM, which stops its children), then any child it left, from its pid files,
and the box's switch (its daemons and namespaces), from what the switch recorded.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

VENV_BIN = Path(sys.executable).parent
TEAPOT = str(VENV_BIN / "teapot")
SERVICES = ("keystone", "ironic", "sushy-emulator", "teapot-api", "teapot-conductor")


# Boxes listen below Linux's ephemeral range (32768 and up): a port there may be taken, while a box
# starts, by a client connection of one of its services started earlier.
PORTS_FROM, PORTS_TO = 20000, 32768


def _free_base(count: int = len(SERVICES)) -> int:
    """The first of `count` consecutive free loopback ports."""
    step = 10 * -(-count // 10)
    for _ in range(200):
        base = random.randrange(PORTS_FROM, PORTS_TO - count, step)
        if all(_port_free(base + i) for i in range(count)):
            return base
    raise RuntimeError("no free port range")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_fabric(state_dir: Path) -> bool:
    """Stop the box's switch if one is still recorded (teapot up stops it itself when it can)."""
    from teapot.net.fabric import STATE_FILE, Fabric

    if not (Path(state_dir) / "fabric" / STATE_FILE).exists():
        return False
    Fabric.load(state_dir).stop()
    return True


class Box:
    def __init__(self, state_dir: Path, hosts: int, port_base: int | None = None,
                 args: tuple[str, ...] = ()):
        self.state_dir = state_dir
        self.hosts = hosts
        self.port_base = port_base or _free_base()
        self.args = tuple(args)  # more options of `teapot up`, e.g. ("--no-switch",)
        self.process: subprocess.Popen | None = None
        self.lines: list[str] = []

    @property
    def clouds(self) -> Path:
        return self.state_dir / "clouds.yaml"

    @property
    def ports(self) -> dict[str, int]:
        return {name: self.port_base + i for i, name in enumerate(SERVICES)}

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    @property
    def config_file(self) -> Path:
        return self.state_dir / "etc" / "teapot" / "teapot.conf"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["OS_CLIENT_CONFIG_FILE"] = str(self.clouds)
        env.pop("OS_CLOUD", None)
        env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
        return env

    def start(self, timeout: float = 300.0) -> str:
        self.lines = []
        self.process = subprocess.Popen(
            [TEAPOT, "up", "--state-dir", str(self.state_dir), "--hosts", str(self.hosts),
             "--port-base", str(self.port_base), *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env(),
            start_new_session=True,
        )
        ready = threading.Event()

        def read():
            for line in self.process.stdout:
                self.lines.append(line.rstrip("\n"))
                if line.startswith(("ready:", "error:")):
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(timeout):
            self.stop()
            raise AssertionError("teapot up was not ready in time:\n" + "\n".join(self.lines))
        last = next((ln for ln in reversed(self.lines) if ln.startswith(("ready:", "error:"))), "")
        if not last.startswith("ready:"):
            self.stop()
            raise AssertionError("teapot up failed:\n" + "\n".join(self.lines))
        return last

    def child_pids(self) -> dict[str, int]:
        pids = {}
        for pidfile in (self.state_dir / "run").glob("*.pid"):
            try:
                pids[pidfile.stem] = int(pidfile.read_text())
            except (ValueError, FileNotFoundError):
                pass
        return pids

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM `teapot up` and wait; then kill by PID whatever it left behind."""
        children = self.child_pids()
        code = None
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                code = self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                code = self.process.wait(10)
        elif self.process is not None:
            code = self.process.returncode
        for pid in children.values():
            if _alive(pid):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        stop_fabric(self.state_dir)
        return code

    def teapot(self, *args: str, cloud: str = "teapot-admin", check: bool = True,
               input: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run([TEAPOT, "--os-cloud", cloud, *args], capture_output=True, text=True,
                                env={**self.env(), **(env or {})}, input=input, timeout=300)
        if check and result.returncode != 0:
            raise AssertionError(f"teapot {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def cloud_auth(self, cloud: str) -> dict:
        return yaml.safe_load(self.clouds.read_text())["clouds"][cloud]["auth"]

    def secret(self, name: str) -> str:
        return yaml.safe_load((self.state_dir / "secrets.yaml").read_text())[name]


@contextlib.contextmanager
def running(box: Box, **start):
    """`box` started for the block, and stopped after it (also when the block fails)."""
    box.start(**start)
    try:
        yield box
    finally:
        box.stop()


@pytest.fixture(scope="session")
def box(tmp_path_factory):
    """One box for the session, with 6 emulated hosts."""
    with running(Box(tmp_path_factory.mktemp("box"), hosts=6)) as b:
        yield b


# The five services of a box, MariaDB, Neutron, Octavia, the nine storage ports and the Ceph
# daemons' range (which starts at the last of those).
STORAGE_BOX_PORTS = 8 + 9 + 29


@pytest.fixture(scope="session")
def storage_box(tmp_path_factory):
    """One box with `--storage` (Ceph, Manila, Cinder, Barbican) for the session, 2 hosts, no
    switch. Its modules share it; one of them restarts it and leaves it running."""
    b = Box(tmp_path_factory.mktemp("storage-box"), hosts=2, port_base=_free_base(STORAGE_BOX_PORTS),
            args=("--storage", "--no-switch"))
    with running(b, timeout=900):
        yield b


@pytest.fixture(scope="session")
def tenant_clusters(storage_box):
    """{"demo": TenantCluster, "other": TenantCluster}: one cluster asking for every kind of
    storage in each of two projects on the storage box, CREATE_COMPLETE, with its stored
    credentials; also "people": sessions of demo, other, viewer (reader of demo) and admin."""
    from . import storage

    people = storage.people(storage_box)
    made = {who: storage.create_cluster(storage_box, people[who], f"tenant-{who}",
                                        storage.ALL_STORAGE) for who in ("demo", "other")}
    out: dict = {"people": people}
    for who, uuid in made.items():
        info = storage.settled(storage_box, people[who], uuid)
        assert info["storage"]["credential"] == "ready", info["storage"]
        out[who] = storage.TenantCluster(uuid, people[who].get_project_id(), people[who],
                                         storage.stored_credentials(storage_box, uuid), info)
    return out


@pytest.fixture
def admin(box):
    from teapot.cli.client import TeapotClient

    return TeapotClient.from_cloud("teapot-admin", str(box.clouds))


@pytest.fixture
def demo(box):
    from teapot.cli.client import TeapotClient

    return TeapotClient.from_cloud("teapot-demo", str(box.clouds))


def wait_for(predicate, timeout: float = 120.0, interval: float = 0.5, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")
