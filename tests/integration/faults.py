"""Faults injected into a box's own processes, by PID, while the box works: the fault suite.

One row freezes (SIGSTOP of the process and its descendants, SIGCONT after `hold` seconds) or
kills (SIGKILL of them; the box's supervisor starts it again) one process of the box, in the middle
of an operation (a cluster create, or none: the load alone), while a steady load of reads runs
through Teapot's API: requests with a token Teapot has seen, and requests each with a new token.
A row measures the load's answers by status, its longest request, the seconds from the process's
return to the operation's end, the operation's end state and what was left behind once the
operation was undone (hosts, addresses, VLANs, load balancers, namespaces).

bench/faults.py runs every row and prints the table; test_supervision.py runs a short form and
asserts each row's goal: no 500, the operation complete, nothing left behind.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import psutil
import yaml

MICROVERSION = {"OpenStack-API-Version": "container-infra 1.14"}
IMAGE = "https://images.example/ubuntu-2404-k8s.raw"
POLL = 0.25
SETTLED = ("CREATE_COMPLETE", "CREATE_FAILED", "UPDATE_COMPLETE", "UPDATE_FAILED")


# -- the processes --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    name: str  # as `teapot status` names the component
    probe: str | None = None  # a path that answers 200 over HTTP once the service is back

    def pid(self, box) -> int | None:
        if self.name in SWITCH_DAEMONS:
            from teapot.net.fabric import Fabric

            return Fabric.load(box.state_dir).daemon_pid(SWITCH_DAEMONS[self.name])
        pid = box.child_pids().get(self.name)
        return pid if pid is not None and psutil.pid_exists(pid) else None

    def answers(self, box) -> bool:
        if self.probe is None:
            return True
        try:
            return httpx.get(box.url(self.name) + self.probe, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False


SWITCH_DAEMONS = {"ovsdb-server": "ovsdb-server", "ovs-vswitchd": "ovs-vswitchd",
                  "switch-sshd": "sshd"}
BOX_TARGETS = (
    Target("keystone", "/v3"), Target("ironic", "/"), Target("sushy-emulator", "/redfish/v1"),
    Target("teapot-api", "/"), Target("teapot-conductor"),
    Target("ovsdb-server"), Target("ovs-vswitchd"), Target("switch-sshd"),
)


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _signal(processes: list[psutil.Process], sig: int) -> None:
    for p in processes:
        try:
            p.send_signal(sig)
        except psutil.Error:
            pass


def inject(box, target: Target, mode: str, hold: float, timeout: float = 120.0) -> float:
    """Freeze or kill `target` now; returns the monotonic time it was back (thawed, or started
    again and answering)."""
    pid = target.pid(box)
    if pid is None:
        raise AssertionError(f"{target.name} is not running")
    processes = _tree(pid)
    if mode == "freeze":
        _signal(processes, signal.SIGSTOP)
        try:
            time.sleep(hold)
        finally:
            _signal(processes, signal.SIGCONT)
        return time.monotonic()
    if mode != "kill":
        raise ValueError(f"mode {mode!r}: freeze or kill")
    _signal(processes, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = target.pid(box)
        if new is not None and new != pid and target.answers(box):
            return time.monotonic()
        time.sleep(0.1)
    raise AssertionError(f"{target.name} was not started again within {timeout:.0f} s")


# -- the load -------------------------------------------------------------------------------------
class People:
    """The box's demo and admin users: one token each, and new demo tokens on demand."""

    def __init__(self, box):
        clouds = yaml.safe_load(box.clouds.read_text())["clouds"]
        self.keystone = box.url("keystone") + "/v3"
        self.api = box.url("teapot-api")
        self.auth = {who: clouds[f"teapot-{who}"]["auth"] for who in ("demo", "admin")}
        self.tokens = {who: self.new_token(who) for who in self.auth}

    def new_token(self, who: str = "demo") -> str:
        a = self.auth[who]
        body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": a["username"], "domain": {"name": "Default"}, "password": a["password"]}}},
            "scope": {"project": {"name": a["project_name"], "domain": {"name": "Default"}}}}}
        response = httpx.post(self.keystone + "/auth/tokens", json=body, timeout=30)
        response.raise_for_status()
        return response.headers["X-Subject-Token"]

    def client(self, who: str = "demo", timeout: float = 60.0) -> httpx.Client:
        return httpx.Client(base_url=self.api, timeout=timeout,
                            headers={"X-Auth-Token": self.tokens[who], **MICROVERSION})


@dataclass
class Answers:
    # "200", "503"; "refused" (nothing listens), "cut" (closed while answering), "timeout"
    by_status: Counter = field(default_factory=Counter)
    longest: float = 0.0
    bodies_500: list[str] = field(default_factory=list)

    def add(self, what: str, seconds: float, body: str = "") -> None:
        self.by_status[what] += 1
        self.longest = max(self.longest, seconds)
        if what == "500" and len(self.bodies_500) < 3:
            self.bodies_500.append(body[:300])

    def show(self) -> str:
        return " ".join(f"{k}:{v}" for k, v in sorted(self.by_status.items()))


