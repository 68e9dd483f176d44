"""Metrics, structured logs and health checks: the API in process (a real database, tokens that
name fixed identities), the API under uvicorn, the conductor's loop and its status server."""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from teapot import config
from teapot.api import app as api_app
from teapot.api.auth import Identity, InvalidToken
from teapot.conductor.loop import Loop
from teapot.db.engine import make_engine, reader
from teapot.observability import health, logs
from teapot.observability.conductor import StatusServer, serve
from teapot.observability.metrics import ConductorMetrics
from tests.unit.rows import host_row

VENV_BIN = Path(sys.executable).parent
ALICE = Identity(user_id="alice-id", user_name="alice", project_id="p-one", project_name="p-one",
                 roles=("member", "reader"), system_scope=None, is_admin_project=False)


class OneToken:
    """Token validation without Keystone: the token "alice" is Alice, any other is refused."""

    def validate(self, token: str) -> Identity:
        if token != "alice":
            raise InvalidToken("the token is not valid (expired, revoked or malformed)")
        return ALICE


@pytest.fixture
def api_conf(tmp_path, db_url):
    conf_file = tmp_path / "teapot.conf"
    conf_file.write_text(
        "[database]\nconnection = " + db_url + "\n"
        "[keystone_authtoken]\nauth_url = http://127.0.0.1:9/v3\npassword = unused\n"
        "[ironic]\nendpoint = http://127.0.0.1:9\n"
        "[secrets]\nkey_file = " + str(tmp_path / "secret.key") + "\n")
    return config.load(str(conf_file))


@pytest.fixture
def client(api_conf):
    from starlette.testclient import TestClient

    with TestClient(api_app.build(api_conf, validator=OneToken()), base_url="http://teapot") as c:
        yield c


def call(client, who: str, method: str, path: str, **kwargs):
    headers = {"X-Auth-Token": who, "OpenStack-API-Version": "container-infra latest"}
    return client.request(method, path, headers=headers, **kwargs)


