"""Metrics, health and structured logs of a real box: the API's and the conductor's /metrics and
/healthz, host gauges against the host list, a reconcile counter that moves, and a conductor
that logs JSON."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter

import httpx
from prometheus_client.parser import text_string_to_metric_families

from .conftest import TEAPOT, wait_for


def scrape(url: str) -> dict[str, dict[tuple, float]]:
    response = httpx.get(url + "/metrics", timeout=10)
    assert response.status_code == 200, response.text
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples, name: str, **labels) -> float:
    return samples.get(name, {}).get(tuple(sorted(labels.items())), 0.0)


def test_api_metrics_count_requests_by_route(box, admin):
    api = box.url("teapot-api")
    before = scrape(api)
    host = admin.list_hosts()[0]
    admin.get_host(host["uuid"])
    admin.get_host(host["name"])
    after = scrape(api)
    route = "/v1/hosts/{ident}"
    counted = "teapot_api_requests_total"
    assert value(after, counted, method="GET", route=route, status="200") - \
        value(before, counted, method="GET", route=route, status="200") == 2
    assert value(after, counted, method="GET", route="/v1/hosts", status="200") - \
        value(before, counted, method="GET", route="/v1/hosts", status="200") == 1
    hist = "teapot_api_request_duration_seconds_count"
    assert value(after, hist, method="GET", route=route) - \
        value(before, hist, method="GET", route=route) == 2
    routes = {dict(k).get("route") for k in after[counted]}
    assert host["uuid"] not in str(routes) and host["name"] not in routes


def test_host_gauges_equal_the_host_list(box, admin):
    api = box.url("teapot-api")

    def agree():
        first = scrape(api)
        listed = Counter(h["state"] for h in admin.list_hosts())
        second = scrape(api)
        # the conductor may move a host between the scrapes and the list: retry until still
        gauges = {dict(k)["state"]: v for k, v in first["teapot_hosts"].items()}
        again = {dict(k)["state"]: v for k, v in second["teapot_hosts"].items()}
        if gauges != again:
            return None
        return gauges == {state: float(listed.get(state, 0)) for state in gauges} and \
            sum(gauges.values()) == sum(listed.values()) and (gauges, listed)

    gauges, listed = wait_for(agree, timeout=60, what="host gauges to match the host list")
    assert sum(listed.values()) >= 6  # the box's hosts, at least
    assert gauges["available"] == listed["available"]
    samples = scrape(api)
    assert value(samples, "teapot_database_up") == 1
    assert "teapot_clusters" in samples


def test_conductor_metrics_reconcile_counter_moves(box):
    conductor = box.url("teapot-conductor")
    before = value(scrape(conductor), "teapot_reconciles_total", kind="host")
    # settled hosts are looked at again every resync interval (15 s in a box)
    wait_for(lambda: value(scrape(conductor), "teapot_reconciles_total", kind="host") > before,
             timeout=90, what="a host reconcile")
    samples = scrape(conductor)
    assert value(samples, "teapot_reconcile_duration_seconds_count", kind="host") >= before + 1
    assert value(samples, "teapot_conductor_passes_total") > 0
    assert ("kind", "cluster") in {item for k in samples["teapot_reconciles_total"] for item in k}


def test_healthz_of_api_and_conductor(box):
    api = httpx.get(box.url("teapot-api") + "/healthz", timeout=10)
    assert api.status_code == 200
    assert api.json() == {"status": "ok", "checks": {"database": "ok"}}
    conductor = httpx.get(box.url("teapot-conductor") + "/healthz", timeout=10)
    assert conductor.status_code == 200
    assert conductor.json() == {"status": "ok", "checks": {"database": "ok", "loop": "ok"}}


def test_a_conductor_with_json_logs(box, tmp_path):
    """A second conductor on the box's database, logging JSON, on a port of its own."""
    log = tmp_path / "conductor.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [TEAPOT, "conductor", "--config-file", str(box.config_file), "--log-format", "json",
             "--metrics-port", "0"],
            stdout=out, stderr=subprocess.STDOUT, env=box.env(), start_new_session=True)
    try:
        def serving():
            for line in log.read_text().splitlines():
                entry = json.loads(line)
                if entry["message"].startswith("serving /metrics and /healthz on "):
                    return entry["message"].rsplit(" ", 1)[1]
            assert process.poll() is None, log.read_text()
            return None

        url = wait_for(serving, timeout=60, what="the conductor's status server")
        health = httpx.get(url + "/healthz", timeout=10)
        assert health.status_code == 200, health.text
        samples = scrape(url)
        assert "teapot_reconciles_total" in samples
        time.sleep(1)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)
