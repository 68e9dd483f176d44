"""`POST /v1/clusters/{id}/actions/upgrade`: Kubernetes' version skew rules up front (400s naming
`cluster_template`), the cluster UPDATE_IN_PROGRESS with what it moves from and to, the same call
resuming an upgrade that stopped, a rollback to where it came from; another project's cluster is
not found and a reader may not upgrade. The conductor's part is in test_cluster_state_machine
(the plan) and tests/integration/test_tenant_kubernetes (real hosts, real Kubernetes). Also the
autoscaling labels, which bound the default worker node group that a resize keeps within."""

from __future__ import annotations

from sqlalchemy import select

from teapot import releases as versions
from teapot.db import models
from tests.unit.conftest import call
from tests.unit.test_cluster_rules import _hostclass, _refused, _settled_cluster, _template

FIRST, SECOND = versions.KUBERNETES


def _row(sm, uuid: str) -> models.Cluster:
    with sm() as session:
        return session.scalars(select(models.Cluster).where(models.Cluster.uuid == uuid)).one()


def _set(sm, uuid: str, status: str | None = None, **attrs) -> None:
    with sm.begin() as session:
        row = session.scalars(select(models.Cluster).where(models.Cluster.uuid == uuid)).one()
        row.attrs = {**row.attrs, **attrs}
        if status:
            row.status = status


def _upgrade(client, cluster: str, template: str, who: str = "alice", **fields):
    return call(client, who, "POST", f"/v1/clusters/{cluster}/actions/upgrade",
                json={"cluster_template": template, **fields})


def _world(client, sm) -> tuple[str, str, str]:
    _hostclass(client, sm)
    old = _template(client, name="old", labels={"kube_tag": FIRST})["uuid"]
    new = _template(client, name="new", labels={"kube_tag": SECOND})["uuid"]
    cluster = _settled_cluster(client, sm, old)
    _set(sm, cluster, endpoint={"name": "c1"})  # a load balancer before its masters
    return old, new, cluster


def test_an_upgrade_starts_resumes_and_rolls_back(client, sm):
    old, new, cluster = _world(client, sm)
    assert _upgrade(client, cluster, new).status_code == 202
    row = _row(sm, cluster)
    assert (row.status, row.cluster_template_id, row.attrs["coe_version"]) == \
        ("UPDATE_IN_PROGRESS", new, SECOND)
    assert row.status_reason == f"upgrading to template new (Kubernetes {SECOND})"
    assert row.attrs["upgrade"]["from"] == {"template": old, "version": FIRST}
    assert row.attrs["upgrade"]["to"] == {"template": new, "version": SECOND}
    busy = _upgrade(client, cluster, new)
    assert busy.status_code == 409 and "UPDATE_IN_PROGRESS" in busy.text

    # it stopped (no free host for a master): the same call resumes it, and forgets what the
    # attempt before found
    _set(sm, cluster, "UPDATE_FAILED", upgrade={**row.attrs["upgrade"], "in_place": ["h0"],
                                                "redone": ["h1"], "leaving": ["h2"]})
    assert _upgrade(client, cluster, new).status_code == 202
    row = _row(sm, cluster)
    assert row.status == "UPDATE_IN_PROGRESS" and row.status_reason.endswith(": resumed")
    assert (row.attrs["upgrade"]["in_place"], row.attrs["upgrade"]["redone"],
            row.attrs["upgrade"]["leaving"]) == ([], [], ["h2"])  # what it replaced still leaves

    # back to where it came from, though that is an older release
    _set(sm, cluster, "UPDATE_FAILED")
    assert _upgrade(client, cluster, old).status_code == 202
    row = _row(sm, cluster)
    assert (row.cluster_template_id, row.attrs["coe_version"]) == (old, FIRST)
    assert row.attrs["upgrade"]["from"] == {"template": new, "version": SECOND}


def test_what_kubernetes_cannot_do_is_refused_naming_the_template(client, sm):
    old, new, cluster = _world(client, sm)
    _refused(_upgrade(client, cluster, old), "cluster_template", "already runs template old")
    _refused(_upgrade(client, cluster, new, nodegroup="default-worker"), "nodegroup",
             "masters first")
    _refused(_upgrade(client, cluster, "no-such"), "cluster_template", "no such cluster template")

    # a cluster on the newer release that never ran the older one does not go back to it
    newer = _settled_cluster(client, sm, new)
    _set(sm, newer, endpoint={"name": "c2"})
    _refused(_upgrade(client, newer, old), "cluster_template",
             f"runs Kubernetes {SECOND}; it does not go back to {FIRST}")

    # masters are replaced behind a load balancer only
    bare = _settled_cluster(client, sm, old)
    _refused(_upgrade(client, bare, new), "cluster_template", "no load balancer")
    for uuid, template in ((cluster, old), (newer, new), (bare, old)):
        row = _row(sm, uuid)
        assert (row.status, row.cluster_template_id) == ("CREATE_COMPLETE", template)
        assert "upgrade" not in row.attrs


def test_another_project_and_a_reader_cannot_upgrade(client, sm):
    old, new, cluster = _world(client, sm)
    assert _upgrade(client, cluster, new, who="bob").status_code == 404
    assert _upgrade(client, cluster, new, who="rita").status_code == 403
    row = _row(sm, cluster)
    assert (row.status, row.cluster_template_id) == ("CREATE_COMPLETE", old)


def test_the_autoscaling_labels_bound_the_default_worker_group_or_are_refused(client, sm):
    _hostclass(client, sm)
    template = _template(client, name="t", labels={"kube_tag": FIRST})["uuid"]

    def create(node_count: int, **labels):
        return call(client, "alice", "POST", "/v1/clusters", json={
            "cluster_template_id": template, "node_count": node_count, "labels": labels,
            "merge_labels": True})

    _refused(create(1, auto_scaling_enabled="true"), "labels.max_node_count", "is needed")
    _refused(create(1, auto_scaling_enabled="maybe"), "labels.auto_scaling_enabled")
    _refused(create(1, max_node_count="two"), "labels.max_node_count", "whole number")
    _refused(create(1, min_node_count="3", max_node_count="2"), "labels.min_node_count",
             "more than max_node_count 2")
    _refused(create(4, min_node_count="1", max_node_count="3"), "node_count",
             "outside min_node_count 1 to max_node_count 3")
    with sm() as session:
        assert session.scalar(select(models.Cluster.id)) is None  # nothing half-made

    made = create(2, auto_scaling_enabled="true", min_node_count="1", max_node_count="4")
    assert made.status_code == 202, made.text
    groups = call(client, "alice", "GET",
                  f"/v1/clusters/{made.json()['uuid']}/nodegroups/default-worker").json()
    assert (groups["min_node_count"], groups["max_node_count"]) == (1, 4)
    # the autoscaler's resize keeps within them
    uuid = made.json()["uuid"]
    _set(sm, uuid, "CREATE_COMPLETE")
    _refused(call(client, "alice", "POST", f"/v1/clusters/{uuid}/actions/resize",
                  json={"node_count": 5}), "node_count")
