"""What templates and clusters may ask for: a Kubernetes release the cloud serves (kube_tag), and
network and volume drivers Teapot implements. Refusals are 400s naming the field (and the releases
that are served) and write nothing; `GET /v1/mservices` names the service as Magnum's clients
expect; `teapot status` lists the pinned releases built here."""

from __future__ import annotations

import json
import os
import time

import pytest
from sqlalchemy import func, select

from teapot import releases as versions
from teapot.db import models
from teapot.resources import cluster_rules
from teapot.resources.cluster import DEFAULT_KUBERNETES_VERSION
from teapot.resources.errors import ValidationError
from tests.unit.conftest import call
from tests.unit.rows import host_row

OLD, SERVED = "v1.31.2", ", ".join(versions.KUBERNETES)
TEMPLATE = {"name": "k8s", "coe": "kubernetes", "image_id": "https://images.example/k8s.raw",
            "flavor_id": "baremetal"}


def _counts(sm) -> tuple[int, ...]:
    with sm() as session:
        return tuple(session.scalar(select(func.count()).select_from(m))
                     for m in (models.ClusterTemplate, models.Cluster, models.NodeGroup))


def _refused(response, field: str, *words: str) -> str:
    assert response.status_code == 400, response.text
    error = response.json()["errors"][0]
    assert error["code"] == "teapot.invalid_input"
    assert error["detail"].startswith(f"{field}: "), error["detail"]
    for word in words:
        assert word in error["detail"], error["detail"]
    return error["detail"]


def _hostclass(client, sm) -> None:
    with sm.begin() as session:
        session.add(host_row("node-0", labels={"kind": "bm"}, state="available"))
    assert call(client, "admin", "POST", "/v1/hostclasses",
                json={"name": "baremetal", "labels": {"kind": "bm"}}).status_code == 201


def _template(client, **fields) -> dict:
    response = call(client, "alice", "POST", "/v1/clustertemplates", json={**TEMPLATE, **fields})
    assert response.status_code == 201, response.text
    return response.json()


def _settled_cluster(client, sm, template: str, **fields) -> str:
    response = call(client, "alice", "POST", "/v1/clusters",
                    json={"cluster_template_id": template, "node_count": 0, **fields})
    assert response.status_code == 202, response.text
    uuid = response.json()["uuid"]
    with sm.begin() as session:  # as the conductor leaves it
        session.scalars(select(models.Cluster).where(models.Cluster.uuid == uuid)).one() \
            .status = "CREATE_COMPLETE"
    return uuid


def _coe_version(client, cluster: str) -> str:
    return call(client, "alice", "GET", f"/v1/clusters/{cluster}").json()["coe_version"]


def _stale(sm, template: str) -> None:
    """A template made before the cloud stopped serving its release."""
    with sm.begin() as session:
        row = session.scalars(select(models.ClusterTemplate)
                              .where(models.ClusterTemplate.uuid == template)).one()
        row.attrs = {**row.attrs, "labels": {**row.attrs["labels"], "kube_tag": OLD}}


@pytest.fixture
def world(client, sm):
    _hostclass(client, sm)


# -- kube_tag --------------------------------------------------------------------------------------
def test_template_with_an_unserved_kube_tag_is_refused_naming_the_served_ones(client, sm, world):
    before = _counts(sm)
    detail = _refused(call(client, "alice", "POST", "/v1/clustertemplates",
                           json={**TEMPLATE, "labels": {"kube_tag": OLD}}), "labels.kube_tag")
    assert detail == f"labels.kube_tag: {OLD} is not served here; this cloud serves {SERVED}"
    assert _counts(sm) == before
    for version in versions.KUBERNETES:
        assert _template(client, name=f"k8s-{version}", labels={"kube_tag": version})


def test_template_patch_to_an_unserved_kube_tag_is_refused(client, sm, world):
    template = _template(client, labels={"kube_tag": versions.KUBERNETES[0]})["uuid"]
    _refused(call(client, "alice", "PATCH", f"/v1/clustertemplates/{template}",
                  json=[{"op": "replace", "path": "/labels/kube_tag", "value": OLD}]),
             "labels.kube_tag", OLD, SERVED)
    shown = call(client, "alice", "GET", f"/v1/clustertemplates/{template}").json()
    assert shown["labels"]["kube_tag"] == versions.KUBERNETES[0]
    # a template whose release is no longer served can still be renamed (what changes is checked)
    _stale(sm, template)
    renamed = call(client, "alice", "PATCH", f"/v1/clustertemplates/{template}",
                   json=[{"op": "replace", "path": "/name", "value": "old-k8s"}])
    assert renamed.status_code == 200, renamed.text


