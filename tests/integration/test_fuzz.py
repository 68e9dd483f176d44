"""Schemathesis against the served OpenAPI document of a real box, with real Keystone tokens.

Every operation is fuzzed as admin and as a member of the demo project, with real objects to aim
at (a template, a settled cluster, its node group, a quota, a network, a host). The run fails on any 5xx, any
response or status code its operation does not declare, and any refused write that changed the
database (the conductor is paused meanwhile, so only the API writes; see fuzz_hooks.py).
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from keystoneauth1 import session
from keystoneauth1.identity import v3

from teapot.api.app import OPERATIONS

from .conftest import Box, running, wait_for

ROOT = Path(__file__).resolve().parents[2]
ST = str(Path(sys.executable).parent / "st")
CHECKS = ("not_a_server_error,response_schema_conformance,status_code_conformance,"
          "content_type_conformance,no_half_written_rows")


def _session(box: Box, cloud: str) -> session.Session:
    auth = box.cloud_auth(cloud)
    return session.Session(auth=v3.Password(
        auth_url=auth["auth_url"], username=auth["username"], password=auth["password"],
        project_name=auth["project_name"], user_domain_name="Default",
        project_domain_name="Default"))


@pytest.fixture(scope="module")
def fuzz_box(tmp_path_factory):
    with running(Box(tmp_path_factory.mktemp("fuzzbox"), hosts=2)) as box:
        yield box


@pytest.fixture(scope="module")
def targets(fuzz_box):
    """Real objects for the fuzzer to aim at; the cluster is settled before the conductor pauses."""
    api = fuzz_box.url("teapot-api")
    demo, admin = _session(fuzz_box, "teapot-demo"), _session(fuzz_box, "teapot-admin")
    tokens = {"admin": admin.get_token(), "demo": demo.get_token()}
    version = {"OpenStack-API-Version": "container-infra latest"}

    def post(who: str, path: str, body: dict) -> dict:
        r = httpx.post(api + path, json=body, headers={"X-Auth-Token": tokens[who], **version})
        assert r.status_code in (201, 202), r.text
        return r.json()

    template = post("demo", "/v1/clustertemplates", {
        "name": "fuzz", "image_id": "https://images.example/k8s.raw", "flavor_id": "baremetal",
        "labels": {"image_checksum": "12" * 32}})
    cluster = post("demo", "/v1/clusters", {"name": "fuzz", "cluster_template_id": template["uuid"],
                                            "node_count": 0})
    post("admin", "/v1/quotas", {"project_id": demo.get_project_id(), "resource": "Cluster",
                                 "hard_limit": 5})
    post("admin", "/v1/hostclasses", {"name": "fuzz-class", "labels": {"fuzz": "yes"}})
    network = post("demo", "/v1/networks", {"name": "fuzz-net"})

    def settled():
        r = httpx.get(f"{api}/v1/clusters/{cluster['uuid']}",
                      headers={"X-Auth-Token": tokens["demo"], **version})
        return r.json()["status"] if r.json()["status"] == "CREATE_COMPLETE" else None

    wait_for(settled, timeout=180, what="the fuzz target cluster")
    return {"tokens": tokens, "template": template["uuid"], "cluster": cluster["uuid"],
            "project": demo.get_project_id(), "network": network["uuid"]}


def _config(path: Path, t: dict) -> Path:
    keep = '["GET", "PATCH", "POST"]'  # deletes aim at random names: the targets stay
    path.write_text(f"""
hooks = "tests.integration.fuzz_hooks"

[generation]
max-examples = 25

[[operations]]
include-path-regex = "^/v1/clustertemplates/"
include-method = {keep}
parameters = {{ "ident" = "{t['template']}" }}

[[operations]]
include-path-regex = "^/v1/(clusters|certificates)/"
include-method = {keep}
parameters = {{ "ident" = "{t['cluster']}", "ng" = "default-worker" }}

[[operations]]
include-path-regex = "^/v1/quotas/"
include-method = {keep}
parameters = {{ "project" = "{t['project']}", "resource" = "Cluster" }}

[[operations]]
include-path-regex = "^/v1/networks/"
include-method = {keep}
parameters = {{ "ident" = "{t['network']}" }}

[[operations]]
include-path-regex = "^/v1/hosts/"
include-method = {keep}
parameters = {{ "ident" = "host-1" }}
""")
    return path


def _pause(pid: int, database: str) -> None:
    """Stop the conductor (SIGSTOP) at a moment it holds no write transaction, or every write of
    the API would wait for it."""
    for _ in range(100):
        os.kill(pid, signal.SIGSTOP)
        conn = sqlite3.connect(database, timeout=0.2, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:  # it was in the middle of one: let it finish
            os.kill(pid, signal.SIGCONT)
            time.sleep(0.05)
        finally:
            conn.close()
    raise AssertionError("the conductor never left its write transactions")


@pytest.mark.parametrize("who", ["admin", "demo"])
def test_fuzzing_finds_no_server_error_no_schema_mismatch_no_half_write(fuzz_box, targets, who,
                                                                        tmp_path):
    conductor = fuzz_box.child_pids()["teapot-conductor"]
    env = {**fuzz_box.env(), "TEAPOT_FUZZ_DATABASE": str(fuzz_box.state_dir / "data" / "teapot" /
                                                         "teapot.sqlite"),
           "PYTHONPATH": str(ROOT), "SCHEMATHESIS_HOOKS": "tests.integration.fuzz_hooks"}
    assert Path(env["TEAPOT_FUZZ_DATABASE"]).exists()
    _pause(conductor, env["TEAPOT_FUZZ_DATABASE"])
    try:
        result = subprocess.run(
            [ST, "--config-file", str(_config(tmp_path / "schemathesis.toml", targets)), "run",
             fuzz_box.url("teapot-api") + "/openapi.json",
             "-H", f"X-Auth-Token: {targets['tokens'][who]}",
             "-H", "OpenStack-API-Version: container-infra latest",
             "--checks", CHECKS, "--phases", "examples,coverage,fuzzing", "--workers", "1",
             "--seed", "20261129", "--max-failures", "20"],
            capture_output=True, text=True, env=env, timeout=900, cwd=ROOT)
    finally:
        os.kill(conductor, signal.SIGCONT)
    report = result.stdout[-12000:] + result.stderr[-4000:]
    assert result.returncode == 0, report
    # Every declared operation was tested, with many cases each.
    tested = re.search(r"Tested: (\d+)", result.stdout)
    generated = re.search(r"(\d+) generated", result.stdout)
    assert tested and int(tested.group(1)) == len(OPERATIONS), report
    assert generated and int(generated.group(1)) >= 20 * len(OPERATIONS), report
