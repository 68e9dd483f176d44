"""Emulated Redfish hosts enrolled until available: through Teapot, then directly through Ironic.

    .venv/bin/python bench/enroll.py [--hosts 50] [--workers 8] [--port-base B] [--keep] [--echo]

(a) Teapot: `teapot up --hosts N` in a fresh state dir; Teapot's time is the `hosts H s` part of its
    ready line: creating the hosts through Teapot's API until all are available.
(b) Ironic alone, in the same run once Teapot's hosts are all available: the same N emulated systems
    enrolled straight through Ironic's API (no auth) as nodes `direct-<i>` with the very driver fields
    Teapot sends (IronicProvisioner._driver_fields, emulated deploy) and a port each with a MAC of
    their own (52:54:01:...); `manage` all, wait for manageable, `provide` all, wait for available.
    Timed from the first create to all available. The direct-* nodes are deleted afterwards.

Goal: Teapot within 10% of Ironic alone (ratio <= 1.10); /work/shared/BENCHMARKS.md measured Ironic
alone at 52.5 s for 50 hosts with no-bios/no-firmware interfaces, Teapot's goal <= 52 s.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _box import Box, CpuMeter, describe_cpu, free_base, quiet_check, state_dir  # noqa: E402

GOAL_RATIO = 1.10
UPSTREAM_IRONIC_50 = 52.5
GOAL_TEAPOT_50 = 52.0
NODE_FIELDS = ["uuid", "name", "provision_state", "target_provision_state", "last_error"]


def direct_mac(i: int) -> str:
    return f"52:54:01:{i >> 16 & 0xFF:02x}:{i >> 8 & 0xFF:02x}:{i & 0xFF:02x}"


class DirectIronic:
    """Enrolls the emulated systems straight through Ironic's API, with a small thread pool."""

    def __init__(self, box: Box, hosts: int, workers: int, say=print):
        import openstack
        from keystoneauth1 import exceptions as ksa_exc
        from openstack import exceptions as sdk_exc

        from teapot.deploy.services.sushy_emulator import BMC_USERNAME, emulated_hosts
        from teapot.drivers.provisioner.base import HostTarget
        from teapot.drivers.provisioner.ironic import IronicProvisioner

        self.sdk_exc = sdk_exc
        self.transient = (ksa_exc.ConnectionError, ksa_exc.RetriableConnectionFailure)
        url = box.url("ironic")
        self.conn = openstack.connection.Connection(
            auth_type="none", auth={"endpoint": url}, baremetal_endpoint_override=url,
            app_name="teapot-bench",
        )
        self.workers = workers
        self.say = say
        self.stats: Counter[str] = Counter()
        self.errors: dict[str, str] = {}
        self._lock = threading.Lock()
        # The driver fields exactly as Teapot's provisioner builds them for a box's emulated hosts.
        provisioner = IronicProvisioner(url, emulated_deploy=True)
        bmc = box.url("sushy-emulator").replace("http://", "redfish+http://")
        password = box.secret("bmc-password")
        self.nodes = []
        for i, host in enumerate(emulated_hosts(hosts)):
            target = HostTarget(
                name=f"direct-{i}", uuid="", node_id="", user_data=None, issued=None,
                spec={"bmc": {"address": f"{bmc}/redfish/v1/Systems/{host['uuid']}"},
                      "bootMACAddress": direct_mac(i), "automatedCleaningMode": "metadata"},
                username=BMC_USERNAME, password=password,
            )
            self.nodes.append({"name": target.name, "mac": direct_mac(i),
                               "fields": provisioner._driver_fields(target)})
        self.ids: dict[str, str] = {}
        self.reprovide: set[str] = set()  # re-managed after failed cleaning: provide again

    def describe_fields(self) -> str:
        fields = dict(self.nodes[0]["fields"])
        info = {k: ("***" if "password" in k else v) for k, v in fields.pop("driver_info").items()}
        return f"{fields} driver_info={info}"

    # -- calls with retries ------------------------------------------------------------------------
    def _count(self, what: str) -> None:
        with self._lock:
            self.stats[what] += 1

    def call(self, what: str, fn, *args, attempts: int = 30, **kwargs):
        """Retries dropped connections (Ironic's API server drops some under load) and 5xx."""
        for attempt in range(attempts):
            try:
                return fn(*args, **kwargs)
            except self.transient as e:
                self._count(f"retry after connection error ({what})")
                last = e
            except self.sdk_exc.HttpException as e:
                if e.status_code is None or e.status_code < 500:
                    raise
                self._count(f"retry after HTTP {e.status_code} ({what})")
                last = e
            time.sleep(min(0.2 * 2**attempt, 2.0))
        raise RuntimeError(f"{what}: still failing after {attempts} attempts: {last}")

    def _parallel(self, fn, items) -> None:
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            for future in [pool.submit(fn, item) for item in items]:
                future.result()

    # -- steps -------------------------------------------------------------------------------------
    def _create(self, node: dict) -> None:
        try:
            created = self.call("create node", self.conn.baremetal.create_node, name=node["name"],
                                is_automated_clean_enabled=True, **node["fields"])
        except self.sdk_exc.ConflictException:
            # An attempt whose answer was lost created it already.
            self._count("create node: already there after a retry")
            created = self.call("get node", self.conn.baremetal.get_node, node["name"])
        with self._lock:
            self.ids[node["name"]] = created.id
        try:
            self.call("create port", self.conn.baremetal.create_port, node_uuid=created.id,
                      address=node["mac"], pxe_enabled=True)
        except self.sdk_exc.ConflictException:
            self._count("create port: already there after a retry")

    def _set_state(self, name: str, target: str) -> None:
        for _ in range(120):
            try:
                self.call(f"{target}", self.conn.baremetal.set_node_provision_state,
                          self.ids[name], target)
                return
            except self.sdk_exc.ConflictException:
                self._count(f"{target}: node locked, retried")
                time.sleep(0.5)
        raise RuntimeError(f"{name}: {target} refused for a minute")

    def _list(self) -> dict:
        nodes = self.call("list nodes", lambda: list(self.conn.baremetal.nodes(fields=NODE_FIELDS)))
        return {n.name: n for n in nodes if n.name in self.ids}

    def _wait(self, wanted: str, timeout: float = 900.0) -> None:
        """Polls the node list until every node is in `wanted`; re-issues the action for a node
        that ended in failure (as Teapot does after its backoff), recording Ironic's reason."""
        deadline = time.monotonic() + timeout
        while True:
            nodes = self._list()
            if len(nodes) == len(self.ids) and all(n.provision_state == wanted for n in nodes.values()):
                return
            for name, n in nodes.items():
                failed_verify = (wanted == "manageable" and n.provision_state == "enroll"
                                 and n.last_error and not n.target_provision_state)
                if failed_verify:
                    self.errors[name] = f"verification: {n.last_error}"
                    self._count("manage re-issued after a failed verification")
                    self._set_state(name, "manage")
                elif n.provision_state == "clean failed" and not n.target_provision_state:
                    self.errors[name] = f"cleaning: {n.last_error}"
                    self._count("manage+provide re-issued after failed cleaning")
                    self._set_state(name, "manage")
                    self.reprovide.add(name)
                elif (name in self.reprovide and n.provision_state == "manageable"
                      and not n.target_provision_state):
                    self.reprovide.discard(name)
                    self._set_state(name, "provide")
            if time.monotonic() > deadline:
                states = Counter(n.provision_state for n in nodes.values())
                raise RuntimeError(f"nodes not {wanted} after {timeout:.0f} s: {dict(states)}")
            time.sleep(0.25)

    def run(self) -> dict:
        """Create, manage, provide; returns the seconds at each mark from the first create."""
        marks = {}
        began = time.monotonic()
        self._parallel(self._create, self.nodes)
        marks["created"] = time.monotonic() - began
        self._parallel(lambda n: self._set_state(n["name"], "manage"), self.nodes)
        self._wait("manageable")
        marks["manageable"] = time.monotonic() - began
        self._parallel(lambda n: self._set_state(n["name"], "provide"), self.nodes)
        self._wait("available")
        marks["available"] = time.monotonic() - began
        return marks

    def cleanup(self) -> int:
        """Deletes the direct-* nodes (their ports go with them); returns how many are left."""
        def delete(name: str) -> None:
            try:
                self.call("delete node", self.conn.baremetal.delete_node, self.ids[name],
                          ignore_missing=True)
            except self.sdk_exc.ConflictException:
                self._count("delete: node locked, left")

        self._parallel(delete, list(self.ids))
        left = [n for n in self.call("list nodes", lambda: list(self.conn.baremetal.nodes()))
                if n.name and n.name.startswith("direct-")]
        return len(left)


