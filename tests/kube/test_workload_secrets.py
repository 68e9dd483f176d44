"""Rotated storage credentials pushed into a running cluster's Secrets (kubeadm mode): server-side
apply of the add-ons' Secrets against a Kubernetes API (kmock), nothing but Secrets, and a clear
error naming the object when the apiserver cannot be reached."""

from __future__ import annotations

import socket

import httpx
import pytest
import yaml

from teapot.drivers.bootstrap import workload


def _manifest(secret: str) -> str:
    return yaml.safe_dump_all([
        {"apiVersion": "v1", "kind": "Secret",
         "metadata": {"name": "manila-csi-credentials", "namespace": "kube-system"},
         "stringData": {"os-applicationCredentialSecret": secret}},
        {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
         "metadata": {"name": "manila-cephfs"}, "provisioner": "cephfs.manila.csi.openstack.org"},
        {"apiVersion": "v1", "kind": "Secret",
         "metadata": {"name": "openstack-object-storage", "namespace": "default"},
         "stringData": {"AWS_SECRET_ACCESS_KEY": secret[::-1]}},
    ])


def _secrets(cluster) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in cluster.objects() if o.get("kind") == "Secret"}


def test_the_secrets_of_the_addons_are_applied_and_replaced(cluster):
    api = yaml.safe_load(cluster.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    with httpx.Client(timeout=10) as client:
        pushed = workload.push_secrets(client, api, _manifest("first"))
        assert pushed == ["kube-system/manila-csi-credentials", "default/openstack-object-storage"]
        held = _secrets(cluster)
        assert held["manila-csi-credentials"]["stringData"] == {
            "os-applicationCredentialSecret": "first"}
        assert held["openstack-object-storage"]["metadata"]["namespace"] == "default"
        assert not [o for o in cluster.objects() if o.get("kind") == "StorageClass"]

        workload.push_secrets(client, api, _manifest("second"))
    held = _secrets(cluster)
    assert held["manila-csi-credentials"]["stringData"]["os-applicationCredentialSecret"] == \
        "second"
    assert held["openstack-object-storage"]["stringData"]["AWS_SECRET_ACCESS_KEY"] == "dnoces"


def test_an_unreachable_apiserver_is_an_error_naming_the_secret_not_its_data():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with httpx.Client(timeout=2) as client, pytest.raises(workload.PushError) as e:
        workload.push_secrets(client, f"http://127.0.0.1:{port}", _manifest("never-shown"))
    assert "kube-system/manila-csi-credentials" in str(e.value)
    assert "never-shown" not in str(e.value)
