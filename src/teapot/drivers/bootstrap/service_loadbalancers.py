"""The add-on that gives a cluster's Services of type LoadBalancer a Teapot load balancer: the
controller (`python3 -m teapot.servicelb`) in one Deployment in kube-system, its RBAC, and the
Secret it reads its configuration from (Keystone, the cluster's own application credential, the
cluster's uuid). The credential's access rules reach only this cluster's load balancers
(resources/loadbalancer.access_rules). Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from teapot.drivers.bootstrap.cosi import IMAGES

NAMESPACE = "kube-system"
NAME = "teapot-loadbalancers"
SECRET = "teapot-loadbalancers"
LABEL = "app.kubernetes.io/managed-by"


@dataclass(frozen=True)
class Config:
    auth_url: str
    region: str
    cluster_uuid: str
    application_credential_id: str
    application_credential_secret: str = field(repr=False)
    teapot_url: str | None = None  # None: the controller finds Teapot in the catalog

    def __post_init__(self) -> None:
        if not self.auth_url.startswith(("http://", "https://")):
            raise ValueError(f"auth_url must be an http(s) URL, not {self.auth_url!r}")
        if not self.application_credential_id or not self.application_credential_secret:
            raise ValueError("the cluster's application credential is missing")


def _meta(name: str, namespaced: bool = True) -> dict:
    meta: dict = {"name": name, "labels": {LABEL: "teapot"}}
    if namespaced:
        meta["namespace"] = NAMESPACE
    return meta


def secret_data(cfg: Config) -> dict[str, str]:
    """The controller's environment (what `teapot.servicelb` reads)."""
    data = {"OS_AUTH_URL": cfg.auth_url, "OS_REGION_NAME": cfg.region,
            "OS_AUTH_TYPE": "v3applicationcredential",
            "OS_APPLICATION_CREDENTIAL_ID": cfg.application_credential_id,
            "OS_APPLICATION_CREDENTIAL_SECRET": cfg.application_credential_secret,
            "TEAPOT_CLUSTER_UUID": cfg.cluster_uuid}
    if cfg.teapot_url:
        data["TEAPOT_URL"] = cfg.teapot_url
    return data


def objects(cfg: Config) -> list[dict]:
    """The Secret, RBAC and Deployment, in the order they are applied."""
    rules = [
        {"apiGroups": [""], "resources": ["services"],
         "verbs": ["get", "list", "watch", "update", "patch"]},
        {"apiGroups": [""], "resources": ["services/status"], "verbs": ["update", "patch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
    ]
    labels = {"app.kubernetes.io/name": NAME}
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(NAME),
        "spec": {
            "replicas": 1, "selector": {"matchLabels": labels},
            "strategy": {"type": "Recreate"},  # one controller at a time
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": NAME,
                    "priorityClassName": "system-cluster-critical",
                    "tolerations": [{"key": "node-role.kubernetes.io/control-plane",
                                     "effect": "NoSchedule"}],
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 65532},
                    "containers": [{
                        "name": "controller", "image": IMAGES["driver"],
                        "command": ["python3", "-m", "teapot.servicelb"],
                        "envFrom": [{"secretRef": {"name": SECRET}}],
                        "securityContext": {"allowPrivilegeEscalation": False,
                                            "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}},
                    }],
                },
            },
        },
    }
    return [
        {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(SECRET), "type": "Opaque",
         "stringData": secret_data(cfg)},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(NAME)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": _meta(NAME, namespaced=False), "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": _meta(NAME, namespaced=False),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAME},
         "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}]},
        deployment,
    ]