def teapot_nodes(box: Box) -> tuple[set[str], list[str]]:
    """The ids of Teapot's nodes, and the last_error Ironic recorded on them."""
    import openstack

    url = box.url("ironic")
    conn = openstack.connection.Connection(auth_type="none", auth={"endpoint": url},
                                           baremetal_endpoint_override=url)
    nodes = list(conn.baremetal.nodes(fields=NODE_FIELDS))
    return ({n.id for n in nodes},
            [f"{n.name}: {n.provision_state}: {n.last_error}" for n in nodes if n.last_error])


_MOVED = re.compile(r'Node (\S+) moved to provision state "([^"]+)" from state "([^"]+)"')


def state_durations(box: Box, ids: set[str]) -> dict[str, list[float]]:
    """Seconds each node spent verifying and cleaning, from Ironic's log."""
    seen: dict[str, dict[str, datetime]] = {}
    for line in (box.state_dir / "logs" / "ironic.log").read_text(errors="replace").splitlines():
        m = _MOVED.search(line)
        if m and m[1] in ids:
            try:
                at = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f")
            except ValueError:
                continue
            seen.setdefault(m[1], {}).setdefault(f"{m[3]}>{m[2]}", at)
    spans = {"verifying": ("enroll>verifying", "verifying>manageable"),
             "cleaning": ("manageable>cleaning", "cleaning>available")}
    return {what: sorted((e[b] - e[a]).total_seconds() for e in seen.values() if a in e and b in e)
            for what, (a, b) in spans.items()}


