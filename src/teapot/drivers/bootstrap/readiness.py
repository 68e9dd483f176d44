"""Is a cluster of real hosts up? Its apiserver's /readyz, and its nodes, seen with the cluster's CA."""

from __future__ import annotations

import os
import ssl
import tempfile

import httpx

from teapot import pki


def check(ca: pki.CA, api_address: str, nodes: int, timeout: float = 5.0) -> tuple[bool, str]:
    """(ready, why). Uses a short-lived admin certificate signed by the cluster's CA."""
    cert_pem, key_pem = pki.issue(ca, "teapot-readiness", ["system:masters"], days=1)
    context = ssl.create_default_context(cadata=ca.cert_pem.decode())
    with tempfile.TemporaryDirectory() as tmp:
        cert_file, key_file = os.path.join(tmp, "tls.crt"), os.path.join(tmp, "tls.key")
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem)
        with open(cert_file, "wb") as f:
            f.write(cert_pem)
        context.load_cert_chain(cert_file, key_file)
    try:
        with httpx.Client(verify=context, timeout=timeout) as client:
            ready = client.get(f"{api_address}/readyz")
            if ready.status_code != 200:
                return False, f"apiserver not ready ({ready.status_code})"
            listed = client.get(f"{api_address}/api/v1/nodes")
            if listed.status_code != 200:
                return False, f"cannot list nodes ({listed.status_code})"
            body = listed.json()
    except httpx.HTTPError as e:
        return False, f"apiserver unreachable: {e.__class__.__name__}"
    except ValueError:
        return False, "the node list is not JSON"
    items = body.get("items", []) if isinstance(body, dict) else []
    joined = sum(1 for n in items if any(c.get("type") == "Ready" and c.get("status") == "True"
                                         for c in n.get("status", {}).get("conditions", [])))
    if joined < nodes:
        return False, f"{joined} of {nodes} nodes ready"
    return True, f"{joined} nodes ready"
