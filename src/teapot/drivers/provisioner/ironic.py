"""The Ironic provisioner: hosts as Ironic nodes, driven through Ironic's API (openstacksdk).

Each operation reads the node (from the pass's snapshot when there is one), does at most one action and
reports. Errors Ironic records on a node (`last_error`) become the host's errorMessage once an action
Teapot issued has ended in them; a retry after backoff issues the action again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

import openstack
from openstack import exceptions as sdk_exc

from teapot.drivers.provisioner.base import HostTarget
from teapot.resources.host import Outcome
from teapot.resources.host_schema import parse_bmc_address

LOG = logging.getLogger(__name__)
# Seconds Ironic has to answer one call: a frozen Ironic holds one reconcile that long, no more.
API_TIMEOUT = 5.0

NODE_FIELDS = [
    "uuid", "name", "provision_state", "target_provision_state", "power_state", "target_power_state",
    "last_error", "maintenance", "automated_clean", "inspect_interface", "traits",
]
_BUSY = {"verifying", "cleaning", "clean wait", "deploying", "wait call-back", "deleting",
         "inspecting", "inspect wait", "adopting", "rescuing", "unrescuing", "servicing", "service wait"}

# Emulated hosts: real (emulated) Redfish power and management, Ironic's fake boot and deploy.
EMULATED_INTERFACES = {
    "power_interface": "redfish", "management_interface": "redfish", "boot_interface": "fake",
    "deploy_interface": "fake", "inspect_interface": "no-inspect", "bios_interface": "no-bios",
    "firmware_interface": "no-firmware", "raid_interface": "no-raid", "vendor_interface": "no-vendor",
    "console_interface": "no-console", "network_interface": "noop",
}
HARDWARE_INTERFACES = {
    "redfish": {"bios_interface": "no-bios", "firmware_interface": "no-firmware",
                "inspect_interface": "redfish", "network_interface": "noop"},
    "ipmi": {"network_interface": "noop"},
}


def local_link_connection(spec: Mapping, mac: str,
                          switch_names: Mapping[str, str] | None = None) -> dict | None:
    """Where the NIC with `mac` is cabled, as an Ironic port's `local_link_connection` says it,
    from the host's networkInterfaces (Metal³'s switchPort: the switch's MAC and the port);
    `switch_info` is the switch's name when `switch_names` (MAC -> name) knows it. None when the
    spec does not say."""
    for nic in spec.get("networkInterfaces") or ():
        port = nic.get("switchPort")
        if port and str(nic.get("macAddress", "")).lower() == mac.lower():
            link = {"switch_id": port["switchID"].lower(), "port_id": port["portID"]}
            name = (switch_names or {}).get(link["switch_id"])
            if name:
                link["switch_info"] = name
            return link
    return None


def _power_on(node: Any) -> bool | None:
    if node.power_state is None:
        return None
    return node.power_state == "power on"


class IronicProvisioner:
    def __init__(self, endpoint: str, emulated_deploy: bool = False,
                 switch_names: Mapping[str, str] | None = None):
        self.emulated_deploy = emulated_deploy
        # switch MAC (lowercase) -> name, for ports' local_link_connection switch_info
        self.switch_names = {k.lower(): v for k, v in (switch_names or {}).items()}
        self._links: dict[str, dict] = {}  # node id -> the local_link_connection its port has
        self.conn = openstack.connection.Connection(
            auth_type="none", auth={"endpoint": endpoint}, baremetal_endpoint_override=endpoint,
            app_name="teapot", api_timeout=API_TIMEOUT,
        )
        self._snapshot: dict[str, Any] = {}
        self._lock = threading.Lock()

    # -- looking -----------------------------------------------------------------------------------
    def refresh(self) -> None:
        try:
            nodes = {n.name: n for n in self.conn.baremetal.nodes(fields=NODE_FIELDS)}
        except Exception:
            with self._lock:  # what Ironic said before it stopped answering is not used
                self._snapshot = {}
            raise
        with self._lock:
            self._snapshot = nodes

    def _forget(self, host: HostTarget) -> None:
        with self._lock:
            self._snapshot.pop(host.name, None)

    def _node(self, host: HostTarget) -> Any | None:
        with self._lock:
            node = self._snapshot.get(host.name)
        if node is not None:
            return node
        try:
            return self.conn.baremetal.get_node(host.node_id or host.name, fields=NODE_FIELDS)
        except sdk_exc.NotFoundException:
            return None

    def _observed(self, node: Any) -> dict:
        return {"ID": node.id, "poweredOn": _power_on(node)}

    def _action(self, host: HostTarget, node: Any, target: str, **kwargs: Any) -> Outcome:
        try:
            self.conn.baremetal.set_node_provision_state(node, target, **kwargs)
        except sdk_exc.ConflictException as e:
            # Locked by Ironic's own conductor, or the state moved on: look again shortly.
            LOG.debug("node %s busy for %s: %s", node.id, target, e)
            return Outcome(observed=self._observed(node))
        finally:
            self._forget(host)
        return Outcome(observed=self._observed(node), issued=target)

    def _failed(self, what: str, node: Any) -> Outcome:
        return Outcome(error=f"{what}: {node.last_error or 'no reason given by Ironic'}",
                       observed=self._observed(node))

    # -- registration ------------------------------------------------------------------------------
    def _driver_fields(self, host: HostTarget) -> dict:
        bmc = host.spec["bmc"]
        address = parse_bmc_address(bmc["address"])
        if address.driver == "redfish":
            info = {
                "redfish_address": address.redfish_address,
                "redfish_system_id": address.system_id,
                "redfish_username": host.username,
                "redfish_password": host.password,
                # Plain HTTP has no certificate to verify. Saying so also keeps Ironic from looking up
                # a config group named after the driver, which fails for fake-hardware.
                "redfish_verify_ca": (address.protocol == "https"
                                      and not bmc.get("disableCertificateVerification", False)),
            }
        else:
            info = {"ipmi_address": address.host, "ipmi_username": host.username,
                    "ipmi_password": host.password}
            if address.port:
                info["ipmi_port"] = address.port
        if self.emulated_deploy and address.driver == "redfish":
            return {"driver": "fake-hardware", "driver_info": info, **EMULATED_INTERFACES}
        return {"driver": address.driver, "driver_info": info, **HARDWARE_INTERFACES[address.driver]}

    def register(self, host: HostTarget, bmc_version: int) -> Outcome:
        node = self._node(host)
        fields = self._driver_fields(host)
        if node is None:
            try:
                node = self.conn.baremetal.create_node(
                    name=host.name, extra={"teapot_host": host.uuid, "teapot_bmc_version": bmc_version},
                    is_automated_clean_enabled=host.spec.get("automatedCleaningMode", "metadata") != "disabled",
                    **fields,
                )
            except sdk_exc.BadRequestException as e:
                return Outcome(error=f"Ironic refused the node: {e.details or e}")
            except sdk_exc.ConflictException:
                node = self._node(host)  # created by an earlier attempt that did not record it
                if node is None:
                    return Outcome(error=f"an Ironic node named {host.name} exists elsewhere")
        else:
            full = self.conn.baremetal.get_node(node.id, fields=["uuid", "extra"])
            if full.extra.get("teapot_bmc_version") != bmc_version:
                if node.provision_state not in ("enroll", "manageable", "available"):
                    return Outcome(retry_after=2.0, observed=self._observed(node))
                self.conn.baremetal.update_node(
                    node, extra={**full.extra, "teapot_bmc_version": bmc_version}, **fields)
                self._forget(host)
        self._ensure_port(node, host.spec["bootMACAddress"])
        self._ensure_link(host, node)
        self._ensure_traits(host, node)
        state = node.provision_state
        if state == "enroll":
            if node.last_error and host.issued == "manage":
                return self._failed("BMC verification failed", node)
            return self._action(host, node, "manage")
        if state in _BUSY:
            return Outcome(observed=self._observed(node))
        return Outcome(done=True, observed=self._observed(node))

    def _ensure_port(self, node: Any, mac: str) -> None:
        ports = list(self.conn.baremetal.ports(node_uuid=node.id, fields=["uuid", "address"]))
        for port in ports:
            if port.address.lower() != mac:
                self.conn.baremetal.delete_port(port, ignore_missing=True)
        if not any(p.address.lower() == mac for p in ports):
            try:
                self.conn.baremetal.create_port(node_uuid=node.id, address=mac, pxe_enabled=True)
            except sdk_exc.ConflictException:
                pass  # the MAC is already registered: by an earlier attempt of ours, or another node

    def _ensure_link(self, host: HostTarget, node: Any) -> None:
        """The boot port's local_link_connection as the spec's networkInterfaces say. Ironic
        changes it only on enrolled, inspecting or manageable nodes: otherwise the port is made
        again (not on active nodes: they are left until they are not). A failure is tried again
        later; it never fails the host's operation."""
        mac = host.spec["bootMACAddress"].lower()
        wanted = local_link_connection(host.spec, mac, self.switch_names)
        if wanted is None or self._links.get(node.id) == wanted:
            return
        try:
            for port in self.conn.baremetal.ports(node_uuid=node.id, fields=[
                    "uuid", "address", "local_link_connection"]):
                if port.address.lower() != mac:
                    continue
                if (port.local_link_connection or {}) != wanted:
                    try:
                        self.conn.baremetal.update_port(port, local_link_connection=wanted)
                    except sdk_exc.ConflictException:
                        if node.provision_state in ("active", "deploying", "wait call-back"):
                            return
                        self.conn.baremetal.delete_port(port, ignore_missing=True)
                        self.conn.baremetal.create_port(node_uuid=node.id, address=mac,
                                                        pxe_enabled=True,
                                                        local_link_connection=wanted)
                self._links[node.id] = wanted
                return
        except sdk_exc.SDKException as e:
            LOG.warning("host %s: the port's local_link_connection was not set: %s", host.name, e)

    def _ensure_traits(self, host: HostTarget, node: Any) -> None:
        if sorted(node.traits or ()) != list(host.traits):
            try:
                self.conn.baremetal.set_node_traits(node, list(host.traits))
            except sdk_exc.ConflictException:
                pass  # the node is locked: the next look tries again
            finally:
                self._forget(host)

    # -- inspection and preparation ----------------------------------------------------------------
    def inspect(self, host: HostTarget, disabled: bool) -> Outcome:
        node = self._node(host)
        if node is None:
            return Outcome(error="the Ironic node is gone")
        if disabled or node.inspect_interface == "no-inspect":
            return Outcome(done=True, observed=self._observed(node))
        state = node.provision_state
        if state == "inspect failed":
            if host.issued == "inspect":
                return self._failed("inspection failed", node)
            return self._action(host, node, "manage")
        if state in _BUSY:
            return Outcome(observed=self._observed(node))
        if state == "manageable":
            if host.issued == "inspect":
                return Outcome(done=True, observed=self._observed(node))
            return self._action(host, node, "inspect")
        return Outcome(done=True, observed=self._observed(node))

    def prepare(self, host: HostTarget, automated_clean: bool) -> Outcome:
        node = self._node(host)
        if node is None:
            return Outcome(error="the Ironic node is gone")
        state = node.provision_state
        if state == "available":
            return Outcome(done=True, observed=self._observed(node))
        if state == "manageable":
            if node.is_automated_clean_enabled != automated_clean:
                self.conn.baremetal.update_node(node, is_automated_clean_enabled=automated_clean)
            return self._action(host, node, "provide")
        if state == "clean failed":
            if host.issued == "provide":
                return self._failed("cleaning failed", node)
            return self._action(host, node, "manage")
        if state in _BUSY:
            return Outcome(observed=self._observed(node))
        return Outcome(error=f"the Ironic node is {state}, not manageable", observed=self._observed(node))

    # -- provisioning ------------------------------------------------------------------------------
    def _instance_info(self, image: dict) -> dict:
        info = {"image_source": image["url"]}
        kind = image.get("checksumType")
        checksum = image.get("checksum")
        if checksum:
            if kind in ("sha256", "sha512"):
                info.update(image_os_hash_algo=kind, image_os_hash_value=checksum)
            else:
                info["image_checksum"] = checksum
        if image.get("format"):
            info["image_disk_format"] = image["format"]
        return info

    def provision(self, host: HostTarget, image: dict) -> Outcome:
        node = self._node(host)
        if node is None:
            return Outcome(error="the Ironic node is gone")
        state = node.provision_state
        if state == "active":
            return Outcome(done=True, observed=self._observed(node))
        if state == "available":
            if host.issued == "active":
                return Outcome(observed=self._observed(node))  # Ironic has not started yet
            self.conn.baremetal.update_node(node, instance_info=self._instance_info(image))
            config_drive = {k: v for k, v in (("user_data", host.user_data),
                                              ("network_data", host.network_data)) if v} or None
            return self._action(host, node, "active", config_drive=config_drive)
        if state == "deploy failed":
            if host.issued == "active":
                return self._failed("deployment failed", node)
            return self._action(host, node, "deleted")  # clean up, then deploy again
        if state == "manageable":
            return self._action(host, node, "provide")
        if state in _BUSY:
            return Outcome(observed=self._observed(node))
        return Outcome(error=f"the Ironic node is {state}", observed=self._observed(node))

    def deprovision(self, host: HostTarget, automated_clean: bool) -> Outcome:
        node = self._node(host)
        if node is None:
            return Outcome(error="the Ironic node is gone")
        state = node.provision_state
        if state == "available":
            return Outcome(done=True, observed=self._observed(node))
        if state in ("active", "deploy failed", "wait call-back"):
            return self._action(host, node, "deleted")
        if state == "manageable":
            return self._action(host, node, "provide")
        if state == "clean failed":
            if host.issued in ("deleted", "provide"):
                return self._failed("cleaning failed", node)
            return self._action(host, node, "manage")
        if state in _BUSY:
            return Outcome(observed=self._observed(node))
        return Outcome(error=f"the Ironic node is {state}", observed=self._observed(node))

    # -- power and deletion ------------------------------------------------------------------------
    def power(self, host: HostTarget, on: bool) -> Outcome:
        node = self._node(host)
        if node is None:
            return Outcome(error="the Ironic node is gone")
        self._ensure_traits(host, node)
        self._ensure_link(host, node)
        observed = self._observed(node)
        if node.target_power_state:
            return Outcome(observed=observed)
        if _power_on(node) == on:
            return Outcome(done=True, observed=observed)
        target = "power on" if on else "power off"
        if host.issued == target:
            if node.last_error:
                return self._failed(f"{target} failed", node)
            return Outcome(observed=observed)  # accepted, not started yet
        try:
            self.conn.baremetal.set_node_power_state(node, target)
        except sdk_exc.ConflictException:
            return Outcome(observed=observed)
        finally:
            self._forget(host)
        return Outcome(observed=observed, issued=target)

    def delete(self, host: HostTarget) -> Outcome:
        node = self._node(host)
        if node is None:
            return Outcome(done=True)
        if node.provision_state in ("active", "deploy failed"):
            return self._action(host, node, "deleted")
        if node.provision_state in _BUSY:
            return Outcome(observed=self._observed(node))
        try:
            self.conn.baremetal.delete_node(node, ignore_missing=True)
        except sdk_exc.ConflictException as e:
            if not node.is_maintenance:
                self.conn.baremetal.set_node_maintenance(node, reason="teapot: host deleted")
                return Outcome(observed=self._observed(node))
            return Outcome(error=f"Ironic refused to delete the node: {e.details or e}")
        finally:
            self._forget(host)
        return Outcome(done=True)