def describe_durations(d: dict[str, list[float]]) -> str:
    return "; ".join(
        f"{what} median {statistics.median(v):.1f} s (min {v[0]:.1f}, max {v[-1]:.1f}, n={len(v)})"
        if v else f"{what}: none logged" for what, v in d.items())


def log_errors(box: Box) -> dict[str, Counter[str]]:
    """ERROR and Traceback lines in the services' logs, by message (request ids left out)."""
    found: dict[str, Counter[str]] = {}
    for name in ("ironic", "teapot-conductor", "teapot-api", "sushy-emulator", "keystone"):
        path = box.state_dir / "logs" / f"{name}.log"
        if not path.exists():
            continue
        messages: Counter[str] = Counter()
        for line in path.read_text(errors="replace").splitlines():
            if " ERROR " in line:
                message = re.sub(r"\[req-[^]]*\]|\[None req-[^]]*\]", "", line.split(" ERROR ", 1)[1])
                messages[" ".join(message.split())[:160]] += 1
            elif line.startswith("Traceback"):
                messages["Traceback"] += 1
        found[name] = messages
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--workers", type=int, default=8,
                        help="threads for the per-node Ironic calls of the direct run")
    parser.add_argument("--port-base", type=int, default=None,
                        help="first of 5 consecutive loopback ports (default: a free range)")
    parser.add_argument("--keep", action="store_true", help="keep the state dir for inspection")
    parser.add_argument("--echo", action="store_true", help="show teapot up's output")
    args = parser.parse_args()

    port_base = args.port_base or free_base()
    busy = quiet_check()
    print(f"machine before starting: {busy:.2f} cores busy"
          + ("  (NOT idle: timings will be noisy)" if busy > 0.3 else ""), flush=True)
    with state_dir(args.keep, "teapot-bench-enroll-") as path:
        box = Box(path, args.hosts, port_base, echo=args.echo)
        direct = None
        try:
            print(f"(a) teapot up --hosts {args.hosts} --port-base {port_base} --state-dir {path}",
                  flush=True)
            teapot = box.start()
            print(f"    ready after {teapot['wall']:.1f} s wall; hosts {teapot['hosts']:.1f} s "
                  f"(services {teapot['services']:.1f} s)", flush=True)
            print(f"    {describe_cpu(teapot['cpu'])} (whole teapot up)", flush=True)
            teapot_ids, teapot_errors = teapot_nodes(box)

            direct = DirectIronic(box, args.hosts, args.workers)
            print(f"(b) Ironic alone: {args.hosts} nodes direct-*, {args.workers} threads; "
                  f"{direct.describe_fields()}", flush=True)
            meter = CpuMeter(box)
            marks = direct.run()
            direct_cpu = meter.read()
            print(f"    available after {marks['available']:.1f} s", flush=True)
            print(f"    {describe_cpu(direct_cpu)}", flush=True)
        finally:
            left = None
            if direct is not None and direct.ids:
                try:
                    left = direct.cleanup()
                except Exception as e:  # report, and stop the box anyway
                    print(f"cleanup of the direct-* nodes failed: {e}")
            logs = log_errors(box) if box.process is not None else {}
            durations = {}
            if box.process is not None and direct is not None:
                durations = {"Teapot": state_durations(box, teapot_ids),
                             "Ironic alone": state_durations(box, set(direct.ids.values()))}
            stopped = box.stop()

    ratio = teapot["hosts"] / marks["available"]
    print()
    print(f"{args.hosts} emulated Redfish hosts, enrolled -> available")
    print(f"{'':<24} {'seconds':>8}  notes")
    goal = (f"; goal <= {GOAL_TEAPOT_50:.0f} s (BENCHMARKS.md): "
            f"{'ok' if teapot['hosts'] <= GOAL_TEAPOT_50 else 'MISSED'}" if args.hosts == 50 else "")
    print(f"{'Teapot (hosts part)':<24} {teapot['hosts']:>8.1f}  from its ready line{goal}")
    print(f"{'Ironic alone':<24} {marks['available']:>8.1f}  created {marks['created']:.1f} s, "
          f"manageable {marks['manageable']:.1f} s, available {marks['available']:.1f} s; "
          f"BENCHMARKS.md: {UPSTREAM_IRONIC_50} s for 50")
    print(f"{'ratio Teapot/Ironic':<24} {ratio:>8.2f}  goal <= {GOAL_RATIO:.2f}: "
          f"{'ok' if ratio <= GOAL_RATIO else 'MISSED'}")
    print()
    print(f"teapot up: ready after {teapot['wall']:.1f} s wall (services {teapot['services']:.1f} s); "
          f"peak RSS sum {box.rss.peak / 2**20:.0f} MiB over {box.rss.processes_at_peak} processes; "
          f"stopped with exit code {stopped['code']} in {stopped['seconds']:.1f} s"
          + (f", killed leftovers {stopped['leftovers']}" if stopped["leftovers"] else ""))
    print(f"Teapot phase: {describe_cpu(teapot['cpu'])}")
    print(f"Ironic phase: {describe_cpu(direct_cpu)}")
    for label, d in durations.items():
        print(f"per node, {label}: {describe_durations(d)}")
    retries = box.host_retries()
    print(f"Teapot host errors while waiting: {len(retries)}")
    for line in retries:
        print(f"  {line}")
    print(f"Ironic last_error on Teapot's nodes: {len(teapot_errors)}")
    for line in teapot_errors:
        print(f"  {line}")
    print(f"direct run retries: {dict(direct.stats) or 'none'}")
    for name, error in direct.errors.items():
        print(f"  {name}: {error}")
    print("ERROR/Traceback lines in the logs: "
          + ", ".join(f"{name} {sum(c.values())}" for name, c in logs.items()))
    for name, messages in logs.items():
        for message, count in messages.most_common(5):
            print(f"  {name} x{count}: {message}")
    if left:
        print(f"direct-* nodes left after cleanup: {left}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
