"""`teapot deploy` against a Kubernetes API (kmock): render, plan, apply, prune, idempotence."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from teapot.deploy import rollout, settings
from teapot.kube import Cluster
from teapot.resources.errors import ValidationError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "teapot.yaml"
TEAPOT = str(Path(sys.executable).parent / "teapot")
ALL_ON = """
services: {rgw: {enabled: true}, swift: {enabled: false}, nova: {replicas: 3}}
ceph: {monitors: ["10.1.0.1:6789", "10.1.0.2:6789"]}
tls: {enabled: true}
"""


def _objects(text: str = "") -> list[dict]:
    return [o for u in rollout.desired(settings.load(text)) for o in u.objects]


def _teapot(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([TEAPOT, *args], capture_output=True, text=True, timeout=300)


def _write(tmp_path: Path, text: str, name: str = "teapot.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# -- rendering ---------------------------------------------------------------------------------------
def test_example_file_is_complete_and_current():
    assert settings.load(EXAMPLE.read_text()) == settings.load("")
    assert settings.example() in EXAMPLE.read_text()


@pytest.mark.parametrize("text", ["", ALL_ON], ids=["defaults", "rgw-tls-ha"])
@pytest.mark.parametrize("version", ["1.30", kubernetes_validate.latest_version()])
def test_every_object_validates_strictly(text, version):
    objects = _objects(text)
    checked = 0
    for obj in objects:
        if obj["apiVersion"].startswith("cert-manager.io/"):
            continue  # a CRD kubernetes-validate has no schema for; checked below
        kubernetes_validate.validate(obj, version, strict=True)
        checked += 1
    assert checked > 30


def test_tls_issues_a_certificate_per_public_host():
    objects = _objects(ALL_ON)
    certs = [o for o in objects if o["kind"] == "Certificate"]
    ingress = next(o for o in objects if o["kind"] == "Ingress")
    hosts = {r["host"] for r in ingress["spec"]["rules"]}
    assert {c["spec"]["dnsNames"][0] for c in certs} == hosts
    assert "identity.openstack.cluster" in hosts and "compute.openstack.cluster" in hosts
    assert all(c["spec"]["issuerRef"] == {"name": "teapot-ca", "kind": "ClusterIssuer"} for c in certs)


def test_render_is_complete_and_keeps_secrets_out_of_plain_objects():
    objects = _objects()
    kinds = {o["kind"] for o in objects}
    assert kinds >= {"Deployment", "StatefulSet", "DaemonSet", "Job", "Service", "ConfigMap", "Secret",
                     "Ingress"}
    passwords = next(o for o in objects if o["metadata"]["name"] == "teapot-passwords")
    import base64

    values = [base64.b64decode(v).decode() for v in passwords["data"].values()]
    assert len(values) >= 10
    for obj in objects:
        if obj["kind"] == "Secret":
            continue
        text = yaml.safe_dump(obj)
        leaked = [v for v in values if v in text]
        assert not leaked, f"{obj['kind']}/{obj['metadata']['name']} holds a generated secret"


def test_nodes_replicas_and_ha():
    objects = {(o["kind"], o["metadata"]["name"]): o for o in _objects(ALL_ON)}
    api = objects[("Deployment", "nova-api")]
    assert api["spec"]["replicas"] == 3
    assert api["spec"]["template"]["spec"]["nodeSelector"] == {"openstack-control-plane": "enabled"}
    assert "podAntiAffinity" in api["spec"]["template"]["spec"]["affinity"]
    assert ("PodDisruptionBudget", "nova-api") in objects
    compute = objects[("DaemonSet", "nova-compute")]
    assert compute["spec"]["template"]["spec"]["nodeSelector"] == {"openstack-compute-node": "enabled"}
    galera = objects[("StatefulSet", "galera")]
    assert galera["spec"]["replicas"] == 3
    for kind, name in objects:
        if kind in ("Deployment", "StatefulSet", "DaemonSet"):
            container = objects[(kind, name)]["spec"]["template"]["spec"]["containers"][0]
            assert container["image"].startswith("quay.io/teapot/") and container["resources"]["requests"]


def test_render_cli_writes_every_object(tmp_path):
    out = tmp_path / "out"
    result = _teapot("deploy", "render", "-f", str(EXAMPLE), "-o", str(out))
    assert result.returncode == 0, result.stderr
    files = sorted(out.glob("*.yaml"))
    assert len(files) == len(_objects()) and len(files) > 30
    stdout = _teapot("deploy", "render", "-f", str(EXAMPLE))
    assert len([d for d in yaml.safe_load_all(stdout.stdout) if d]) == len(files)
    assert "&id" not in stdout.stdout, "rendered YAML must not use anchors"


def test_every_name_is_a_valid_dns_label():
    import re

    label = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    for obj in _objects(ALL_ON):
        assert label.match(obj["metadata"]["name"]) and len(obj["metadata"]["name"]) <= 63
        pod = obj.get("spec", {}).get("template", {}).get("spec", {})
        for c in pod.get("containers", []) + pod.get("initContainers", []):
            assert label.match(c["name"]), f"{obj['metadata']['name']}: container {c['name']!r}"


# -- bad files ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, field, words", [
    ("servics: {}", "servics", "unknown key"),
    ("services: {nova: {replicas: two}}", "services.nova.replicas", "integer"),
    ("galera: {replicas: 2}", "galera.replicas", "odd"),
    ("services: {keystone: {enabled: false}}", "services.", "keystone"),
    ("services: {rgw: {enabled: true}}", "services.rgw", "either swift or rgw"),
])
def test_bad_files_are_refused_before_anything_is_touched(cluster, tmp_path, text, field, words):
    path = _write(tmp_path, text)
    with pytest.raises(ValidationError) as err:
        rollout.load_file(path)
    assert field in str(err.value) and words in str(err.value)
    result = _teapot("deploy", "apply", "-f", path, "--kubeconfig", str(cluster.kubeconfig))
    assert result.returncode != 0 and field in result.stderr
    assert cluster.objects() == []


def test_external_identity_replaces_keystone():
    text = ("services: {keystone: {enabled: false}}\n"
            "identity: {external: {authUrl: 'https://keystone.example:5000/v3', "
            "adminCredentialsSecret: cloud-admin}}")
    cfg = settings.load(text)
    rollout.check_dependencies(cfg)
    objects = _objects(text)
    assert not [o for o in objects if o["metadata"]["name"] == "keystone"]
    job = next(o for o in objects if "ks-register" in o["metadata"]["name"])
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["OS_AUTH_URL"]["value"] == "https://keystone.example:5000/v3"
    assert env["OS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "cloud-admin"


# -- plan, apply, prune ------------------------------------------------------------------------------
def _client(cluster) -> Cluster:
    return Cluster(str(cluster.kubeconfig), "kmock")


def test_plan_apply_and_an_idempotent_second_apply(cluster, tmp_path):
    path = _write(tmp_path, EXAMPLE.read_text())
    kube = ["--kubeconfig", str(cluster.kubeconfig), "--context", "kmock"]
    first = _teapot("deploy", "plan", "-f", path, *kube)
    assert first.returncode == 2, first.stderr
    assert "create Deployment/keystone" in first.stdout
    assert "to update, 0 to delete" in first.stdout

    applied = _teapot("deploy", "apply", "-f", path, *kube)
    assert applied.returncode == 0, applied.stderr
    assert "keystone: ready" in applied.stdout and "waiting" not in applied.stderr
    assert len(cluster.objects()) == len(_objects())

    again = _teapot("deploy", "plan", "-f", path, *kube)
    assert again.returncode == 0, again.stdout
    assert "plan: 0 to create, 0 to update, 0 to delete" in again.stdout
    second = _teapot("deploy", "apply", "-f", path, *kube)
    assert "applied: nothing to change" in second.stdout

    status = _teapot("deploy", "status", "-f", path, *kube, "-o", "json")
    assert status.returncode == 0, status.stderr
    rows = {r["service"]: r for r in json.loads(status.stdout)}
    assert rows["keystone"]["ready"] is True and rows["nova-compute"]["kind"] == "DaemonSet"


def test_passwords_are_generated_once_and_kept(cluster):
    cfg = settings.load("")
    client = _client(cluster)
    rollout.apply(cfg, client, lambda _line: None)
    first = rollout.existing_passwords(client, cfg)
    rollout.apply(cfg, client, lambda _line: None)
    assert rollout.existing_passwords(client, cfg) == first
    assert first["admin-password"] and len(set(first.values())) == len(first)


def test_a_config_change_rolls_exactly_the_services_that_use_it(cluster):
    client = _client(cluster)
    rollout.apply(settings.load(""), client, lambda _line: None)
    _units, changes = rollout.compute_plan(settings.load("swift: {partPower: 12}"), client)
    updated = {(c.kind, c.name) for c in changes if c.action == "update"}
    created = {(c.kind, c.name) for c in changes if c.action == "create"}
    workloads = {name for kind, name in updated if kind in ("Deployment", "StatefulSet", "DaemonSet")}
    assert workloads and all(name.startswith("swift") for name in workloads), workloads
    assert any(kind == "ConfigMap" and name.startswith("swift-config") for kind, name in created)
    assert not [c for c in changes if c.action == "delete"], "the previous config is the rollback"
    update = next(c for c in changes if c.action == "update" and c.name in workloads)
    assert any("volumes" in f for f in update.fields), update.fields


def test_disabling_a_service_prunes_what_it_owned(cluster):
    client = _client(cluster)
    rollout.apply(settings.load(""), client, lambda _line: None)
    names = {o["metadata"]["name"] for o in cluster.objects()}
    assert "horizon" in names
    changes = rollout.apply(settings.load("services: {horizon: {enabled: false}}"), client,
                            lambda _line: None)
    deleted = {(c.kind, c.name) for c in changes if c.action == "delete"}
    assert ("Deployment", "horizon") in deleted and ("Service", "horizon") in deleted
    left = {(o["kind"], o["metadata"]["name"]) for o in cluster.objects()}
    assert ("Deployment", "horizon") not in left
    assert ("Deployment", "keystone") in left


class RecordingCluster(Cluster):
    def __init__(self, *args):
        super().__init__(*args)
        self.applied: list[tuple[str, str]] = []

    def apply(self, obj):
        self.applied.append((obj["kind"], obj["metadata"]["name"]))
        return super().apply(obj)


def test_a_new_release_migrates_before_the_services_roll(cluster):
    client = RecordingCluster(str(cluster.kubeconfig), "kmock")
    rollout.apply(settings.load(""), client, lambda _line: None)
    client.applied.clear()
    order: list[str] = []
    rollout.apply(settings.load("release: '2026.1'"), client, order.append)
    sync = next(i for i, (k, n) in enumerate(client.applied)
                if k == "Job" and n.startswith("nova-api-db-sync-2026-1"))
    rolled = client.applied.index(("Deployment", "nova-api"))
    assert sync < rolled, "nova's migrations must run before nova-api rolls"
    objects = cluster.objects()
    jobs = {o["metadata"]["name"] for o in objects if o["kind"] == "Job"}
    assert any("nova-api-db-sync-2026-1" in j for j in jobs)
    deployment = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "nova-api")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":2026.1")
    keystone_line = next(i for i, line in enumerate(order) if line.startswith("keystone: applying"))
    nova_line = next(i for i, line in enumerate(order) if line.startswith("nova-api: applying"))
    assert keystone_line < nova_line
