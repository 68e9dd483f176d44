"""What Neutron costs `teapot up`: time to its ready line with `--with-neutron` against without.

    .venv/bin/python bench/neutron_up.py [--runs 2] [--hosts 4] [--no-switch] [--echo]

For each of the two, run 1 starts from an empty state dir (Neutron: MariaDB's new data directory
and all of Neutron's migrations), then the same dir is started again `--runs` times (the
migrations find nothing to do). The two alternate run by run, so that load from elsewhere on the
machine falls on both alike. Wall-clock seconds run from starting the process to reading its ready
line; services and hosts are the split `teapot up` reports.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _box import Box, free_base, median, quiet_check, state_dir  # noqa: E402

BOX_PORTS = 7  # the five services of a box, MariaDB and Neutron


def measure(box: Box) -> dict:
    try:
        result = box.start()
    finally:
        stopped = box.stop()
    result["stop"] = stopped
    result["rss"] = box.rss.peak if box.rss else 0
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="starts from the existing state dir")
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--no-switch", action="store_true", help="teapot up --no-switch")
    parser.add_argument("--echo", action="store_true", help="show teapot up's output")
    args = parser.parse_args()

    busy = quiet_check()
    print(f"machine before starting: {busy:.2f} cores busy"
          + ("  (NOT idle: timings will be noisy)" if busy > 0.3 else ""), flush=True)
    common = ("--no-switch",) if args.no_switch else ()
    kinds = {"without": common, "with neutron": (*common, "--with-neutron")}
    results: dict[str, list[dict]] = {kind: [] for kind in kinds}
    with state_dir(False, "teapot-bench-neutron-") as root:
        boxes = {kind: Box(root / kind.replace(" ", "-"), args.hosts, free_base(BOX_PORTS),
                           echo=args.echo, args=extra) for kind, extra in kinds.items()}
        for run in range(args.runs + 1):
            label = "empty dir" if run == 0 else f"existing #{run}"
            for kind, box in boxes.items():
                box.state_dir.mkdir(exist_ok=True)
                results[kind].append(measure(box))
                print(f"  {kind:<13} {label:<12} ready after {results[kind][-1]['wall']:.1f} s",
                      flush=True)

    print()
    print(f"{'':<13} {'run':<12} {'wall s':>7} {'services s':>11} {'hosts s':>8} "
          f"{'peak RSS MiB':>13} {'exit':>5}")
    for kind, runs in results.items():
        for i, r in enumerate(runs):
            label = "empty dir" if i == 0 else f"existing #{i}"
            print(f"{kind:<13} {label:<12} {r['wall']:>7.1f} {r['services']:>11.1f} "
                  f"{r['hosts']:>8.1f} {r['rss'] / 2**20:>13.0f} {r['stop']['code']!s:>5}")
    print()
    without, with_neutron = results["without"], results["with neutron"]
    print(f"from an empty dir: {with_neutron[0]['wall']:.1f} s with Neutron, "
          f"{without[0]['wall']:.1f} s without (+{with_neutron[0]['wall'] - without[0]['wall']:.1f} s)")
    if args.runs:
        a = median([r["wall"] for r in with_neutron[1:]])
        b = median([r["wall"] for r in without[1:]])
        print(f"from an existing dir, median: {a:.1f} s with Neutron, {b:.1f} s without "
              f"(+{a - b:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
