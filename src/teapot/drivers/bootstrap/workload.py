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
