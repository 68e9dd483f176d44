"""/v1/hosts request and response bodies. A host's spec is Metal³ BareMetalHost's, from the upstream
CRD schema (closed: an unknown field is named in the 400)."""

from __future__ import annotations

import copy

from teapot.api.container_infra.schemas import TRAIT
from teapot.api.schema import (
    BOOLEAN,
    INT32_MAX,
    LABELS,
    LINKS,
    UUID,
    array,
    integer,
    nullable,
    obj,
    string,
)
from teapot.resources import host_schema

NAME = string(253, 1, host_schema.NAME_RE.pattern,
              "lower-case letters, digits, '-' and '.' (a DNS name, at most 253)")


def _request_spec() -> dict:
    """The spec a request may send: the API fills in `online` (false) and the BMC credentials'
    name (`<host>-bmc-secret`) when they are missing."""
    spec = copy.deepcopy(host_schema.spec_schema())
    spec["required"] = [r for r in spec.get("required", []) if r != "online"]
    spec["properties"]["bootMACAddress"]["x-hint"] = "not a MAC address (aa:bb:cc:dd:ee:ff)"
    bmc = spec["properties"]["bmc"]
    bmc["required"] = [r for r in bmc.get("required", []) if r != "credentialsName"]
    return spec


SPEC = _request_spec()
CREDENTIALS = obj({"username": string(255, 1), "password": string(1024, 1, pattern=None)},
                  ("username", "password"), description="the BMC's; stored encrypted, never shown")
USER_DATA = string(1024 * 1024, pattern=None, description="cloud-init user data")
TRAITS = array(TRAIT, 100)

CREATE = obj({"name": NAME, "labels": nullable(LABELS), "traits": nullable(TRAITS), "spec": SPEC,
              "bmcCredentials": CREDENTIALS, "userData": nullable(USER_DATA)},
             ("name", "spec", "bmcCredentials"))
# A JSON merge patch (RFC 7396): `spec` merges into the host's spec, and the result is checked
# against the BareMetalHost schema.
UPDATE = obj({"labels": nullable(LABELS), "traits": nullable(TRAITS),
              "spec": {"type": "object", "description": "merged into the spec; null removes"},
              "bmcCredentials": CREDENTIALS, "userData": nullable(USER_DATA)})

HOST = obj({
    "uuid": UUID, "name": string(253), "labels": LABELS, "traits": array(string(255)),
    "spec": {"type": "object"}, "status": {"type": "object"}, "state": string(32),
    "consumer": nullable(obj({"kind": {"type": "string"}, "uuid": UUID,
                              "nodegroup": nullable(string(255))})),
    "network": obj({"vlan": nullable(integer(1, 4094)), "error": nullable({"type": "string"}),
                    # the address the host was handed on its tenant network (network_data.json)
                    "address": nullable({"type": "string", "format": "ipv4"})}),
    "deletionRequested": BOOLEAN, "generation": integer(0, INT32_MAX),
    "createdAt": string(32), "updatedAt": string(32), "links": LINKS,
}, ("uuid", "name", "spec", "status", "state", "links"))
HOST_LIST = obj({"hosts": array(HOST, INT32_MAX), "next": string(4096)}, ("hosts",))
