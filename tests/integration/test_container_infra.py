"""container-infra (Magnum's API) against a running box, through python-magnumclient and
`openstack coe`, with real Keystone tokens for two projects."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import sqlite3
import subprocess

import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from keystoneauth1 import session
from keystoneauth1.identity import v3
from magnumclient import exceptions as mexc
from magnumclient.v1 import client as mclient

from teapot.deploy.keystone_setup import admin_connection, ensure_user

from .conftest import wait_for

IMAGE = "https://images.example/ubuntu-2404-k8s.raw"
CHECKSUM = "12" * 32


def _session(box, user: str, password: str, project: str) -> session.Session:
    auth = v3.Password(auth_url=box.url("keystone") + "/v3", username=user, password=password,
                       project_name=project, user_domain_name="Default", project_domain_name="Default")
    return session.Session(auth=auth)


def _magnum(sess: session.Session) -> mclient.Client:
    return mclient.Client(session=sess, service_type="container-infra", interface="public",
                          api_version="1.14")


@pytest.fixture(scope="module")
def users(box):
    conn = admin_connection(box.url("keystone") + "/v3", box.secret("admin-password"))
    ensure_user(conn, "other", "other-test-password", "other", ["member"])
    ensure_user(conn, "viewer", "viewer-test-password", "demo", ["reader"])
    admin_auth = box.cloud_auth("teapot-admin")
    demo_auth = box.cloud_auth("teapot-demo")
    return {
        "admin": _magnum(_session(box, "admin", admin_auth["password"], "admin")),
        "demo": _magnum(_session(box, "demo", demo_auth["password"], "demo")),
        "other": _magnum(_session(box, "other", "other-test-password", "other")),
        "viewer": _magnum(_session(box, "viewer", "viewer-test-password", "demo")),
        "demo_session": _session(box, "demo", demo_auth["password"], "demo"),
    }


@pytest.fixture(scope="module")
def template(users):
    t = users["demo"].cluster_templates.create(
        name="k8s-bm", image_id=IMAGE, coe="kubernetes", flavor_id="baremetal",
        master_flavor_id="baremetal", external_network_id="public",
        labels={"image_checksum": CHECKSUM, "kube_tag": "v1.36.3"})
    yield t
    try:
        users["demo"].cluster_templates.delete(t.uuid)
    except mexc.HttpError:
        pass


def _wait_status(client, uuid: str, *statuses: str, timeout: float = 300) -> object:
    return wait_for(lambda: (c := client.clusters.get(uuid)).status in statuses and c,
                    timeout=timeout, interval=0.5, what=f"cluster {uuid} in {statuses}")


def _wait_gone(client, uuid: str) -> None:
    def gone():
        try:
            client.clusters.get(uuid)
        except mexc.NotFound:
            return True
        return False

    wait_for(gone, timeout=180, what=f"cluster {uuid} deleted")


def _free_hosts(box) -> int:
    result = box.teapot("host", "list", "-f", "json")
    return sum(1 for h in json.loads(result.stdout) if h["state"] == "available")


# -- versions and microversions --------------------------------------------------------------------
def test_versions_and_microversion_headers(box, users):
    root = httpx.get(box.url("teapot-api") + "/").json()
    assert root["versions"][0]["min_version"] == "1.1"
    assert root["versions"][0]["max_version"] == "1.14"
    token = users["demo_session"].get_token()
    ok = httpx.get(box.url("teapot-api") + "/v1/clusters",
                   headers={"X-Auth-Token": token, "OpenStack-API-Version": "container-infra 1.10"})
    assert ok.status_code == 200
    assert ok.headers["OpenStack-API-Minimum-Version"] == "container-infra 1.1"
    assert ok.headers["OpenStack-API-Maximum-Version"] == "container-infra 1.14"
    assert ok.headers["OpenStack-API-Version"] == "container-infra 1.10"
    too_new = httpx.get(box.url("teapot-api") + "/v1/clusters",
                        headers={"X-Auth-Token": token, "OpenStack-API-Version": "container-infra 1.99"})
    assert too_new.status_code == 406
    assert too_new.json()["errors"][0]["detail"].startswith("version 1.99 is not supported")


# -- cluster templates -----------------------------------------------------------------------------
def test_templates_are_per_project_and_public_ones_admin_made(users, template):
    demo, other = users["demo"], users["other"]
    assert demo.cluster_templates.get("k8s-bm").uuid == template.uuid
    assert demo.cluster_templates.get(template.uuid).image_id == IMAGE
    assert template.uuid not in [t.uuid for t in other.cluster_templates.list()]
    with pytest.raises(mexc.NotFound):
        other.cluster_templates.get(template.uuid)
    with pytest.raises(mexc.Forbidden):
        demo.cluster_templates.create(name="pub", image_id=IMAGE, coe="kubernetes",
                                      flavor_id="baremetal", public=True,
                                      labels={"image_checksum": CHECKSUM})
    public = users["admin"].cluster_templates.create(
        name="public-k8s", image_id=IMAGE, coe="kubernetes", flavor_id="baremetal", public=True,
        labels={"image_checksum": CHECKSUM})
    try:
        assert public.uuid in [t.uuid for t in other.cluster_templates.list()]
    finally:
        users["admin"].cluster_templates.delete(public.uuid)


def test_template_update_is_a_json_patch(users):
    t = users["demo"].cluster_templates.create(name="to-rename", image_id=IMAGE, coe="kubernetes",
                                               flavor_id="baremetal", labels={"image_checksum": CHECKSUM})
    updated = users["demo"].cluster_templates.update(
        t.uuid, [{"op": "replace", "path": "/name", "value": "renamed"}])
    assert updated.name == "renamed"
    users["demo"].cluster_templates.delete(t.uuid)
    with pytest.raises(mexc.NotFound):
        users["demo"].cluster_templates.get(t.uuid)


@pytest.mark.parametrize("change, words", [
    ({"flavor_id": "no-such-class"}, "'no-such-class' is not a host class"),
    ({"image_id": "ubuntu"}, "image_id"),
    ({"coe": "swarm"}, "kubernetes"),
])
def test_bad_templates_are_400(users, change, words):
    body = {"name": "bad", "image_id": IMAGE, "coe": "kubernetes", "flavor_id": "baremetal",
            "labels": {"image_checksum": CHECKSUM}, **change}
    with pytest.raises(mexc.BadRequest) as err:
        users["demo"].cluster_templates.create(**body)
    assert words in str(err.value)


def test_a_flavor_no_host_can_satisfy_is_400(box, users):
    box.teapot("hostclass", "create", "gpu", "--label", "gpu=a100")
    classes = json.loads(box.teapot("hostclass", "list", "-f", "json").stdout)
    gpu = next(c for c in classes if c["name"] == "gpu")
    assert gpu["hosts"] == 0 and gpu["labels"] == {"gpu": "a100"}
    demo_try = box.teapot("hostclass", "create", "x", "--label", "a=b", cloud="teapot-demo", check=False)
    assert demo_try.returncode != 0 and "host classes are defined by cloud administrators" in demo_try.stderr
    with pytest.raises(mexc.BadRequest) as err:
        users["demo"].cluster_templates.create(name="gpu", image_id=IMAGE, coe="kubernetes",
                                               flavor_id="gpu", labels={"image_checksum": CHECKSUM})
    assert "no host is of host class 'gpu'" in str(err.value)
    box.teapot("hostclass", "delete", "gpu")


def _ironic_traits(box, host: str) -> list[str]:
    node = httpx.get(f"{box.url('ironic')}/v1/nodes/{host}/traits",
                     headers={"X-OpenStack-Ironic-API-Version": "1.37"})
    node.raise_for_status()
    return sorted(node.json()["traits"])


def test_host_classes_select_by_hardware_traits(box, users):
    """A trait set on a host reaches its Ironic node; a host class asking for it gets that host."""
    demo = users["demo"]
    hosts = json.loads(box.teapot("host", "list", "-f", "json").stdout)
    gpu_host = next(h["name"] for h in hosts if h["state"] == "available" and not h["cluster"])
    bad = box.teapot("host", "trait", "add", gpu_host, "HW_NOT_A_TRAIT", check=False)
    assert bad.returncode != 0 and "traits[0]" in bad.stderr and "HW_NOT_A_TRAIT" in bad.stderr
    box.teapot("host", "trait", "add", gpu_host, "CUSTOM_GPU", "HW_CPU_X86_AVX2")
    shown = json.loads(box.teapot("host", "show", gpu_host, "-f", "json").stdout)
    assert shown["traits"] == ["CUSTOM_GPU", "HW_CPU_X86_AVX2"]
    wait_for(lambda: _ironic_traits(box, gpu_host) == ["CUSTOM_GPU", "HW_CPU_X86_AVX2"],
             timeout=60, what="traits on the Ironic node")

    box.teapot("hostclass", "create", "gpu-trait", "--trait", "CUSTOM_GPU")
    template = None
    try:
        classes = {c["name"]: c for c in json.loads(box.teapot("hostclass", "list", "-f", "json").stdout)}
        assert classes["gpu-trait"]["traits"] == ["CUSTOM_GPU"] and classes["gpu-trait"]["hosts"] == 1
        template = demo.cluster_templates.create(
            name="k8s-gpu", image_id=IMAGE, coe="kubernetes", flavor_id="gpu-trait",
            master_flavor_id="baremetal", labels={"image_checksum": CHECKSUM})
        created = demo.clusters.create(name="gpu", cluster_template_id=template.uuid, node_count=1)
        try:
            cluster = _wait_status(demo, created.uuid, "CREATE_COMPLETE", "CREATE_FAILED")
            assert cluster.status == "CREATE_COMPLETE", cluster.status_reason
            db = sqlite3.connect(box.state_dir / "data" / "teapot" / "teapot.sqlite")
            held = dict(db.execute("SELECT nodegroup, name FROM hosts WHERE cluster_uuid = ?",
                                   (created.uuid,)).fetchall())
            # The master (any host) did not take the one GPU host the workers need.
            assert held["default-worker"] == gpu_host and held["default-master"] != gpu_host
        finally:
            demo.clusters.delete(created.uuid)
            _wait_gone(demo, created.uuid)
    finally:
        if template is not None:
            demo.cluster_templates.delete(template.uuid)
        box.teapot("hostclass", "delete", "gpu-trait")
        box.teapot("host", "trait", "remove", gpu_host, "CUSTOM_GPU", "HW_CPU_X86_AVX2")
    wait_for(lambda: _ironic_traits(box, gpu_host) == [], timeout=60, what="traits removed from Ironic")


# -- clusters --------------------------------------------------------------------------------------
def test_cluster_lifecycle(box, users, template):
    demo, other, viewer = users["demo"], users["other"], users["viewer"]
    free_before = _free_hosts(box)
    created = demo.clusters.create(name="life", cluster_template_id=template.uuid, node_count=2,
                                   master_count=1)
    cluster = _wait_status(demo, created.uuid, "CREATE_COMPLETE", "CREATE_FAILED")
    assert cluster.status == "CREATE_COMPLETE", cluster.status_reason
    assert cluster.api_address.startswith("https://") and cluster.api_address.endswith(":6443")
    assert len(cluster.master_addresses) == 1 and len(cluster.node_addresses) == 2
    assert cluster.coe_version == "v1.36.3" and cluster.health_status == "HEALTHY"
    assert _free_hosts(box) == free_before - 3

    # tenancy: the other project cannot see it; a reader can read but not change
    with pytest.raises(mexc.NotFound):
        other.clusters.get(created.uuid)
    assert created.uuid not in [c.uuid for c in other.clusters.list()]
    assert viewer.clusters.get(created.uuid).name == "life"
    with pytest.raises(mexc.Forbidden):
        viewer.clusters.delete(created.uuid)

    groups = {g.name: g for g in demo.nodegroups.list(created.uuid)}
    assert set(groups) == {"default-master", "default-worker"}
    assert demo.nodegroups.get(created.uuid, "default-worker").node_count == 2

    # the hosts got kubeadm user data: the first master runs `kubeadm init`
    db = sqlite3.connect(box.state_dir / "data" / "teapot" / "teapot.sqlite")
    claimed = db.execute("SELECT name, nodegroup FROM hosts WHERE cluster_uuid = ?",
                         (created.uuid,)).fetchall()
    assert sorted(ng for _, ng in claimed) == ["default-master", "default-worker", "default-worker"]

    # resize down, naming the host to remove
    remove = next(name for name, ng in claimed if ng == "default-worker")
    demo.clusters.resize(created.uuid, 1, nodes_to_remove=[remove])
    cluster = _wait_status(demo, created.uuid, "UPDATE_COMPLETE", "UPDATE_FAILED")
    assert cluster.status == "UPDATE_COMPLETE" and cluster.node_count == 1
    still = {r[0] for r in db.execute("SELECT name FROM hosts WHERE cluster_uuid = ?", (created.uuid,))}
    assert remove not in still and len(still) == 2

    demo.clusters.delete(created.uuid)
    _wait_gone(demo, created.uuid)
    wait_for(lambda: _free_hosts(box) == free_before, timeout=120, what="hosts back in the pool")


def test_not_enough_hosts_fails_cleanly(box, users, template):
    free_before = _free_hosts(box)
    created = users["demo"].clusters.create(name="huge", cluster_template_id=template.uuid,
                                            node_count=50, master_count=1)
    cluster = _wait_status(users["demo"], created.uuid, "CREATE_FAILED", "CREATE_COMPLETE")
    assert cluster.status == "CREATE_FAILED"
    assert "not enough free hosts" in cluster.status_reason and "needs 50" in cluster.status_reason
    assert _free_hosts(box) == free_before
    users["demo"].clusters.delete(created.uuid)
    _wait_gone(users["demo"], created.uuid)


def test_certificates(users, template):
    demo = users["demo"]
    created = demo.clusters.create(name="certs", cluster_template_id=template.uuid, node_count=0,
                                   master_count=1)
    try:
        ca_pem = demo.certificates.get(cluster_uuid=created.uuid).pem
        ca = x509.load_pem_x509_certificate(ca_pem.encode())
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME, "alice"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters")]))
            .sign(key, hashes.SHA256()))
        signed = demo.certificates.create(cluster_uuid=created.uuid,
                                          csr=csr.public_bytes(serialization.Encoding.PEM).decode())
        cert = x509.load_pem_x509_certificate(signed.pem.encode())
        assert cert.subject == csr.subject
        ca.public_key().verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                               cert.signature_hash_algorithm)
        with pytest.raises(mexc.BadRequest):
            demo.certificates.create(cluster_uuid=created.uuid, csr="not a csr")
        with pytest.raises(mexc.NotFound):
            users["other"].certificates.get(cluster_uuid=created.uuid)
        demo.certificates.rotate_ca(cluster_uuid=created.uuid)
        assert demo.certificates.get(cluster_uuid=created.uuid).pem != ca_pem
    finally:
        demo.clusters.delete(created.uuid)
        _wait_gone(demo, created.uuid)


def test_quotas_stats_and_mservices(box, users, template):
    conn = admin_connection(box.url("keystone") + "/v3", box.secret("admin-password"))
    other_project = conn.identity.find_project("other", domain_id="default").id
    admin = users["admin"]
    with pytest.raises(mexc.Forbidden):
        users["other"].quotas.create(project_id=other_project, resource="Cluster", hard_limit=5)
    admin.quotas.create(project_id=other_project, resource="Cluster", hard_limit=0)
    try:
        other_template = users["other"].cluster_templates.create(
            name="mine", image_id=IMAGE, coe="kubernetes", flavor_id="baremetal",
            labels={"image_checksum": CHECKSUM})
        with pytest.raises(mexc.Forbidden) as err:
            users["other"].clusters.create(name="over", cluster_template_id=other_template.uuid,
                                           node_count=1)
        assert "quota" in str(err.value)
        assert admin.quotas.get(other_project, "Cluster").hard_limit == 0
        users["other"].cluster_templates.delete(other_template.uuid)
    finally:
        admin.quotas.delete(other_project, "Cluster")
    stats = users["demo"].stats.list()
    assert stats.clusters >= 0 and stats.nodes >= 0
    assert [s.binary for s in admin.mservices.list()] and all(
        s.binary == "magnum-conductor" for s in admin.mservices.list())
    with pytest.raises(mexc.Forbidden):
        users["demo"].mservices.list()


def test_unserved_release_and_unknown_drivers_are_refused(users):
    """Magnum's client shows the refusal, naming the field."""
    for field, fields in (("labels.kube_tag", {"labels": {"kube_tag": "v1.31.2"}}),
                          ("network_driver", {"network_driver": "weave"}),
                          ("volume_driver", {"volume_driver": "rexray"})):
        with pytest.raises(mexc.BadRequest) as err:
            users["demo"].cluster_templates.create(
                name="refused", image_id=IMAGE, coe="kubernetes", flavor_id="baremetal", **fields)
        assert field in str(err.value)


