"""Clusters through the Magnum-compatible API: create/delete times, and listing 1,000 clusters.

    .venv/bin/python bench/clusters.py [--runs 3] [--requests 200] [--port-base B] [--keep] [--echo]

One box (`teapot up --hosts 4`), then:
(1) a 3-host cluster (1 master + 2 workers, host class "baremetal") created `--runs` times with
    `POST /v1/clusters` as the demo user: the time from sending the POST to the first poll that
    sees CREATE_COMPLETE (polled every 0.2 s); then `DELETE`, timed until the cluster is gone (404)
    and until all the box's hosts are free again (the host class's free_hosts, as admin).
(2) 1,000 clusters of the demo project, each with its two default node groups, inserted straight
    into the box's SQLite database (status CREATE_COMPLETE, next attempt far in the future so the
    conductor leaves them alone), then `--requests` sequential `GET /v1/clusters` (after 10 warm-up
    requests) with one demo token on one keep-alive connection, through the running API (one
    uvicorn worker, as the box runs it); the same for `GET /v1/clusters/detail`.

Goals from /work/shared/BENCHMARKS.md: the list of 1,000 clusters in <= 20 ms median and >= 50
requests/s (Magnum 23.0: 1.8 s per request, 0.5 req/s). There is no goal for (1); it is printed
beside the box's own numbers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid as uuidlib
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _box import (  # noqa: E402
    Box,
    CpuMeter,
    describe_cpu,
    free_base,
    median,
    quiet_check,
    state_dir,
)

GOAL_LIST_MS = 20.0
GOAL_LIST_RPS = 50.0
MAGNUM_LIST_S = 1.8
MAGNUM_LIST_RPS = 0.5
CLUSTERS = 1000
WARMUP = 10
POLL = 0.2
IMAGE = "https://images.example/ubuntu-2404-k8s.raw"
CHECKSUM = "12" * 32
MICROVERSION = {"OpenStack-API-Version": "container-infra 1.14"}
FAR_FUTURE = 100 * 365 * 86400.0  # seconds added to now: the conductor never looks at them


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


class Api:
    """The box's Teapot API with a token for the demo and the admin user, obtained once each."""

    def __init__(self, box: Box):
        from keystoneauth1 import session
        from keystoneauth1.identity import v3

        clouds = yaml.safe_load(box.clouds.read_text())["clouds"]
        self.sessions = {}
        for who in ("demo", "admin"):
            auth = clouds[f"teapot-{who}"]["auth"]
            self.sessions[who] = session.Session(auth=v3.Password(
                auth_url=box.url("keystone") + "/v3", username=auth["username"],
                password=auth["password"], project_name=auth["project_name"],
                user_domain_name="Default", project_domain_name="Default"))
        demo = self.sessions["demo"]
        self.project_id = demo.get_project_id()
        self.user_id = demo.get_user_id()
        self.base = box.url("teapot-api")
        self.clients = {
            who: httpx.Client(base_url=self.base, timeout=60.0,
                              headers={"X-Auth-Token": s.get_token(), **MICROVERSION})
            for who, s in self.sessions.items()
        }

    def call(self, method: str, path: str, who: str = "demo", expect=(200,), **kwargs):
        response = self.clients[who].request(method, path, **kwargs)
        if response.status_code not in expect:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:500]}")
        return response

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


# -- (1) create and delete a 3-host cluster ---------------------------------------------------------
def create_template(api: Api) -> str:
    body = {"name": "bench-k8s", "image_id": IMAGE, "coe": "kubernetes", "flavor_id": "baremetal",
            "master_flavor_id": "baremetal", "external_network_id": "public",
            "labels": {"image_checksum": CHECKSUM, "kube_tag": "v1.36.3"}}
    return api.call("POST", "/v1/clustertemplates", json=body, expect=(201,)).json()["uuid"]


def free_hosts(api: Api) -> int:
    classes = api.call("GET", "/v1/hostclasses", who="admin").json()["hostclasses"]
    return next(c["free_hosts"] for c in classes if c["name"] == "baremetal")


def wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(POLL)


