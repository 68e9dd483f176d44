"""Talking to a Kubernetes cluster (the official client's dynamic client): read, apply, delete, wait.

Used by the deployer (the control plane on a management cluster) and by the Cluster API driver."""

from __future__ import annotations

FIELD_MANAGER = "teapot"
# Kinds Teapot creates, in the order their leftovers are pruned (dependents first).
KINDS = [
    ("cert-manager.io/v1", "Certificate"), ("networking.k8s.io/v1", "Ingress"),
    ("batch/v1", "Job"), ("policy/v1", "PodDisruptionBudget"), ("v1", "Service"),
    ("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"), ("apps/v1", "DaemonSet"),
    ("v1", "ConfigMap"), ("v1", "Secret"),
]


class Cluster:
    def __init__(self, kubeconfig: str | None = None, context: str | None = None):
        from kubernetes import config, dynamic

        api = config.new_client_from_config(config_file=kubeconfig, context=context)
        self.client = dynamic.DynamicClient(api)

    def _resource(self, api_version: str, kind: str):
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        try:
            return self.client.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError:
            return None

    def owned(self, namespace: str, selector: str, kinds=KINDS) -> list[dict]:
        """Every object of these kinds in `namespace` that matches the label selector."""
        found = []
        for api_version, kind in kinds:
            resource = self._resource(api_version, kind)
            if resource is None:
                continue
            for item in resource.get(namespace=namespace, label_selector=selector).items:
                obj = item.to_dict()
                obj.setdefault("apiVersion", api_version)
                obj.setdefault("kind", kind)
                found.append(obj)
        return found

    def get(self, obj: dict) -> dict | None:
        from kubernetes.dynamic.exceptions import NotFoundError

        resource = self._resource(obj["apiVersion"], obj["kind"])
        if resource is None:
            return None
        try:
            return resource.get(name=obj["metadata"]["name"],
                                namespace=obj["metadata"].get("namespace")).to_dict()
        except NotFoundError:
            return None

    def apply(self, obj: dict, dry_run: bool = False) -> dict:
        """Server-side apply with Teapot as the field manager. With `dry_run`, the server only
        says what the object would become (or refuses it), and stores nothing."""
        resource = self._resource(obj["apiVersion"], obj["kind"])
        if resource is None:
            raise RuntimeError(f"the cluster does not serve {obj['apiVersion']} {obj['kind']} "
                               "(is the CRD installed?)")
        return resource.server_side_apply(
            body=obj, name=obj["metadata"]["name"], namespace=obj["metadata"].get("namespace"),
            field_manager=FIELD_MANAGER, force_conflicts=True,
            dry_run="All" if dry_run else None).to_dict()

    def delete(self, obj: dict) -> None:
        from kubernetes.dynamic.exceptions import NotFoundError

        resource = self._resource(obj["apiVersion"], obj["kind"])
        try:
            resource.delete(name=obj["metadata"]["name"], namespace=obj["metadata"].get("namespace"),
                            body={"propagationPolicy": "Background"})
        except NotFoundError:
            pass


def readiness(obj: dict | None) -> tuple[bool, str]:
    """Whether a live object is ready, and a short word on why not."""
    if obj is None:
        return False, "missing"
    kind = obj["kind"]
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if kind in ("Deployment", "StatefulSet"):
        want = spec.get("replicas", 1)
        ready = status.get("readyReplicas") or 0
        return ready >= want, f"{ready}/{want} ready"
    if kind == "DaemonSet":
        want = status.get("desiredNumberScheduled")
        ready = status.get("numberReady") or 0
        return want is not None and ready >= want, f"{ready}/{want if want is not None else '?'} ready"
    if kind == "Job":
        if status.get("succeeded"):
            return True, "complete"
        if (status.get("failed") or 0) > (spec.get("backoffLimit") or 6):
            return False, "failed"
        return False, "running"
    return True, "present"
