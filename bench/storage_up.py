"""What storage costs `teapot up`: time to its ready line with `--storage` against without, from
an empty and from an existing state dir, split by start level; and the box's Ceph against the
same Ceph started alone by the lab's script (ceph-up.sh, run here in the same bench run).

    .venv/bin/python bench/storage_up.py [--runs 1] [--hosts 1] [--no-ceph-alone] [--echo]

Run 1 of each kind starts from an empty state dir, then the same dir is started again `--runs`
times. The kinds alternate run by run, so that load from elsewhere falls on both alike. The
split: `prepare` is config files and bootstrap steps (all services at once), then each level of
services that start together (to the next level's start; the last one to the ready line, which
with storage includes waiting for Manila's and Cinder's back-ends). The lab's whole storage stack
(its own Keystone and Swift besides) was measured at ~46 s from fresh data (labs/README.md): the
ratio to it is printed too, against the box's levels that hold storage services.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _box import Box, free_base, median, port_free, quiet_check, state_dir  # noqa: E402

BOX_PORTS = 7 + 9 + 29  # the box, MariaDB and Neutron, the storage services, Ceph's range
LAB = Path(__file__).resolve().parents[2] / "shared" / "labs" / "storage"
LAB_STACK_SECONDS = 46.0  # up-all.sh, from the lab notes
STORAGE = {"epmd", "rabbitmq", "ceph-mon", "ceph-mgr", "ceph-osd", "ceph-mds", "rgw",
           "manila-api", "manila-scheduler", "manila-share", "cinder-api", "cinder-scheduler",
           "cinder-volume", "barbican-api"}
STARTING = re.compile(r"starting (?P<name>[\w-]+)")


class TimedLines(list):
    """teapot up's output lines, each with the moment it was read."""

    def __init__(self):
        super().__init__()
        self.times: list[float] = []

    def append(self, line: str) -> None:
        self.times.append(time.monotonic())
        super().append(line)


class TimedBox(Box):
    @property
    def lines(self):
        return self._lines

    @lines.setter
    def lines(self, value):
        self._lines = TimedLines()
        for line in value:
            self._lines.append(line)


def split(box: TimedBox) -> list[tuple[str, float]]:
    """(part, seconds): prepare, then each start level, the last up to the ready line."""
    lines, times = box.lines, box.lines.times
    marks: list[tuple[list[str], float]] = []
    prepare_at = None
    for line, at in zip(lines, times, strict=True):
        if line.startswith("preparing "):
            prepare_at = at
        match = STARTING.match(line)
        if match:
            # The lines of one level come together; a new level after a pause.
            if marks and at - marks[-1][1] < 0.05:
                marks[-1][0].append(match["name"])
            else:
                marks.append(([match["name"]], at))
        if line.startswith("ready:"):
            marks.append((["ready"], at))
    parts = []
    if prepare_at is not None and marks:
        parts.append(("prepare", marks[0][1] - prepare_at))
    for (names, at), (_next, then) in zip(marks, marks[1:], strict=False):
        parts.append((", ".join(names), then - at))
    return parts


def measure(box: TimedBox) -> dict:
    try:
        result = box.start()
        result["split"] = split(box)
    finally:
        stopped = box.stop()
    result["stop"] = stopped
    result["rss"] = box.rss.peak if box.rss else 0
    return result


