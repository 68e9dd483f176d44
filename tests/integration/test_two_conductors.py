"""Two conductors on one database never act on the same host at the same time (leases)."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
from collections import defaultdict

from .conftest import TEAPOT, wait_for

HOSTS = ("host-3", "host-4", "host-5")
CHECKSUM = "cd" * 32


def test_two_conductors_share_the_work_without_overlap(box):
    second = subprocess.Popen([TEAPOT, "conductor", "--config-file", str(box.config_file)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=box.env(),
                              start_new_session=True)
    try:
        for round_ in range(2):
            for name in HOSTS:
                box.teapot("host", "provision", name, "--image-url", f"http://images.example/{round_}.raw",
                           "--image-checksum", CHECKSUM, "--image-checksum-type", "sha256")
            for name in HOSTS:
                box.teapot("host", "show", name)
                wait_for(lambda n=name: '"provisioned"' in box.teapot("host", "show", n, "-f", "json").stdout,
                         timeout=120, what=f"{name} provisioned")
            for name in HOSTS:
                box.teapot("host", "deprovision", name)
            for name in HOSTS:
                wait_for(lambda n=name: '"available"' in box.teapot("host", "show", n, "-f", "json").stdout,
                         timeout=120, what=f"{name} available")
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(30)
        except subprocess.TimeoutExpired:
            second.kill()
            second.wait()

    db = sqlite3.connect(box.state_dir / "data" / "teapot" / "teapot.sqlite")
    rows = db.execute(
        "SELECT h.name, e.conductor, e.started_at, e.finished_at FROM host_events e "
        "JOIN hosts h ON h.uuid = e.host_uuid WHERE h.name IN (?, ?, ?)", HOSTS).fetchall()
    assert rows, "no host events recorded"
    conductors = {r[1] for r in rows}
    assert len(conductors) >= 2, f"only {conductors} did any work; the test proves nothing"
    by_host = defaultdict(list)
    for name, conductor, start, end in rows:
        by_host[name].append((start, end, conductor))
    for name, spans in by_host.items():
        spans.sort()
        for (s1, e1, c1), (s2, _e2, c2) in zip(spans, spans[1:], strict=False):
            if c1 != c2:
                assert s2 >= e1, f"{name}: {c1} and {c2} acted at once ({s1}-{e1} and {s2})"