def cluster_run(api: Api, template: str, hosts: int, i: int, say) -> dict:
    result: dict = {"run": i}
    seen: list[str] = []

    def status(uuid: str):
        response = api.call("GET", f"/v1/clusters/{uuid}", expect=(200, 404))
        if response.status_code == 404:
            return None
        body = response.json()
        if not seen or seen[-1] != body["status_reason"]:
            seen.append(body["status_reason"])
        return body

    began = time.monotonic()
    uuid = api.call("POST", "/v1/clusters", expect=(202,), json={
        "name": f"bench-{i}", "cluster_template_id": template, "master_count": 1,
        "node_count": 2}).json()["uuid"]
    result["post"] = time.monotonic() - began
    try:
        done = wait(lambda: (c := status(uuid)) and c["status"] in ("CREATE_COMPLETE",
                                                                    "CREATE_FAILED") and c,
                    600, f"cluster {uuid} to settle")
    except RuntimeError as e:
        raise RuntimeError(f"{e}; status reasons seen: {' -> '.join(map(str, seen))}") from None
    result["create"] = time.monotonic() - began
    result["status"] = done["status"]
    result["reasons"] = seen
    result["masters"] = len(done.get("master_addresses") or [])
    result["workers"] = len(done.get("node_addresses") or [])
    result["free_during"] = free_hosts(api)
    say(f"  run {i}: {done['status']} after {result['create']:.1f} s "
        f"({result['masters']} master + {result['workers']} worker addresses; "
        f"{result['free_during']} of {hosts} hosts free)")

    began = time.monotonic()
    api.call("DELETE", f"/v1/clusters/{uuid}", expect=(204,))
    gone = free = None
    deadline = began + 600
    while gone is None or free is None:
        now = time.monotonic()
        if gone is None and status(uuid) is None:
            gone = now - began
        if free is None and free_hosts(api) == hosts:
            free = now - began
        if time.monotonic() > deadline:
            raise RuntimeError(f"cluster {uuid} not deleted with its hosts free after 600 s")
        if gone is None or free is None:
            time.sleep(POLL)
    result["gone"], result["free"] = gone, free
    say(f"  run {i}: deleted after {gone:.1f} s, {hosts} hosts free after {free:.1f} s")
    return result


# -- (2) 1,000 clusters in the database, listed through the API -------------------------------------
def insert_clusters(box: Box, api: Api, template: str, count: int) -> float:
    """`count` clusters like create_cluster makes them, settled: returns the seconds it took."""
    from teapot import crypto, pki
    from teapot.db import engine as db_engine
    from teapot.db.models import Cluster, NodeGroup

    data = box.state_dir / "data" / "teapot"
    fernet = crypto.load_or_create_key(str(data / "secret.key"))
    # One real CA for all of them: the rows are as large as real ones (the list loads whole rows).
    ca = pki.new_ca("bench CA")
    ca_key = fernet.encrypt(ca.key_pem)
    secrets = fernet.encrypt(json.dumps({}).encode())
    labels = {"image_checksum": CHECKSUM, "kube_tag": "v1.36.3"}
    engine = db_engine.make_engine(f"sqlite:///{data / 'teapot.sqlite'}")
    began = time.monotonic()
    try:
        sm = db_engine.make_sessionmaker(engine)
        now = time.time()
        with sm.begin() as session:
            for i in range(count):
                cluster_uuid = str(uuidlib.uuid4())
                octet = 10 + i % 240
                attrs = {"keypair": None, "docker_volume_size": None, "discovery_url": None,
                         "fixed_network": None, "fixed_subnet": None, "floating_ip_enabled": False,
                         "master_lb_enabled": False, "labels": labels, "flavor_id": "baremetal",
                         "master_flavor_id": "baremetal", "create_timeout": 60,
                         "health_status": "HEALTHY", "coe_version": "v1.36.3",
                         "master_addresses": [f"198.51.100.{octet}"],
                         "node_addresses": [f"203.0.113.{octet}", f"203.0.113.{octet + 1}"],
                         "api_address": f"https://198.51.100.{octet}:6443", "faults": {}}
                session.add(Cluster(
                    uuid=cluster_uuid, name=f"listed-{i:04d}", project_id=api.project_id,
                    user_id=api.user_id, cluster_template_id=template, status="CREATE_COMPLETE",
                    status_reason="all hosts provisioned", attrs=attrs, ca_cert=ca.cert_pem,
                    ca_key=ca_key, secrets=secrets, deleting=False, generation=1,
                    next_attempt_at=now + FAR_FUTURE, lease_owner=None, lease_expires_at=0.0,
                    created_at=now, updated_at=now))
                for name, role, nodes in (("default-master", "master", 1),
                                          ("default-worker", "worker", 2)):
                    session.add(NodeGroup(
                        uuid=str(uuidlib.uuid4()), name=name, cluster_uuid=cluster_uuid,
                        project_id=api.project_id, role=role, flavor_id="baremetal",
                        image_id=IMAGE, node_count=nodes, is_default=True, labels=labels,
                        status="CREATE_COMPLETE", nodes_to_remove=[], created_at=now,
                        updated_at=now))
    finally:
        engine.dispose()
    return time.monotonic() - began


