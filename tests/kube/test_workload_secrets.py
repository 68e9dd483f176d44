"""Rotated storage credentials pushed into a running cluster's Secrets (kubeadm mode): server-side
apply of the add-ons' Secrets against a real kube-apiserver, as the cluster's admin (a certificate
of the cluster's CA, as `workload.admin_client` makes it), nothing but Secrets, and a clear error
naming the object, never its data, when the apiserver refuses or cannot be reached."""

from __future__ import annotations

import base64
import socket
import ssl

import httpx
import pytest
import yaml

from teapot import pki
from teapot.drivers.bootstrap import workload


def _manifest(secret: str, namespace: str) -> str:
    return yaml.safe_dump_all([
        {"apiVersion": "v1", "kind": "Secret",
         "metadata": {"name": "manila-csi-credentials", "namespace": namespace},
         "stringData": {"os-applicationCredentialSecret": secret}},
        {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
         "metadata": {"name": "manila-cephfs"}, "provisioner": "cephfs.manila.csi.openstack.org"},
        {"apiVersion": "v1", "kind": "Secret",
         "metadata": {"name": "openstack-object-storage", "namespace": "default"},
         "stringData": {"AWS_SECRET_ACCESS_KEY": secret[::-1]}},
    ])


def _data(api, namespace: str, name: str) -> dict[str, str]:
    secret = api.get("v1", "Secret", namespace, name)
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def test_the_secrets_of_the_addons_are_applied_and_replaced(api, created_namespace):
    ns = created_namespace
    with workload.admin_client(api.ca, "teapot") as client:
        pushed = workload.push_secrets(client, api.url, _manifest("first", ns))
        assert pushed == [f"{ns}/manila-csi-credentials", "default/openstack-object-storage"]
        assert _data(api, ns, "manila-csi-credentials") == {"os-applicationCredentialSecret": "first"}
        assert _data(api, "default", "openstack-object-storage") == {"AWS_SECRET_ACCESS_KEY": "tsrif"}
        assert api.get("storage.k8s.io/v1", "StorageClass", None, "manila-cephfs") is None
        version = api.get("v1", "Secret", ns, "manila-csi-credentials")["metadata"]["resourceVersion"]

        workload.push_secrets(client, api.url, _manifest("first", ns))  # nothing new
        assert api.get("v1", "Secret", ns, "manila-csi-credentials")["metadata"][
            "resourceVersion"] == version
        workload.push_secrets(client, api.url, _manifest("second", ns))
    assert _data(api, ns, "manila-csi-credentials") == {"os-applicationCredentialSecret": "second"}
    assert _data(api, "default", "openstack-object-storage") == {"AWS_SECRET_ACCESS_KEY": "dnoces"}


def test_a_refusal_is_an_error_naming_the_secret_not_its_data(api, namespace, tmp_path):
    with workload.admin_client(api.ca, "teapot") as client, \
            pytest.raises(workload.PushError) as missing:
        workload.push_secrets(client, api.url, _manifest("never-shown", namespace))
    assert f"Secret {namespace}/manila-csi-credentials" in str(missing.value)
    assert "404" in str(missing.value) and "never-shown" not in str(missing.value)

    # An admin certificate of another cluster's CA: the server knows no such user.
    cert, key = pki.issue(pki.new_ca("another cluster's CA"), "teapot", ["system:masters"])
    (tmp_path / "tls.crt").write_bytes(cert)
    (tmp_path / "tls.key").write_bytes(key)
    context = ssl.create_default_context(cadata=api.ca.cert_pem.decode())
    context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
    with httpx.Client(verify=context, timeout=10) as client, \
            pytest.raises(workload.PushError) as refused:
        workload.push_secrets(client, api.url, _manifest("never-shown", "default"))
    assert str(refused.value) == "Secret default/manila-csi-credentials: the apiserver answered 401"


def test_an_unreachable_apiserver_is_an_error_naming_the_secret_not_its_data():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with httpx.Client(timeout=2) as client, pytest.raises(workload.PushError) as e:
        workload.push_secrets(client, f"http://127.0.0.1:{port}", _manifest("never-shown",
                                                                            "kube-system"))
    assert "kube-system/manila-csi-credentials" in str(e.value)
    assert "never-shown" not in str(e.value)
