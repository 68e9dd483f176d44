"""A management cluster that runs Cluster API and Metal³: where a tenant cluster's objects go.

A cluster's tenant network is a HostNetworkAttachment among its objects.  Cluster API has no field
that carries it to the hosts, so on every look at a cluster the hosts CAPM3 chose for it (the
BareMetalHosts it labels ``cluster.x-k8s.io/cluster-name``) get their tenant NIC pointed at the
attachment, and hosts CAPM3 has released (deprovisioned, the label gone) are pointed away from it.
A cluster is not ready while one of its hosts is not on its network; the attachment goes last when
the cluster is deleted, once no host names it (Metal³ refuses to delete an attachment in use).
"""

from __future__ import annotations

import logging

from teapot.drivers.bootstrap import capi
from teapot.kube import Cluster as KubeCluster
from teapot.resources.cluster import CapiObserved

LOG = logging.getLogger(__name__)
ATTACHMENT = (capi.METAL3_API_VERSION, "HostNetworkAttachment")
HOST = (capi.METAL3_API_VERSION, "BareMetalHost")
KINDS = [
    (capi.ADDONS_API_VERSION, "ClusterResourceSet"),
    ("v1", "Secret"),  # the ClusterResourceSet's add-ons
    (capi.CLUSTER_API_VERSION, "MachineDeployment"),
    (capi.BOOTSTRAP_API_VERSION, "KubeadmConfigTemplate"),
    (capi.CONTROLPLANE_API_VERSION, "KubeadmControlPlane"),
    (capi.INFRASTRUCTURE_API_VERSION, "Metal3MachineTemplate"),
    (capi.INFRASTRUCTURE_API_VERSION, "Metal3Cluster"),
    (capi.CLUSTER_API_VERSION, "Cluster"),
    ATTACHMENT,
]
MERGE_PATCH = "application/merge-patch+json"