def latency(box: Box, api: Api, path: str, requests: int) -> dict:
    client = api.clients["demo"]
    for _ in range(WARMUP):
        api.call("GET", path)
    times = []
    meter = CpuMeter(box)
    began = time.perf_counter()
    for _ in range(requests):
        start = time.perf_counter()
        response = client.get(path)
        body = response.content
        times.append(time.perf_counter() - start)
        if response.status_code != 200:
            raise RuntimeError(f"GET {path}: {response.status_code} {body[:300]!r}")
    total = time.perf_counter() - began
    cpu = meter.read()
    return {"path": path, "times": times, "median": median(times), "p95": percentile(times, 95),
            "min": min(times), "max": max(times), "rps": requests / total,
            "clusters": len(json.loads(body)["clusters"]), "bytes": len(body), "cpu": cpu,
            "api_cpu": cpu["services"].get("teapot-api", 0.0)}


def page_walks(box: Box, api: Api, limit: int, walks: int) -> dict:
    """Walk the whole list in pages of `limit`, following the `next` links, `walks` times."""
    client = api.clients["demo"]
    pages, seen = [], 0
    meter = CpuMeter(box)
    began = time.perf_counter()
    for _ in range(walks):
        url, seen = f"/v1/clusters?limit={limit}", 0
        while url:
            start = time.perf_counter()
            response = client.get(url)
            pages.append(time.perf_counter() - start)
            if response.status_code != 200:
                raise RuntimeError(f"GET {url}: {response.status_code} {response.text[:300]}")
            body = response.json()
            seen += len(body["clusters"])
            url = body.get("next")
    total = time.perf_counter() - began
    cpu = meter.read()
    return {"limit": limit, "pages": len(pages) // walks, "median": median(pages),
            "p95": percentile(pages, 95), "walk": total / walks, "clusters": seen,
            "api_cpu": cpu["services"].get("teapot-api", 0.0) / walks}


