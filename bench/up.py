"""How long `teapot up` takes until its `ready:` line, from an empty state dir and from an existing one.

    .venv/bin/python bench/up.py [--runs 3] [--hosts 4] [--port-base B] [--no-switch] [--keep] [--echo]

Run 1 starts from an empty state dir; after a clean stop (SIGTERM, wait for exit) the same dir is
started again `--runs` times. Wall-clock seconds run from starting the process to reading its ready
line; services and hosts are the split `teapot up` itself reports. Goals from
/work/shared/BENCHMARKS.md: ready in <= 20 s from an empty state dir, <= 10 s from an existing one;
the issue's target: <= 30 s from an existing one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _box import Box, describe_cpu, free_base, median, quiet_check, state_dir  # noqa: E402

GOAL_EMPTY = 20.0
GOAL_EXISTING = 10.0
ISSUE_EXISTING = 30.0


def verdict(value: float, goal: float) -> str:
    return "ok" if value <= goal else "MISSED"


def measure(box: Box) -> dict:
    try:
        result = box.start()
    finally:
        stopped = box.stop()
    result["stop"] = stopped
    result["rss"] = box.rss.peak if box.rss else 0
    result["procs"] = box.rss.processes_at_peak if box.rss else 0
    result["retries"] = box.host_retries()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="starts from the existing state dir")
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--port-base", type=int, default=None,
                        help="first of 5 consecutive loopback ports (default: a free range)")
    parser.add_argument("--no-switch", action="store_true",
                        help="teapot up --no-switch: without the top-of-rack switch")
    parser.add_argument("--keep", action="store_true", help="keep the state dir for inspection")
    parser.add_argument("--echo", action="store_true", help="show teapot up's output")
    args = parser.parse_args()

    port_base = args.port_base or free_base()
    busy = quiet_check()
    print(f"machine before starting: {busy:.2f} cores busy"
          + ("  (NOT idle: timings will be noisy)" if busy > 0.3 else ""), flush=True)
    results: list[tuple[str, dict]] = []
    with state_dir(args.keep, "teapot-bench-up-") as path:
        extra = ("--no-switch",) if args.no_switch else ()
        print(f"teapot up --hosts {args.hosts} --port-base {port_base} --state-dir {path} "
              + " ".join(extra), flush=True)
        box = Box(path, args.hosts, port_base, echo=args.echo, args=extra)
        results.append(("empty dir", measure(box)))
        print(f"  empty dir: ready after {results[-1][1]['wall']:.1f} s", flush=True)
        for i in range(1, args.runs + 1):
            results.append((f"existing #{i}", measure(box)))
            print(f"  existing #{i}: ready after {results[-1][1]['wall']:.1f} s", flush=True)

    print()
    print(f"{'run':<12} {'wall s':>7} {'ready s':>8} {'services s':>11} {'hosts s':>8} "
          f"{'stop s':>7} {'exit':>5} {'peak RSS MiB':>13} {'procs':>6} {'box CPU-s':>10} "
          f"{'other CPU-s':>12}")
    for label, r in results:
        print(f"{label:<12} {r['wall']:>7.1f} {r['total']:>8.1f} {r['services']:>11.1f} "
              f"{r['hosts']:>8.1f} {r['stop']['seconds']:>7.1f} {r['stop']['code']!s:>5} "
              f"{r['rss'] / 2**20:>13.0f} {r['procs']:>6} {r['cpu']['box']:>10.1f} "
              f"{r['cpu']['other']:>12.1f}")
    existing = [r for _, r in results[1:]]
    print()
    empty = results[0][1]
    print(f"from empty dir:          {empty['wall']:5.1f} s wall (services {empty['services']:.1f} s, "
          f"hosts {empty['hosts']:.1f} s)   goal <= {GOAL_EMPTY:.0f} s: "
          f"{verdict(empty['wall'], GOAL_EMPTY)}")
    if existing:
        med = median([r["wall"] for r in existing])
        print(f"from existing, median:   {med:5.1f} s wall (services "
              f"{median([r['services'] for r in existing]):.1f} s, hosts "
              f"{median([r['hosts'] for r in existing]):.1f} s)   goal <= {GOAL_EXISTING:.0f} s: "
              f"{verdict(med, GOAL_EXISTING)}; issue's target <= {ISSUE_EXISTING:.0f} s: "
              f"{verdict(med, ISSUE_EXISTING)}")
    print("(wall: process start to ready line; ready/services/hosts: from the ready line; peak RSS:"
          " sum over the box's processes, shared pages counted per process; box/other CPU-s:"
          " CPU time until ready used by the box and by processes outside it)")
    for label, r in results:
        print(f"{label}: {describe_cpu(r['cpu'])}")
    for label, r in results:
        if r["stop"]["code"] != 0 or r["stop"]["leftovers"]:
            print(f"note: {label}: teapot up exited with {r['stop']['code']}, "
                  f"left behind {r['stop']['leftovers'] or 'nothing'}")
        for line in r["retries"]:
            print(f"note: {label}: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
