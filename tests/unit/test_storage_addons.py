"""The storage add-ons a cluster receives (teapot.drivers.bootstrap.storage): strictly valid
against the Kubernetes schemas, wired together, holding this cluster's credentials and no other
secret; carried by the first master's kubeadm user data and by a ClusterResourceSet."""

from __future__ import annotations

import dataclasses

import kubernetes_validate
import pytest
import yaml

from teapot import pki
from teapot.drivers.bootstrap import capi, kubeadm
from teapot.drivers.bootstrap import storage as addons
from teapot.resources import storage
from tests import addon_schemas

from .test_capi import _errors, _render

SECRET_A, SECRET_B = "app-secret-of-cluster-a-" + "x" * 40, "app-secret-of-cluster-b-" + "y" * 40
EC2_A, EC2_B = "ec2-secret-of-cluster-a", "ec2-secret-of-cluster-b"


def _cfg(kinds=(storage.FILE, storage.OBJECT), which: str = "a", **changes):
    cfg = addons.StorageConfig(
        kinds=tuple(kinds), auth_url="https://keystone.example.test/v3", region="RegionOne",
        project_id=f"project-{which}", application_credential_id=f"appcred-{which}",
        application_credential_secret=SECRET_A if which == "a" else SECRET_B,
        ec2_access=f"access-{which}", ec2_secret=EC2_A if which == "a" else EC2_B,
        s3_endpoint="https://s3.example.test", swift_endpoint=f"https://swift.example.test/v1/"
                                                               f"AUTH_project-{which}")
    return dataclasses.replace(cfg, **changes) if changes else cfg


@pytest.mark.parametrize("version", ["1.31", kubernetes_validate.latest_version()])
@pytest.mark.parametrize("kinds", [(storage.FILE,), (storage.OBJECT,),
                                   (storage.FILE, storage.OBJECT)])
def test_every_object_validates_strictly(version, kinds):
    objects = addons.objects(_cfg(kinds))
    assert objects
    for obj in objects:
        addon_schemas.validate(obj, version)


def test_a_misspelled_field_would_be_caught():
    bad = next(o for o in addons.objects(_cfg()) if o["kind"] == "StorageClass")
    bad["reclaimPolicyy"] = "Delete"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, "1.31", strict=True)


def test_file_storage_is_wired_together():
    objects = addons.objects(_cfg((storage.FILE,)))
    kinds = [o["kind"] for o in objects]
    assert kinds[0] == "Namespace" and "Secret" in kinds and "DaemonSet" in kinds
    by = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    driver = by[("CSIDriver", addons.DRIVER)]
    assert driver["spec"]["attachRequired"] is False
    (sc,) = [o for o in objects if o["kind"] == "StorageClass"]
    assert sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    assert sc["provisioner"] == driver["metadata"]["name"]
    for key, value in sc["parameters"].items():
        if key.endswith("-secret-name"):
            assert ("Secret", value) in by
        if key.endswith("-secret-namespace"):
            assert value == addons.NAMESPACE
    secret = by[("Secret", addons.CREDENTIALS_SECRET)]["stringData"]
    assert secret == {"os-authURL": "https://keystone.example.test/v3", "os-region": "RegionOne",
                      "os-applicationCredentialID": "appcred-a",
                      "os-applicationCredentialSecret": SECRET_A}
    for kind in ("Deployment", "DaemonSet"):
        (workload,) = [o for o in objects if o["kind"] == kind]
        pod = workload["spec"]["template"]["spec"]
        assert ("ServiceAccount", pod["serviceAccountName"]) in by
        assert workload["spec"]["selector"]["matchLabels"].items() <= \
            workload["spec"]["template"]["metadata"]["labels"].items()
        volumes = {v["name"] for v in pod["volumes"]}
        for container in pod["containers"]:
            assert {m["name"] for m in container.get("volumeMounts", [])} <= volumes
        manila = next(c for c in pod["containers"] if c["name"] == "manila-csi-plugin")
        assert "--share-protocol-selector=CEPHFS" in manila["args"]
        assert f"--drivername={addons.DRIVER}" in manila["args"]
    node = next(o for o in objects if o["kind"] == "DaemonSet")["spec"]["template"]["spec"]
    cephfs = next(c for c in node["containers"] if c["name"] == "cephfs-plugin")
    assert cephfs["securityContext"]["privileged"] is True and "--nodeserver=true" in cephfs["args"]
    for binding in (o for o in objects if o["kind"] == "ClusterRoleBinding"):
        assert ("ClusterRole", binding["roleRef"]["name"]) in by
        assert ("ServiceAccount", binding["subjects"][0]["name"]) in by
    assert not [o for o in objects if o["kind"] == "Secret"
                and o["metadata"]["name"] == addons.OBJECT_SECRET]


