"""/v1/networks request and response bodies."""

from __future__ import annotations

from teapot.api.schema import BOOLEAN, LINKS, TIMESTAMP, UUID, integer, nullable, obj, string

NAME = string(255, 1, r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", "a letter or digit, then letters, digits, '_', '.', '-'")
CREATE = obj({"name": NAME, "description": nullable(string(1024))}, ("name",))
NETWORK = obj({
    "uuid": UUID, "name": string(255), "description": string(1024), "project_id": string(64),
    "is_default": BOOLEAN, "status": {"type": "string", "enum": ["creating", "active", "deleting"]},
    "status_reason": nullable({"type": "string"}),
    "vlan_id": integer(1, 4094, "the VLAN (shown to administrators only)"),
    "neutron_network_id": nullable(string(36)),
    "created_at": TIMESTAMP, "updated_at": TIMESTAMP, "links": LINKS,
}, ("uuid", "name", "project_id", "status", "links"))
NETWORK_LIST = obj({"networks": {"type": "array", "items": NETWORK}, "next": string(4096)},
                   ("networks",))
