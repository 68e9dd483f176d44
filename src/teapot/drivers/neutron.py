"""Teapot's tenant networks in Neutron: each one a provider network on its VLAN.

When the catalog has a network service, a tenant network is registered there as a VLAN provider
network (`provider:network_type vlan`, the physical network the top-of-rack switch trunks its
tenant VLANs toward, the network's VLAN id), so the project can attach its Neutron routers to the
same VLAN its hosts are on.

Who owns what, and why:
- The Neutron network belongs to the tenant network's project. Neutron lets only a network's owner
  (or an admin) create subnets on it, and a router attaches to a network through a subnet: with the
  network in Teapot's own project, the tenant could see it but never attach a router.
- It is not shared (`shared` false), and it has exactly one RBAC policy `access_as_shared`, created
  by Teapot, toward that same project; any policy that shares it with another project (a tenant may
  create one for a network it owns) is removed whenever Teapot ensures the network. Other projects
  neither see it nor can attach to it.
- Only admins set provider attributes: the project cannot move the network to another VLAN.
- Creating provider networks needs the admin role in Neutron's default policy: Teapot's service
  user holds `admin` (and `service`) in its project, as other OpenStack services' users do.
  `check_admin()` says so plainly when it does not.

Networks are found again by their name (`teapot-<uuid>` of the tenant network) and Teapot's tag;
Neutron itself refuses a second network on a VLAN already in use (409), so two conductors
ensuring the same network at once end with one network.
"""

from __future__ import annotations

from typing import Any

TAG = "teapot"  # on every network Teapot registers
SERVICE_TYPE = "network"
_SHARING_ACTIONS = ("access_as_shared", "access_as_external")


class NeutronError(Exception):
    """Neutron refused or failed; the message says what and where, never a credential."""


def _check(project_id: object, name: object, vlan: object, physical_network: object) -> None:
    if not isinstance(project_id, str) or not project_id.strip():
        raise NeutronError(f"project_id must be a Keystone project id, not {project_id!r}")
    if not isinstance(name, str) or not 1 <= len(name) <= 255:
        raise NeutronError(f"network name must be 1 to 255 characters, not {name!r}")
    if not isinstance(vlan, int) or isinstance(vlan, bool) or not 1 <= vlan <= 4094:
        raise NeutronError(f"VLAN must be an integer from 1 to 4094, not {vlan!r}")
    if not isinstance(physical_network, str) or not physical_network.strip():
        raise NeutronError(f"physical_network must be a name, not {physical_network!r}")


def _describe(error: Exception) -> str:
    """What Neutron said, without the request's headers (they hold the token)."""
    details = getattr(error, "details", None)
    status = getattr(error, "status_code", None)
    text = details or str(error).split(": ", 1)[-1]
    return f"{status}: {text}" if status else text


