"""A host's network configuration as OpenStack's `network_data.json`: what Ironic puts in the
config drive (and what Metal³'s networkData is), read by cloud-init before anything else runs.

One link, the host's cabled NIC (found by its MAC address), with the host's address on its
tenant network's subnet, a default route through the subnet's gateway, and the DNS servers."""

from __future__ import annotations

from teapot.resources import network as nsm

LINK_ID = "tenant0"


def network_data(mac: str, address: str, subnet: nsm.Subnet, network_uuid: str,
                 mtu: int = 1500) -> dict:
    routes = [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": subnet.gateway_ip}]
    return {
        "links": [{"id": LINK_ID, "type": "phy", "ethernet_mac_address": mac.lower(),
                   "mtu": mtu}],
        "networks": [{"id": "tenant", "type": "ipv4", "link": LINK_ID, "ip_address": address,
                      "netmask": subnet.netmask, "routes": routes, "network_id": network_uuid}],
        "services": [{"type": "dns", "address": server} for server in subnet.dns_nameservers],
    }


def address_of(data: dict | None) -> str | None:
    """The host's IPv4 address in `data` (None when it has none)."""
    for net in (data or {}).get("networks") or ():
        if net.get("type") == "ipv4" and net.get("ip_address"):
            return net["ip_address"]
    return None
