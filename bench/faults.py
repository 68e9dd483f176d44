"""The fault suite: every process of a box frozen and killed while the box works.

    .venv/bin/python bench/faults.py [--hosts 3] [--hold 6] [--only keystone,ironic] [--echo]
                                     [--storage]

One box (`teapot up`), then for each of its processes (Keystone, Ironic, the Redfish emulator,
Teapot's API and conductor, the switch's ovsdb-server, ovs-vswitchd and sshd), each fault (freeze:
SIGSTOP of it and its children for --hold seconds, then SIGCONT; kill: SIGKILL of them, the box's
supervisor starts it again), each in the middle of a cluster create (1 master + 1 worker, hosts
provisioning) and during a list load alone. The load runs in every row: two readers listing
clusters with a token Teapot has seen, one reader with a new token each second.

With --storage the box also runs Ceph, Manila, Cinder, Barbican and RabbitMQ; their processes get
the same faults in the middle of a share create (Manila, as the demo user: a 1 GiB CephFS share
until available, then deleted).

One row per fault: the API's answers by status (goal: no 500), the longest request, the seconds
from the process's return to the operation's end, the end state (COMPLETE, or FAILED with a
reason) and what was left behind once the operation was undone (hosts, addresses, VLANs, load
balancers, namespaces; with --storage, shares). Faults go only to processes the box started, by
their PIDs. Root only (the box's switch).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _box import Box, CpuMeter, describe_cpu, quiet_check, state_dir  # noqa: E402
from tests.integration import faults  # noqa: E402

from teapot import releases  # noqa: E402

STORAGE_TARGETS = (
    faults.Target("ceph-mon"), faults.Target("ceph-osd"), faults.Target("rgw"),
    faults.Target("manila-api"), faults.Target("manila-share"), faults.Target("cinder-api"),
    faults.Target("barbican-api"), faults.Target("rabbitmq"),
)


class ShareCreate:
    """A 1 GiB CephFS share of the demo project through Manila; the middle is right after the
    POST (Manila's scheduler and share service make it)."""

    name = "share create"

    def __init__(self, people: faults.People, box: Box):
        from keystoneauth1 import session
        from keystoneauth1.identity import v3

        auth = people.auth["demo"]
        self.session = session.Session(auth=v3.Password(
            auth_url=people.keystone, username=auth["username"], password=auth["password"],
            project_name=auth["project_name"], user_domain_name="Default",
            project_domain_name="Default"))
        self.reasons: list[str] = []
        self.id: str | None = None

    def _call(self, method: str, path: str, **kw):
        return self.session.request(path, method, endpoint_filter={
            "service_type": "sharev2", "interface": "public"},
            headers={"X-OpenStack-Manila-API-Version": "2.65"}, raise_exc=False, **kw)

    def start(self) -> None:
        response = self._call("POST", "/shares", json={"share": {
            "share_proto": "CEPHFS", "size": 1, "name": "fault"}})
        assert response.status_code in (200, 202), response.text
        self.id = response.json()["share"]["id"]

    def middle(self) -> None:
        pass

    def _status(self) -> str | None:
        try:
            response = self._call("GET", f"/shares/{self.id}")
        except Exception:  # noqa: BLE001 - Manila itself may be the one coming back
            return ""
        if response.status_code == 404:
            return None
        status = response.json()["share"]["status"] if response.status_code == 200 else ""
        if status and (not self.reasons or self.reasons[-1] != status):
            self.reasons.append(status)
        return status

    def end(self, timeout: float = 300.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self._status()
            if status in ("available", "error"):
                return status
            time.sleep(0.5)
        return f"not settled after {timeout:.0f} s"

    def undo(self, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self._call("DELETE", f"/shares/{self.id}").status_code in (202, 404):
                    break
            except Exception:  # noqa: BLE001
                pass
            time.sleep(1)
        while time.monotonic() < deadline:
            if self._status() is None:
                return
            time.sleep(0.5)
        raise AssertionError(f"share {self.id} not gone after {timeout:.0f} s: {self.reasons}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--hold", type=float, default=6.0, help="seconds a frozen process stays")
    parser.add_argument("--only", default="", help="comma-separated process names")
    parser.add_argument("--storage", action="store_true")
    parser.add_argument("--echo", action="store_true")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    print(f"machine busy before starting: {quiet_check():.2f} cores")
    targets = list(faults.BOX_TARGETS) + (list(STORAGE_TARGETS) if args.storage else [])
    if args.only:
        wanted = set(args.only.split(","))
        targets = [t for t in targets if t.name in wanted]
    extra = ("--storage", "--no-switch") if args.storage else ()
    if args.storage:  # without a switch there are no switch daemons to fault
        targets = [t for t in targets if t.name not in faults.SWITCH_DAEMONS]
    rows: list[faults.Row] = []
    with state_dir(args.keep, "teapot-faults-") as path:
        box = Box(path, args.hosts, echo=args.echo, args=extra)
        try:
            ready = box.start(timeout=900)
            print(f"box ready in {ready['wall']:.1f} s")
            people = faults.People(box)
            template = faults.make_template(people, releases.KUBERNETES[0])
            meter = CpuMeter(box)
            baseline = faults.ClusterCreate(people, template, label="baseline")
            began = time.monotonic()
            baseline.start()
            print(f"baseline: cluster {baseline.end()} in {time.monotonic() - began:.1f} s")
            baseline.undo()
            for target in targets:
                if target.pid(box) is None:
                    print(f"{target.name}: not running in this box; skipped")
                    continue
                storage = target in STORAGE_TARGETS
                for mode in ("freeze", "kill"):
                    operations = [ShareCreate(people, box) if storage
                                  else faults.ClusterCreate(people, template,
                                                            label=f"{target.name}-{mode}"), None]
                    for operation in operations:
                        try:
                            row = faults.run_row(box, people, target, mode, operation,
                                                 hold=args.hold)
                        except (AssertionError, httpx.HTTPError) as e:
                            print(f"{target.name} {mode}: the row did not finish: {e}")
                            continue
                        finally:
                            faults.thawed(box)
                        rows.append(row)
                        print(" | ".join(row.cells()), flush=True)
                        if row.reasons:
                            print("    reasons: " + " -> ".join(map(str, row.reasons)))
            print()
            print(faults.table(rows))
            print()
            fives = sum(r.answers.by_status["500"] for r in rows)
            print(f"rows: {len(rows)}; HTTP 500s: {fives} (goal 0); rows with something left "
                  f"behind: {sum(1 for r in rows if r.left)}; operations not complete: "
                  f"{sum(1 for r in rows if r.end not in ('-', 'CREATE_COMPLETE', 'available'))}")
            print(describe_cpu(meter.read()))
        finally:
            box.stop_and_say()
    return 0


if __name__ == "__main__":
    sys.exit(main())
