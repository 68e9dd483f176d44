"""Real Kubernetes on the box's emulated hosts: the build step's cost, a cluster's time to Ready and
its control plane's footprint.

    .venv/bin/python bench/tenant_kubernetes.py [--cold] [--idle 60] [--upgrade] [--port-base B]
                                                [--keep] [--echo]

(a) `make install`'s Kubernetes step (`python -m teapot.releases`) when every release is built
    already: wall seconds (median of 5). With `--cold`, also a cold build of one release
    (v1.36.3 with etcd) into a temporary KUBE_CACHE with an empty Go build cache (the machine's Go
    module cache is used, so nothing is downloaded that was downloaded before): ~5 minutes or more.
(b) A box (`teapot up --hosts 2`, with its switch). The demo member creates a template (kube_tag
    v1.36.3, flavor `baremetal`) and a cluster of 1 master + 1 worker: the seconds from the POST to
    CREATE_COMPLETE (Ironic's part: both hosts provisioned), to both hosts booted by the box's
    teapot-hosts (config drive applied, kubeadm starting; this can come before CREATE_COMPLETE,
    which waits for Teapot's conductor to see Ironic's state), to the master's API server
    answering, to its Node Ready and to both Nodes Ready; polled every second, Nodes with the
    v1.36.3 kubectl inside the master's network namespace with the admin kubeconfig kubeadm wrote
    on its disk.
(c) CPU-seconds and RSS of the master's control plane (etcd, kube-apiserver,
    kube-controller-manager, kube-scheduler, the stand-in kubelet), found with `ip netns pids`
    and read from /proc: when both Nodes are Ready, and again `--idle` seconds later (nothing polls
    the cluster meanwhile), which gives CPU-seconds per minute idle.
(d) With `--upgrade` (a box of 3 hosts): the cluster upgraded to a template of v1.37.2, each host
    surged (the master onto the free host, the worker onto the old master once it is clean): the
    seconds from the POST to UPDATE_COMPLETE, per host replaced, as a ratio to the create above
    (the same hosts, provisioned and joined), and the box's CPU-seconds against the create's.
Then the cluster is deleted (seconds to gone, to both hosts free, and to both hosts bare: no
process, no disk) and the box stopped by PID, also on failure.

Results go to stdout as `name: value unit` lines; progress goes to stderr. Needs root (network
namespaces) and the releases built (`make install`). No goal in /work/shared/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _box import Box, CpuMeter, free_base, median, quiet_check, state_dir  # noqa: E402

from teapot import releases  # noqa: E402

VERSION, NEXT = releases.KUBERNETES
IMAGE = "https://images.example/ubuntu-2404-k8s.raw"
CHECKSUM = "ab" * 32
MICROVERSION = {"OpenStack-API-Version": "container-infra latest"}
HOSTS = 2
POLL = 1.0
WARM_RUNS = 5
CLK_TCK = os.sysconf("SC_CLK_TCK")
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet")


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def result(name: str, value: float | str, unit: str = "", digits: int = 1) -> None:
    text = f"{value:.{digits}f}" if isinstance(value, float) else str(value)
    print(f"{name}: {text}{' ' + unit if unit else ''}", flush=True)


# -- (a) the build step -----------------------------------------------------------------------------
def warm_step(runs: int = WARM_RUNS) -> list[float]:
    times = []
    for _ in range(runs):
        began = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "teapot.releases"], capture_output=True,
                              text=True)
        times.append(time.monotonic() - began)
        if proc.returncode != 0:
            raise RuntimeError(f"python -m teapot.releases exited with {proc.returncode}:\n"
                               f"{proc.stdout}{proc.stderr}")
    return times


def cold_build(version: str = VERSION) -> dict:
    """tools/build-kubernetes of one release and etcd into empty caches: seconds in all, for
    etcd and for Kubernetes (split where the script says it starts on Kubernetes)."""
    with tempfile.TemporaryDirectory(prefix="teapot-bench-kube-") as tmp:
        env = {**os.environ, "KUBE_CACHE": str(Path(tmp) / "kubernetes"),
               "GOCACHE": str(Path(tmp) / "go-build")}
        began = time.monotonic()
        kube_at = None
        proc = subprocess.Popen([str(releases.BUILD_SCRIPT), "--etcd", releases.ETCD, version],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env, start_new_session=True)
        lines = []
        try:
            for line in proc.stdout:
                lines.append(line.rstrip("\n"))
                say(f"    | {lines[-1]}")
                if "building Kubernetes" in line and kube_at is None:
                    kube_at = time.monotonic()
            code = proc.wait()
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(30)
        ended = time.monotonic()
        if code != 0:
            raise RuntimeError(f"tools/build-kubernetes exited with {code}:\n" + "\n".join(lines[-20:]))
        size = sum(f.stat().st_size for f in (Path(tmp) / "kubernetes").rglob("*") if f.is_file())
        # the Go build cache is in the temporary folder too: removed with it
    return {"total": ended - began, "etcd": (kube_at or ended) - began,
            "kubernetes": ended - (kube_at or ended), "bytes": size}


# -- (b) the cluster --------------------------------------------------------------------------------
class Api:
    """The box's Teapot API as the demo member and the admin, one token each."""

    def __init__(self, box: Box):
        from keystoneauth1 import session
        from keystoneauth1.identity import v3

        clouds = yaml.safe_load(box.clouds.read_text())["clouds"]
        self.clients = {}
        for who in ("demo", "admin"):
            auth = clouds[f"teapot-{who}"]["auth"]
            token = session.Session(auth=v3.Password(
                auth_url=box.url("keystone") + "/v3", username=auth["username"],
                password=auth["password"], project_name=auth["project_name"],
                user_domain_name="Default", project_domain_name="Default")).get_token()
            self.clients[who] = httpx.Client(base_url=box.url("teapot-api"), timeout=60.0,
                                             headers={"X-Auth-Token": token, **MICROVERSION})

    def __call__(self, method: str, path: str, who: str = "demo", expect=(200,), **kwargs):
        response = self.clients[who].request(method, path, **kwargs)
        if response.status_code not in expect:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:500]}")
        return response.json() if response.content else None

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