def test_concurrent_creates_never_share_a_host(box, users, template):
    demo = users["demo"]
    free = _free_hosts(box)

    def create(i: int) -> str:
        return demo.clusters.create(name=f"race-{i}", cluster_template_id=template.uuid,
                                    node_count=1, master_count=1).uuid

    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        uuids = list(pool.map(create, range(10)))
    try:
        final = [_wait_status(demo, u, "CREATE_COMPLETE", "CREATE_FAILED") for u in uuids]
        complete = [c for c in final if c.status == "CREATE_COMPLETE"]
        assert len(complete) == free // 2
        db = sqlite3.connect(box.state_dir / "data" / "teapot" / "teapot.sqlite")
        rows = db.execute("SELECT name, cluster_uuid FROM hosts WHERE cluster_uuid IS NOT NULL").fetchall()
        owners = {}
        for name, owner in rows:
            assert name not in owners
            owners[name] = owner
        for c in final:
            held = [n for n, o in owners.items() if o == c.uuid]
            assert len(held) == (2 if c.status == "CREATE_COMPLETE" else 0), (c.name, held)
    finally:
        for u in uuids:
            demo.clusters.delete(u)
        for u in uuids:
            _wait_gone(demo, u)
    wait_for(lambda: _free_hosts(box) == free, timeout=180, what="hosts back in the pool")


