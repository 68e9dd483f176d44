"""`teapot.yaml`: the one file that describes a control plane on Kubernetes.

Every key has a default and a description (the schema below is the documentation: `teapot deploy
explain` prints it). A file is checked completely before anything is touched; an error names the key.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import yaml

from teapot.resources.errors import ValidationError

OPENSTACK_SERVICES = {
    "keystone": "Identity (Keystone)",
    "glance": "Images (Glance)",
    "placement": "Placement",
    "nova": "Compute (Nova: API, conductor, scheduler; compute with libvirt on compute nodes)",
    "neutron": "Networking (Neutron server; Open vSwitch agents on every node)",
    "cinder": "Block storage (Cinder)",
    "manila": "Shared file systems (Manila)",
    "ironic": "Bare metal (Ironic)",
    "horizon": "Dashboard (Horizon)",
    "swift": "Object storage (Swift)",
    "rgw": "Object storage through RADOS Gateway against an external Ceph cluster",
    "teapot": "Teapot's API and conductor",
}
DEFAULT_OFF = {"rgw"}  # Swift is the default object store; RGW needs an external Ceph


def _resources(cpu: str, memory: str) -> dict:
    return {
        "type": "object", "additionalProperties": False, "default": {},
        "description": "Resource requests of each pod.",
        "properties": {
            "cpu": {"type": "string", "default": cpu, "description": "CPU request, e.g. 250m."},
            "memory": {"type": "string", "default": memory, "description": "Memory request, e.g. 512Mi."},
        },
    }


def _service(name: str, description: str) -> dict:
    return {
        "type": "object", "additionalProperties": False, "default": {}, "description": description,
        "properties": {
            "enabled": {"type": "boolean", "default": name not in DEFAULT_OFF,
                        "description": f"Run {description}."},
            "replicas": {"type": "integer", "minimum": 1, "default": 1,
                         "description": "Pods per API or control service; more than one adds a "
                                        "PodDisruptionBudget and anti-affinity."},
            "resources": _resources("100m", "256Mi"),
        },
    }


def _string(default: str, description: str, **extra) -> dict:
    return {"type": "string", "default": default, "description": description, **extra}


SCHEMA: dict = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "namespace": _string("openstack", "Namespace of every object.",
                             pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
        "name": _string("teapot", "Name of this deployment: labels every object it owns.",
                        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
        "release": _string("2025.2", "OpenStack release. Changing it runs the new release's "
                                     "database migrations before the services roll."),
        "region": _string("RegionOne", "Keystone region of the endpoints."),
        "domain": _string("openstack.cluster", "DNS domain of the public API host names "
                                               "(identity.<domain>, compute.<domain>, ...)."),
        "images": {
            "type": "object", "additionalProperties": False, "default": {},
            "description": "Where container images come from.",
            "properties": {
                "registry": _string("quay.io/teapot", "Registry and prefix of every image."),
                "tag": _string("", "Image tag; empty means the release."),
                "pullPolicy": _string("IfNotPresent", "imagePullPolicy.",
                                      enum=["Always", "IfNotPresent", "Never"]),
            },
        },
        "tls": {
            "type": "object", "additionalProperties": False, "default": {},
            "description": "TLS for the public endpoints through cert-manager.",
            "properties": {
                "enabled": {"type": "boolean", "default": False,
                            "description": "Issue a Certificate per public host name."},
                "issuer": _string("teapot-ca", "cert-manager issuer name."),
                "issuerKind": _string("ClusterIssuer", "Issuer or ClusterIssuer.",
                                      enum=["Issuer", "ClusterIssuer"]),
            },
        },
        "ingress": {
            "type": "object", "additionalProperties": False, "default": {},
            "description": "The ingress that publishes the APIs.",
            "properties": {"className": _string("nginx", "IngressClass name.")},
        },
        "identity": {
            "type": "object", "additionalProperties": False, "default": {},
            "description": "Use an existing cloud's Keystone instead of running one.",
            "properties": {
                "external": {
                    "type": ["object", "null"], "default": None, "additionalProperties": False,
                    "description": "When set, services authenticate against this Keystone.",
                    "required": ["authUrl", "adminCredentialsSecret"],
                    "properties": {
                        "authUrl": {"type": "string", "description": "Keystone v3 URL."},
                        "adminCredentialsSecret": {
                            "type": "string",
                            "description": "Secret (keys username, password, project) of an admin "
                                           "who registers services and users."},
                    },
                },
            },
        },
        "services": {
            "type": "object", "additionalProperties": False, "default": {},
            "description": "OpenStack services and Teapot itself.",
            "properties": {name: _service(name, d) for name, d in OPENSTACK_SERVICES.items()},
        },
        "galera": {
            "type": "object", "additionalProperties": False, "default": {},
            "description": "MariaDB Galera cluster for every service's database.",
            "properties": {
                "replicas": {"type": "integer", "minimum": 1, "default": 3,
                             "description": "Galera nodes; must be odd to keep a quorum."},
                "storage": _string("10Gi", "Volume size per node."),
                "resources": _resources("250m", "1Gi"),
            },
        },
        "memcached": {
            "type": "object", "additionalProperties": False, "default": {},
            "description": "Memcached for token and API caches.",
            "properties": {"replicas": {"type": "integer", "minimum": 1, "default": 1,
                                        "description": "Memcached pods."},
                           "resources": _resources("50m", "128Mi")},
        },
        "rabbitmq": {
            "type": "object", "additionalProperties": False, "default": {},
            "description": "RabbitMQ, run only when an enabled service still needs it.",
            "properties": {"replicas": {"type": "integer", "minimum": 1, "default": 1,
                                        "description": "RabbitMQ nodes."},
                           "storage": _string("1Gi", "Volume size per node."),
                           "resources": _resources("100m", "512Mi")},
        },
        "swift": {
            "type": "object", "additionalProperties": False, "default": {},
            "description": "Swift storage.",
            "properties": {"storage": _string("10Gi", "Volume size of each storage pod."),
                           "partPower": {"type": "integer", "minimum": 1, "maximum": 22, "default": 10,
                                         "description": "Ring partition power."}},
        },
        "ceph": {
            "type": "object", "additionalProperties": False, "default": {},
            "description": "The external Ceph cluster RADOS Gateway uses.",
            "properties": {
                "monitors": {"type": "array", "items": {"type": "string"}, "default": [],
                             "description": "Monitor addresses (host:port)."},
                "keyringSecret": _string("ceph-admin-keyring",
                                         "Secret (key `keyring`) with a key allowed to create "
                                         "the pools and users below."),
                "pools": {
                    "type": "array", "default": [
                        {"name": ".rgw.root", "pgNum": 8},
                        {"name": "default.rgw.buckets.data", "pgNum": 32},
                    ],
                    "description": "Pools RADOS Gateway needs, created if missing.",
                    "items": {"type": "object", "additionalProperties": False, "required": ["name"],
                              "properties": {"name": {"type": "string"},
                                             "pgNum": {"type": "integer", "minimum": 1, "default": 32}}},
                },
                "users": {
                    "type": "array", "default": [
                        {"name": "client.rgw.teapot",
                         "caps": {"mon": "allow rw", "osd": "allow rwx"}},
                    ],
                    "description": "cephx users, created if missing.",
                    "items": {"type": "object", "additionalProperties": False, "required": ["name"],
                              "properties": {"name": {"type": "string", "pattern": r"^client\."},
                                             "caps": {"type": "object",
                                                      "additionalProperties": {"type": "string"},
                                                      "default": {}}}},
                },
            },
        },
    },
}


def _fill_defaults(schema: dict, value: Any) -> Any:
    if schema.get("type") == "object" and isinstance(value, dict):
        out = dict(value)
        for key, sub in schema.get("properties", {}).items():
            if key not in out and "default" in sub:
                out[key] = copy.deepcopy(sub["default"])
            if key in out:
                out[key] = _fill_defaults(sub, out[key])
        return out
    if schema.get("type") == "array" and isinstance(value, list) and "items" in schema:
        return [_fill_defaults(schema["items"], v) for v in value]
    if isinstance(schema.get("type"), list) and isinstance(value, dict):
        return _fill_defaults({**schema, "type": "object"}, value)
    return value


def _field(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return ".".join(filter(None, [path, extra[0] if extra else ""]))
    return path


def _message(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties":
        return "unknown key"
    if error.validator == "type":
        return f"must be {error.validator_value}, not {type(error.instance).__name__}"
    return error.message


def load(text: str, source: str = "teapot.yaml") -> dict:
    """Parse, check and complete a deployment file. Raises ValidationError naming the key."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValidationError(source, f"not valid YAML: {e}") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ValidationError(source, "must be a mapping of keys")
    errors = sorted(jsonschema.Draft7Validator(SCHEMA).iter_errors(data),
                    key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise ValidationError(_field(errors[0]), _message(errors[0]))
    settings = _fill_defaults(SCHEMA, data)
    if settings["galera"]["replicas"] % 2 == 0:
        raise ValidationError("galera.replicas",
                              f"{settings['galera']['replicas']} is even; Galera needs an odd number "
                              "of nodes to keep a quorum")
    if settings["services"]["swift"]["enabled"] and settings["services"]["rgw"]["enabled"]:
        raise ValidationError("services.rgw", "enable either swift or rgw as the object store, not both")
    if settings["services"]["rgw"]["enabled"] and not settings["ceph"]["monitors"]:
        raise ValidationError("ceph.monitors", "RADOS Gateway needs the external Ceph monitors")
    return settings


def explain(schema: dict = SCHEMA, prefix: str = "") -> list[str]:
    """Every key with its default and description, for documentation."""
    lines = []
    for key, sub in schema.get("properties", {}).items():
        path = f"{prefix}{key}"
        default = sub.get("default")
        shown = "" if isinstance(default, dict) else f" (default: {default!r})"
        lines.append(f"{path}{shown}: {sub.get('description', '')}")
        if sub.get("type") == "object" or "properties" in sub:
            lines.extend(explain(sub, path + "."))
    return lines


def example(schema: dict = SCHEMA, indent: int = 0) -> str:
    """A complete teapot.yaml with every key at its default, each with its description."""
    lines = []
    pad = "  " * indent
    for key, sub in schema.get("properties", {}).items():
        for text in (sub.get("description") or "").splitlines():
            lines.append(f"{pad}# {text}")
        if "properties" in sub and sub.get("default") == {}:
            lines.append(f"{pad}{key}:")
            lines.append(example(sub, indent + 1).rstrip("\n"))
        else:
            value = yaml.safe_dump({key: sub.get("default")}, default_flow_style=True,
                                   sort_keys=False).strip()
            lines.append(f"{pad}{value[1:-1]}")
    return "\n".join(lines) + "\n"
