"""How templates, clusters and node groups look: Magnum's field names and shapes."""

from __future__ import annotations

import datetime

from teapot.db.models import Cluster, ClusterTemplate, NodeGroup

TEMPLATE_FIELDS = (
    "coe", "image_id", "flavor_id", "master_flavor_id", "keypair_id", "labels", "network_driver",
    "volume_driver", "docker_volume_size", "docker_storage_driver", "dns_nameserver", "tls_disabled",
    "master_lb_enabled", "floating_ip_enabled", "server_type", "cluster_distro", "http_proxy",
    "https_proxy", "no_proxy", "external_network_id", "fixed_network", "fixed_subnet",
    "registry_enabled", "insecure_registry", "apiserver_port", "tags", "driver",
)
CLUSTER_FIELDS = (
    "keypair", "docker_volume_size", "labels", "master_flavor_id", "flavor_id", "create_timeout",
    "discovery_url", "fixed_network", "fixed_subnet", "floating_ip_enabled", "master_lb_enabled",
    "api_address", "coe_version", "container_version", "master_addresses", "node_addresses",
    "health_status", "health_status_reason", "stack_id", "faults",
)
CLUSTER_SUMMARY = ("keypair", "create_timeout", "stack_id", "health_status", "docker_volume_size",
                   "labels", "master_flavor_id", "flavor_id")


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat(timespec="seconds")


def links(base: str, kind: str, uuid: str) -> list[dict]:
    return [{"href": f"{base}/v1/{kind}/{uuid}", "rel": "self"},
            {"href": f"{base}/{kind}/{uuid}", "rel": "bookmark"}]


def template(t: ClusterTemplate, base: str) -> dict:
    out = {k: t.attrs.get(k) for k in TEMPLATE_FIELDS}
    out.update(uuid=t.uuid, name=t.name, public=t.public, hidden=t.hidden, project_id=t.project_id,
               user_id=t.user_id, created_at=iso(t.created_at), updated_at=iso(t.updated_at),
               links=links(base, "clustertemplates", t.uuid))
    return out


def counts(groups: list[NodeGroup]) -> tuple[int, int]:
    masters = sum(g.node_count for g in groups if g.role == "master")
    workers = sum(g.node_count for g in groups if g.role != "master")
    return masters, workers


def cluster(c: Cluster, node_counts: tuple[int, int], base: str, detail: bool = True) -> dict:
    masters, workers = node_counts
    fields = CLUSTER_FIELDS if detail else CLUSTER_SUMMARY
    out = {k: c.attrs.get(k) for k in fields}
    out.update(uuid=c.uuid, name=c.name, cluster_template_id=c.cluster_template_id,
               status=c.status, master_count=masters, node_count=workers,
               project_id=c.project_id, links=links(base, "clusters", c.uuid))
    if detail:
        out.update(status_reason=c.status_reason, user_id=c.user_id,
                   created_at=iso(c.created_at), updated_at=iso(c.updated_at),
                   storage=storage_view(c.attrs))
        if out["storage"]["kinds"]:  # `openstack coe cluster show` prints this field, not storage
            out["health_status_reason"] = {**(out.get("health_status_reason") or {}),
                                           "storage": storage_summary(out["storage"])}
    return out


def storage_summary(view: dict) -> str:
    """One line: the storage a cluster has and the state of its credential."""
    from teapot.resources import storage

    names = {storage.FILE: "file (manila-csi, CephFS)", storage.OBJECT: "object (S3, Swift)",
             storage.BLOCK: "block (Cinder attachments)", storage.KEYS: "keys (Barbican)"}
    line = ", ".join(names[k] for k in view["kinds"])
    line += f"; credential {view['credential']} (rotation {view.get('rotation', 0)})"
    return line + (f": {view['error']}" if view.get("error") else "")


def storage_view(attrs: dict) -> dict:
    """What storage a cluster has and the state of its credential (ids only, never a secret)."""
    from teapot.resources import storage

    made = attrs.get("credentials") or {}
    creds = storage.Credentials(made.get("application_credential_id"), made.get("ec2_access"),
                                made.get("rotation", 0))
    return storage.view(tuple(attrs.get("storage_kinds") or ()), creds,
                        attrs.get("credential_rotation", 0), attrs.get("credential_error") or "")


def nodegroup(g: NodeGroup, base: str, detail: bool = True) -> dict:
    out = {"uuid": g.uuid, "name": g.name, "cluster_id": g.cluster_uuid, "role": g.role,
           "flavor_id": g.flavor_id, "image_id": g.image_id, "node_count": g.node_count,
           "is_default": g.is_default, "status": g.status, "project_id": g.project_id,
           "links": links(base, f"clusters/{g.cluster_uuid}/nodegroups", g.uuid)}
    if detail:
        out.update(labels=g.labels, min_node_count=g.min_node_count,
                   max_node_count=g.max_node_count, status_reason=g.status_reason,
                   node_addresses=[], stack_id=None, version=None,
                   created_at=iso(g.created_at), updated_at=iso(g.updated_at))
    return out
