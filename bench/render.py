"""Render and plan the full control plane (every service enabled): objects produced, time taken.

Plan runs against a Kubernetes API mock (kmock) holding the applied control plane, so it measures
Teapot's side: reading the owned objects and diffing them. Target: render under 1 s on 2 cores.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.kube.conftest import KubeCluster  # noqa: E402

from teapot.deploy import rollout, settings  # noqa: E402
from teapot.kube import Cluster  # noqa: E402

EVERYTHING = """
services: {rgw: {enabled: true}, swift: {enabled: false}}
ceph: {monitors: ["10.1.0.1:6789"]}
tls: {enabled: true}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    for label, text in (("defaults (swift)", ""), ("every service (rgw, tls)", EVERYTHING)):
        cfg = settings.load(text)
        times, count = [], 0
        for _ in range(args.runs):
            start = time.perf_counter()
            units = rollout.desired(cfg)
            times.append(time.perf_counter() - start)
            count = sum(len(u.objects) for u in units)
        print(f"render {label}: {count} objects, median {statistics.median(times) * 1000:.1f} ms, "
              f"max {max(times) * 1000:.1f} ms over {args.runs} runs (target < 1000 ms)")

    cfg = settings.load("")
    with tempfile.TemporaryDirectory() as tmp, KubeCluster(Path(tmp)) as kube:
        client = Cluster(str(kube.kubeconfig), "kmock")
        start = time.perf_counter()
        rollout.apply(cfg, client, lambda _line: None)
        apply_time = time.perf_counter() - start
        times = []
        for _ in range(max(3, args.runs // 4)):
            start = time.perf_counter()
            _units, changes = rollout.compute_plan(cfg, client)
            times.append(time.perf_counter() - start)
        print(f"apply defaults against kmock: {apply_time:.2f} s")
        print(f"plan defaults against kmock: {len(changes)} changes, "
              f"median {statistics.median(times) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