def test_cluster_labels_overriding_kube_tag_are_checked(client, sm, world):
    template = _template(client, labels={"kube_tag": versions.KUBERNETES[0]})["uuid"]
    before = _counts(sm)
    for merge in (True, False):
        _refused(call(client, "alice", "POST", "/v1/clusters",
                      json={"cluster_template_id": template, "labels": {"kube_tag": OLD},
                            "merge_labels": merge}),
                 "labels.kube_tag", f"{OLD} is not served here; this cloud serves {SERVED}")
    assert _counts(sm) == before
    newest = versions.KUBERNETES[-1]
    cluster = _settled_cluster(client, sm, template, labels={"kube_tag": newest},
                               merge_labels=True)
    assert _coe_version(client, cluster) == newest


def test_cluster_gets_its_templates_release_or_the_default(client, sm, world):
    tagged = _template(client, name="tagged", labels={"kube_tag": versions.KUBERNETES[0]})["uuid"]
    untagged = _template(client, name="untagged")["uuid"]
    assert _coe_version(client, _settled_cluster(client, sm, tagged)) == versions.KUBERNETES[0]
    assert _coe_version(client, _settled_cluster(client, sm, untagged)) == DEFAULT_KUBERNETES_VERSION
    assert DEFAULT_KUBERNETES_VERSION == versions.KUBERNETES[-1]


def test_cluster_from_a_template_whose_release_is_no_longer_served_is_refused(client, sm, world):
    template = _template(client, name="old", labels={"kube_tag": versions.KUBERNETES[0]})["uuid"]
    _stale(sm, template)
    before = _counts(sm)
    detail = _refused(call(client, "alice", "POST", "/v1/clusters",
                           json={"cluster_template_id": template}), "cluster_template_id")
    assert detail == (f"cluster_template_id: template old has kube_tag {OLD}, which is not "
                      f"served here; this cloud serves {SERVED}")
    assert _counts(sm) == before


def test_upgrade_to_a_template_of_an_unserved_release_is_refused(client, sm, world):
    first, second = versions.KUBERNETES
    current = _template(client, name="current", labels={"kube_tag": first})["uuid"]
    newer = _template(client, name="newer", labels={"kube_tag": second})["uuid"]
    old = _template(client, name="old", labels={"kube_tag": first})["uuid"]
    _stale(sm, old)
    cluster = _settled_cluster(client, sm, current)
    with sm.begin() as session:  # as the conductor leaves it: a load balancer before its masters
        row = session.scalars(select(models.Cluster).where(models.Cluster.uuid == cluster)).one()
        row.attrs = {**row.attrs, "endpoint": {"name": "c1"}}

    _refused(call(client, "alice", "POST", f"/v1/clusters/{cluster}/actions/upgrade",
                  json={"cluster_template": old}),
             "cluster_template", f"template old has kube_tag {OLD}", SERVED)
    shown = call(client, "alice", "GET", f"/v1/clusters/{cluster}").json()
    assert (shown["cluster_template_id"], shown["coe_version"]) == (current, first)

    upgraded = call(client, "alice", "POST", f"/v1/clusters/{cluster}/actions/upgrade",
                    json={"cluster_template": newer})
    assert upgraded.status_code == 202, upgraded.text
    shown = call(client, "alice", "GET", f"/v1/clusters/{cluster}").json()
    assert (shown["cluster_template_id"], shown["coe_version"]) == (newer, second)


def test_the_served_releases_come_from_the_configuration(api_conf, tokens, sm):
    from starlette.testclient import TestClient

    from teapot.api import app as api_app

    only = versions.KUBERNETES[0]
    api_conf.set_override("kubernetes_versions", [only], group="clusters")
    with TestClient(api_app.build(api_conf, validator=tokens), base_url="http://teapot") as client:
        _hostclass(client, sm)
        _refused(call(client, "alice", "POST", "/v1/clustertemplates",
                      json={**TEMPLATE, "labels": {"kube_tag": versions.KUBERNETES[-1]}}),
                 "labels.kube_tag", f"this cloud serves {only}")
        # a cluster naming no release gets the last served one when the default is not served
        untagged = _template(client)["uuid"]
        assert _coe_version(client, _settled_cluster(client, sm, untagged)) == only


def test_a_configured_release_must_look_like_one(tmp_path, db_url):
    from teapot import config

    conf_file = tmp_path / "bad.conf"
    conf_file.write_text(
        "[database]\nconnection = " + db_url + "\n"
        "[keystone_authtoken]\nauth_url = http://127.0.0.1:9/v3\npassword = unused\n"
        "[ironic]\nendpoint = http://127.0.0.1:9\n"
        "[secrets]\nkey_file = " + str(tmp_path / "secret.key") + "\n"
        "[clusters]\nkubernetes_versions = v1.36.3, latest\n")
    conf = config.load(str(conf_file))
    with pytest.raises(ValueError, match="latest"):
        conf.clusters.kubernetes_versions  # noqa: B018


