"""/v1/loadbalancers request and response bodies (field names as Octavia's where they exist)."""

from __future__ import annotations

from teapot.api.schema import LINKS, TIMESTAMP, UUID, array, integer, nullable, obj, string
from teapot.resources import loadbalancer as lbr

NAME = string(255, 1, r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
              "a letter or digit, then letters, digits, '_', '.', '-'")
IPV4 = {"type": "string", "format": "ipv4", "maxLength": 15}
PORT = integer(1, 65535)
LISTENER = obj({"protocol": {"type": "string", "description": "TCP (UDP is refused: HAProxy does "
                                                              "not balance it)", "maxLength": 8},
                "port": PORT, "member_port": PORT}, ("port",))
MEMBER = obj({"address": IPV4}, ("address",))
HEALTH_CHECK = obj({"interval": {"type": "number", "minimum": 0.5, "maximum": 60,
                                 "description": "seconds between checks of each member"},
                    "retries": integer(1, 10, "failed checks before a member is taken out")})
TOPOLOGY = {"type": "string", "enum": list(lbr.TOPOLOGIES),
            "description": "SINGLE (one instance) or ACTIVE_STANDBY (a pair: the VIPs move to the "
                           "standby when the active instance is lost); chosen at create"}
CREATE = obj({
    "name": NAME, "description": nullable(string(1024)),
    "network": string(255, 1, description="the tenant network (name or uuid; default: the "
                                          "project's default network)"),
    "cluster": string(255, 1, description="a cluster on that network: its hosts are members"),
    "listeners": array(LISTENER, lbr.MAX_LISTENERS),
    "members": array(MEMBER, lbr.MAX_MEMBERS),
    "health_check": HEALTH_CHECK,
    "topology": TOPOLOGY,
    "project_id": string(64, 1, description="administrators only: the project it is made in "
                                            "(default: the token's)"),
}, ("name",))
UPDATE = {**obj({"description": nullable(string(1024)),
                 "listeners": array(LISTENER, lbr.MAX_LISTENERS),
                 "members": array(MEMBER, lbr.MAX_MEMBERS),
                 "health_check": HEALTH_CHECK}),
          "minProperties": 1,
          "description": "what it names replaces what the load balancer has; the rest stays"}
PROVISIONING = {"type": "string", "enum": [lbr.PENDING_CREATE, lbr.PENDING_UPDATE,
                                           lbr.PENDING_DELETE, lbr.ACTIVE, lbr.ERROR]}
OPERATING = {"type": "string", "enum": [lbr.ONLINE, lbr.DEGRADED, lbr.OFFLINE, lbr.OP_ERROR,
                                        lbr.NO_MONITOR]}
LOADBALANCER = obj({
    "id": UUID, "name": string(255), "description": string(1024), "project_id": string(64),
    "network_id": UUID, "cluster_id": nullable(UUID),
    "vip_address": nullable(IPV4), "tenant_address": nullable(IPV4),
    "provisioning_status": PROVISIONING, "operating_status": OPERATING,
    "status_reason": nullable({"type": "string"}),
    "listeners": array(LISTENER, lbr.MAX_LISTENERS),
    "members": array(obj({"address": IPV4, "operating_status": OPERATING}), lbr.MAX_MEMBERS * 2),
    "health_check": HEALTH_CHECK, "topology": TOPOLOGY,
    "created_at": TIMESTAMP, "updated_at": TIMESTAMP, "links": LINKS,
}, ("id", "name", "project_id", "network_id", "provisioning_status", "operating_status", "links"))
LOADBALANCER_LIST = obj({"loadbalancers": {"type": "array", "items": LOADBALANCER},
                         "next": string(4096)}, ("loadbalancers",))
