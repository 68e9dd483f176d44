"""Lists page and sort as Magnum's do: every object exactly once across pages, in order, for every
sort key and direction; bad paging values are 400s naming the parameter; nothing crosses projects."""

from __future__ import annotations

import time
import uuid

import pytest

from teapot.api.container_infra.routes import CLUSTER_PAGING
from teapot.db.models import Cluster, NodeGroup
from tests.unit.conftest import call

COUNT = 1000
STATUSES = ("CREATE_COMPLETE", "CREATE_IN_PROGRESS", "UPDATE_COMPLETE", "CREATE_FAILED")


def _cluster(i: int, project: str, now: float) -> Cluster:
    return Cluster(
        uuid=str(uuid.uuid4()), name=f"c{i % 97:02d}", project_id=project, user_id="u",
        cluster_template_id=str(uuid.uuid4()), status=STATUSES[i % len(STATUSES)],
        status_reason=None, attrs={"labels": {}}, ca_cert=b"", ca_key=b"", secrets=b"",
        deleting=False, generation=1, next_attempt_at=1e12, lease_expires_at=0.0,
        created_at=now + i // 3, updated_at=None if i % 5 == 0 else now + (i * 7919) % 1000)


@pytest.fixture
def clusters(sm):
    """1,000 clusters of p-one (names, statuses and times repeat: ties are broken by id) and 3 of
    p-two; each p-one cluster has one master and i % 4 workers."""
    now = time.time()
    rows = [_cluster(i, "p-one", now) for i in range(COUNT)]
    with sm.begin() as session:
        session.add_all(rows)
        session.add_all(_cluster(i, "p-two", now) for i in range(3))
        for i, row in enumerate(rows):
            for role, count in (("master", 1), ("worker", i % 4)):
                session.add(NodeGroup(uuid=str(uuid.uuid4()), name=f"default-{role}",
                                      cluster_uuid=row.uuid, project_id="p-one", role=role,
                                      node_count=count, is_default=True, labels={},
                                      status="CREATE_COMPLETE", nodes_to_remove=[], created_at=now))
        session.flush()
        return [(r.id, r.uuid, r.name, r.status, r.created_at, r.updated_at or 0.0, i % 4)
                for i, r in enumerate(rows)]


FIELD = {"id": 0, "uuid": 1, "name": 2, "status": 3, "created_at": 4, "updated_at": 5}


def _walk(client, who: str, first: str) -> list[dict]:
    seen, url = [], first
    for _ in range(COUNT):
        response = call(client, who, "GET", url)
        assert response.status_code == 200, response.text
        body = response.json()
        seen.extend(body["clusters"])
        url = body.get("next")
        if not url:
            return seen
        assert url.startswith("http://teapot/v1/clusters")
    raise AssertionError("pages never ended")


@pytest.mark.parametrize("direction", ["asc", "desc"])
@pytest.mark.parametrize("key", sorted(CLUSTER_PAGING.sort_keys))
def test_pages_hold_each_cluster_once_in_order(client, clusters, key, direction):
    seen = _walk(client, "alice", f"/v1/clusters?limit=50&sort_key={key}&sort_dir={direction}")
    expected = sorted(clusters, key=lambda r: (r[FIELD[key]], r[0]), reverse=direction == "desc")
    assert [c["uuid"] for c in seen] == [r[1] for r in expected]
    workers = {r[1]: r[6] for r in clusters}
    assert all(c["node_count"] == workers[c["uuid"]] and c["master_count"] == 1 for c in seen)


def test_without_limit_the_configured_maximum_applies_and_next_follows(client, clusters):
    first = call(client, "alice", "GET", "/v1/clusters/detail").json()
    assert len(first["clusters"]) == 100  # max_limit of the test configuration
    assert "limit=100" in first["next"] and f"marker={first['clusters'][-1]['uuid']}" in first["next"]
    assert len(call(client, "alice", "GET", "/v1/clusters?limit=5000").json()["clusters"]) == 100
    assert len(_walk(client, "alice", "/v1/clusters/detail")) == COUNT


def test_last_page_has_no_next(client, clusters):
    body = call(client, "alice", "GET", f"/v1/clusters?limit=10&marker={clusters[-11][1]}").json()
    assert [c["uuid"] for c in body["clusters"]] == [r[1] for r in clusters[-10:]]
    assert "next" not in body


def test_other_projects_clusters_are_not_listed_and_are_no_marker(client, clusters):
    theirs = call(client, "bob", "GET", "/v1/clusters?limit=2").json()
    assert len(theirs["clusters"]) == 2 and "next" in theirs
    assert {c["uuid"] for c in _walk(client, "bob", "/v1/clusters?limit=2")}.isdisjoint(
        r[1] for r in clusters)
    refused = call(client, "bob", "GET", f"/v1/clusters?marker={clusters[0][1]}")
    assert refused.status_code == 400 and "marker" in refused.json()["errors"][0]["detail"]


def test_a_reader_pages_too(client, clusters):
    assert len(_walk(client, "rita", "/v1/clusters?limit=300")) == COUNT


@pytest.mark.parametrize("query, field, words", [
    ("limit=0", "limit", "from 1"),
    ("limit=-5", "limit", "from 1"),
    ("limit=ten", "limit", "not an integer"),
    ("limit=99999999999", "limit", "from 1 to 2147483647"),
    ("sort_key=secrets", "sort_key", "not one of"),
    ("sort_dir=up", "sort_dir", "not one of asc, desc"),
    ("marker=not-a-uuid", "marker", "is not valid"),
    (f"marker={uuid.uuid4()}", "marker", "no such object"),
])
def test_bad_paging_is_400_naming_the_parameter(client, clusters, query, field, words):
    response = call(client, "alice", "GET", f"/v1/clusters?{query}")
    assert response.status_code == 400, response.text
    detail = response.json()["errors"][0]["detail"]
    assert detail.startswith(f"{field}: ") and words in detail, detail


@pytest.mark.parametrize("path, key", [("/v1/clustertemplates", "clustertemplates"),
                                       ("/v1/hostclasses", "hostclasses"), ("/v1/hosts", "hosts"),
                                       ("/v1/quotas", "quotas")])
def test_every_list_pages(client, sm, path, key):
    from tests.unit.rows import host_row

    with sm.begin() as session:
        for i in range(7):
            session.add(host_row(f"node-{i}", labels={"n": str(i)}))
    for i in range(7):
        assert call(client, "admin", "POST", "/v1/hostclasses",
                    json={"name": f"class-{i}", "labels": {"n": str(i)}}).status_code == 201
        assert call(client, "alice", "POST", "/v1/clustertemplates",
                    json={"name": f"t{i}", "image_id": "https://x/i.raw", "flavor_id": f"class-{i}"}
                    ).status_code == 201
        assert call(client, "admin", "POST", "/v1/quotas",
                    json={"project_id": f"p-{i}", "resource": "Cluster", "hard_limit": i}
                    ).status_code == 201
    who = "alice" if key == "clustertemplates" else "admin"
    pages, url, seen = 0, f"{path}?limit=3&sort_dir=desc", []
    while url:
        body = call(client, who, "GET", url).json()
        seen.extend(body[key])
        url, pages = body.get("next"), pages + 1
    assert pages == 3 and len(seen) == 7
    assert len({str(item) for item in seen}) == 7