def namespaces(box: Box) -> dict[str, str]:
    """host → its network namespace, as the box's switch recorded them."""
    data = json.loads((box.state_dir / "fabric" / "fabric.json").read_text())
    return {name: host["namespace"] for name, host in data["hosts"].items()}


def netns_pids(namespace: str) -> list[int]:
    proc = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True)
    return [int(p) for p in proc.stdout.split()]


def disk(box: Box, host: str) -> Path:
    return box.state_dir / "data" / "teapot-hosts" / "disks" / host


def booted(box: Box, host: str) -> bool:
    """Whether the box's teapot-hosts has booted the host from its config drive: it writes the
    deployment's instance id on the disk once the network data and files are applied, before
    runcmd (kubeadm) starts."""
    return (disk(box, host) / "var/lib/cloud/instance-id").exists()


def admin_conf(box: Box, host: str) -> Path:
    return disk(box, host) / "etc/kubernetes/admin.conf"


def nodes(namespace: str, kubeconfig: Path) -> dict[str, str] | None:
    """Node → its Ready status, or None while the API server does not answer."""
    proc = subprocess.run(["ip", "netns", "exec", namespace, str(releases.bin_dir(VERSION) / "kubectl"),
                           "--kubeconfig", str(kubeconfig), "--request-timeout=5s", "get", "nodes",
                           "-o", "json"], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        return None
    out = {}
    for node in json.loads(proc.stdout)["items"]:
        out[node["metadata"]["name"]] = next(
            (c["status"] for c in node["status"].get("conditions") or () if c["type"] == "Ready"),
            "Unknown")
    return out


def create_cluster(box: Box, api: Api, spaces: dict[str, str]) -> dict:
    template = api("POST", "/v1/clustertemplates", expect=(201,), json={
        "name": "bench-kube", "image_id": IMAGE, "coe": "kubernetes", "flavor_id": "baremetal",
        "master_flavor_id": "baremetal", "labels": {"image_checksum": CHECKSUM,
                                                    "kube_tag": VERSION}})["uuid"]
    out: dict = {"template": template}
    meter = CpuMeter(box)
    began = time.monotonic()
    uuid = api("POST", "/v1/clusters", expect=(202,), json={
        "name": "bench-kube", "cluster_template_id": template, "master_count": 1,
        "node_count": 1})["uuid"]
    out["uuid"] = uuid
    say(f"  cluster {uuid} created")
    reasons: list[str] = []
    hosts: list[str] = []
    master = None
    deadline = began + 900

    def mark(key: str, what: str) -> None:
        if key not in out:
            out[key] = time.monotonic() - began
            say(f"  {what} after {out[key]:.1f} s")

    while "complete" not in out or "ready" not in out:
        if time.monotonic() > deadline:
            raise RuntimeError(f"cluster {uuid}: not complete with both Nodes Ready after 900 s "
                               f"(status reasons: {' -> '.join(reasons)}; {out})")
        if "complete" not in out:
            c = api("GET", f"/v1/clusters/{uuid}")
            if not reasons or reasons[-1] != c.get("status_reason"):
                reasons.append(str(c.get("status_reason")))
            if c["status"] == "CREATE_FAILED":
                raise RuntimeError(f"cluster {uuid} CREATE_FAILED: {c.get('status_reason')}")
            if c["status"] == "CREATE_COMPLETE":
                mark("complete", "CREATE_COMPLETE")
        if len(hosts) < 2:  # the hosts the cluster claimed
            hosts = sorted(h["name"] for h in api("GET", "/v1/hosts", who="admin")["hosts"]
                           if (h.get("consumer") or {}).get("uuid") == uuid)
        if hosts and all(booted(box, h) for h in hosts):
            mark("booted", f"both hosts booted from their config drive ({', '.join(hosts)})")
        if master is None:  # the host `kubeadm init` wrote admin.conf on
            master = next((h for h in hosts if admin_conf(box, h).exists()), None)
        if master is not None:
            seen = nodes(spaces[master], admin_conf(box, master))
            if seen is not None:
                mark("api", f"API server of {master} answering")
            if seen and seen.get(master) == "True":
                mark("master_ready", "master Node Ready")
            if seen and len(seen) == 2 and set(seen.values()) == {"True"}:
                mark("ready", f"both Nodes Ready ({', '.join(sorted(seen))})")
        if "complete" not in out or "ready" not in out:
            time.sleep(POLL)
    out["hosts"] = hosts
    out["master"] = master
    out["reasons"] = reasons
    out["cpu"] = meter.read()
    return out


def upgrade_cluster(box: Box, api: Api, uuid: str) -> dict:
    """Seconds from the upgrade's POST to UPDATE_COMPLETE and to each old host's leaving, with
    every status reason seen, and the CPU used meanwhile."""
    template = api("POST", "/v1/clustertemplates", expect=(201,), json={
        "name": "bench-kube-next", "image_id": IMAGE, "coe": "kubernetes",
        "flavor_id": "baremetal", "master_flavor_id": "baremetal",
        "labels": {"image_checksum": CHECKSUM, "kube_tag": NEXT}})["uuid"]
    meter = CpuMeter(box)
    began = time.monotonic()
    api("POST", f"/v1/clusters/{uuid}/actions/upgrade", expect=(202,),
        json={"cluster_template": template})
    reasons: list[str] = []
    left: list[float] = []
    while True:
        c = api("GET", f"/v1/clusters/{uuid}")
        reason = str(c.get("status_reason"))
        if not reasons or reasons[-1] != reason:
            reasons.append(reason)
            say(f"  {time.monotonic() - began:6.1f} s  {reason}")
            if reason.endswith("deprovisioned, replaced"):
                left.append(time.monotonic() - began)
        if c["status"] == "UPDATE_FAILED":
            raise RuntimeError(f"cluster {uuid} UPDATE_FAILED: {reason}")
        if c["status"] == "UPDATE_COMPLETE":
            break
        if time.monotonic() > began + 900:
            raise RuntimeError(f"cluster {uuid}: not upgraded after 900 s ({' -> '.join(reasons)})")
        time.sleep(POLL / 2)
    return {"complete": time.monotonic() - began, "left": left, "reasons": reasons,
            "cpu": meter.read(), "version": c.get("coe_version")}


def delete_cluster(box: Box, api: Api, uuid: str, hosts: list[str],
                   spaces: dict[str, str]) -> dict:
    """Seconds from DELETE to the cluster gone (404), to its hosts free again (the host class's
    free_hosts) and to its hosts bare (no process in their namespaces, no disk)."""
    began = time.monotonic()
    api("DELETE", f"/v1/clusters/{uuid}", expect=(204, 404))
    out: dict[str, float] = {}
    while len(out) < 3:
        now = time.monotonic() - began
        if "gone" not in out and api.clients["demo"].get(f"/v1/clusters/{uuid}").status_code == 404:
            out["gone"] = now
        if "free" not in out:
            classes = api("GET", "/v1/hostclasses", who="admin")["hostclasses"]
            if next(c["free_hosts"] for c in classes if c["name"] == "baremetal") == HOSTS:
                out["free"] = now
        if "bare" not in out and not any(netns_pids(spaces[h]) or disk(box, h).exists()
                                         for h in hosts):
            out["bare"] = now
        if time.monotonic() > began + 600:
            raise RuntimeError(f"cluster {uuid}: after 600 s only {sorted(out)} of gone, free, bare")
        if len(out) < 3:
            time.sleep(0.5)
    return out


# -- (c) the control plane's processes --------------------------------------------------------------
def process_name(pid: int) -> str | None:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    program = os.path.basename(argv[0].decode(errors="replace"))
    if program in CONTROL_PLANE[:4]:
        return program
    if b"teapot.emulated.kubelet" in argv:
        return "kubelet"
    return None


def usage(pid: int) -> tuple[float, float] | None:
    """(CPU-seconds, RSS MiB) of one process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14 and 15)
    rss_kib = next((int(line.split()[1]) for line in status.splitlines()
                    if line.startswith("VmRSS:")), 0)
    return cpu, rss_kib / 1024


def control_plane(namespace: str) -> dict[str, dict]:
    """name → {pid, cpu, rss} of each control-plane process in the namespace."""
    out = {}
    for pid in netns_pids(namespace):
        name = process_name(pid)
        used = usage(pid) if name else None
        if used is None:
            continue
        if name in out:  # two of one kind (should not happen): sum them
            out[name] = {"pid": out[name]["pid"], "cpu": out[name]["cpu"] + used[0],
                         "rss": out[name]["rss"] + used[1]}
        else:
            out[name] = {"pid": pid, "cpu": used[0], "rss": used[1]}
    return out


# -- stopping everything the box started, also when it failed ---------------------------------------
def stop_box(box: Box, spaces: dict[str, str]) -> None:
    """Stop the box by PID; then SIGKILL, by PID, whatever still runs in its hosts' namespaces
    (the box's emulated hosts' processes, which the box's teapot-hosts service normally stops)."""
    left = {pid for ns in spaces.values() for pid in netns_pids(ns)}
    stopped = box.stop()
    stragglers = []
    for pid in sorted(left):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        stragglers.append(pid)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if stopped["code"] != 0 or stopped["leftovers"] or stragglers:
        say(f"note: teapot up exited with {stopped['code']}, left behind "
            f"{stopped['leftovers'] or 'no service'}; host processes killed: {stragglers or 'none'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true",
                        help=f"also time a cold build of {VERSION} and etcd (~5 minutes or more)")
    parser.add_argument("--idle", type=float, default=60.0,
                        help="seconds between the two readings of the control plane (default 60)")
    parser.add_argument("--upgrade", action="store_true",
                        help=f"also upgrade the cluster to {NEXT} (a box of 3 hosts)")
    parser.add_argument("--port-base", type=int, default=None,
                        help="first of 5 consecutive loopback ports (default: a free range)")
    parser.add_argument("--keep", action="store_true", help="keep the state dir for inspection")
    parser.add_argument("--echo", action="store_true", help="show teapot up's output")
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("needs root: the box's switch and hosts are network namespaces")
    if VERSION not in releases.built():
        parser.error(f"Kubernetes {VERSION} is not built in {releases.cache_dir()} (make install)")

    busy = quiet_check()
    say(f"machine before starting: {busy:.2f} cores busy"
        + ("  (NOT idle: timings will be noisy)" if busy > 0.3 else ""))
    result("machine busy before starting", busy, "cores", 2)

    # (a)
    warm = warm_step()
    result("kubernetes step, all built (python -m teapot.releases, median of "
           f"{len(warm)})", median(warm), "s", 3)
    if args.cold:
        say(f"(a) cold build of {VERSION} + etcd {releases.ETCD} into empty caches")
        cold = cold_build()
        result(f"kubernetes step, cold build of {VERSION} + etcd {releases.ETCD}",
               cold["total"], "s")
        result("kubernetes step, cold build, etcd part", cold["etcd"], "s")
        result(f"kubernetes step, cold build, kubernetes {VERSION} part", cold["kubernetes"], "s")
        result("kubernetes step, cold build, programs built", cold["bytes"] / 2**20, "MiB")

    # (b), (c)
    global HOSTS
    HOSTS = 3 if args.upgrade else HOSTS  # a free host for the master to surge onto
    port_base = args.port_base or free_base()
    with state_dir(args.keep, "teapot-bench-kube-") as path:
        say(f"teapot up --hosts {HOSTS} --port-base {port_base} --state-dir {path}")
        box = Box(path, HOSTS, port_base, echo=args.echo)
        api = None
        spaces: dict[str, str] = {}
        try:
            ready = box.start(sample_rss=False)
            result(f"box ready ({HOSTS} hosts, switch)", ready["wall"], "s")
            spaces = namespaces(box)
            api = Api(box)
            say(f"(b) a cluster of 1 master + 1 worker at {VERSION}")
            made = create_cluster(box, api, spaces)
            result("cluster create to CREATE_COMPLETE (hosts provisioned)", made["complete"], "s")
            result("cluster create to both hosts booted (config drive applied)", made["booted"],
                   "s")
            result("cluster create to API server answering", made["api"], "s")
            result("cluster create to master Node Ready", made["master_ready"], "s")
            result("cluster create to both Nodes Ready", made["ready"], "s")
            result("CREATE_COMPLETE to both Nodes Ready", made["ready"] - made["complete"], "s")
            cpu = made["cpu"]
            result("other processes while creating (not the box, not this benchmark)",
                   cpu["other"] / max(cpu["seconds"], 1e-9), "cores", 2)

            say(f"(c) control plane of {made['master']} ({spaces[made['master']]}): now and after "
                f"{args.idle:.0f} s idle")
            first = control_plane(spaces[made["master"]])
            time.sleep(args.idle)
            second = control_plane(spaces[made["master"]])
            missing = [n for n in CONTROL_PLANE if n not in first or n not in second]
            if missing:
                say(f"note: not found in the master's namespace: {', '.join(missing)}")
            for name in CONTROL_PLANE:
                if name not in first or name not in second:
                    continue
                a, b = first[name], second[name]
                label = "kubelet (stand-in)" if name == "kubelet" else name
                result(f"{label} CPU at Ready", a["cpu"], "CPU-s", 2)
                result(f"{label} RSS at Ready", a["rss"], "MiB")
                result(f"{label} RSS after {args.idle:.0f} s idle", b["rss"], "MiB")
                if a["pid"] != b["pid"]:
                    say(f"note: {name} restarted while idle (pid {a['pid']} -> {b['pid']})")
                    continue
                result(f"{label} CPU idle", (b["cpu"] - a["cpu"]) / args.idle * 60, "CPU-s/min", 2)
            both = [n for n in CONTROL_PLANE if n in first and n in second]
            result("control plane CPU at Ready", sum(first[n]["cpu"] for n in both), "CPU-s", 2)
            result("control plane RSS at Ready", sum(first[n]["rss"] for n in both), "MiB")
            result(f"control plane RSS after {args.idle:.0f} s idle",
                   sum(second[n]["rss"] for n in both), "MiB")
            result("control plane CPU idle",
                   sum(second[n]["cpu"] - first[n]["cpu"] for n in both) / args.idle * 60,
                   "CPU-s/min", 2)

            if args.upgrade:
                say(f"(d) upgrading the cluster to {NEXT}")
                upgraded = upgrade_cluster(box, api, made["uuid"])
                result(f"cluster upgrade to UPDATE_COMPLETE ({len(upgraded['left'])} hosts "
                       "replaced)", upgraded["complete"], "s")
                for i, at in enumerate(upgraded["left"]):
                    result(f"cluster upgrade, host {i + 1} replaced after", at, "s")
                result("cluster upgrade / cluster create (to both Nodes Ready)",
                       upgraded["complete"] / made["ready"], "x", 2)
                result("box CPU during the upgrade", upgraded["cpu"]["box"], "CPU-s")
                result("box CPU during the create", made["cpu"]["box"], "CPU-s")
                result("box CPU, upgrade / create",
                       upgraded["cpu"]["box"] / max(made["cpu"]["box"], 1e-9), "x", 2)
                if upgraded["version"] != NEXT:
                    raise RuntimeError(f"upgraded to {upgraded['version']}, not {NEXT}")

            say("deleting the cluster")
            deleted = delete_cluster(box, api, made["uuid"], made["hosts"], spaces)
            result("cluster delete to gone", deleted["gone"], "s")
            result(f"cluster delete to {HOSTS} hosts free", deleted["free"], "s")
            result(f"cluster delete to {HOSTS} hosts bare (no process, no disk)",
                   deleted["bare"], "s")
        finally:
            if api is not None:
                api.close()
            stop_box(box, spaces)
    return 0


if __name__ == "__main__":
    sys.exit(main())