def test_kubernetes_version_rules():
    served = versions.KUBERNETES
    assert cluster_rules.kubernetes_version({"kube_tag": served[0]}, served) == served[0]
    assert cluster_rules.kubernetes_version({}, served) == DEFAULT_KUBERNETES_VERSION
    assert cluster_rules.kubernetes_version(None, served, default=served[0]) == served[0]
    assert cluster_rules.kubernetes_version({"kube_tag": ""}, served) == DEFAULT_KUBERNETES_VERSION
    with pytest.raises(ValidationError, match="no Kubernetes release"):
        cluster_rules.kubernetes_version({}, ())
    with pytest.raises(ValidationError) as err:
        cluster_rules.kubernetes_version({"kube_tag": OLD}, ())
    assert err.value.field == "labels.kube_tag" and "kubernetes_versions is empty" in str(err.value)


# -- drivers ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("field, value, words", [
    ("network_driver", "weave", "'weave' is not a network driver Teapot implements; use flannel or calico"),
    ("volume_driver", "rexray", "'rexray' is not a volume driver Teapot implements; use cinder"),
])
def test_template_with_a_driver_teapot_lacks_is_refused(client, sm, world, field, value, words):
    before = _counts(sm)
    _refused(call(client, "alice", "POST", "/v1/clustertemplates", json={**TEMPLATE, field: value}),
             field, words)
    assert _counts(sm) == before
    template = _template(client)["uuid"]
    _refused(call(client, "alice", "PATCH", f"/v1/clustertemplates/{template}",
                  json=[{"op": "add", "path": f"/{field}", "value": value}]), field, words)


def test_template_with_drivers_teapot_implements_is_made(client, world):
    for network in cluster_rules.NETWORK_DRIVERS:
        for volume in (*cluster_rules.VOLUME_DRIVERS, None):
            made = _template(client, name=f"{network}-{volume}", network_driver=network,
                             volume_driver=volume)
            assert (made["network_driver"], made["volume_driver"]) == (network, volume)
    assert _template(client, name="defaults")["network_driver"] == "flannel"


def test_openapi_names_the_drivers(client):
    doc = client.get("/openapi.json").json()
    body = doc["paths"]["/v1/clustertemplates"]["post"]["requestBody"]["content"]
    fields = body["application/json"]["schema"]["properties"]
    assert fields["network_driver"]["description"] == "flannel or calico"
    assert fields["volume_driver"]["description"] == "cinder"


# -- mservices -------------------------------------------------------------------------------------
def test_mservices_reports_a_magnum_conductor(client, sm):
    now = time.time()
    with sm.begin() as session:
        session.add(models.HostEvent(host_uuid="h-1", conductor="box-1:42", state="available",
                                     operation="power", started_at=now - 1, finished_at=now,
                                     outcome="ok"))
    services = call(client, "admin", "GET", "/v1/mservices").json()["mservices"]
    assert [(s["binary"], s["host"], s["state"], s["report_count"]) for s in services] == [
        ("magnum-conductor", "box-1:42", "up", 1)]


# -- teapot status ---------------------------------------------------------------------------------
def test_status_lists_the_kubernetes_releases_built_here(tmp_path, monkeypatch, capsys):
    from teapot.cli.status import Status

    cache = tmp_path / "kube"
    monkeypatch.setenv("KUBE_CACHE", str(cache))
    for done in (f"etcd-{versions.ETCD}", versions.KUBERNETES[0]):
        (cache / done).mkdir(parents=True)
        (cache / done / ".complete").touch()
    state = tmp_path / "state"
    (state / "run").mkdir(parents=True)
    (state / "run" / "status.json").write_text(json.dumps({
        "pid": os.getpid(), "window": 300, "components": {
            "keystone": {"state": "running", "pid": 1, "exits": [], "last_code": None}}}))
    command = Status(None, None)

    def run(*argv: str) -> str:
        assert command.take_action(command.get_parser("teapot status").parse_args(
            ["--state-dir", str(state), *argv])) == 0
        return capsys.readouterr().out

    shown = json.loads(run("-f", "json"))
    assert shown["kubernetes_versions"] == [versions.KUBERNETES[0]]
    assert [c["component"] for c in shown["components"]] == ["box", "keystone"]
    text = run()
    assert f"kubernetes: {versions.KUBERNETES[0]} (`make install` builds " \
           f"{versions.KUBERNETES[1]})" in text.splitlines()
    (cache / versions.KUBERNETES[1]).mkdir()
    (cache / versions.KUBERNETES[1] / ".complete").touch()
    assert json.loads(run("-f", "json"))["kubernetes_versions"] == list(versions.KUBERNETES)
    assert f"kubernetes: {SERVED}" in run().splitlines()
