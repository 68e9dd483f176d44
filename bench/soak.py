"""A soak: readers and writers of two projects against one box for some minutes.

    .venv/bin/python bench/soak.py [--minutes 5] [--hosts 4] [--readers 2] [--echo] [--keep]

One box (`teapot up --hosts 4`) and two projects (demo, and soak-b made for the run). In each
project one writer creates a 1 master + 1 worker cluster, polls it until it settles, deletes it
and polls until it is gone, again and again; `--readers` readers per project list clusters, show
the project's clusters and list cluster templates, without pause. Every answer is checked for
tenancy: a list that shows the other project's cluster counts as a leak across projects.

Printed at the end: requests and requests per second, p50/p99 latency per kind of request,
answers by status (goal: no 5xx), cluster cycles (create to complete, delete to gone; p50),
cycles that failed, answers that showed the other project's clusters (goal 0), what the box held
after the writers stopped compared with before (hosts, addresses, load balancers, namespaces;
goal: nothing; a project's network is made with its first cluster and stays), and the resident memory of Teapot's API and conductor at the start
and the end (growth). Root only (the box's switch).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _box import Box, CpuMeter, describe_cpu, quiet_check, state_dir  # noqa: E402
from clusters import percentile  # noqa: E402
from tests.integration import faults  # noqa: E402

from teapot import releases  # noqa: E402
from teapot.deploy.keystone_setup import admin_connection, ensure_user  # noqa: E402

SETTLED = ("CREATE_COMPLETE", "CREATE_FAILED")


class Project:
    """One project's token and its clusters, as its writer made them."""

    def __init__(self, box: Box, user: str, password: str, project: str):
        from keystoneauth1 import session
        from keystoneauth1.identity import v3

        self.name = project
        self.session = session.Session(auth=v3.Password(
            auth_url=box.url("keystone") + "/v3", username=user, password=password,
            project_name=project, user_domain_name="Default", project_domain_name="Default"))
        self.base = box.url("teapot-api")
        self.mine: set[str] = set()  # every cluster uuid this project's writer made

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=120, headers={
            "X-Auth-Token": self.session.get_token(), **faults.MICROVERSION})


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.status: Counter = Counter()
        self.crossed = 0
        self.cycles: list[tuple[float, float]] = []
        self.failed: list[str] = []

    def call(self, client: httpx.Client, kind: str, method: str, path: str, **kw):
        began = time.monotonic()
        try:
            response = client.request(method, path, **kw)
            what = str(response.status_code)
        except httpx.TransportError as e:
            response, what = None, type(e).__name__
        with self.lock:
            self.latency[kind].append(time.monotonic() - began)
            self.status[what] += 1
        return response


def writer(project: Project, template: str, tally: Tally, stop: threading.Event) -> None:
    with project.client() as client:
        while not stop.is_set():
            began = time.monotonic()
            made = tally.call(client, "cluster create", "POST", "/v1/clusters", json={
                "name": f"soak-{project.name}", "cluster_template_id": template,
                "master_count": 1, "node_count": 1})
            if made is None or made.status_code != 202:
                time.sleep(1)
                continue
            uuid = made.json()["uuid"]
            project.mine.add(uuid)
            status = ""
            while status not in SETTLED:
                time.sleep(0.5)
                shown = tally.call(client, "cluster show", "GET", f"/v1/clusters/{uuid}")
                if shown is not None and shown.status_code == 200:
                    status = shown.json()["status"]
                    if status == "CREATE_FAILED":
                        tally.failed.append(shown.json()["status_reason"])
            created = time.monotonic() - began
            began = time.monotonic()
            tally.call(client, "cluster delete", "DELETE", f"/v1/clusters/{uuid}")
            while True:
                time.sleep(0.5)
                shown = tally.call(client, "cluster show", "GET", f"/v1/clusters/{uuid}")
                if shown is not None and shown.status_code == 404:
                    break
            with tally.lock:
                tally.cycles.append((created, time.monotonic() - began))


def reader(project: Project, other: Project, tally: Tally, stop: threading.Event) -> None:
    with project.client() as client:
        i = 0
        while not stop.is_set():
            i += 1
            if i % 3 == 0:
                tally.call(client, "template list", "GET", "/v1/clustertemplates")
                continue
            listed = tally.call(client, "cluster list", "GET", "/v1/clusters")
            if listed is None or listed.status_code != 200:
                continue
            uuids = {c["uuid"] for c in listed.json()["clusters"]}
            if uuids & other.mine:
                with tally.lock:
                    tally.crossed += 1
            for uuid in list(uuids)[:1]:
                tally.call(client, "cluster show", "GET", f"/v1/clusters/{uuid}")


