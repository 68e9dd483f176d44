"""Shared helpers for the benchmarks: `teapot up` as a subprocess on free loopback ports.

Built on tests/integration/conftest.py's box. The box is stopped by PID: first `teapot up` itself
(SIGTERM, which stops its children), then whatever child it left, from its pid files.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.conftest import (  # noqa: E402
    PORTS_FROM,
    PORTS_TO,
    SERVICES,
    TEAPOT,
    stop_fabric,
)
from tests.integration.conftest import Box as TestBox  # noqa: E402
from tests.integration.conftest import _alive as alive

READY_RE = re.compile(
    r"ready: (?P<hosts>\d+) hosts available in (?P<total>[\d.]+) s "
    r"\(services (?P<services>[\d.]+) s, hosts (?P<host_s>[\d.]+) s\)"
)


def port_free(port: int, reuse: bool = False) -> bool:
    """Whether 127.0.0.1:port can be bound; `reuse` ignores connections in TIME_WAIT, as servers
    (and teapot up's own check) do."""
    with socket.socket() as s:
        if reuse:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_base(count: int = len(SERVICES)) -> int:
    for _ in range(200):
        base = random.randrange(PORTS_FROM, PORTS_TO - count, 10)
        if all(port_free(base + i) for i in range(count)):
            return base
    raise RuntimeError("no free port range")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


@contextmanager
def state_dir(keep: bool, prefix: str):
    """A temporary state directory, removed at the end unless `keep`."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        if keep:
            print(f"state dir kept: {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


class RssSampler:
    """Peak of the summed RSS of a process and all its descendants, sampled in a thread.

    A sum of RSS counts pages shared between processes (forked workers) more than once: an upper
    bound, good for comparing runs with each other.
    """

    def __init__(self, pid: int, interval: float = 0.25):
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self.processes_at_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def sample(self) -> tuple[int, int]:
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0, 0
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total, len(procs)

    def _run(self) -> None:
        while not self._stop.is_set():
            total, count = self.sample()
            if total > self.peak:
                self.peak, self.processes_at_peak = total, count
            self._stop.wait(self.interval)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(5)
        return self.peak


def _busy_cpu() -> float:
    """CPU-seconds the whole machine has spent busy since boot."""
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


def tree_cpu(pid: int | None) -> float:
    """CPU-seconds of a process, its live descendants and the children it has reaped."""
    if pid is None:
        return 0.0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
        total = root.cpu_times().children_user + root.cpu_times().children_system
    except psutil.Error:
        return 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def _self_cpu() -> float:
    t = os.times()
    return t.user + t.system  # this process only; its reaped children are the box


def box_cpu(box: Box) -> dict[str, float]:
    """CPU-seconds so far of each of the box's services (with their workers) and of `teapot up`
    itself (with the bootstrap steps it ran)."""
    if box.process is None:
        return {}
    out = {}
    try:
        t = psutil.Process(box.process.pid).cpu_times()
        out["teapot up"] = t.user + t.system + t.children_user + t.children_system
    except psutil.Error:
        out["teapot up"] = 0.0
    for name, pid in box.child_pids().items():
        out[name] = tree_cpu(pid)
    return out


class CpuMeter:
    """Splits the machine's busy CPU time over an interval into the box's (per service), this
    benchmark's own and everybody else's (other engineers' tests, say): a noise indicator printed
    beside the timings."""

    def __init__(self, box: Box):
        self.box = box
        self.start = time.monotonic()
        self.busy = _busy_cpu()
        self.self_cpu = _self_cpu()
        self.box_cpu = box_cpu(box)

    def read(self) -> dict:
        seconds = time.monotonic() - self.start
        busy = _busy_cpu() - self.busy
        services = {name: cpu - self.box_cpu.get(name, 0.0)
                    for name, cpu in box_cpu(self.box).items()}
        box = sum(services.values())
        own = _self_cpu() - self.self_cpu
        other = max(0.0, busy - box - own)
        return {"seconds": seconds, "busy": busy, "box": box, "services": services, "own": own,
                "other": other, "cores": psutil.cpu_count() or 1}


def describe_cpu(c: dict) -> str:
    parts = ", ".join(f"{name} {cpu:.1f}" for name, cpu in
                      sorted(c["services"].items(), key=lambda kv: -kv[1]))
    return (f"CPU over {c['seconds']:.1f} s on {c['cores']} cores: box {c['box']:.1f} CPU-s "
            f"({parts}); benchmark {c['own']:.1f}; other processes {c['other']:.1f} "
            f"(avg {c['other'] / max(c['seconds'], 1e-9):.2f} cores)")


def quiet_check(seconds: float = 2.0) -> float:
    """Average number of busy cores over a moment, before starting anything."""
    before = _busy_cpu()
    time.sleep(seconds)
    return (_busy_cpu() - before) / seconds


class Box(TestBox):
    """The integration tests' box, with what benchmarks add: timings, RSS, CPU, echoed output."""

    def __init__(self, state_dir: Path, hosts: int, port_base: int | None = None,
                 echo: bool = False, args: tuple[str, ...] = ()):
        super().__init__(state_dir, hosts, port_base or free_base(), args)
        self.echo = echo
        self.rss: RssSampler | None = None
        self.started_at = 0.0
        self.ready_at = 0.0

    def start(self, timeout: float = 900.0, sample_rss: bool = True) -> dict:
        """Start `teapot up`; wait for its ready line. Returns the parsed ready line with `wall`,
        the seconds from starting the process to reading that line."""
        for port in self.ports.values():
            if not port_free(port, reuse=True):
                raise RuntimeError(f"port 127.0.0.1:{port} is in use; choose another --port-base")
        self.lines = []
        ready = threading.Event()
        self.process = None
        meter = CpuMeter(self)  # from zero: nothing runs yet
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            [TEAPOT, "up", "--state-dir", str(self.state_dir), "--hosts", str(self.hosts),
             "--port-base", str(self.port_base), *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env(),
            start_new_session=True,
        )
        if sample_rss:
            self.rss = RssSampler(self.process.pid).start()

        def read():
            for line in self.process.stdout:
                line = line.rstrip("\n")
                if line.startswith("ready:"):
                    self.ready_at = time.monotonic()
                self.lines.append(line)
                if self.echo:
                    print(f"    | {line}", flush=True)
                if line.startswith(("ready:", "error:")):
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(timeout):
            raise RuntimeError(f"teapot up was not ready after {timeout:.0f} s:\n"
                               + "\n".join(self.lines[-30:]))
        cpu = meter.read()
        last = next((ln for ln in reversed(self.lines) if ln.startswith(("ready:", "error:"))), "")
        match = READY_RE.match(last)
        if not match:
            raise RuntimeError("teapot up failed:\n" + "\n".join(self.lines[-30:]))
        return {
            "wall": self.ready_at - self.started_at,
            "total": float(match["total"]),
            "services": float(match["services"]),
            "hosts": float(match["host_s"]),
            "cpu": cpu,
        }

    def host_retries(self) -> list[str]:
        """The `host X: ... (retrying)` lines `teapot up` printed while waiting for the hosts."""
        return [ln for ln in self.lines if ln.startswith("host ") and ln.endswith("(retrying)")]

    def stop_and_say(self) -> None:
        """Stop the box and print how it ended."""
        stopped = self.stop()
        print(f"box stopped (code {stopped['code']}, left behind: "
              f"{', '.join(stopped['leftovers']) or 'nothing'})")

    def stop(self, timeout: float = 60.0) -> dict:
        """SIGTERM `teapot up` and wait for it; then kill by PID whatever it left behind.
        Returns its exit code, the seconds it took to stop and the children killed afterwards."""
        children = self.child_pids()
        code = None
        began = time.monotonic()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                code = self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                code = self.process.wait(10)
        elif self.process is not None:
            code = self.process.returncode
        took = time.monotonic() - began
        if self.rss is not None:
            self.rss.stop()
        leftovers = []
        for name, pid in children.items():
            if alive(pid):
                leftovers.append(name)
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if stop_fabric(self.state_dir):
            leftovers.append("switch")
        return {"code": code, "seconds": took, "leftovers": leftovers}
