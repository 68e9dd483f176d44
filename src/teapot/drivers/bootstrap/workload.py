"""Talking to a running cluster of real hosts (kubeadm mode) over its apiserver, as a short-lived
admin: a client certificate of the cluster's own CA (`system:masters`), valid for a day, never
stored. Used to see whether the cluster is up (readiness) and to put the cluster's rotated storage
credentials into its Secrets."""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import tempfile
from collections.abc import Iterator

import httpx
import yaml

from teapot import pki

FIELD_MANAGER = "teapot"
APPLY = "application/apply-patch+yaml"


class PushError(Exception):
    """The cluster refused or could not be reached; the message names the object, never data."""


@contextlib.contextmanager
def admin_client(ca: pki.CA, common_name: str, timeout: float = 5.0) -> Iterator[httpx.Client]:
    """An HTTPS client that trusts only the cluster's CA and presents a fresh admin certificate."""
    cert_pem, key_pem = pki.issue(ca, common_name, ["system:masters"], days=1)
    context = ssl.create_default_context(cadata=ca.cert_pem.decode())
    with tempfile.TemporaryDirectory() as tmp:
        cert_file, key_file = os.path.join(tmp, "tls.crt"), os.path.join(tmp, "tls.key")
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem)
        with open(cert_file, "wb") as f:
            f.write(cert_pem)
        context.load_cert_chain(cert_file, key_file)
    with httpx.Client(verify=context, timeout=timeout) as client:
        yield client


def secrets_of(manifest: str) -> list[dict]:
    """The Secrets of an add-ons manifest (a YAML stream): what carries credentials."""
    return [o for o in yaml.safe_load_all(manifest) if isinstance(o, dict)
            and o.get("apiVersion") == "v1" and o.get("kind") == "Secret"]


def push_secrets(client: httpx.Client, api_address: str, manifest: str) -> list[str]:
    """Server-side apply every Secret of `manifest` (Teapot owns their fields); returns
    "namespace/name" of each. The first refusal stops with a PushError."""
    pushed = []
    for secret in secrets_of(manifest):
        meta = secret["metadata"]
        namespace, name = meta.get("namespace", "default"), meta["name"]
        url = f"{api_address.rstrip('/')}/api/v1/namespaces/{namespace}/secrets/{name}"
        try:
            response = client.patch(url, params={"fieldManager": FIELD_MANAGER, "force": "true"},
                                    # JSON is YAML: what the official client sends too
                                    headers={"Content-Type": APPLY}, content=json.dumps(secret))
        except httpx.HTTPError as e:
            raise PushError(f"Secret {namespace}/{name}: apiserver unreachable: "
                            f"{e.__class__.__name__}") from None
        if response.status_code not in (200, 201):
            raise PushError(f"Secret {namespace}/{name}: the apiserver answered "
                            f"{response.status_code}")
        pushed.append(f"{namespace}/{name}")
    return pushed


def remove_nodes(client: httpx.Client, api_address: str, names: list[str]) -> list[str]:
    """Drain and delete the Nodes of hosts leaving the cluster, as `kubectl drain` and `kubectl
    delete node` do: cordoned, their pods evicted (the Eviction API, so PodDisruptionBudgets are
    kept), then deleted. Returns the names of those that were there. A refusal raises PushError
    (the hosts wait and it is tried again)."""
    base = api_address.rstrip("/")
    removed = []
    for name in names:
        try:
            node = client.patch(f"{base}/api/v1/nodes/{name}",
                                headers={"Content-Type": "application/merge-patch+json"},
                                content=json.dumps({"spec": {"unschedulable": True}}))
            if node.status_code == 404:
                continue
            if node.status_code != 200:
                raise PushError(f"node {name}: cordon: the apiserver answered {node.status_code}")
            pods = client.get(f"{base}/api/v1/pods",
                              params={"fieldSelector": f"spec.nodeName={name}"})
            for pod in pods.json().get("items", []) if pods.status_code == 200 else ():
                meta = pod["metadata"]
                if any(o.get("kind") == "DaemonSet" for o in meta.get("ownerReferences") or ()):
                    continue  # as kubectl drain --ignore-daemonsets
                evicted = client.post(
                    f"{base}/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/eviction",
                    content=json.dumps({"apiVersion": "policy/v1", "kind": "Eviction",
                                        "metadata": {"name": meta["name"],
                                                     "namespace": meta["namespace"]}}),
                    headers={"Content-Type": "application/json"})
                if evicted.status_code not in (200, 201, 404):
                    raise PushError(f"node {name}: pod {meta['namespace']}/{meta['name']} cannot "
                                    f"be evicted yet ({evicted.status_code})")
            gone = client.delete(f"{base}/api/v1/nodes/{name}")
            if gone.status_code not in (200, 404):
                raise PushError(f"node {name}: delete: the apiserver answered {gone.status_code}")
        except httpx.HTTPError as e:
            raise PushError(f"node {name}: apiserver unreachable: {e.__class__.__name__}") from None
        removed.append(name)
    return removed


def prepare_join(client: httpx.Client, api_address: str, token: str, lifetime: float,
                 version: str | None = None) -> None:
    """Ready a running cluster for hosts that join it now: the join token made valid for
    `lifetime` seconds more (kubeadm's lasts a day from `init`; a host replaced later would find it
    gone), and, before the first host of a new release joins its control plane, the release its
    kubeadm configuration names (what `kubeadm upgrade apply` writes; a control-plane host that
    joins runs the release named there)."""
    import datetime

    base = api_address.rstrip("/")
    token_id, secret = token.split(".", 1)
    expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=lifetime)
    body = {"apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
            "metadata": {"name": f"bootstrap-token-{token_id}", "namespace": "kube-system"},
            "stringData": {"token-id": token_id, "token-secret": secret,
                           "expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
                           "usage-bootstrap-authentication": "true",
                           "usage-bootstrap-signing": "true",
                           "auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token"}}
    try:
        answer = client.patch(f"{base}/api/v1/namespaces/kube-system/secrets/{body['metadata']['name']}",
                              params={"fieldManager": FIELD_MANAGER, "force": "true"},
                              headers={"Content-Type": APPLY}, content=json.dumps(body))
        if answer.status_code not in (200, 201):
            raise PushError(f"the join token: the apiserver answered {answer.status_code}")
        if version is None:
            return
        url = f"{base}/api/v1/namespaces/kube-system/configmaps/kubeadm-config"
        found = client.get(url)
        if found.status_code != 200:
            raise PushError(f"ConfigMap kube-system/kubeadm-config: the apiserver answered "
                            f"{found.status_code}")
        config_map = found.json()
        configuration = yaml.safe_load(config_map["data"]["ClusterConfiguration"])
        if configuration.get("kubernetesVersion") == version:
            return
        configuration["kubernetesVersion"] = version
        config_map["data"]["ClusterConfiguration"] = yaml.safe_dump(configuration)
        answer = client.put(url, content=json.dumps(config_map),
                            headers={"Content-Type": "application/json"})
        if answer.status_code != 200:
            raise PushError(f"ConfigMap kube-system/kubeadm-config: the apiserver answered "
                            f"{answer.status_code}")
    except httpx.HTTPError as e:
        raise PushError(f"apiserver unreachable: {e.__class__.__name__}") from None
    except (KeyError, ValueError, yaml.YAMLError):
        raise PushError("ConfigMap kube-system/kubeadm-config holds no ClusterConfiguration") \
            from None
