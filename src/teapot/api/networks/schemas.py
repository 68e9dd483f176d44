"""/v1/networks request and response bodies."""

from __future__ import annotations

from teapot.api.schema import BOOLEAN, LINKS, TIMESTAMP, UUID, array, integer, nullable, obj, string

NAME = string(255, 1, r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", "a letter or digit, then letters, digits, '_', '.', '-'")
IPV4 = {"type": "string", "format": "ipv4", "maxLength": 15}
CIDR = string(18, 9, r"^[0-9.]+/[0-9]{1,2}$", "an IPv4 network, e.g. 10.20.0.0/24")
POOL = obj({"start": IPV4, "end": IPV4})
SUBNET = obj({"cidr": CIDR, "gateway_ip": IPV4, "dns_nameservers": array(IPV4, 8),
              "allocation_pool": POOL}, ("cidr", "gateway_ip", "dns_nameservers", "allocation_pool"))
CREATE = obj({"name": NAME, "description": nullable(string(1024)),
              # the subnet; without a cidr, the cloud's default one ([network] default_cidr)
              "cidr": CIDR, "gateway_ip": IPV4, "dns_nameservers": array(IPV4, 8),
              "allocation_pool": POOL}, ("name",))
NETWORK = obj({
    "uuid": UUID, "name": string(255), "description": string(1024), "project_id": string(64),
    "is_default": BOOLEAN, "status": {"type": "string", "enum": ["creating", "active", "deleting"]},
    "status_reason": nullable({"type": "string"}),
    "vlan_id": integer(1, 4094, "the VLAN (shown to administrators only)"),
    "neutron_network_id": nullable(string(36)), "subnet": SUBNET,
    "created_at": TIMESTAMP, "updated_at": TIMESTAMP, "links": LINKS,
}, ("uuid", "name", "project_id", "status", "links"))
NETWORK_LIST = obj({"networks": {"type": "array", "items": NETWORK}, "next": string(4096)},
                   ("networks",))
