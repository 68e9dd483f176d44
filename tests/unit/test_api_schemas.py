"""Declared request schemas: each limit refuses with a 400 naming the field, in the API's error
shape, before any handler runs and without writing anything; unknown paths and methods answer in
the same shape; the OpenAPI document is derived from the same declarations and is valid."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from teapot.api.app import OPERATIONS
from teapot.db import models
from tests.unit.conftest import call
from tests.unit.rows import host_row

IMAGE = "https://images.example/k8s.raw"
TEMPLATE = {"name": "k8s", "coe": "kubernetes", "image_id": IMAGE, "flavor_id": "baremetal"}
BMC = "redfish+http://127.0.0.1:8000/redfish/v1/Systems/1"
HOST = {"name": "node-9", "spec": {"bootMACAddress": "52:54:00:00:00:09", "bmc": {"address": BMC}},
        "bmcCredentials": {"username": "admin", "password": "pw"}}


def _counts(sm) -> dict:
    with sm() as session:
        return {m.__tablename__: session.scalar(select(func.count()).select_from(m))
                for m in (models.Host, models.HostClass, models.ClusterTemplate, models.Cluster,
                          models.NodeGroup, models.Quota)}


@pytest.fixture
def world(client, sm):
    """One host of class baremetal, a template of project p-one and one of its clusters."""
    with sm.begin() as session:
        session.add(host_row("node-0", labels={"kind": "bm"}, state="available"))
    assert call(client, "admin", "POST", "/v1/hostclasses",
                json={"name": "baremetal", "labels": {"kind": "bm"}}).status_code == 201
    template = call(client, "alice", "POST", "/v1/clustertemplates", json=TEMPLATE)
    assert template.status_code == 201, template.text
    cluster = call(client, "alice", "POST", "/v1/clusters",
                   json={"name": "c1", "cluster_template_id": template.json()["uuid"], "node_count": 0})
    assert cluster.status_code == 202, cluster.text
    with sm.begin() as session:  # as the conductor leaves it
        row = session.scalars(select(models.Cluster)).one()
        row.status = "CREATE_COMPLETE"
    return {"template": template.json()["uuid"], "cluster": cluster.json()["uuid"]}


def _create(world, **fields):
    return {"cluster_template_id": world["template"], **fields}


REFUSALS = [
    # (who, method, path, body, field named, words in the message)
    ("alice", "POST", "/v1/clusters", lambda w: _create(w, node_count=10**30), "node_count", "from 0 to 2147483647"),
    ("alice", "POST", "/v1/clusters", lambda w: _create(w, node_count=-1), "node_count", "from 0"),
    ("alice", "POST", "/v1/clusters", lambda w: _create(w, node_count="2"), "node_count", "must be an integer"),
    ("alice", "POST", "/v1/clusters", lambda w: _create(w, node_count=True), "node_count", "must be an integer"),
    ("alice", "POST", "/v1/clusters", lambda w: _create(w, master_count=0), "master_count", "from 1"),
    ("alice", "POST", "/v1/clusters", lambda w: _create(w, name="a" * 10_000), "name", "at most 242"),
    ("alice", "POST", "/v1/clusters", lambda w: _create(w, name="bad\x00name"), "name", "is not valid"),
    ("alice", "POST", "/v1/clusters", lambda w: _create(w, name="1starts-with-digit"), "name", "a letter"),
    ("alice", "POST", "/v1/clusters", lambda w: _create(w, labels={"a": {"b": "c"}}), "labels.a", "must be a string"),
    ("alice", "POST", "/v1/clusters", lambda w: _create(w, labels=["a"]), "labels", "an object"),
    ("alice", "POST", "/v1/clusters", lambda w: _create(w, colour="teal"), "colour", "unknown field"),
    ("alice", "POST", "/v1/clusters", lambda w: {"node_count": 1}, "cluster_template_id", "is required"),
    ("alice", "POST", "/v1/clusters", lambda w: _create(w, create_timeout=0), "create_timeout", "from 1"),
    ("alice", "POST", "/v1/clustertemplates", lambda w: {**TEMPLATE, "image_id": "ftp://x/i.raw"}, "image_id", "http or https"),
    ("alice", "POST", "/v1/clustertemplates", lambda w: {**TEMPLATE, "coe": "swarm"}, "coe", "not one of kubernetes"),
    ("alice", "POST", "/v1/clustertemplates", lambda w: {**TEMPLATE, "apiserver_port": 80}, "apiserver_port", "from 1024 to 65535"),
    ("alice", "POST", "/v1/clustertemplates", lambda w: {"name": "x"}, "image_id", "is required"),
    ("alice", "POST", "/v1/clustertemplates", lambda w: {**TEMPLATE, "public": "yes"}, "public", "true or false"),
    ("alice", "PATCH", "/v1/clusters/{cluster}", lambda w: [{"op": "replace", "path": "/status", "value": "X"}], "[0].path", "changeable: node_count, name"),
    ("alice", "PATCH", "/v1/clusters/{cluster}", lambda w: [{"op": "replace", "path": "/node_count", "value": 2**40}], "node_count", "from 0"),
    ("alice", "PATCH", "/v1/clusters/{cluster}", lambda w: [{"op": "move", "path": "/name"}], "[0].op", "not one of add, replace, remove"),
    ("alice", "PATCH", "/v1/clusters/{cluster}", lambda w: {"node_count": 2}, "", "must be a list"),
    ("alice", "PATCH", "/v1/clustertemplates/{template}", lambda w: [{"op": "add", "path": "/labels/k", "value": {"x": 1}}], "labels.k", "must be a string"),
    ("alice", "POST", "/v1/clusters/{cluster}/actions/resize", lambda w: {"nodes_to_remove": ["a"]}, "node_count", "is required"),
    ("alice", "POST", "/v1/clusters/{cluster}/actions/resize", lambda w: {"node_count": 1, "nodes_to_remove": "a"}, "nodes_to_remove", "a list"),
    ("alice", "POST", "/v1/clusters/{cluster}/nodegroups", lambda w: {"name": "g", "node_count": 5, "max_node_count": 2}, "node_count", "outside"),
    ("alice", "POST", "/v1/clusters/{cluster}/actions/resize", lambda w: {"node_count": 0, "nodes_to_remove": ["node-0"]}, "nodes_to_remove[0]", "has no host 'node-0'"),
    ("alice", "POST", "/v1/clusters", lambda w: _create(w, labels={"auto_healing_enabled": "maybe"}), "labels.auto_healing_enabled", "true or false"),
    ("alice", "POST", "/v1/clusters", lambda w: _create(w, labels={"auto_healing_max_unhealthy": "-1"}), "labels.auto_healing_max_unhealthy", "from 0 to 1000"),
    ("alice", "POST", "/v1/certificates", lambda w: {"cluster_uuid": w["cluster"], "csr": "not pem"}, "csr", "a PEM document"),
    ("admin", "POST", "/v1/hostclasses", lambda w: {"name": "has space", "labels": {"a": "b"}}, "name", "is not valid"),
    ("admin", "POST", "/v1/hostclasses", lambda w: {"name": "gpu", "traits": ["custom_gpu"]}, "traits[0]", "CUSTOM_"),
    ("admin", "POST", "/v1/quotas", lambda w: {"project_id": "p-one", "resource": "Pods"}, "resource", "not one of Cluster"),
    ("admin", "POST", "/v1/quotas", lambda w: {"project_id": "p-one", "resource": "Cluster", "hard_limit": -1}, "hard_limit", "from 0"),
    ("admin", "POST", "/v1/hosts", lambda w: {**HOST, "name": "Node_9"}, "name", "DNS name"),
    ("admin", "POST", "/v1/hosts", lambda w: {**HOST, "bmcCredentials": {"username": "admin"}}, "bmcCredentials.password", "is required"),
    ("admin", "POST", "/v1/hosts", lambda w: {**HOST, "spec": {**HOST["spec"], "colour": "teal"}}, "spec.colour", "unknown field"),
    ("admin", "POST", "/v1/hosts", lambda w: {**HOST, "spec": {**HOST["spec"], "online": "yes"}}, "spec.online", "true or false"),
    ("admin", "POST", "/v1/hosts", lambda w: {**HOST, "labels": {"k": 1}}, "labels.k", "must be a string"),
    ("admin", "PATCH", "/v1/hosts/node-0", lambda w: {"userData": 5}, "userData", "a string"),
]


@pytest.mark.parametrize("who, method, path, make_body, field, words", REFUSALS,
                         ids=[f"{r[1]} {r[2]} {r[4] or 'body'}" for r in REFUSALS])
def test_refusal_names_the_field_and_writes_nothing(client, sm, world, who, method, path, make_body,
                                                    field, words):
    before = _counts(sm)
    response = call(client, who, method, path.format(**world), json=make_body(world))
    assert response.status_code == 400, response.text
    error = response.json()["errors"][0]
    assert error["status"] == 400 and error["code"] == "teapot.invalid_input"
    assert error["detail"].startswith(f"{field}: " if field else ""), error["detail"]
    assert words in error["detail"], error["detail"]
    assert _counts(sm) == before


@pytest.mark.parametrize("raw, words", [(b"", "needs a JSON body"), (b"{nope", "not valid JSON"),
                                        (b"[1]", "must be an object")])
def test_body_that_is_not_an_object_is_400(client, world, raw, words):
    response = call(client, "alice", "POST", "/v1/clusters", content=raw,
                    headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and words in response.json()["errors"][0]["detail"]


def test_accepted_bodies_still_work_with_the_nulls_magnum_clients_send(client, world):
    body = _create(world, name="c2", node_count=None, master_count=None, labels=None, keypair=None,
                   discovery_url=None, create_timeout=None, merge_labels=None)
    response = call(client, "alice", "POST", "/v1/clusters", json=body)
    assert response.status_code == 202, response.text
    shown = call(client, "alice", "GET", f"/v1/clusters/{response.json()['uuid']}").json()
    assert (shown["master_count"], shown["node_count"], shown["create_timeout"]) == (1, 1, 60)


def test_unknown_path_and_method_answer_in_the_error_shape(client):
    missing = call(client, "alice", "GET", "/v1/nothing-here")
    assert missing.status_code == 404 and "/v1/nothing-here" in missing.json()["errors"][0]["detail"]
    wrong = call(client, "alice", "PUT", "/v1/clusters")
    assert wrong.status_code == 405
    assert set(wrong.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    assert wrong.json()["errors"][0]["status"] == 405


def test_openapi_document_is_served_without_a_token_and_valid(client):
    from openapi_spec_validator import validate

    response = client.get("/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    declared = {(op.method.lower(), op.path) for op in OPERATIONS}
    served = {(m, p) for p, methods in doc["paths"].items() for m in methods}
    assert served == declared
    create = doc["paths"]["/v1/clusters"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["properties"]["node_count"]
    assert {"400", "401", "403", "404", "202"} <= set(create["responses"])
    params = {p["name"] for p in doc["paths"]["/v1/clusters"]["get"]["parameters"]}
    assert params == {"limit", "marker", "sort_key", "sort_dir"}


def test_every_write_operation_declares_its_body():
    for op in OPERATIONS:
        if op.method in ("POST", "PATCH", "PUT") and op.path != "/v1/certificates/{ident}":
            assert op.body is not None, f"{op.method} {op.path} has no declared body"


def test_a_resize_stays_within_the_node_groups_bounds(client, sm, world):
    """cluster-autoscaler's magnum provider resizes within min_node_count and max_node_count;
    Teapot refuses anything outside them, naming the field, and changes nothing."""
    made = call(client, "alice", "POST", f"/v1/clusters/{world['cluster']}/nodegroups",
                json={"name": "scaled", "node_count": 1, "min_node_count": 1, "max_node_count": 2})
    assert made.status_code == 202, made.text
    with sm.begin() as session:
        session.scalars(select(models.Cluster)).one().status = "UPDATE_COMPLETE"
    before = _counts(sm)
    for count in (0, 3):
        refused = call(client, "alice", "POST", f"/v1/clusters/{world['cluster']}/actions/resize",
                       json={"nodegroup": "scaled", "node_count": count})
        assert refused.status_code == 400, refused.text
        assert refused.json()["errors"][0]["detail"] == (
            f"node_count: {count} is outside min_node_count 1 to max_node_count 2")
    assert _counts(sm) == before
    resized = call(client, "alice", "POST", f"/v1/clusters/{world['cluster']}/actions/resize",
                   json={"nodegroup": "scaled", "node_count": 2})
    assert resized.status_code == 202, resized.text
    shown = call(client, "alice", "GET",
                 f"/v1/clusters/{world['cluster']}/nodegroups/scaled").json()
    assert shown["node_count"] == 2