def ceph_alone() -> float | None:
    """Seconds for the lab's ceph-up.sh (mon, mgr, OSD on BlueStore, RGW, MDS, CephFS) from
    fresh data, its daemons stopped by PID afterwards; None when its ports are taken."""
    ports = [21010, 21011, 21080, *range(21100, 21200)]
    if not (LAB / "ceph" / "ceph-up.sh").exists() or not all(port_free(p) for p in ports):
        return None
    lab = Path(tempfile.mkdtemp(prefix="teapot-bench-ceph-"))
    run = lab / "ceph" / "run"
    try:
        (lab / "ceph").mkdir()
        script = lab / "ceph" / "ceph-up.sh"
        shutil.copy(LAB / "ceph" / "ceph-up.sh", script)
        began = time.monotonic()
        result = subprocess.run(["bash", str(script), "bluestore"], capture_output=True,
                                text=True, timeout=600, env={**os.environ, "LAB": str(lab)},
                                cwd=lab)
        took = time.monotonic() - began
        if result.returncode != 0 or "cephfs active" not in result.stdout:
            print("ceph-up.sh failed:\n" + result.stdout[-2000:] + result.stderr[-2000:])
            return None
        return took
    finally:
        pidfiles = [run / "run" / f"{n}.pid" for n in ("client.rgw.a", "mds.a", "osd.0",
                                                       "mgr.x", "mon.a")]
        pidfiles.insert(3, run / "mgr.fg.pid")
        for pidfile in pidfiles:
            try:
                pid = int(pidfile.read_text())
                os.kill(pid, signal.SIGTERM)
                for _ in range(100):
                    os.kill(pid, 0)
                    time.sleep(0.1)
                os.kill(pid, signal.SIGKILL)
            except (FileNotFoundError, ValueError, ProcessLookupError):
                pass
        shutil.rmtree(lab, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="starts from the existing state dir")
    parser.add_argument("--hosts", type=int, default=1)
    parser.add_argument("--no-ceph-alone", action="store_true",
                        help="do not run the lab's ceph-up.sh for comparison")
    parser.add_argument("--echo", action="store_true", help="show teapot up's output")
    args = parser.parse_args()

    busy = quiet_check()
    print(f"machine before starting: {busy:.2f} cores busy"
          + ("  (NOT idle: timings will be noisy)" if busy > 0.3 else ""), flush=True)
    kinds = {"without": ("--no-switch", "--without-storage"),
             "with storage": ("--no-switch", "--storage")}
    results: dict[str, list[dict]] = {kind: [] for kind in kinds}
    with state_dir(False, "teapot-bench-storage-") as root:
        boxes = {kind: TimedBox(root / kind.replace(" ", "-"), args.hosts, free_base(BOX_PORTS),
                                echo=args.echo, args=extra) for kind, extra in kinds.items()}
        for run in range(args.runs + 1):
            label = "empty dir" if run == 0 else f"existing #{run}"
            for kind, box in boxes.items():
                box.state_dir.mkdir(exist_ok=True)
                results[kind].append(measure(box))
                print(f"  {kind:<13} {label:<12} ready after {results[kind][-1]['wall']:.1f} s",
                      flush=True)
    alone = None if args.no_ceph_alone else ceph_alone()

    print()
    print(f"{'':<13} {'run':<12} {'wall s':>7} {'services s':>11} {'stop s':>7} "
          f"{'peak RSS MiB':>13} {'exit':>5}")
    for kind, runs in results.items():
        for i, r in enumerate(runs):
            label = "empty dir" if i == 0 else f"existing #{i}"
            print(f"{kind:<13} {label:<12} {r['wall']:>7.1f} {r['services']:>11.1f} "
                  f"{r['stop']['seconds']:>7.1f} {r['rss'] / 2**20:>13.0f} "
                  f"{r['stop']['code']!s:>5}")
    for kind, runs in results.items():
        for i, r in enumerate(runs):
            label = "empty dir" if i == 0 else f"existing #{i}"
            print(f"\nsplit, {kind}, {label}:")
            for part, seconds in r["split"]:
                print(f"  {seconds:>6.1f} s  {part}")
    print()
    without, storage = results["without"], results["with storage"]
    print(f"from an empty dir: {storage[0]['wall']:.1f} s with storage, "
          f"{without[0]['wall']:.1f} s without: ratio {storage[0]['wall'] / without[0]['wall']:.2f}"
          f" (+{storage[0]['wall'] - without[0]['wall']:.1f} s)")
    if args.runs:
        a = median([r["wall"] for r in storage[1:]])
        b = median([r["wall"] for r in without[1:]])
        print(f"from an existing dir, median: {a:.1f} s with storage, {b:.1f} s without: "
              f"ratio {a / b:.2f} (+{a - b:.1f} s)")
    extra = storage[0]["wall"] - without[0]["wall"]
    print(f"what storage adds from an empty dir, against the lab's stack alone "
          f"({LAB_STACK_SECONDS:.0f} s): ratio {extra / LAB_STACK_SECONDS:.2f}")
    if alone is not None:
        ceph_parts = [s for part, s in storage[0]["split"]
                      if any(n in part.split(", ") for n in ("ceph-mon", "ceph-mgr", "ceph-osd",
                                                           "ceph-mds", "rgw"))]
        print(f"Ceph alone (lab's ceph-up.sh, same run): {alone:.1f} s; the box's levels holding "
              f"Ceph daemons: {sum(ceph_parts):.1f} s (ratio {sum(ceph_parts) / alone:.2f}; "
              "they start other services too)")
    else:
        print("Ceph alone: not measured (ports 21010-21199 taken, or --no-ceph-alone)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
