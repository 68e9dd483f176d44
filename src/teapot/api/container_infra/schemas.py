"""container-infra v1 request and response bodies, with the limits Magnum uses.

Requests are closed (an unknown field is a 400 naming it); fields Magnum's clients send as null are
nullable. Updates are JSON patches (RFC 6902) whose paths name the fields that may change; the
patched document is validated with the same field schemas as a create.
"""

from __future__ import annotations

from teapot.api.schema import (
    BOOLEAN,
    IDENT,
    INT32_MAX,
    LABELS,
    LINKS,
    MAGNUM_NAME,
    NAME,
    TIMESTAMP,
    UUID,
    array,
    integer,
    nullable,
    obj,
    string,
)
from teapot.resources.cluster_rules import NETWORK_DRIVERS, VOLUME_DRIVERS

TEXT = nullable(string(255))
URL = string(2048, 1, r"^https?://[^\s\x00-\x1f\x7f]+$",
             "the URL of a disk image (http or https); put its sha256 in the label image_checksum")
ANY = {}  # free-form (faults, health details)
STRINGS = array(string(255))

# -- cluster templates -----------------------------------------------------------------------------
TEMPLATE_FIELDS = {
    "coe": {"type": "string", "enum": ["kubernetes"], "description": "Teapot runs kubernetes only"},
    "image_id": URL,
    "flavor_id": TEXT, "master_flavor_id": TEXT, "keypair_id": TEXT,
    "labels": nullable({**LABELS, "description": "a flat map of strings; kube_tag names the "
                                                 "Kubernetes release (one this cloud serves)"}),
    "network_driver": nullable(string(255, description=" or ".join(NETWORK_DRIVERS))),
    "volume_driver": nullable(string(255, description=" or ".join(VOLUME_DRIVERS))),
    "docker_storage_driver": TEXT,
    "docker_volume_size": nullable(integer(1)),
    "dns_nameserver": TEXT, "http_proxy": nullable(string(1024)), "https_proxy": nullable(string(1024)),
    "no_proxy": nullable(string(1024)),
    "tls_disabled": BOOLEAN, "master_lb_enabled": BOOLEAN, "floating_ip_enabled": BOOLEAN,
    "registry_enabled": BOOLEAN, "insecure_registry": TEXT,
    "server_type": TEXT, "cluster_distro": TEXT, "external_network_id": TEXT,
    "fixed_network": TEXT, "fixed_subnet": TEXT,
    "apiserver_port": nullable(integer(1024, 65535)),
    "tags": TEXT, "driver": TEXT,
}
TEMPLATE_META = {"name": nullable(NAME), "public": BOOLEAN, "hidden": BOOLEAN}
TEMPLATE_CREATE = obj({**TEMPLATE_FIELDS, **TEMPLATE_META}, ("image_id",))
# A patched template: every field it may hold.
TEMPLATE_DOC = obj({**TEMPLATE_FIELDS, **TEMPLATE_META, "name": NAME}, ("image_id",))


def patch(paths: list[str], deep: tuple[str, ...] = ()) -> dict:
    """A JSON patch whose operations touch only `paths` (and members of the `deep` maps)."""
    alternatives = [f"/{p}" for p in paths]
    pattern = "^(" + "|".join(alternatives) + ")$"
    if deep:
        pattern = "^(" + "|".join(alternatives + [f"/{d}/[^/]+" for d in deep]) + ")$"
    return array(obj({
        "op": {"type": "string", "enum": ["add", "replace", "remove"]},
        "path": {"type": "string", "pattern": pattern, "maxLength": 300,
                 "description": "changeable: " + ", ".join(paths),
                 "x-hint": "changeable: " + ", ".join(paths)},
        "value": ANY,
    }, ("op", "path")), 100, minItems=1)


TEMPLATE_PATCH = patch(sorted(TEMPLATE_DOC["properties"]), deep=("labels",))

TEMPLATE = obj({
    **{k: nullable(v) for k, v in TEMPLATE_FIELDS.items()},
    "uuid": UUID, "name": NAME, "public": BOOLEAN, "hidden": BOOLEAN,
    "project_id": string(64), "user_id": string(64), "created_at": TIMESTAMP,
    "updated_at": TIMESTAMP, "links": LINKS,
}, ("uuid", "name", "links"))
TEMPLATE_LIST = obj({"clustertemplates": array(TEMPLATE, INT32_MAX), "next": string(4096)},
                    ("clustertemplates",))

