"""Teapot's load balancers in the box: time to a working VIP, requests/s through HAProxy against
the same client straight to the members, and time to gone.

    .venv/bin/python bench/loadbalancer.py [--seconds 10] [--warmup 2] [--clients 8]
                                           [--port-base B] [--keep] [--echo]

A box (`teapot up --hosts 2`, with its switch); as the demo member a template (kube_tag v1.36.3)
and a cluster of 1 master + 1 worker (tenant_kubernetes.py's: to CREATE_COMPLETE and both Nodes
Ready), so the hosts have their tenant addresses. Each host serves HTTP on port 8080 of that
address, in its namespace: this script's `--serve` mode, a ThreadingHTTPServer (a thread per
connection, backlog 1024; `python -m http.server` has backlog 5 and reads a file per request)
answering with the host's name. Then:
(1) `POST /v1/loadbalancers` (TCP 80 → 8080, the cluster's hosts as members, health check 1 s ×
    2): seconds to ACTIVE, to ONLINE, and to the first HTTP answer through `vip_address` from the
    box's public namespace (`teapot status -f json`); polled every 0.1 s, HTTP with curl.
(2) One load generator (the `--load` mode: `--clients` threads, a new TCP connection per request,
    as HAProxy balances connections; `--warmup` s, then `--seconds` s counted) run with `ip netns
    exec` (a) straight to both members in turn from the load balancer's own namespace (record.json
    in its folder): its tenant leg reaches them through the same switch and VLAN as HAProxy does,
    and the same two servers share the load, so all (b) adds is the public leg and HAProxy; (b)
    from the public namespace to http://VIP:80/. Requests/s, the ratio VIP/direct (goal in
    /work/shared/BENCHMARKS.md: >= 0.8), p50/p99 latency, errors; over the counted window, the
    CPU-seconds of HAProxy (haproxy.pid, /proc/<pid>/stat) and the switch's ovs-vswitchd, and the
    cores everything else used (not the box, servers, HAProxy, switch or client): the noise. All
    of it shares 2 cores: a ratio measured side by side, not HAProxy's capacity.
(3) `DELETE` it: seconds to 404 and to its folder (namespace, HAProxy) gone. Then the web servers
    are stopped by PID, the cluster deleted and the box stopped by PID, also on failure.

Results go to stdout as `name: value unit` lines; progress goes to stderr. Needs root (network
namespaces) and v1.36.3 built (`make install`). Uses bench/tenant_kubernetes.py's helpers.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

import tenant_kubernetes as tk  # noqa: E402
from _box import Box, _busy_cpu, box_cpu, free_base, quiet_check, state_dir  # noqa: E402
from tenant_kubernetes import result, say  # noqa: E402

from teapot import releases  # noqa: E402
from teapot.drivers.loadbalancer.box import BoxLoadBalancers, Instance  # noqa: E402
from teapot.net.fabric import Fabric  # noqa: E402

SCRIPT = str(Path(__file__).resolve())
TEAPOT = str(Path(sys.executable).parent / "teapot")
PORT, MEMBER_PORT = 80, 8080
POLL = 0.1


# -- the hidden modes: a host's web server, the load generator -------------------------------------
def serve(address: str, body: str) -> None:
    data = body.encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 1024

    Server((address, MEMBER_PORT), Handler).serve_forever()


def load(urls: list[str], seconds: float, warmup: float, clients: int) -> None:
    """Prints `measuring` when the counted window opens, then one JSON line of results."""
    targets = [(u.hostname, u.port or 80, f"GET {u.path or '/'} HTTP/1.0\r\n\r\n".encode())
               for u in map(urlsplit, urls)]
    start = time.monotonic() + warmup
    end = start + seconds
    done: list[list] = [[] for _ in range(clients)]  # per thread: (latency, body) or None

    def client(i: int) -> None:
        mine, n = done[i], i
        while (began := time.monotonic()) < end:
            host, port, request = targets[n % len(targets)]
            n += 1
            data = b""
            try:
                with socket.create_connection((host, port), timeout=5) as s:
                    s.sendall(request)
                    while chunk := s.recv(4096):
                        data += chunk
            except OSError:
                pass
            if began >= start:
                mine.append((time.monotonic() - began, data.rsplit(b"\r\n", 1)[-1])
                            if data[9:12] == b"200" else None)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    time.sleep(max(0.0, start - time.monotonic()))
    print("measuring", flush=True)
    cpu = os.times()
    for t in threads:
        t.join()
    used = os.times()
    answers = [x for mine in done for x in mine]
    latencies = sorted(x[0] for x in answers if x)

    def pct(p: float) -> float:
        return latencies[int(p * (len(latencies) - 1))] * 1000 if latencies else float("nan")

    print(json.dumps({"ok": len(latencies), "errors": answers.count(None), "p50": pct(0.5),
                      "p99": pct(0.99), "rps": len(latencies) / seconds,
                      "bodies": Counter(x[1].decode(errors="replace") for x in answers if x),
                      "client": used.user + used.system - cpu.user - cpu.system}), flush=True)


# -- the parent's side -----------------------------------------------------------------------------
def cpu_of(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / tk.CLK_TCK  # utime, stime


def cpu_now(box: Box, pids: dict[str, int]) -> dict[str, float]:
    return {"machine": _busy_cpu(), "box": sum(box_cpu(box).values()),
            **{name: cpu_of(pid) for name, pid in pids.items()}}


def run_load(ns: str, urls: list[str], args, box: Box, pids: dict[str, int]) -> dict:
    """The load generator in namespace `ns`, and the CPU-s of `pids` over its counted window."""
    proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, SCRIPT, "--load", *urls,
                             "--seconds", str(args.seconds), "--warmup", str(args.warmup),
                             "--clients", str(args.clients)], stdout=subprocess.PIPE, text=True)
    try:
        before = None
        for line in proc.stdout:
            if line.strip() == "measuring":
                before = cpu_now(box, pids)
            elif line.startswith("{") and before:
                out = json.loads(line)
                out["cpu"] = {k: v - before[k] for k, v in cpu_now(box, pids).items()}
                c = out["cpu"]
                c["other"] = c["machine"] - out["client"] - sum(
                    v for k, v in c.items() if k != "machine")
                return out
        raise RuntimeError(f"load generator in {ns} exited with {proc.wait()} without results")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def http_get(ns: str, url: str) -> str | None:
    proc = subprocess.run(["ip", "netns", "exec", ns, "curl", "-s", "--max-time", "1", url],
                          capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else None


def lb_instance(box: Box, vip: str) -> Instance:
    """The load balancer instance whose public leg holds `vip` (each cluster's endpoint has one)."""
    driver = BoxLoadBalancers(box.state_dir)
    for folder in (box.state_dir / "loadbalancers").iterdir():
        active = driver.active(folder.name)
        legs = subprocess.run(["ip", "-n", active.namespace, "-4", "-o", "addr", "show", "dev",
                               "pub0"], capture_output=True, text=True).stdout if active else ""
        if f" {vip}/" in legs:
            return active
    raise RuntimeError(f"no load balancer instance holds {vip}")


def until(began: float, checks: dict, what: str) -> dict[str, float]:
    """Seconds from `began` to each check first true, polled every POLL s."""
    marks: dict[str, float] = {}
    while len(marks) < len(checks):
        if time.monotonic() - began > 300:
            raise RuntimeError(f"{what}: after 300 s only {sorted(marks)} of {sorted(checks)}")
        for key, check in checks.items():
            if key not in marks and check():
                marks[key] = time.monotonic() - began
        time.sleep(POLL)
    return marks


def create_lb(api: tk.Api, cluster: str, outside: str) -> tuple[dict, dict[str, float]]:
    began = time.monotonic()
    lb = api("POST", "/v1/loadbalancers", expect=(201,), json={
        "name": "bench-web", "cluster": cluster,
        "listeners": [{"protocol": "TCP", "port": PORT, "member_port": MEMBER_PORT}],
        "health_check": {"interval": 1, "retries": 2}})

    def shown(field: str, value: str):
        def check() -> bool:
            lb.update(api("GET", f"/v1/loadbalancers/{lb['id']}"))
            if lb["provisioning_status"] == "ERROR":
                raise RuntimeError(f"load balancer ERROR: {lb.get('status_reason')}")
            return lb[field] == value
        return check

    return lb, until(began, {
        "active": shown("provisioning_status", "ACTIVE"),
        "online": shown("operating_status", "ONLINE"),
        "http": lambda: bool(lb.get("vip_address") and http_get(
            outside, f"http://{lb['vip_address']}:{PORT}/"))}, "load balancer create")


def delete_lb(api: tk.Api, lb: dict, folder: Path) -> dict[str, float]:
    began = time.monotonic()
    api("DELETE", f"/v1/loadbalancers/{lb['id']}", expect=(204, 404))
    return until(began, {
        "gone": lambda: api.clients["demo"].get(f"/v1/loadbalancers/{lb['id']}").status_code
        == 404, "bare": lambda: not folder.exists()}, "load balancer delete")


def measure(box: Box, api: tk.Api, args, outside: str, servers: dict[str, subprocess.Popen],
            addresses: dict[str, str], cluster: str) -> None:
    say("(1) creating the load balancer")
    lb, made = create_lb(api, cluster, outside)
    vip = lb["vip_address"]
    result("load balancer create to ACTIVE", made["active"], "s")
    result("load balancer create to ONLINE", made["online"], "s")
    result("load balancer create to first HTTP answer through the VIP", made["http"], "s")
    instance = lb_instance(box, vip)
    folder, lb_ns = instance.folder, instance.namespace
    pids = {"haproxy": int((folder / "haproxy.pid").read_text().split()[0]),
            "switch": int((Fabric.load(box.state_dir).run_dir / "ovs-vswitchd.pid").read_text()),
            **{f"server {h}": p.pid for h, p in servers.items()}}

    say(f"(2) {args.clients} clients, {args.warmup:g} s warm-up + {args.seconds:g} s counted: "
        f"direct from {lb_ns}, then through {vip} from {outside}")
    direct = [f"http://{a}:{MEMBER_PORT}/" for a in addresses.values()]
    runs = {"direct to the members": run_load(lb_ns, direct, args, box, pids),
            "through the VIP": run_load(outside, [f"http://{vip}:{PORT}/"], args, box, pids)}
    for label, r in runs.items():
        say(f"  {label}: answers by member {r['bodies']}; CPU-s: client {r['client']:.2f}, "
            + ", ".join(f"{k} {v:.2f}" for k, v in r["cpu"].items()))
        result(f"requests/s {label}", r["rps"], "req/s")
        result(f"latency p50 {label}", r["p50"], "ms", 2)
        result(f"latency p99 {label}", r["p99"], "ms", 2)
        result(f"errors {label}", str(r["errors"]), "requests")
        result(f"switch (ovs-vswitchd) CPU {label}", r["cpu"]["switch"], "CPU-s", 2)
        result(f"other processes {label} (noise)", r["cpu"]["other"] / args.seconds, "cores", 2)
    direct, via = runs.values()
    result("requests/s ratio VIP/direct (goal >= 0.8)", via["rps"] / max(direct["rps"], 1e-9),
           "", 2)
    result("HAProxy CPU through the VIP", via["cpu"]["haproxy"], "CPU-s", 2)
    result("HAProxy CPU per 1000 requests", via["cpu"]["haproxy"] / max(via["ok"], 1) * 1000,
           "CPU-s", 3)

    say("(3) deleting the load balancer")
    gone = delete_lb(api, lb, folder)
    result("load balancer delete to gone (404)", gone["gone"], "s")
    result("load balancer delete to its namespace and HAProxy gone", gone["bare"], "s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="counted seconds per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="uncounted seconds first")
    parser.add_argument("--clients", type=int, default=8, help="load generator threads")
    parser.add_argument("--port-base", type=int, default=None,
                        help="first of 5 consecutive loopback ports (default: a free range)")
    parser.add_argument("--keep", action="store_true", help="keep the state dir for inspection")
    parser.add_argument("--echo", action="store_true", help="show teapot up's output")
    parser.add_argument("--serve", nargs=2, metavar=("ADDRESS", "BODY"), help=argparse.SUPPRESS)
    parser.add_argument("--load", nargs="+", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(*args.serve)
        return 0
    if args.load:
        load(args.load, args.seconds, args.warmup, args.clients)
        return 0
    if os.geteuid() != 0:
        parser.error("needs root: the box's switch, hosts and load balancers are namespaces")
    if tk.VERSION not in releases.built():
        parser.error(f"Kubernetes {tk.VERSION} is not built (make install)")

    busy = quiet_check()
    say(f"machine before starting: {busy:.2f} cores busy"
        + ("  (NOT idle: timings will be noisy)" if busy > 0.3 else ""))
    result("machine busy before starting", busy, "cores", 2)
    port_base = args.port_base or free_base()
    with state_dir(args.keep, "teapot-bench-lb-") as path:
        say(f"teapot up --hosts {tk.HOSTS} --port-base {port_base} --state-dir {path}")
        box = Box(path, tk.HOSTS, port_base, echo=args.echo)
        api = None
        spaces: dict[str, str] = {}
        servers: dict[str, subprocess.Popen] = {}
        try:
            result("box ready (2 hosts, switch)", box.start(sample_rss=False)["wall"], "s")
            spaces = tk.namespaces(box)
            api = tk.Api(box)
            outside = json.loads(subprocess.run(
                [TEAPOT, "status", "--state-dir", str(path), "-f", "json"], capture_output=True,
                text=True, check=True).stdout)["public_namespace"]
            say(f"a cluster of 1 master + 1 worker at {tk.VERSION}")
            made = tk.create_cluster(box, api, spaces)
            cluster = made["uuid"]
            result("cluster create to CREATE_COMPLETE", made["complete"], "s")
            addresses = {h: api("GET", f"/v1/hosts/{h}", who="admin")["network"]["address"]
                         for h in made["hosts"]}
            for host, address in addresses.items():  # stopped by PID below
                servers[host] = subprocess.Popen(
                    ["ip", "netns", "exec", spaces[host], sys.executable, SCRIPT, "--serve",
                     address, host], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            until(time.monotonic(), {h: lambda h=h, a=a: http_get(
                spaces[h], f"http://{a}:{MEMBER_PORT}/") == h for h, a in addresses.items()},
                "the web servers answering")
            say("web servers on " + ", ".join(f"{a}:{MEMBER_PORT}" for a in addresses.values()))
            measure(box, api, args, outside, servers, addresses, cluster)
            for proc in servers.values():
                proc.terminate()
                proc.wait(10)
            say("deleting the cluster")
            deleted = tk.delete_cluster(box, api, cluster, sorted(addresses), spaces)
            result("cluster delete to gone", deleted["gone"], "s")
            result("cluster delete to both hosts bare (no process, no disk)", deleted["bare"], "s")
        finally:
            for proc in servers.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
            if api is not None:
                api.close()
            tk.stop_box(box, spaces)
    return 0


if __name__ == "__main__":
    sys.exit(main())
