"""Is a cluster of real hosts up? Its apiserver's /readyz, and its nodes, seen with the cluster's CA."""

from __future__ import annotations

import httpx

from teapot import pki
from teapot.drivers.bootstrap.workload import admin_client


def check(ca: pki.CA, api_address: str, nodes: int, timeout: float = 5.0,
          require: tuple[str, ...] = ()) -> tuple[bool, str]:
    """(ready, why): at least `nodes` Nodes are Ready, and those named in `require` among them.
    Uses a short-lived admin certificate signed by the cluster's CA."""
    try:
        with admin_client(ca, "teapot-readiness", timeout) as client:
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
    ready = {n.get("metadata", {}).get("name") for n in items
             if any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in n.get("status", {}).get("conditions", []))}
    joined = len(ready)
    missing = sorted(set(require) - ready)
    if missing:
        return False, f"node(s) {', '.join(missing)} not ready"
    if joined < nodes:
        return False, f"{joined} of {nodes} nodes ready"
    return True, f"{joined} nodes ready"
