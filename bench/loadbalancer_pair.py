"""Failover of an active/standby load balancer in the box's data plane, in seconds of lost service.

A switch with two hosts on a tenant VLAN serving HTTP (port 8080), the box's public network, and
a pair (TCP 80 → 8080, HAProxy and keepalived in two instances) made by the box's driver. A client
in the public namespace sends a request every 50 ms (1 s timeout); for each way of losing the
active instance, the script measures the gap from the loss to the first answered request after it
and counts the failed requests, over `--rounds` rounds:

- power lost: the active instance's legs down, then its keepalived and HAProxy killed (SIGKILL);
- HAProxy died: only its HAProxy killed (keepalived's check sees it and gives the VIPs up);
- keepalived stopped (SIGTERM, an orderly hand-over: it tells the standby at once).

The yardstick, computed from the same configuration: VRRP's own detection time (RFC 5798's
Master_Down_Interval = 3 × advertisement interval + skew), the least a standby can wait before it
takes over. Each gap is quoted as its ratio to that. Also prints the resident memory of one pair
against one single instance. Root only; results as `name: value unit` on stdout.

    .venv/bin/python bench/loadbalancer_pair.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from _box import state_dir  # noqa: E402

from teapot.drivers.loadbalancer.base import Listener, Peer, Spec  # noqa: E402
from teapot.drivers.loadbalancer.box import ADVERT, BoxLoadBalancers, Instance, running  # noqa: E402
from teapot.net.fabric import Fabric  # noqa: E402
from teapot.net.public import PublicNetwork, choose_cidr  # noqa: E402

VLAN = 100
HOSTS = {"h1": "10.250.0.11", "h2": "10.250.0.12"}
EVERY = 0.05  # seconds between the client's requests
STANDBY_PRIORITY = 100  # the second instance's VRRP priority (render_keepalived)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def result(name: str, value: float | str, unit: str = "", digits: int = 2) -> None:
    text = f"{value:.{digits}f}" if isinstance(value, float) else str(value)
    print(f"{name}: {text}{' ' + unit if unit else ''}", flush=True)


class Client(threading.Thread):
    """Requests to `url` from `namespace` every EVERY seconds: (time sent, answered)."""

    def __init__(self, namespace: str, url: str):
        super().__init__(daemon=True)
        self.namespace, self.url = namespace, url
        self.log: list[tuple[float, bool]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            sent = time.monotonic()
            ok = subprocess.run(["ip", "netns", "exec", self.namespace, "curl", "-s", "-o",
                                 "/dev/null", "--max-time", "1", self.url],
                                capture_output=True).returncode == 0
            self.log.append((sent, ok))
            self.stop.wait(max(0.0, EVERY - (time.monotonic() - sent)))

    def gap(self, since: float) -> tuple[float, int]:
        """Seconds from `since` to the first answered request sent after it; failed requests."""
        after = [(t, ok) for t, ok in self.log if t >= since]
        first = next((t for t, ok in after if ok), None)
        if first is None:
            raise RuntimeError("no request was answered after the loss")
        return first - since, sum(1 for t, ok in after if not ok and t < first)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def pids_of(instance: Instance) -> list[int]:
    out = []
    for name in ("haproxy", "keepalived", "keepalived-vrrp"):
        pid = running(instance.folder / f"{name}.pid", name.split("-")[0])
        if pid:
            out.append(pid)
    return out


def active(driver: BoxLoadBalancers, name: str, previous: Instance | None = None,
           timeout: float = 30) -> Instance:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        held = driver.active(name)
        if held is not None and held != previous:
            return held
        time.sleep(0.05)
    raise RuntimeError("no instance took the VIPs")


def lose(kind: str, instance: Instance) -> None:
    if kind == "power lost":
        for leg in ("pub0", "eth0"):
            subprocess.run(["ip", "-n", instance.namespace, "link", "set", leg, "down"], check=True)
        for pid in pids_of(instance):
            os.kill(pid, signal.SIGKILL)
    elif kind == "HAProxy died":
        os.kill(running(instance.folder / "haproxy.pid"), signal.SIGKILL)
    else:
        os.kill(running(instance.folder / "keepalived.pid", "keepalived"), signal.SIGTERM)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the state directory")
    args = parser.parse_args()
    if os.geteuid() != 0:
        say("root only: it makes namespaces and a switch")
        return 2
    with state_dir(args.keep, "teapot-bench-pair-") as state:
        fabric = Fabric(state)
        public = None
        servers = []
        try:
            fabric.start()
            fabric.add_hosts(list(HOSTS))
            public = PublicNetwork(state, fabric.prefix, choose_cidr()).start()
            for host, address in HOSTS.items():
                fabric.vsctl("set", "port", fabric.host(host).port, f"tag={VLAN}")
                fabric.exec_in(host, "ip", "addr", "add", f"{address}/24", "dev", "eth0",
                               check=True)
                servers.append(subprocess.Popen(
                    ["ip", "netns", "exec", fabric.host(host).namespace, sys.executable, "-m",
                     "http.server", "8080", "--bind", address, "--directory", str(state)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            return measure(state, fabric, public, args)
        finally:
            for proc in servers:
                proc.terminate()
                proc.wait(timeout=10)
            BoxLoadBalancers(state).remove_all()
            if public is not None:
                public.stop()
            fabric.stop()


def measure(state: Path, fabric: Fabric, public: PublicNetwork, args) -> int:
    net = public.network
    driver = BoxLoadBalancers(state)
    base = dict(vlan=VLAN, listeners=(Listener(80, 8080),), members=tuple(HOSTS.values()),
                check_interval=0.5, check_fall=2)
    single = Spec(name="l1", tenant_address="10.250.0.240/24", public_address=str(net[20]),
                  **base)
    pair = Spec(name="l2", tenant_address="10.250.0.250/24", public_address=str(net[10]),
                peers=(Peer("10.250.0.251/24", str(net[11])), Peer("10.250.0.252/24",
                                                                   str(net[12]))), **base)
    began = time.monotonic()
    driver.ensure(pair)
    client = Client(public.namespace, f"http://{pair.public_address}/")
    client.start()
    try:
        holder = active(driver, pair.name)
        while not any(ok for _, ok in client.log):
            time.sleep(0.01)
        result("pair create to first answer through the VIP",
               next(t for t, ok in client.log if ok) - began, "s")
        driver.ensure(single)
        result("RSS of a single instance (HAProxy)",
               sum(rss_kib(p) for i in driver.instances(single.name) for p in pids_of(i)) / 1024,
               "MiB")
        result("RSS of a pair (2 × HAProxy + keepalived's 2 processes)",
               sum(rss_kib(p) for i in driver.instances(pair.name) for p in pids_of(i)) / 1024,
               "MiB")
        yardstick = 3 * ADVERT + (256 - STANDBY_PRIORITY) / 256 * ADVERT
        result("VRRP Master_Down_Interval (3 × advertisement + skew)", yardstick, "s")
        for kind in ("power lost", "HAProxy died", "keepalived stopped"):
            gaps, failed = [], 0
            for _ in range(args.rounds):
                time.sleep(1.5)  # a settled pair: both instances advertising
                lost_at = time.monotonic()
                lose(kind, holder)
                holder = active(driver, pair.name, previous=holder)
                time.sleep(1.5)
                gap, lost = client.gap(lost_at)
                gaps.append(gap)
                failed += lost
                driver.ensure(pair)  # as the conductor does: the lost instance, made again
                if not driver.running(pair.name):
                    raise RuntimeError("the pair did not come back whole")
            median = statistics.median(gaps)
            say(f"{kind}: gaps {', '.join(f'{g:.2f}' for g in gaps)} s")
            result(f"{kind}: service gap (median of {args.rounds})", median, "s")
            result(f"{kind}: gap / Master_Down_Interval", median / yardstick, "")
            result(f"{kind}: failed requests (every {EVERY * 1000:.0f} ms, total)", failed)
    finally:
        client.stop.set()
        client.join(timeout=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