class ManagementCluster:
    def __init__(self, kubeconfig: str | None, context: str | None, namespace: str):
        self.kube = KubeCluster(kubeconfig, context)
        self.namespace = namespace

    def _selector(self, cluster_uuid: str) -> str:
        return f"{capi.CLUSTER_UUID_LABEL}={cluster_uuid}"

    def _owned(self, cluster_uuid: str) -> list[dict]:
        objects = self.kube.owned(self.namespace, self._selector(cluster_uuid), KINDS)
        # The selector again, client-side: a cluster never acts on another's objects.
        return [o for o in objects
                if ((o.get("metadata") or {}).get("labels") or {}).get(capi.CLUSTER_UUID_LABEL)
                == cluster_uuid]

    def apply(self, objects: list[dict]) -> None:
        for obj in objects:
            self.kube.apply(obj)

    def observe(self, cluster_uuid: str) -> CapiObserved:
        objects = self._owned(cluster_uuid)
        cluster = next((o for o in objects if o["kind"] == "Cluster"), None)
        off_network = 0
        for attachment in (o for o in objects if o["kind"] == ATTACHMENT[1]):
            if not (attachment.get("metadata") or {}).get("deletionTimestamp"):
                off_network += self.follow_hosts(attachment)
        ready, endpoint = False, None
        if cluster is not None:
            conditions = (cluster.get("status") or {}).get("conditions") or []
            ready = any(c.get("type") == "Available" and c.get("status") == "True" for c in conditions)
            ep = (cluster.get("spec") or {}).get("controlPlaneEndpoint") or {}
            if ep.get("host"):
                endpoint = f"{ep['host']}:{ep.get('port', capi.DEFAULT_API_SERVER_PORT)}"
        return CapiObserved(objects=len(objects), ready=ready and not off_network,
                            endpoint=endpoint)

    def _host_resource(self):
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        try:
            return self.kube.client.resources.get(api_version=HOST[0], kind=HOST[1])
        except ResourceNotFoundError:
            return None

    def _hosts(self) -> list[dict] | None:
        resource = self._host_resource()
        if resource is None:
            return None  # no Metal³ here: nothing to point at the attachment
        return [h.to_dict() for h in resource.get(namespace=self.namespace).items]

    def _set_interfaces(self, host: dict, interfaces: list[dict]) -> bool:
        """Patch the host's networkInterfaces, provided it has not changed since it was read."""
        from kubernetes.client.exceptions import ApiException

        meta = host["metadata"]
        patch = {"metadata": {"resourceVersion": meta.get("resourceVersion")},
                 "spec": {"networkInterfaces": interfaces or None}}
        if not meta.get("resourceVersion"):
            del patch["metadata"]
        try:
            self._host_resource().patch(body=patch, name=meta["name"],
                                            namespace=meta.get("namespace") or self.namespace,
                                            content_type=MERGE_PATCH)
        except ApiException as e:
            LOG.warning("BareMetalHost %s: its networkInterfaces could not be set (%s %s); "
                        "retried on the next pass", meta["name"], e.status, e.reason)
            return False
        return True

    def follow_hosts(self, attachment: dict) -> int:
        """Point the cluster's hosts at its attachment and released hosts away from it.

        Returns how many of the cluster's hosts are not pointed at it (yet)."""
        hosts = self._hosts()
        if hosts is None:
            return 0
        labels = attachment["metadata"].get("labels") or {}
        cluster_name = labels.get(capi.CLUSTER_NAME_LABEL)
        name = attachment["metadata"]["name"]
        off_network = 0
        for host in hosts:
            host_name = host["metadata"]["name"]
            member = bool(cluster_name) and (
                (host["metadata"].get("labels") or {}).get(capi.CLUSTER_NAME_LABEL) == cluster_name)
            current = (host.get("spec") or {}).get("networkInterfaces") or []
            if member:
                wanted = capi.attach_interfaces(host, attachment)
                if wanted is None:
                    LOG.warning("BareMetalHost %s of cluster %s names no NIC (networkInterfaces or "
                                "bootMACAddress): it cannot join network %s", host_name,
                                cluster_name, labels.get(capi.NETWORK_UUID_LABEL))
                    off_network += 1
                    continue
            elif capi.refers_to(host, attachment):
                wanted = capi.detach_interfaces(host, attachment)
            else:
                continue
            if wanted == current:
                continue
            if self._set_interfaces(host, wanted):
                LOG.info("BareMetalHost %s: %s HostNetworkAttachment %s", host_name,
                         "on" if member else "off", name)
            elif member:
                off_network += 1
        return off_network

    def delete(self, cluster_uuid: str) -> None:
        """Delete the Cluster first: Cluster API then removes its machines in order, and CAPM3
        releases the hosts.  Then the rest, the attachment once no host names it."""
        objects = self._owned(cluster_uuid)
        clusters = [o for o in objects if o["kind"] == "Cluster"]
        if clusters:
            for obj in clusters:
                self.kube.delete(obj)
            return
        for obj in objects:
            if obj["kind"] == ATTACHMENT[1] and not self._release_all(obj):
                continue  # a host still names it: Metal³ would refuse; next pass
            self.kube.delete(obj)

    def _release_all(self, attachment: dict) -> bool:
        """Point every released host away from the attachment; whether none names it any more.

        A host CAPM3 has not released yet (still labelled with the cluster's name) keeps it: its
        port goes back to the idle VLAN when it is deprovisioned, not before."""
        cluster_name = (attachment["metadata"].get("labels") or {}).get(capi.CLUSTER_NAME_LABEL)
        done = True
        for host in self._hosts() or []:
            if not capi.refers_to(host, attachment):
                continue
            if (host["metadata"].get("labels") or {}).get(capi.CLUSTER_NAME_LABEL) == cluster_name:
                done = False
                continue
            done = self._set_interfaces(host, capi.detach_interfaces(host, attachment)) and done
        return done