def test_object_storage_secret():
    objects = addons.objects(_cfg((storage.OBJECT,)))
    assert [o["kind"] for o in objects][:2] == ["Namespace", "Secret"]  # then COSI's
    data = objects[1]["stringData"]
    assert data["AWS_ACCESS_KEY_ID"] == "access-a" and data["AWS_SECRET_ACCESS_KEY"] == EC2_A
    assert data["S3_ENDPOINT"] == "https://s3.example.test"
    assert data["SWIFT_URL"].endswith("AUTH_project-a")
    assert data["OS_APPLICATION_CREDENTIAL_SECRET"] == SECRET_A
    # an endpoint the catalog lacks is left out, not written as null
    data = addons.objects(_cfg((storage.OBJECT,), s3_endpoint=None))[1]["stringData"]
    assert "S3_ENDPOINT" not in data and None not in data.values()


def test_no_secret_but_this_clusters():
    text = addons.manifest(_cfg())
    assert SECRET_A in text and EC2_A in text
    assert SECRET_B not in text and EC2_B not in text
    secrets_in = [o["metadata"]["name"] for o in yaml.safe_load_all(text)
                  if SECRET_A in yaml.safe_dump(o)]
    assert secrets_in == [addons.CREDENTIALS_SECRET, addons.OBJECT_SECRET]
    assert SECRET_A not in repr(_cfg()) and EC2_A not in repr(_cfg())


def test_nothing_without_storage_and_bad_configs_are_refused():
    assert addons.objects(_cfg(())) == [] and addons.manifest(_cfg(())) == ""
    assert addons.objects(_cfg((storage.BLOCK,))) == []
    with pytest.raises(ValueError, match="EC2"):
        _cfg((storage.OBJECT,), ec2_secret=None)
    with pytest.raises(ValueError, match="application credential"):
        _cfg(application_credential_secret="")
    with pytest.raises(ValueError, match="unknown kinds"):
        _cfg(("tape",))
    with pytest.raises(ValueError, match="auth_url"):
        _cfg(auth_url="keystone:5000")


# -- carried into the cluster -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def ca():
    return pki.new_ca("test CA")


def _node(ca, role="init", **changes):
    return kubeadm.NodeConfig(cluster_name="c", node_name="m1", role=role,
                              kubernetes_version="v1.36.3", api_endpoint="10.0.0.1:6443", ca=ca,
                              bootstrap_token="abcdef.0123456789abcdef",
                              certificate_key="a" * 64, **changes)


def test_the_first_master_applies_the_addons(ca):
    manifest = addons.manifest(_cfg())
    doc = yaml.safe_load(kubeadm.user_data(_node(ca, addons=manifest)))
    (written,) = [f for f in doc["write_files"] if f["path"] == kubeadm.ADDONS_PATH]
    assert written["permissions"] == "0600" and written["content"] == manifest
    assert doc["runcmd"][0][:2] == ["kubeadm", "init"]
    assert kubeadm.ADDONS_PATH in doc["runcmd"][1][2] and "apply" in doc["runcmd"][1][2]
    assert SECRET_A not in repr(_node(ca, addons=manifest))
    plain = yaml.safe_load(kubeadm.user_data(_node(ca)))
    assert len(plain["runcmd"]) == 1
    assert kubeadm.ADDONS_PATH not in [f["path"] for f in plain["write_files"]]
    with pytest.raises(ValueError, match="only the first control-plane host"):
        _node(ca, role="worker", addons=manifest)


def test_cluster_api_mode_carries_them_in_a_cluster_resource_set():
    manifest = addons.manifest(_cfg())
    objects = _render(addons=manifest)
    plain = _render()
    assert [o["kind"] for o in objects] == [o["kind"] for o in plain] + [
        "Secret", "ClusterResourceSet"]
    secret, crs = objects[-2:]
    kubernetes_validate.validate(secret, "1.31", strict=True)
    assert _errors(crs) == []
    assert secret["type"] == capi.RESOURCE_SET_SECRET_TYPE
    assert secret["stringData"]["addons.yaml"] == manifest
    assert crs["spec"]["resources"] == [{"kind": "Secret", "name": secret["metadata"]["name"]}]
    assert crs["spec"]["strategy"] == "Reconcile"
    # it selects this cluster only: by the uuid label the Cluster object carries
    (cluster,) = [o for o in objects if o["kind"] == "Cluster"]
    selector = crs["spec"]["clusterSelector"]["matchLabels"]
    assert selector.items() <= cluster["metadata"]["labels"].items()
    assert selector == {capi.CLUSTER_UUID_LABEL: cluster["metadata"]["labels"][
        capi.CLUSTER_UUID_LABEL]}
    assert crs["metadata"]["namespace"] == secret["metadata"]["namespace"] == \
        cluster["metadata"]["namespace"]