class Load:
    """Readers listing clusters through the API until stopped: `threads` with the demo token
    Teapot has cached, and one with a new token per request (from a pool made beforehand, one a
    second), so that Keystone's faults show."""

    def __init__(self, people: People, threads: int = 2, fresh: int = 30, pause: float = 0.05):
        self.people, self.threads, self.pause = people, threads, pause
        self.fresh = [people.new_token() for _ in range(fresh)]
        self.answers = Answers()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []

    def _ask(self, client: httpx.Client, token: str | None = None) -> None:
        headers = {"X-Auth-Token": token} if token else {}
        began = time.monotonic()
        try:
            response = client.get("/v1/clusters", headers=headers)
            what, body = str(response.status_code), response.text
        except httpx.ConnectError:
            what, body = "refused", ""
        except httpx.TimeoutException:
            what, body = "timeout", ""
        except (httpx.ReadError, httpx.RemoteProtocolError):
            what, body = "cut", ""  # the server went away while answering: only a kill does that
        except httpx.TransportError as e:
            what, body = f"transport:{type(e).__name__}", ""
        with self._lock:
            self.answers.add(what, time.monotonic() - began, body)

    def _reader(self) -> None:
        with self.people.client(timeout=90) as client:
            while not self._stop.is_set():
                self._ask(client)
                self._stop.wait(self.pause)

    def _newcomer(self) -> None:
        with self.people.client(timeout=90) as client:
            while self.fresh and not self._stop.is_set():
                self._ask(client, self.fresh.pop())
                self._stop.wait(1.0)

    def __enter__(self) -> Load:
        self._workers = [threading.Thread(target=self._reader, daemon=True)
                         for _ in range(self.threads)]
        self._workers.append(threading.Thread(target=self._newcomer, daemon=True))
        for w in self._workers:
            w.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for w in self._workers:
            w.join(120)


# -- what a row leaves behind ---------------------------------------------------------------------
def world(box, admin: httpx.Client) -> dict:
    """What an operation may leave behind, to compare before and after: hosts (state, held,
    switch port VLAN, address), addresses, load balancers, namespaces. (A project's network is
    made with its first cluster and stays by design: not compared.)"""
    hosts = _get(admin, "/v1/hosts", "hosts")
    db = sqlite3.connect(f"file:{box.state_dir / 'data' / 'teapot' / 'teapot.sqlite'}?mode=ro",
                         uri=True, timeout=10)
    try:
        addresses = db.execute("SELECT count(*) FROM addresses").fetchone()[0]
    finally:
        db.close()
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    prefix = _namespace_prefix(box)
    return {
        "hosts": tuple(sorted((h["name"], h["state"], bool(h["consumer"]), h["network"]["vlan"],
                               h["network"]["address"]) for h in hosts)),
        "addresses": addresses,
        "loadbalancers": len(_get(admin, "/v1/loadbalancers", "loadbalancers")),
        "namespaces": tuple(sorted(n for n in (line.split()[0] for line in netns.splitlines()
                                               if line) if prefix and n.startswith(prefix))),
    }


def _namespace_prefix(box) -> str | None:
    """The prefix of the namespaces the box's switch makes (hosts, load balancers), if it has one."""
    from teapot.net.fabric import STATE_FILE, Fabric

    if not (box.state_dir / "fabric" / STATE_FILE).exists():
        return None
    return Fabric.load(box.state_dir).switch_namespace.rsplit("-", 1)[0] + "-"


def _get(client: httpx.Client, path: str, key: str) -> list:
    for _ in range(60):  # the API itself may be the one coming back
        try:
            response = client.get(path)
            if response.status_code == 200:
                return response.json()[key]
        except httpx.TransportError:
            pass
        time.sleep(1)
    raise AssertionError(f"GET {path} did not answer 200 for a minute")


def left_behind(before: dict, after: dict) -> list[str]:
    out = []
    for key, was in before.items():
        now = after[key]
        if now == was:
            continue
        if isinstance(was, tuple):
            extra = sorted(set(now) - set(was), key=str)
            missing = sorted(set(was) - set(now), key=str)
            out.append(f"{key}: +{extra} -{missing}")
        else:
            out.append(f"{key}: {was} -> {now}")
    return out


