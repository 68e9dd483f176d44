"""`teapot deploy` against a real kube-apiserver (tests/kubeapi.py): render, plan, apply, prune,
idempotence, and what the server refuses (immutable fields). Each test deploys into a namespace of
its own; the stand-in kubelets of conftest.py report workloads ready and Jobs succeeded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from teapot import kube
from teapot.cli.main import main as teapot_main
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


def _cfg(namespace: str, text: str = "") -> dict:
    return settings.load(f"namespace: {namespace}\n{text}")


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
def test_bad_files_are_refused_before_anything_is_touched(api, namespace, tmp_path, text, field,
                                                          words):
    path = _write(tmp_path, f"namespace: {namespace}\n{text}")
    with pytest.raises(ValidationError) as err:
        rollout.load_file(path)
    assert field in str(err.value) and words in str(err.value)
    result = _teapot("deploy", "apply", "-f", path, *_kube_args(api))
    assert result.returncode != 0 and field in result.stderr
    assert not api.namespace_exists(namespace), "not even the namespace is created"


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
def _client(api) -> Cluster:
    return Cluster(str(api.kubeconfig), api.context)


def _kube_args(api) -> list[str]:
    return ["--kubeconfig", str(api.kubeconfig), "--context", api.context]


def _live(api, namespace: str) -> list[dict]:
    return api.objects(namespace, kube.KINDS)


def _versions(api, namespace: str) -> dict[tuple[str, str], str]:
    """resourceVersion of every object: it changes with every write the server accepts."""
    return {(o["kind"], o["metadata"]["name"]): o["metadata"]["resourceVersion"]
            for o in _live(api, namespace)}


def _quiet(_line: str) -> None:
    pass


def test_plan_apply_and_an_idempotent_second_apply(api, namespace, tmp_path, fast_polls, capsys):
    path = _write(tmp_path, EXAMPLE.read_text().replace("namespace: openstack",
                                                        f"namespace: {namespace}"))
    first = _teapot("deploy", "plan", "-f", path, *_kube_args(api))
    assert first.returncode == 2, first.stderr
    assert f"create Namespace/{namespace}" in first.stdout
    assert "create Deployment/keystone" in first.stdout
    assert "to update, 0 to delete" in first.stdout

    # In this process, for its waits to poll often (fast_polls); the same command line.
    assert teapot_main(["deploy", "apply", "-f", path, *_kube_args(api)]) == 0
    applied = capsys.readouterr()
    assert "keystone: ready" in applied.out and "error" not in applied.err
    assert len(_live(api, namespace)) == len(_objects())
    versions = _versions(api, namespace)

    again = _teapot("deploy", "plan", "-f", path, *_kube_args(api))
    assert again.returncode == 0, again.stdout
    assert "plan: 0 to create, 0 to update, 0 to delete" in again.stdout
    second = _teapot("deploy", "apply", "-f", path, *_kube_args(api))
    assert "applied: nothing to change" in second.stdout, second.stdout + second.stderr
    assert _versions(api, namespace) == versions, "the second apply wrote something"

    status = _teapot("deploy", "status", "-f", path, *_kube_args(api), "-o", "json")
    assert status.returncode == 0, status.stderr
    rows = {r["service"]: r for r in json.loads(status.stdout)}
    assert rows["keystone"]["ready"] is True and rows["nova-compute"]["kind"] == "DaemonSet"


# Every kind the deployer writes (Certificates, PodDisruptionBudgets, RADOS Gateway), and requests
# the server writes its own way ("0.5" CPU is stored as "500m", "1024Mi" as "1Gi").
EVERY_KIND = ALL_ON + "galera: {resources: {cpu: '0.5', memory: 1024Mi}}\n"


def test_a_second_apply_is_a_no_op_as_the_server_decides(api, namespace, fast_polls):
    client, cfg = _client(api), _cfg(namespace, EVERY_KIND)
    rollout.apply(cfg, client, _quiet)
    live = _live(api, namespace)
    assert {o["kind"] for o in live} >= {"Certificate", "PodDisruptionBudget", "Ingress", "Job"}
    galera = next(o for o in live if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "galera")
    assert galera["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"] == {
        "cpu": "500m", "memory": "1Gi"}
    versions = _versions(api, namespace)

    assert rollout.compute_plan(cfg, client)[1] == []
    assert rollout.apply(cfg, client, _quiet) == []
    # Every object applied once more, whatever the plan says: the server stores nothing new.
    for unit in rollout.desired(cfg, client):
        for obj in unit.objects:
            client.apply(obj)
    assert _versions(api, namespace) == versions


def test_passwords_are_generated_once_and_kept(api, namespace, fast_polls):
    cfg = _cfg(namespace)
    client = _client(api)
    rollout.apply(cfg, client, _quiet)
    first = rollout.existing_passwords(client, cfg)
    rollout.apply(cfg, client, _quiet)
    assert rollout.existing_passwords(client, cfg) == first
    assert first["admin-password"] and len(set(first.values())) == len(first)


def test_a_config_change_rolls_exactly_the_services_that_use_it(api, namespace, fast_polls):
    client = _client(api)
    rollout.apply(_cfg(namespace), client, _quiet)
    _units, changes = rollout.compute_plan(_cfg(namespace, "swift: {partPower: 12}"), client)
    updated = {(c.kind, c.name) for c in changes if c.action == "update"}
    created = {(c.kind, c.name) for c in changes if c.action == "create"}
    workloads = {name for kind, name in updated if kind in ("Deployment", "StatefulSet", "DaemonSet")}
    assert workloads and all(name.startswith("swift") for name in workloads), workloads
    assert any(kind == "ConfigMap" and name.startswith("swift-config") for kind, name in created)
    assert not [c for c in changes if c.action == "delete"], "the previous config is the rollback"
    update = next(c for c in changes if c.action == "update" and c.name in workloads)
    assert any("volumes" in f for f in update.fields), update.fields


def test_disabling_a_service_prunes_what_it_owned(api, namespace, fast_polls):
    client = _client(api)
    rollout.apply(_cfg(namespace), client, _quiet)
    names = {o["metadata"]["name"] for o in _live(api, namespace)}
    assert "horizon" in names
    changes = rollout.apply(_cfg(namespace, "services: {horizon: {enabled: false}}"), client,
                            _quiet)
    deleted = {(c.kind, c.name) for c in changes if c.action == "delete"}
    assert ("Deployment", "horizon") in deleted and ("Service", "horizon") in deleted
    left = {(o["kind"], o["metadata"]["name"]) for o in _live(api, namespace)}
    assert ("Deployment", "horizon") not in left and ("Service", "horizon") not in left
    assert ("Deployment", "keystone") in left


class RecordingCluster(Cluster):
    def __init__(self, *args):
        super().__init__(*args)
        self.applied: list[tuple[str, str]] = []

    def apply(self, obj, dry_run=False):
        if not dry_run:
            self.applied.append((obj["kind"], obj["metadata"]["name"]))
        return super().apply(obj, dry_run)


def test_a_new_release_migrates_before_the_services_roll(api, namespace, fast_polls):
    client = RecordingCluster(str(api.kubeconfig), api.context)
    rollout.apply(_cfg(namespace), client, _quiet)
    client.applied.clear()
    order: list[str] = []
    rollout.apply(_cfg(namespace, "release: '2026.1'"), client, order.append)
    sync = next(i for i, (k, n) in enumerate(client.applied)
                if k == "Job" and n.startswith("nova-api-db-sync-2026-1"))
    rolled = client.applied.index(("Deployment", "nova-api"))
    assert sync < rolled, "nova's migrations must run before nova-api rolls"
    objects = _live(api, namespace)
    jobs = {o["metadata"]["name"] for o in objects if o["kind"] == "Job"}
    assert any("nova-api-db-sync-2026-1" in j for j in jobs)
    assert not any("db-sync-2025-2" in j for j in jobs), "the previous release's Jobs are pruned"
    deployment = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "nova-api")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":2026.1")
    keystone_line = next(i for i, line in enumerate(order) if line.startswith("keystone: applying"))
    nova_line = next(i for i, line in enumerate(order) if line.startswith("nova-api: applying"))
    assert keystone_line < nova_line


# -- immutable fields, as the server decides ---------------------------------------------------------
def _uids(api, namespace: str, kind: str) -> dict[str, str]:
    return {o["metadata"]["name"]: o["metadata"]["uid"] for o in _live(api, namespace)
            if o["kind"] == kind}


def test_a_job_whose_pod_template_changes_is_replaced(api, namespace, fast_polls):
    """A new image tag of the same release keeps the Jobs' names (release and hash of their
    steps), but changes their pod templates, which the server never lets change in place."""
    client = _client(api)
    rollout.apply(_cfg(namespace), client, _quiet)
    jobs, deployments = _uids(api, namespace, "Job"), _uids(api, namespace, "Deployment")
    retagged = _cfg(namespace, "images: {tag: 2025.2-1}")
    job = next(o for u in rollout.desired(retagged, client) for o in u.objects
               if o["kind"] == "Job" and o["metadata"]["name"] in jobs)
    with pytest.raises(ApiException) as refused:  # what a plain apply gets
        client.apply(job)
    assert refused.value.status == 422 and "field is immutable" in refused.value.body

    _units, changes = rollout.compute_plan(retagged, client)
    replaced = {c.name for c in changes if rollout.REPLACED in c.fields}
    assert replaced == set(jobs), "every Job runs an image of the new tag"
    assert not [c for c in changes if c.action == "delete"]
    said: list[str] = []
    rollout.apply(retagged, client, said.append)
    assert sum("replacing Job/" in line for line in said) == len(jobs)
    now = _uids(api, namespace, "Job")
    assert now.keys() == jobs.keys() and not set(now.values()) & set(jobs.values())
    assert _uids(api, namespace, "Deployment") == deployments, "Deployments roll in place"
    for obj in _live(api, namespace):
        if obj["kind"] in ("Job", "Deployment"):
            assert obj["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":2025.2-1")
    assert rollout.compute_plan(retagged, client)[1] == []


def test_a_change_the_server_refuses_stops_before_anything_is_touched(api, namespace, tmp_path,
                                                                     fast_polls):
    """A StatefulSet's volumeClaimTemplates cannot change: a new galera volume size is refused by
    the plan (a dry run), not halfway through the apply."""
    client = _client(api)
    rollout.apply(_cfg(namespace), client, _quiet)
    versions = _versions(api, namespace)
    text = f"namespace: {namespace}\ngalera: {{storage: 20Gi}}\nservices: {{nova: {{replicas: 3}}}}"
    with pytest.raises(RuntimeError) as err:
        rollout.apply(settings.load(text), client, _quiet)
    assert "StatefulSet/galera" in str(err.value) and "Forbidden" in str(err.value)
    for command in ("plan", "apply"):
        result = _teapot("deploy", command, "-f", _write(tmp_path, text), *_kube_args(api))
        assert result.returncode == 1, result.stdout + result.stderr
        assert "StatefulSet/galera cannot be changed in place" in result.stderr
        assert "Traceback" not in result.stderr
    assert _versions(api, namespace) == versions
