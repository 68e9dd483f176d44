"""A management cluster that runs Cluster API and Metal³: where a tenant cluster's objects go."""

from __future__ import annotations

from teapot.drivers.bootstrap import capi
from teapot.kube import Cluster as KubeCluster
from teapot.resources.cluster import CapiObserved

KINDS = [
    (capi.CLUSTER_API_VERSION, "MachineDeployment"),
    (capi.BOOTSTRAP_API_VERSION, "KubeadmConfigTemplate"),
    (capi.CONTROLPLANE_API_VERSION, "KubeadmControlPlane"),
    (capi.INFRASTRUCTURE_API_VERSION, "Metal3MachineTemplate"),
    (capi.INFRASTRUCTURE_API_VERSION, "Metal3Cluster"),
    (capi.CLUSTER_API_VERSION, "Cluster"),
]


class ManagementCluster:
    def __init__(self, kubeconfig: str | None, context: str | None, namespace: str):
        self.kube = KubeCluster(kubeconfig, context)
        self.namespace = namespace

    def _selector(self, cluster_uuid: str) -> str:
        return f"{capi.CLUSTER_UUID_LABEL}={cluster_uuid}"

    def apply(self, objects: list[dict]) -> None:
        for obj in objects:
            self.kube.apply(obj)

    def observe(self, cluster_uuid: str) -> CapiObserved:
        objects = self.kube.owned(self.namespace, self._selector(cluster_uuid), KINDS)
        cluster = next((o for o in objects if o["kind"] == "Cluster"), None)
        ready, endpoint = False, None
        if cluster is not None:
            conditions = (cluster.get("status") or {}).get("conditions") or []
            ready = any(c.get("type") == "Available" and c.get("status") == "True" for c in conditions)
            ep = (cluster.get("spec") or {}).get("controlPlaneEndpoint") or {}
            if ep.get("host"):
                endpoint = f"{ep['host']}:{ep.get('port', capi.DEFAULT_API_SERVER_PORT)}"
        return CapiObserved(objects=len(objects), ready=ready, endpoint=endpoint)

    def delete(self, cluster_uuid: str) -> None:
        """Delete the Cluster first: Cluster API then removes its machines in order."""
        objects = self.kube.owned(self.namespace, self._selector(cluster_uuid), KINDS)
        clusters = [o for o in objects if o["kind"] == "Cluster"]
        for obj in clusters or objects:
            self.kube.delete(obj)