# -- operations -----------------------------------------------------------------------------------
class ClusterCreate:
    """A 1 master + `workers` cluster of the demo project; the middle is its hosts provisioning."""

    name = "cluster create"

    def __init__(self, people: People, template: str, workers: int = 1, label: str = "fault"):
        self.people, self.template, self.workers, self.label = people, template, workers, label
        self.uuid: str | None = None
        self.reasons: list[str] = []

    def _get(self) -> dict | None:
        with self.people.client() as client:
            try:
                response = client.get(f"/v1/clusters/{self.uuid}")
            except httpx.TransportError:
                return {}
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            return {}
        body = response.json()
        if not self.reasons or self.reasons[-1] != body["status_reason"]:
            self.reasons.append(body["status_reason"])
        return body

    def start(self) -> None:
        with self.people.client() as client:
            response = client.post("/v1/clusters", json={
                "name": self.label, "cluster_template_id": self.template, "master_count": 1,
                "node_count": self.workers})
        assert response.status_code == 202, response.text
        self.uuid = response.json()["uuid"]

    def middle(self, timeout: float = 180.0) -> None:
        """Wait until its hosts are being provisioned."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body = self._get()
            if body and (str(body["status_reason"] or "").startswith("provisioning")
                         or body["status"] in SETTLED):
                return
            time.sleep(POLL)
        raise AssertionError(f"cluster {self.uuid} never started provisioning: {self.reasons}")

    def end(self, timeout: float = 420.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body = self._get()
            if body and body["status"] in SETTLED:
                if body["status"].endswith("_COMPLETE"):
                    return body["status"]
                return f"{body['status']}: {body['status_reason']}"
            time.sleep(POLL)
        return f"not settled after {timeout:.0f} s: {self.reasons[-3:]}"

    def undo(self, timeout: float = 300.0) -> None:
        if self.uuid is None:
            return
        deadline = time.monotonic() + timeout
        with self.people.client() as client:
            while time.monotonic() < deadline:
                try:
                    if client.delete(f"/v1/clusters/{self.uuid}").status_code in (204, 404):
                        break
                except httpx.TransportError:
                    pass
                time.sleep(1)
        while time.monotonic() < deadline:
            if self._get() is None:
                return
            time.sleep(POLL)
        raise AssertionError(f"cluster {self.uuid} not gone after {timeout:.0f} s: "
                             f"{self.reasons[-3:]}")


def make_template(people: People, kube_tag: str) -> str:
    with people.client() as client:
        response = client.post("/v1/clustertemplates", json={
            "name": "faults", "image_id": IMAGE, "coe": "kubernetes", "flavor_id": "baremetal",
            "master_flavor_id": "baremetal", "external_network_id": "public",
            "labels": {"image_checksum": "fa" * 32, "kube_tag": kube_tag}})
    assert response.status_code == 201, response.text
    return response.json()["uuid"]


# -- a row ----------------------------------------------------------------------------------------
@dataclass
class Row:
    target: str
    mode: str
    operation: str
    answers: Answers
    back_to_end: float | None  # seconds from the process's return to the operation's end
    end: str
    left: list[str]
    reasons: list[str]

    def cells(self) -> list[str]:
        return [self.target, self.mode, self.operation, self.answers.show(),
                f"{self.answers.longest:.1f}",
                "-" if self.back_to_end is None else f"{self.back_to_end:.1f}",
                self.end, "; ".join(self.left) or "nothing"]


HEADER = ["process", "fault", "during", "API answers", "longest s", "back→end s", "end state",
          "left behind"]


def run_row(box, people: People, target: Target, mode: str, operation=None, hold: float = 5.0,
            settle: float = 2.0) -> Row:
    """One fault, with the load running; `operation` (e.g. a ClusterCreate) or None for the load
    alone. The world is compared before the row and after the operation was undone."""
    with people.client("admin") as admin:
        before = steady_world(box, admin)
    end, back_to_end = "-", None
    with Load(people) as load:
        time.sleep(settle)
        if operation is not None:
            operation.start()
            operation.middle()
        back = inject(box, target, mode, hold)
        if operation is not None:
            end = operation.end()
            back_to_end = time.monotonic() - back
        else:
            time.sleep(settle)
    if operation is not None:
        operation.undo()
    with people.client("admin") as admin:
        after = wait_world(box, admin, before)
    return Row(target.name, mode, operation.name if operation else "load only", load.answers,
               back_to_end, end, left_behind(before, after),
               list(getattr(operation, "reasons", [])))


def wait_world(box, admin: httpx.Client, before: dict, timeout: float = 60.0) -> dict:
    """The world after, once it is back to `before` or `timeout` passed (cleaning ends after
    deletion)."""
    deadline = time.monotonic() + timeout
    while True:
        after = world(box, admin)
        if after == before or time.monotonic() > deadline:
            return after
        time.sleep(1)


def steady_world(box, admin: httpx.Client, timeout: float = 120.0) -> dict:
    """The world once every free host is available with its port where the others' are (a host
    just cleaned is on its way back to the idle VLAN)."""
    deadline = time.monotonic() + timeout
    while True:
        now = world(box, admin)
        free = [h for h in now["hosts"] if not h[2]]
        if all(h[1] == "available" for h in free) and len({h[3] for h in free}) <= 1:
            return now
        if time.monotonic() > deadline:
            raise AssertionError(f"the box's free hosts did not settle: {free}")
        time.sleep(1)


def table(rows: list[Row]) -> str:
    cells = [HEADER, *(r.cells() for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER))]
    lines = [" | ".join(c[i].ljust(widths[i]) for i in range(len(HEADER))) for c in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def thawed(box) -> None:
    """SIGCONT every process of the box: a row that failed half-way never leaves one frozen."""
    for target in BOX_TARGETS:
        pid = target.pid(box)
        if pid is not None:
            _signal(_tree(pid), signal.SIGCONT)