class NeutronNetworks:
    """Provider networks for Teapot's tenant networks, through openstacksdk."""

    def __init__(self, session, region_name: str | None = None, interface: str | None = None):
        """`session`: a keystoneauth session of Teapot's service user."""
        import openstack

        self.session = session
        self.conn = openstack.connection.Connection(
            session=session, region_name=region_name, interface=interface, app_name="teapot")

    # -- the catalog ----------------------------------------------------------------------------
    @staticmethod
    def available(session, region_name: str | None = None, interface: str | None = None) -> bool:
        """Whether the catalog of `session`'s token has a network service."""
        from keystoneauth1 import exceptions as ks_exc

        try:
            return bool(session.get_endpoint(service_type=SERVICE_TYPE, region_name=region_name,
                                             interface=interface or "public"))
        except ks_exc.EndpointNotFound:
            return False

    def check_admin(self) -> None:
        """Raise NeutronError unless the session's user holds the admin role, without which
        Neutron refuses provider networks and RBAC policies toward other projects."""
        roles = self.session.auth.get_access(self.session).role_names or []
        if "admin" not in roles:
            raise NeutronError(
                "Teapot's service user needs the admin role in its project to register tenant "
                f"networks in Neutron as provider networks (it has: {', '.join(sorted(roles))})")

    # -- networks -------------------------------------------------------------------------------
    def find(self, name: str):
        """Teapot's network of that name, or None."""
        from openstack import exceptions as sdk_exc

        try:
            found = [n for n in self.conn.network.networks(name=name)
                     if TAG in (n.tags or []) or n.provider_network_type == "vlan"]
        except sdk_exc.SDKException as e:
            raise NeutronError(f"Neutron: listing networks named {name!r} failed: "
                               f"{_describe(e)}") from None
        tagged = [n for n in found if TAG in (n.tags or [])]
        return (tagged or found or [None])[0]

    def ensure(self, project_id: str, name: str, vlan: int, physical_network: str) -> str:
        """The id of the provider network `name` on `vlan` of `physical_network`, owned by and
        shared with `project_id` only; created, tagged and shared as needed."""
        from openstack import exceptions as sdk_exc

        _check(project_id, name, vlan, physical_network)
        network = self.find(name)
        if network is None:
            try:
                network = self.conn.network.create_network(
                    name=name, project_id=project_id, is_shared=False,
                    provider_network_type="vlan", provider_physical_network=physical_network,
                    provider_segmentation_id=vlan,
                    description="Teapot tenant network (VLAN provider network)")
            except sdk_exc.ConflictException as e:
                # The VLAN is taken: by this network, made meanwhile by another conductor, or by
                # a network that is not Teapot's.
                network = self._on_vlan(vlan, physical_network)
                if network is None or network.name != name:
                    owner = f" by network {network.id} ({network.name!r})" if network else ""
                    raise NeutronError(f"Neutron: VLAN {vlan} on physical network "
                                       f"{physical_network} is already in use{owner}; "
                                       f"{_describe(e)}") from None
            except sdk_exc.SDKException as e:
                raise NeutronError(f"Neutron: creating network {name!r} (VLAN {vlan} on "
                                   f"{physical_network}) failed: {_describe(e)}") from None
        self._check_matches(network, project_id, vlan, physical_network)
        try:
            if TAG not in (network.tags or []):
                self.conn.network.add_tag(network, TAG)
            self._share_with(network, project_id)
        except sdk_exc.SDKException as e:
            raise NeutronError(f"Neutron: sharing network {name!r} ({network.id}) with project "
                               f"{project_id} failed: {_describe(e)}") from None
        return network.id

    def remove(self, name: str) -> bool:
        """Remove Teapot's network `name`: its RBAC policies, the router interfaces and ports on
        it (it is going away with its VLAN), then the network. False when there was none."""
        from openstack import exceptions as sdk_exc

        network = self.find(name)
        if network is None:
            return False
        net = self.conn.network
        try:
            for policy in net.rbac_policies(object_id=network.id, object_type="network"):
                net.delete_rbac_policy(policy, ignore_missing=True)
            for port in net.ports(network_id=network.id):
                if port.device_owner and port.device_owner.startswith("network:router_interface"):
                    net.remove_interface_from_router(port.device_id, port=port.id)
                else:
                    net.delete_port(port, ignore_missing=True)
            net.delete_network(network, ignore_missing=True)
        except sdk_exc.SDKException as e:
            raise NeutronError(f"Neutron: removing network {name!r} ({network.id}) failed: "
                               f"{_describe(e)}") from None
        return True

    # -- pieces ---------------------------------------------------------------------------------
    def _on_vlan(self, vlan: int, physical_network: str):
        found = list(self.conn.network.networks(provider_network_type="vlan",
                                                provider_physical_network=physical_network,
                                                provider_segmentation_id=vlan))
        return found[0] if found else None

    def _check_matches(self, network, project_id: str, vlan: int, physical_network: str) -> None:
        wanted: dict[str, Any] = {"project": project_id, "network type": "vlan",
                                  "physical network": physical_network, "VLAN": vlan}
        has = {"project": network.project_id, "network type": network.provider_network_type,
               "physical network": network.provider_physical_network,
               "VLAN": network.provider_segmentation_id}
        differ = [f"{k} {has[k]!r} (not {v!r})" for k, v in wanted.items() if has[k] != v]
        if differ:
            raise NeutronError(f"Neutron network {network.name!r} ({network.id}) exists with "
                               f"{', '.join(differ)}; remove it first to register it anew")

    def _share_with(self, network, project_id: str) -> None:
        """Exactly one sharing policy, toward `project_id`: others are removed."""
        net = self.conn.network
        ours = False
        for policy in net.rbac_policies(object_id=network.id, object_type="network"):
            if policy.action not in _SHARING_ACTIONS:
                continue
            if policy.action == "access_as_shared" and policy.target_project_id == project_id \
                    and not ours:
                ours = True
                continue
            net.delete_rbac_policy(policy, ignore_missing=True)
        if not ours:
            from openstack import exceptions as sdk_exc

            try:
                net.create_rbac_policy(object_type="network", object_id=network.id,
                                       action="access_as_shared", target_project_id=project_id)
            except sdk_exc.ConflictException:
                # the same policy, made meanwhile by another conductor
                if not any(p.action == "access_as_shared" and p.target_project_id == project_id
                           for p in net.rbac_policies(object_id=network.id,
                                                      object_type="network")):
                    raise