# -- clusters --------------------------------------------------------------------------------------
CLUSTER_CREATE = obj({
    "name": nullable(MAGNUM_NAME),
    "cluster_template_id": IDENT,
    "node_count": nullable(integer(0, description="workers")),
    "master_count": nullable(integer(1, description="control-plane hosts")),
    "discovery_url": TEXT,
    "create_timeout": nullable(integer(1, description="minutes")),
    "keypair": TEXT,
    "docker_volume_size": nullable(integer(1)),
    "labels": nullable(LABELS),
    "master_flavor_id": TEXT, "flavor_id": TEXT,
    "fixed_network": TEXT, "fixed_subnet": TEXT,
    "floating_ip_enabled": nullable(BOOLEAN), "master_lb_enabled": nullable(BOOLEAN),
    "merge_labels": nullable(BOOLEAN),
}, ("cluster_template_id",))
CLUSTER_PATCH = patch(["node_count", "name"])
CLUSTER_DOC = obj({"node_count": integer(0), "name": MAGNUM_NAME}, ("node_count", "name"))
RESIZE = obj({
    "node_count": integer(0),
    "nodes_to_remove": nullable(array(string(255, 1))),
    "nodegroup": nullable(IDENT),
}, ("node_count",))
UPGRADE = obj({
    "cluster_template": IDENT,
    "max_batch_size": nullable(integer(1)),
    "nodegroup": nullable(IDENT),
}, ("cluster_template",))
ROTATE_CREDENTIALS = obj({}, description="no fields: an empty object")
UUID_ONLY = obj({"uuid": UUID}, ("uuid",), closed=False)

_CLUSTER_COMMON = {
    "uuid": UUID, "name": string(255), "cluster_template_id": UUID, "status": string(32),
    "master_count": integer(0), "node_count": integer(0), "project_id": string(64), "links": LINKS,
    "keypair": TEXT, "create_timeout": nullable(integer(0)), "stack_id": nullable(string(255)),
    "health_status": nullable(string(32)), "docker_volume_size": nullable(integer(0)),
    "labels": nullable(LABELS), "master_flavor_id": TEXT, "flavor_id": TEXT,
}
CLUSTER_SUMMARY = obj(_CLUSTER_COMMON, ("uuid", "name", "status", "links"))
CLUSTER = obj({
    **_CLUSTER_COMMON,
    "discovery_url": TEXT, "fixed_network": TEXT, "fixed_subnet": TEXT,
    "floating_ip_enabled": nullable(BOOLEAN), "master_lb_enabled": nullable(BOOLEAN),
    "api_address": nullable(string(2048)), "coe_version": nullable(string(64)),
    "container_version": nullable(string(64)),
    "master_addresses": nullable(array(string(255), INT32_MAX)),
    "node_addresses": nullable(array(string(255), INT32_MAX)),
    "health_status_reason": ANY, "faults": ANY,
    "status_reason": nullable({"type": "string"}), "user_id": string(64),
    "created_at": TIMESTAMP, "updated_at": TIMESTAMP,
    "storage": nullable(obj({
        "kinds": array(string(16), 4, description="file (manila-csi), object (S3/Swift), block "
                                                  "(Cinder attachments), keys (Barbican)"),
        "credential": {"type": "string", "enum": ["none", "pending", "ready", "error"]},
        "application_credential_id": nullable(string(64)),
        "ec2_access": nullable(string(64)),
        "rotation": integer(0),
        "error": string(1024),
    }, ("kinds", "credential"))),
}, ("uuid", "name", "status", "links"))
CLUSTER_LIST = obj({"clusters": array(CLUSTER_SUMMARY, INT32_MAX), "next": string(4096)},
                   ("clusters",))
CLUSTER_LIST_DETAIL = obj({"clusters": array(CLUSTER, INT32_MAX), "next": string(4096)},
                          ("clusters",))

# -- node groups -----------------------------------------------------------------------------------
NODEGROUP_CREATE = obj({
    "name": MAGNUM_NAME,
    "role": nullable(string(32, 1, r"^[a-z][a-z0-9_-]*$", "lower-case letters, digits, '_', '-'")),
    "flavor_id": TEXT, "image_id": nullable(URL),
    "node_count": nullable(integer(0)), "min_node_count": nullable(integer(0)),
    "max_node_count": nullable(integer(0)),
    "labels": nullable(LABELS), "merge_labels": nullable(BOOLEAN),
    "docker_volume_size": nullable(integer(1)), "project_id": nullable(string(64)),
}, ("name",))
NODEGROUP_PATCH = patch(["node_count", "min_node_count", "max_node_count"])
NODEGROUP_DOC = obj({"node_count": integer(0), "min_node_count": integer(0),
                     "max_node_count": nullable(integer(0))}, ("node_count",))
