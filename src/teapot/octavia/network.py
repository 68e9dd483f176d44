"""Octavia's network driver on Teapot: a VIP network is a Teapot tenant network.

Octavia's API asks its network driver whether the `--vip-network-id` a user gives exists, and which
subnet it has. Here the answer is Teapot's: the network is a Teapot tenant network, named by its
Neutron network's id (what `openstack loadbalancer create --vip-network-id NAME` resolves a name to:
Teapot registers its tenant networks in Neutron, and Octavia's client finds them there) or by its
Teapot uuid (`/v1/networks`, for API clients that send ids as they are). Its one subnet has the
Teapot network's uuid as its id. An unknown id, or another project's network (for all but
administrators), is Octavia's own 400 ("Network ... could not be found").

What Octavia's controller worker would ask of a network driver (plugging amphorae, ports, security
groups) does not exist here: the box runs no worker, and each of those raises.
"""

from __future__ import annotations

from octavia.network import base
from octavia.network import data_models as n_models

from teapot.octavia import teapot_api


def find(network_id: str) -> dict | None:
    """The Teapot network with this Neutron network id or Teapot uuid, or None."""
    marker = None
    while True:  # as Teapot's administrator: every project's networks, a page at a time
        page = teapot_api.call("GET", "/networks?limit=1000"
                                      + (f"&marker={marker}" if marker else ""))
        for network in page["networks"]:
            if network_id in (network.get("neutron_network_id"), network["uuid"]):
                return network
        if not page.get("next") or not page["networks"]:
            return None
        marker = page["networks"][-1]["uuid"]


def _network(network_id: str, context=None) -> dict:
    try:
        network = find(network_id)
    except teapot_api.TeapotAPIError as e:
        raise base.NetworkException(f"Teapot: {e.detail}") from None
    if network is None or (context is not None and not getattr(context, "is_admin", False)
                           and network["project_id"] != context.project_id):
        raise base.NetworkNotFound(f"no Teapot network {network_id}")
    return network


def _subnet(network: dict) -> n_models.Subnet:
    subnet = network.get("subnet") or {}
    return n_models.Subnet(id=network["uuid"], name=network["name"],
                           network_id=network.get("neutron_network_id") or network["uuid"],
                           project_id=network["project_id"], cidr=subnet.get("cidr"),
                           gateway_ip=subnet.get("gateway_ip"), ip_version=4, host_routes=[])


class TeapotNetworkDriver(base.AbstractNetworkDriver):
    def get_network(self, network_id, context=None):
        network = _network(network_id, context)
        return n_models.Network(id=network_id, name=network["name"],
                                subnets=[network["uuid"]], project_id=network["project_id"],
                                admin_state_up=True, port_security_enabled=False)

    def get_subnet(self, subnet_id, context=None):
        try:
            return _subnet(_network(subnet_id, context))
        except base.NetworkNotFound:
            raise base.SubnetNotFound(f"no Teapot network (subnet) {subnet_id}") from None

    def get_network_ip_availability(self, network):
        # Addresses on the tenant network are Teapot's to allocate (one per load balancer).
        return n_models.Network_IP_Availability(
            network_id=network.id, subnet_ip_availability=[
                {"subnet_id": s, "used_ips": 0, "total_ips": 1 << 16} for s in network.subnets])

    def get_port(self, port_id, context=None):
        raise base.PortNotFound("a VIP port cannot be given here: Teapot allocates the VIP "
                                "(use --vip-network-id with a Teapot network)")

    def qos_enabled(self):
        return False

    def deallocate_vip(self, vip):
        """Nothing: the VIP is the Teapot load balancer's, which the provider deletes."""


def _unavailable(name: str):
    def method(self, *args, **kwargs):
        raise base.NetworkException(f"{name}: Teapot's network driver serves Octavia's API only "
                                    "(no amphora, no port)")
    method.__name__ = name
    return method


for _name in TeapotNetworkDriver.__abstractmethods__:
    setattr(TeapotNetworkDriver, _name, _unavailable(_name))
TeapotNetworkDriver.__abstractmethods__ = frozenset()