def scrape(client) -> dict[str, dict[tuple, float]]:
    """name -> {sorted label items: value} of every sample of /metrics (no token)."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples, name: str, **labels) -> float:
    return samples.get(name, {}).get(tuple(sorted(labels.items())), 0.0)


# -- /metrics of the API ------------------------------------------------------------------------------
def test_metrics_parse_and_request_counters_move_by_route_template(client):
    before = scrape(client)
    idents = [str(uuid.uuid4()) for _ in range(3)]
    for ident in idents:
        assert call(client, "alice", "GET", f"/v1/clusters/{ident}").status_code == 404
    assert call(client, "alice", "GET", "/v1/clusters").status_code == 200
    assert client.get("/v1/clusters").status_code == 401  # no token
    after = scrape(client)

    route = "/v1/clusters/{ident}"
    counted = "teapot_api_requests_total"
    assert value(after, counted, method="GET", route=route, status="404") - \
        value(before, counted, method="GET", route=route, status="404") == 3
    assert value(after, counted, method="GET", route="/v1/clusters", status="200") - \
        value(before, counted, method="GET", route="/v1/clusters", status="200") == 1
    assert value(after, counted, method="GET", route="/v1/clusters", status="401") - \
        value(before, counted, method="GET", route="/v1/clusters", status="401") == 1
    # the scrape before this one is counted too
    assert value(after, counted, method="GET", route="/metrics", status="200") >= 1

    hist = "teapot_api_request_duration_seconds"
    assert value(after, hist + "_count", method="GET", route=route) - \
        value(before, hist + "_count", method="GET", route=route) == 3
    assert value(after, hist + "_bucket", method="GET", route=route, le="+Inf") == \
        value(after, hist + "_count", method="GET", route=route)
    assert value(after, hist + "_sum", method="GET", route=route) > 0
    # the route label is the template: no raw path (and so no uuid) is ever a label value
    labels = {v for series in after.values() for key in series for k, v in key if k == "route"}
    assert route in labels
    assert not any(ident in label for ident in idents for label in labels)


def test_unknown_paths_and_methods_do_not_make_new_series(client):
    for i in range(3):
        client.get(f"/no/such/path/{i}")
    client.request("BREW", "/v1/clusters")
    samples = scrape(client)
    counted = samples["teapot_api_requests_total"]
    routes = {dict(key)["route"] for key in counted}
    assert not any(r.startswith("/no/such") for r in routes)
    assert value(samples, "teapot_api_requests_total", method="GET", route="unmatched",
                 status="404") == 3
    assert value(samples, "teapot_api_requests_total", method="other", route="/v1/clusters",
                 status="405") == 1


def test_database_gauges_count_hosts_by_state_and_clusters_by_status(client, sm):
    with sm.begin() as session:
        session.add(host_row("node-a", state="available"))
        session.add(host_row("node-b", state="available"))
        session.add(host_row("node-c", state="provisioned"))
    samples = scrape(client)
    assert value(samples, "teapot_database_up") == 1
    assert value(samples, "teapot_hosts", state="available") == 2
    assert value(samples, "teapot_hosts", state="provisioned") == 1
    assert value(samples, "teapot_hosts", state="registering") == 0  # known states always shown
    assert ("teapot_hosts" in samples and
            sum(samples["teapot_hosts"].values()) == 3)
    # every new host row starts "discovered" (host_row takes the API's initial status)
    assert value(samples, "teapot_hosts_by_operational_status", operational_status="discovered") == 3
    assert sum(samples["teapot_clusters"].values()) == 0
    assert value(samples, "teapot_clusters", status="CREATE_COMPLETE") == 0


def test_metrics_and_healthz_need_no_token_and_answer_only_get(client):
    assert client.get("/metrics").status_code == 200
    assert client.get("/healthz").status_code == 200
    assert client.post("/healthz").status_code == 405


# -- /healthz of the API ------------------------------------------------------------------------------
def test_healthz_ok_while_the_database_answers(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok"}}


def test_healthz_503_names_the_database_when_it_is_gone(client, db_url):
    shutil.rmtree(Path(db_url.removeprefix("sqlite:///")).parent)
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "failed"
    assert body["failed"] == ["database"]
    assert body["checks"]["database"].startswith("failed: ")
    assert "sqlite" not in body["checks"]["database"].lower()  # no path or driver text leaks
    # the scrape still succeeds, and says the database did not answer
    samples = scrape(client)
    assert value(samples, "teapot_database_up") == 0
    assert "teapot_hosts" not in samples


# -- structured logs ----------------------------------------------------------------------------------
@pytest.fixture
def json_log():
    """Records of the whole process as JSON lines into a buffer, while the test runs."""
    buffer = io.StringIO()
    handler = logs.handler("json", buffer)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_json_log_lines_carry_the_request_id(client, db_url, json_log):
    db_dir = Path(db_url.removeprefix("sqlite:///")).parent
    shutil.rmtree(db_dir)
    response = client.get("/healthz")  # the failed check is logged while serving the request
    assert response.status_code == 503
    request_id = response.headers["x-openstack-request-id"]
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    assert lines, "nothing was logged"
    mine = [e for e in lines if e.get("request_id") == request_id]
    assert mine, lines
    assert any(e["level"] == "WARNING" and "health check database failed" in e["message"]
               for e in mine)
    for entry in mine:
        assert set(entry) >= {"time", "level", "logger", "message", "request_id"}
        assert entry["time"].endswith("Z")
    # outside a request, records carry no request id
    logging.getLogger("teapot.test").warning("between requests\nsecond line")
    last = json.loads(json_log.getvalue().splitlines()[-1])
    assert last["message"] == "between requests\nsecond line" and "request_id" not in last


def test_json_log_of_an_exception_is_one_line():
    buffer = io.StringIO()
    logger = logging.getLogger("teapot.test.exception")
    handler = logs.handler("json", buffer)
    logger.addHandler(handler)
    logger.propagate = False
    token = logs.REQUEST_ID.set("req-1234")
    try:
        try:
            raise ValueError("bad\nthing")
        except ValueError:
            logger.exception("it failed")
    finally:
        logs.REQUEST_ID.reset(token)
        logger.removeHandler(handler)
        logger.propagate = True
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["request_id"] == "req-1234"
    assert entry["message"] == "it failed"
    assert "ValueError: bad\nthing" in entry["exception"]


def test_text_log_shows_the_request_id():
    buffer = io.StringIO()
    logger = logging.getLogger("teapot.test.text")
    handler = logs.handler("text", buffer)
    logger.addHandler(handler)
    logger.propagate = False
    token = logs.REQUEST_ID.set("req-5678")
    try:
        logger.warning("hello %s", "there")
    finally:
        logs.REQUEST_ID.reset(token)
        logger.removeHandler(handler)
        logger.propagate = True
    assert buffer.getvalue().rstrip().endswith("WARNING teapot.test.text [req-5678] hello there")


def test_unknown_log_format_is_refused():
    with pytest.raises(ValueError, match="log format must be one of text, json, not 'xml'"):
        logs.handler("xml")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_uvicorn_api_logs_json_when_configured(api_conf, tmp_path, db_url):
    """create_app reads [DEFAULT] log_format: every line uvicorn's API writes is a JSON object."""
    conf_file = tmp_path / "teapot.conf"
    conf_file.write_text("[DEFAULT]\nlog_format = json\n" + conf_file.read_text())
    shutil.rmtree(Path(db_url.removeprefix("sqlite:///")).parent)  # so that /healthz logs
    port = _free_port()
    out = tmp_path / "api.log"
    with out.open("wb") as log_file:
        process = subprocess.Popen(
            [str(VENV_BIN / "uvicorn"), "--factory", "teapot.api.app:create_app", "--host",
             "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "info"],
            env={**os.environ, "TEAPOT_CONFIG": str(conf_file)}, stdout=log_file,
            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, out.read_text()
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, out.read_text()
                time.sleep(0.2)
        assert response.status_code == 503
        request_id = response.headers["x-openstack-request-id"]
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    lines = [line for line in out.read_text().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is JSON, uvicorn's own included
    assert any(e["logger"].startswith("uvicorn") for e in entries), lines
    assert any(e.get("request_id") == request_id and "health check database failed"
               in e["message"] for e in entries), lines


# -- the conductor ------------------------------------------------------------------------------------
class Recorder:
    """A reconciler over a fixed set of ids; ids in `failing` raise; each logs a line."""

    def __init__(self, kind: str, ids, failing=()):
        self.kind = kind
        self.ids = list(ids)
        self.failing = set(failing)
        self.done: list[int] = []
        self.lock = threading.Lock()

    def due(self, now: float, limit: int) -> list[int]:
        with self.lock:
            return [i for i in self.ids if i not in self.done][:limit]

    def refresh(self) -> None:
        pass

    def reconcile(self, object_id: int) -> None:
        logging.getLogger("teapot.test.reconciler").info("working")
        with self.lock:
            self.done.append(object_id)
        if object_id in self.failing:
            raise RuntimeError(f"{self.kind} {object_id} broke")


def _samples(registry) -> dict[str, dict[tuple, float]]:
    from prometheus_client import generate_latest

    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def test_loop_counts_reconciles_errors_and_durations_by_kind(json_log):
    hosts = Recorder("host", [1, 2, 3], failing=[2])
    clusters = Recorder("cluster", [7])
    loop = Loop([hosts, clusters], workers=4, poll_interval=0.05)
    before = _samples(loop.metrics.registry)
    assert value(before, "teapot_reconciles_total", kind="host") == 0  # declared at 0
    loop.tick()
    loop.pool.shutdown(wait=True)
    loop.metrics.passed()
    samples = _samples(loop.metrics.registry)
    assert value(samples, "teapot_reconciles_total", kind="host") == 3
    assert value(samples, "teapot_reconciles_total", kind="cluster") == 1
    assert value(samples, "teapot_reconcile_errors_total", kind="host") == 1
    assert value(samples, "teapot_reconcile_errors_total", kind="cluster") == 0
    assert value(samples, "teapot_reconcile_duration_seconds_count", kind="host") == 3
    assert value(samples, "teapot_reconciles_in_progress", kind="host") == 0
    assert value(samples, "teapot_conductor_passes_total") == 1
    assert value(samples, "teapot_conductor_last_pass_timestamp_seconds") > 0
    # log records made while reconciling name the object
    entries = [json.loads(line) for line in json_log.getvalue().splitlines()]
    reconciling = {e.get("reconciling") for e in entries if e["message"] == "working"}
    assert reconciling == {"host 1", "host 2", "host 3", "cluster 7"}
    failed = [e for e in entries if e["message"].startswith("host 2: reconcile failed (1 in a row")]
    assert failed and "RuntimeError: host 2 broke" in failed[0]["exception"]


def test_conductor_status_server_metrics_and_healthz(db_url):
    loop = Loop([Recorder("host", [1])], workers=1, poll_interval=0.05)
    thread = threading.Thread(target=loop.run, daemon=True)
    checks = {"database": health.database(reader(make_engine(db_url))),
              "loop": health.loop(lambda: loop.metrics.last_pass_monotonic, loop.stopping.is_set,
                                  started=time.monotonic(), max_age=60)}
    server = StatusServer("127.0.0.1", 0, loop.metrics.registry, checks).start()
    base = f"http://127.0.0.1:{server.address[1]}"
    try:
        thread.start()
        deadline = time.monotonic() + 30
        while loop.metrics.last_pass_monotonic is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        response = httpx.get(base + "/healthz")
        assert response.status_code == 200
        assert response.json() == {"status": "ok", "checks": {"database": "ok", "loop": "ok"}}
        metrics = httpx.get(base + "/metrics")
        assert metrics.status_code == 200
        families = {f.name for f in text_string_to_metric_families(metrics.text)}
        assert {"teapot_reconciles", "teapot_reconcile_errors", "teapot_reconcile_duration_seconds",
                "teapot_conductor_passes", "process_cpu_seconds"} <= families
        assert httpx.get(base + "/other").status_code == 404

        loop.stop()
        thread.join(10)
        response = httpx.get(base + "/healthz")
        assert response.status_code == 503
        assert response.json()["failed"] == ["loop"]
        assert response.json()["checks"]["loop"] == "failed: stopping"
    finally:
        loop.stop()
        server.stop()


def test_conductor_healthz_503_when_the_database_is_gone(db_url):
    shutil.rmtree(Path(db_url.removeprefix("sqlite:///")).parent)
    metrics = ConductorMetrics()
    metrics.passed()
    checks = {"database": health.database(reader(make_engine(db_url))),
              "loop": health.loop(lambda: metrics.last_pass_monotonic, lambda: False,
                                  started=time.monotonic(), max_age=60)}
    server = StatusServer("127.0.0.1", 0, metrics.registry, checks).start()
    try:
        response = httpx.get(f"http://127.0.0.1:{server.address[1]}/healthz")
    finally:
        server.stop()
    assert response.status_code == 503
    assert response.json()["failed"] == ["database"]
    assert response.json()["checks"]["loop"] == "ok"


def test_loop_check_fails_when_passes_stop():
    last = time.monotonic() - 120
    check = health.loop(lambda: last, lambda: False, started=last, max_age=60)
    status, body = health.run({"loop": check})
    assert status == 503
    assert body["checks"]["loop"].startswith("failed: no pass of the loop in 1")


def test_a_taken_port_leaves_the_conductor_running_without_its_server(caplog):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with caplog.at_level(logging.ERROR):
            assert serve("127.0.0.1", port, ConductorMetrics().registry, {}) is None
    assert f"cannot serve /metrics and /healthz on 127.0.0.1:{port}" in caplog.text