# -- the whole -------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="cluster create/delete cycles")
    parser.add_argument("--requests", type=int, default=200,
                        help=f"timed GET requests per list (after {WARMUP} warm-up requests)")
    parser.add_argument("--port-base", type=int, default=None,
                        help="first of 5 consecutive loopback ports (default: a free range)")
    parser.add_argument("--keep", action="store_true", help="keep the state dir for inspection")
    parser.add_argument("--echo", action="store_true", help="show teapot up's output")
    parser.add_argument("--no-switch", action="store_true",
                        help="a box without its switch: clusters without tenant networks (compare)")
    parser.add_argument("--skip-lists", action="store_true", help="only (1): cluster create/delete")
    args = parser.parse_args()

    hosts = 4
    port_base = args.port_base or free_base()
    busy = quiet_check()
    print(f"machine before starting: {busy:.2f} cores busy"
          + ("  (NOT idle: timings will be noisy)" if busy > 0.3 else ""), flush=True)
    runs: list[dict] = []
    lists: list[dict] = []
    walks: dict = {}
    with state_dir(args.keep, "teapot-bench-clusters-") as path:
        print(f"teapot up --hosts {hosts} --port-base {port_base} --state-dir {path}", flush=True)
        box = Box(path, hosts, port_base, echo=args.echo,
                  args=("--no-switch",) if args.no_switch else ())
        api = None
        try:
            ready = box.start(sample_rss=False)
            print(f"  ready after {ready['wall']:.1f} s", flush=True)
            api = Api(box)
            template = create_template(api)
            print(f"(1) {args.runs} x a cluster of 1 master + 2 workers", flush=True)
            for i in range(1, args.runs + 1):
                runs.append(cluster_run(api, template, hosts, i, lambda s: print(s, flush=True)))
            existing = len(api.call("GET", "/v1/clusters").json()["clusters"])
            if not args.skip_lists:
                print(f"(2) inserting {CLUSTERS} clusters into the database "
                      f"({existing} there already)", flush=True)
                inserted = insert_clusters(box, api, template, CLUSTERS)
                print(f"  inserted in {inserted:.1f} s", flush=True)
                for path_ in ("/v1/clusters", "/v1/clusters/detail"):
                    lists.append(latency(box, api, path_, args.requests))
                    r = lists[-1]
                    print(f"  GET {path_}: median {r['median'] * 1000:.1f} ms", flush=True)
                walks = page_walks(box, api, 50, max(1, args.requests // 20))
                print(f"  GET /v1/clusters?limit=50, all pages: {walks['walk'] * 1000:.1f} ms", flush=True)
        finally:
            if api is not None:
                api.close()
            stopped = box.stop()
            if stopped["code"] != 0 or stopped["leftovers"]:
                print(f"note: teapot up exited with {stopped['code']}, "
                      f"left behind {stopped['leftovers'] or 'nothing'}")

    print()
    print(f"(1) cluster of 3 hosts (1 master + 2 workers), box with {hosts} hosts, "
          + ("no switch (no tenant networks)" if args.no_switch else "tenant networks on the switch"))
    print(f"{'run':>4} {'POST ms':>8} {'create->complete s':>19} {'status':>16} "
          f"{'delete->gone s':>15} {'delete->hosts free s':>21}")
    for r in runs:
        print(f"{r['run']:>4} {r['post'] * 1000:>8.0f} {r['create']:>19.1f} {r['status']:>16} "
              f"{r['gone']:>15.1f} {r['free']:>21.1f}")
    if runs:
        print(f"{'med':>4} {median([r['post'] * 1000 for r in runs]):>8.0f} "
              f"{median([r['create'] for r in runs]):>19.1f} {'':>16} "
              f"{median([r['gone'] for r in runs]):>15.1f} "
              f"{median([r['free'] for r in runs]):>21.1f}")
        print("(no goal in BENCHMARKS.md for these; compare with `teapot up`'s 4 hosts enrolled ->"
              " available: <= 10 s goal, Ironic alone 6.5 s)")
        print(f"status reasons seen while creating (run 1): {' -> '.join(runs[0]['reasons'])}")
    if args.skip_lists:
        return 0
    print()
    print(f"(2) GET with {CLUSTERS:,} clusters in the database, {args.requests} sequential "
          f"requests after {WARMUP} warm-up, one token, one keep-alive connection")
    print(f"{'request':<24} {'median ms':>10} {'p95 ms':>7} {'min ms':>7} {'max ms':>7} "
          f"{'req/s':>6} {'clusters':>9} {'KiB':>6} {'API CPU ms/req':>15}  goal")
    for r in lists:
        ok = r["median"] * 1000 <= GOAL_LIST_MS and r["rps"] >= GOAL_LIST_RPS
        print(f"GET {r['path']:<20} {r['median'] * 1000:>10.1f} {r['p95'] * 1000:>7.1f} "
              f"{r['min'] * 1000:>7.1f} {r['max'] * 1000:>7.1f} {r['rps']:>6.1f} "
              f"{r['clusters']:>9} {r['bytes'] / 1024:>6.0f} "
              f"{r['api_cpu'] / args.requests * 1000:>15.1f}  "
              f"<= {GOAL_LIST_MS:.0f} ms, >= {GOAL_LIST_RPS:.0f} req/s: {verdict(ok)}")
    if lists:
        print(f"(Magnum 23.0, BENCHMARKS.md: {MAGNUM_LIST_S} s per request, {MAGNUM_LIST_RPS} req/s;"
              f" expected {CLUSTERS + existing} clusters in each response)")
        for r in lists:
            if r["clusters"] != CLUSTERS + existing:
                print(f"note: GET {r['path']} returned {r['clusters']} clusters, "
                      f"expected {CLUSTERS + existing}")
            print(f"GET {r['path']}: {describe_cpu(r['cpu'])}")
            print(f"GET {r['path']}: mean {statistics.fmean(r['times']) * 1000:.1f} ms, "
                  f"stdev {statistics.pstdev(r['times']) * 1000:.1f} ms")
    if walks and lists:
        whole = lists[0]
        per_whole = whole["median"] / max(1, whole["clusters"]) * 1e6
        per_page = walks["walk"] / max(1, walks["clusters"]) * 1e6
        print()
        print(f"(3) the same {walks['clusters']} clusters in pages of {walks['limit']} "
              f"({walks['pages']} pages, following `next`)")
        print(f"page median {walks['median'] * 1000:.1f} ms, p95 {walks['p95'] * 1000:.1f} ms; "
              f"whole walk {walks['walk'] * 1000:.1f} ms, API CPU {walks['api_cpu'] * 1000:.0f} ms")
        print(f"per cluster: {per_page:.1f} us in pages vs {per_whole:.1f} us in one list "
              f"(ratio {per_page / per_whole:.2f}; goal: pages no slower per cluster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