_NODEGROUP_COMMON = {
    "uuid": UUID, "name": string(255), "cluster_id": UUID, "role": string(32),
    "flavor_id": TEXT, "image_id": nullable(string(2048)), "node_count": integer(0),
    "is_default": BOOLEAN, "status": string(32), "project_id": string(64), "links": LINKS,
}
NODEGROUP_SUMMARY = obj(_NODEGROUP_COMMON, ("uuid", "name", "links"))
NODEGROUP = obj({
    **_NODEGROUP_COMMON,
    "labels": nullable(LABELS), "min_node_count": integer(0), "max_node_count": nullable(integer(0)),
    "status_reason": nullable({"type": "string"}), "node_addresses": array(string(255), INT32_MAX),
    "stack_id": nullable(string(255)), "version": nullable(string(64)),
    "created_at": TIMESTAMP, "updated_at": TIMESTAMP,
}, ("uuid", "name", "links"))
NODEGROUP_LIST = obj({"nodegroups": array(NODEGROUP_SUMMARY, INT32_MAX), "next": string(4096)},
                     ("nodegroups",))

# -- certificates ----------------------------------------------------------------------------------
PEM = string(65536, 1, r"^-----BEGIN [A-Z ]+-----", "a PEM document")
CSR = obj({"cluster_uuid": IDENT, "bay_uuid": IDENT, "csr": PEM, "ca_cert_type": nullable(string(32))},
          ("csr",))
CA = obj({"cluster_uuid": UUID, "pem": {"type": "string"}, "links": LINKS}, ("cluster_uuid", "pem"))
SIGNED = obj({"cluster_uuid": UUID, "csr": {"type": "string"}, "pem": {"type": "string"},
              "links": LINKS}, ("cluster_uuid", "pem"))

# -- quotas, stats, services -----------------------------------------------------------------------
QUOTA_CREATE = obj({
    "project_id": string(64, 1, r"^[A-Za-z0-9_-]+$", "a Keystone project id"),
    "resource": {"type": "string", "enum": ["Cluster"]},
    "hard_limit": nullable(integer(0)),
}, ("project_id", "resource"))
QUOTA_UPDATE = obj({
    "project_id": string(64), "resource": {"type": "string", "enum": ["Cluster"]},
    "hard_limit": integer(0),
}, ("hard_limit",))
QUOTA = obj({"id": nullable(integer(0)), "project_id": string(64), "resource": string(64),
             "hard_limit": integer(0), "created_at": TIMESTAMP, "updated_at": TIMESTAMP},
            ("project_id", "resource", "hard_limit"))
QUOTA_LIST = obj({"quotas": array(QUOTA, INT32_MAX), "next": string(4096)}, ("quotas",))
# sums over clusters: more than one node group's int32 count
STATS = obj({"clusters": integer(0, 2**63 - 1), "nodes": integer(0, 2**63 - 1)},
            ("clusters", "nodes"))
MSERVICES = obj({"mservices": array(obj({
    "id": integer(0), "binary": string(64), "host": string(255), "report_count": integer(0),
    "state": {"type": "string", "enum": ["up", "down"]}, "disabled": BOOLEAN,
    "disabled_reason": nullable(string(255)), "created_at": TIMESTAMP, "updated_at": TIMESTAMP,
}), INT32_MAX)}, ("mservices",))

# -- host classes (flavors) ------------------------------------------------------------------------
TRAIT = string(255, 1, r"^[A-Z][A-Z0-9_]*$", "an os-traits name or CUSTOM_ followed by A-Z, 0-9, _")
HOSTCLASS_CREATE = obj({
    "name": string(255, 1, r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", "letters, digits, '_', '.', '-'"),
    "description": nullable(string(1024)),
    "labels": nullable(LABELS),
    "traits": nullable(array(TRAIT, 100)),
}, ("name",))
HOSTCLASS = obj({"name": string(255), "description": nullable(string(1024)), "labels": LABELS,
                 "traits": array(string(255)), "hosts": integer(0), "free_hosts": integer(0)},
                ("name", "labels", "traits"))
HOSTCLASS_LIST = obj({"hostclasses": array(HOSTCLASS, INT32_MAX), "next": string(4096)},
                     ("hostclasses",))

# -- versions --------------------------------------------------------------------------------------
VERSIONS = obj({"versions": array(obj({
    "id": string(8), "status": string(16), "min_version": string(8), "max_version": string(8),
    "links": LINKS}), 4), "name": string(255), "description": string(255)},
    ("versions",))
VERSION = obj({"id": string(8), "media_types": {"type": "array"}, "links": LINKS},
              ("id", "links"), closed=False)