def test_openstack_coe_commands(box, tmp_path):
    """The issue's walk-through, all through `openstack coe` as teapot-demo."""
    env = {**box.env(), "SHELL": "/bin/sh"}  # `coe cluster config` prints exports for $SHELL

    def coe(*args: str) -> subprocess.CompletedProcess:
        result = subprocess.run(["openstack", "--os-cloud", "teapot-demo", "coe", *args],
                                capture_output=True, text=True, env=env, timeout=120)
        assert result.returncode == 0, result.stderr
        return result

    free_before = _free_hosts(box)
    coe("cluster", "template", "create", "k8s-cli", "--coe", "kubernetes", "--image", IMAGE,
        "--external-network", "public", "--flavor", "baremetal", "--master-flavor", "baremetal",
        "--labels", f"image_checksum={CHECKSUM},kube_tag=v1.36.3")
    coe("cluster", "create", "cli", "--cluster-template", "k8s-cli", "--node-count", "2")
    try:
        wait_for(lambda: json.loads(coe("cluster", "show", "cli", "-f", "json").stdout)["status"]
                 == "CREATE_COMPLETE", timeout=300, what="cli cluster complete")
        listed = json.loads(coe("cluster", "list", "-f", "json").stdout)
        assert any(c["name"] == "cli" and c["status"] == "CREATE_COMPLETE" for c in listed)
        out = coe("cluster", "config", "cli", "--dir", str(tmp_path), "--force").stdout
        assert f"export KUBECONFIG={tmp_path / 'config'}" in out
        kubeconfig = yaml.safe_load((tmp_path / "config").read_text())
        assert kubeconfig["clusters"][0]["cluster"]["server"].endswith(":6443")
        ca = x509.load_pem_x509_certificate(
            base64.b64decode(kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"]))
        client_cert = x509.load_pem_x509_certificate(
            base64.b64decode(kubeconfig["users"][0]["user"]["client-certificate-data"]))
        ca.public_key().verify(client_cert.signature, client_cert.tbs_certificate_bytes,
                               padding.PKCS1v15(), client_cert.signature_hash_algorithm)

        # The cluster's host is not the administrator's to change by hand meanwhile.
        uuid = json.loads(coe("cluster", "show", "cli", "-f", "json").stdout)["uuid"]
        held = [h for h in json.loads(box.teapot("host", "list", "-f", "json").stdout)
                if h["cluster"] == uuid]
        assert len(held) == 3  # one master, two workers
        refused = box.teapot("host", "deprovision", held[0]["name"], check=False)
        assert refused.returncode != 0
        assert f"belongs to cluster {uuid}" in refused.stderr
        refused = box.teapot("host", "delete", held[0]["name"], check=False)
        assert f"belongs to cluster {uuid}" in refused.stderr
    finally:
        coe("cluster", "delete", "cli")
        wait_for(lambda: "cli" not in coe("cluster", "list", "-f", "value", "-c", "name").stdout.split(),
                 timeout=180, what="cli cluster deleted")
        coe("cluster", "template", "delete", "k8s-cli")
    wait_for(lambda: _free_hosts(box) == free_before, timeout=180, what="hosts back in the pool")


def test_node_groups_patch_and_upgrade(box, users, template):
    demo = users["demo"]
    free_before = _free_hosts(box)
    created = demo.clusters.create(name="groups", cluster_template_id=template.uuid, node_count=1,
                                   master_count=1)
    try:
        _wait_status(demo, created.uuid, "CREATE_COMPLETE")
        # a new worker group gets its own host
        demo.nodegroups.create(created.uuid, name="extra", node_count=1, flavor_id="baremetal")
        cluster = _wait_status(demo, created.uuid, "UPDATE_COMPLETE", "UPDATE_FAILED")
        assert cluster.status == "UPDATE_COMPLETE", cluster.status_reason
        assert demo.nodegroups.get(created.uuid, "extra").node_count == 1
        assert _free_hosts(box) == free_before - 3
        with pytest.raises(mexc.Conflict):
            demo.nodegroups.create(created.uuid, name="extra", node_count=1)
        # JSON patch on a node group, then on the cluster (node_count of default-worker)
        demo.nodegroups.update(created.uuid, "extra", [{"op": "replace", "path": "/node_count",
                                                        "value": 0}])
        _wait_status(demo, created.uuid, "UPDATE_COMPLETE", "UPDATE_FAILED")
        assert _free_hosts(box) == free_before - 2
        demo.clusters.update(created.uuid, [{"op": "replace", "path": "/node_count", "value": 2}])
        cluster = _wait_status(demo, created.uuid, "UPDATE_COMPLETE", "UPDATE_FAILED")
        assert cluster.node_count == 2
        with pytest.raises(mexc.BadRequest):
            demo.clusters.update(created.uuid, [{"op": "replace", "path": "/status", "value": "x"}])
        demo.nodegroups.delete(created.uuid, "extra")
        _wait_status(demo, created.uuid, "UPDATE_COMPLETE", "UPDATE_FAILED")
        assert "extra" not in [g.name for g in demo.nodegroups.list(created.uuid)]
        with pytest.raises(mexc.BadRequest):
            demo.nodegroups.delete(created.uuid, "default-worker")
        # upgrade to another template, as magnumclient asks: the cluster takes its Kubernetes
        # version and replaces its hosts (test_tenant_kubernetes follows one to the end); it is
        # deleted in the middle, which gives back every host, the surged one too
        newer = demo.cluster_templates.create(
            name="k8s-next", image_id=IMAGE, coe="kubernetes", flavor_id="baremetal",
            labels={"image_checksum": CHECKSUM, "kube_tag": "v1.37.2"})
        demo.clusters.upgrade(created.uuid, newer.uuid)
        cluster = demo.clusters.get(created.uuid)
        assert cluster.status == "UPDATE_IN_PROGRESS", cluster.status_reason
        assert cluster.status_reason.startswith("upgrading"), cluster.status_reason
        assert cluster.cluster_template_id == newer.uuid and cluster.coe_version == "v1.37.2"
        with pytest.raises(mexc.Conflict):
            demo.clusters.upgrade(created.uuid, newer.uuid)
        wait_for(lambda: _free_hosts(box) < free_before - 3 or
                 demo.clusters.get(created.uuid).status != "UPDATE_IN_PROGRESS",
                 timeout=120, what="a host claimed to surge onto")
    finally:
        demo.clusters.delete(created.uuid)
        _wait_gone(demo, created.uuid)
    demo.cluster_templates.delete("k8s-next")
    wait_for(lambda: _free_hosts(box) == free_before, timeout=180, what="hosts back in the pool")


def test_lists_follow_every_change(users, template):
    """Cluster lists reuse rendered entries: a rename or a status change must still show at once."""
    demo = users["demo"]
    created = demo.clusters.create(name="before", cluster_template_id=template.uuid, node_count=0,
                                   master_count=1)
    try:
        _wait_status(demo, created.uuid, "CREATE_COMPLETE")
        assert {c.uuid: c.name for c in demo.clusters.list()}[created.uuid] == "before"
        demo.clusters.update(created.uuid, [{"op": "replace", "path": "/name", "value": "after"}])
        listed = {c.uuid: c for c in demo.clusters.list()}
        assert listed[created.uuid].name == "after"
        demo.clusters.delete(created.uuid)
        assert {c.uuid: c.status for c in demo.clusters.list()}.get(
            created.uuid, "DELETE_IN_PROGRESS") == "DELETE_IN_PROGRESS"
    finally:
        _wait_gone(demo, created.uuid)


def test_lists_page_and_sort_through_magnumclient_and_openstack_coe(box, users):
    """python-magnumclient follows the `next` links to its limit; `openstack coe ... --limit
    --sort-key --sort-dir` asks for pages; other projects' templates never appear."""
    names = [f"page-{i}" for i in range(7)]
    made = [users["demo"].cluster_templates.create(name=n, image_id=IMAGE, coe="kubernetes",
                                                   flavor_id="baremetal") for n in names]
    theirs = users["other"].cluster_templates.create(name="page-other", image_id=IMAGE,
                                                     coe="kubernetes", flavor_id="baremetal")
    try:
        newest = users["demo"].cluster_templates.list(limit=3, sort_key="name", sort_dir="desc")
        assert [t.name for t in newest] == ["page-6", "page-5", "page-4"]
        every = users["demo"].cluster_templates.list(limit=1000, sort_key="name", sort_dir="asc")
        mine = [t.name for t in every if t.name.startswith("page-")]
        assert mine == names  # once each, in order, none of the other project's
        two = users["demo"].cluster_templates.list(limit=2, sort_key="created_at")
        assert len(two) == 2
        with pytest.raises(mexc.BadRequest, match="sort_key"):
            users["demo"].cluster_templates.list(limit=2, sort_key="image_checksum")

        listed = subprocess.run(
            ["openstack", "--os-cloud", "teapot-demo", "coe", "cluster", "template", "list",
             "--limit", "2", "--sort-key", "name", "--sort-dir", "desc", "-f", "json"],
            capture_output=True, text=True, env=box.env(), timeout=120)
        assert listed.returncode == 0, listed.stderr
        assert [t["name"] for t in json.loads(listed.stdout)] == ["page-6", "page-5"]
        refused = subprocess.run(
            ["openstack", "--os-cloud", "teapot-demo", "coe", "cluster", "list", "--sort-key", "secrets"],
            capture_output=True, text=True, env=box.env(), timeout=120)
        assert refused.returncode != 0 and "sort_key" in refused.stderr, refused.stderr
    finally:
        for t in made:
            users["demo"].cluster_templates.delete(t.uuid)
        users["other"].cluster_templates.delete(theirs.uuid)
