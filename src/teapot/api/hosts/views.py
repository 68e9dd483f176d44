"""How a host looks in responses. Credentials and user data never leave; only that they are set."""

from __future__ import annotations

import copy
import time

from teapot.db.models import Host
from teapot.drivers.bootstrap.network_data import address_of
from teapot.resources.host import INTERNAL_STATUS


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def host(row: Host, base_url: str) -> dict:
    spec = copy.deepcopy(row.spec)
    status = {k: v for k, v in row.status.items() if k not in INTERNAL_STATUS}
    return {
        "uuid": row.uuid,
        "name": row.name,
        "labels": row.labels,
        "traits": row.traits or [],
        "spec": spec,
        "status": status,
        "state": row.state,
        # Like a BareMetalHost's consumerRef: the cluster that holds the host, if any.
        "consumer": ({"kind": "Cluster", "uuid": row.cluster_uuid, "nodegroup": row.nodegroup}
                     if row.cluster_uuid else None),
        # Where the host's switch port is now (tenant networks), and why it did not move.
        "network": {"vlan": row.port_vlan, "error": row.port_error,
                    "address": address_of(row.network_data)},
        "deletionRequested": row.deleting,
        "generation": row.generation,
        "createdAt": _iso(row.created_at),
        "updatedAt": _iso(row.updated_at),
        "links": [{"rel": "self", "href": f"{base_url}/v1/hosts/{row.uuid}"}],
    }