def rss(box: Box, name: str) -> float:
    pid = box.child_pids().get(name)
    try:
        root = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20
    except (psutil.Error, TypeError):
        return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--readers", type=int, default=2, help="readers per project")
    parser.add_argument("--echo", action="store_true")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    print(f"machine busy before starting: {quiet_check():.2f} cores")
    with state_dir(args.keep, "teapot-soak-") as path:
        box = Box(path, args.hosts, echo=args.echo)
        try:
            ready = box.start(timeout=900)
            print(f"box ready in {ready['wall']:.1f} s")
            conn = admin_connection(box.url("keystone") + "/v3", box.secret("admin-password"))
            ensure_user(conn, "soak-b", "soak-b-password", "soak-b", ["member"])
            demo = box.cloud_auth("teapot-demo")
            projects = [Project(box, "demo", demo["password"], "demo"),
                        Project(box, "soak-b", "soak-b-password", "soak-b")]
            people = faults.People(box)
            templates = []
            for project in projects:
                with project.client() as client:
                    made = client.post("/v1/clustertemplates", json={
                        "name": "soak", "image_id": faults.IMAGE, "coe": "kubernetes",
                        "flavor_id": "baremetal", "master_flavor_id": "baremetal",
                        "external_network_id": "public",
                        "labels": {"image_checksum": "5a" * 32,
                                   "kube_tag": releases.KUBERNETES[0]}})
                    assert made.status_code == 201, made.text
                    templates.append(made.json()["uuid"])
            with people.client("admin") as admin:
                before = faults.steady_world(box, admin)
            memory_before = {name: rss(box, name) for name in ("teapot-api", "teapot-conductor")}
            tally, stop = Tally(), threading.Event()
            threads = [threading.Thread(target=writer, args=(p, t, tally, stop), daemon=True)
                       for p, t in zip(projects, templates, strict=True)]
            for p, other in (projects, projects[::-1]):
                threads += [threading.Thread(target=reader, args=(p, other, tally, stop),
                                             daemon=True) for _ in range(args.readers)]
            meter = CpuMeter(box)
            began = time.monotonic()
            for t in threads:
                t.start()
            time.sleep(args.minutes * 60)
            stop.set()
            for t in threads:
                t.join(600)
            seconds = time.monotonic() - began
            cpu = meter.read()
            with people.client("admin") as admin:
                after = faults.wait_world(box, admin, before)
            memory_after = {name: rss(box, name) for name in ("teapot-api", "teapot-conductor")}

            total = sum(tally.status.values())
            print(f"soak: {seconds:.0f} s, {len(projects)} projects, {args.readers} readers and "
                  f"1 writer each")
            print(f"requests: {total} ({total / seconds:.1f} per second)")
            for kind, values in sorted(tally.latency.items()):
                print(f"  {kind}: {len(values)} requests, p50 {percentile(values, 50) * 1000:.1f} "
                      f"ms, p99 {percentile(values, 99) * 1000:.1f} ms")
            print("answers: " + " ".join(f"{k}:{v}" for k, v in sorted(tally.status.items())))
            fives = sum(v for k, v in tally.status.items() if k.startswith("5"))
            print(f"5xx answers: {fives} (goal 0)")
            if tally.cycles:
                creates = [c for c, _ in tally.cycles]
                deletes = [d for _, d in tally.cycles]
                print(f"cluster cycles: {len(tally.cycles)}; create p50 "
                      f"{statistics.median(creates):.1f} s, delete p50 "
                      f"{statistics.median(deletes):.1f} s")
            print(f"cycles failed: {len(tally.failed)} {tally.failed[:3]}")
            print(f"lists showing the other project's clusters: {tally.crossed} (goal 0)")
            left = faults.left_behind(before, after)
            print(f"left behind: {'; '.join(left) or 'nothing'}")
            for name in memory_before:
                print(f"RSS {name}: {memory_before[name]:.1f} MiB at the start, "
                      f"{memory_after[name]:.1f} MiB at the end")
            print(describe_cpu(cpu))
        finally:
            box.stop_and_say()
    return 0


if __name__ == "__main__":
    sys.exit(main())
