"""The COSI objects of a cluster that asked for object storage: Teapot's COSI driver
(`teapot-cosi`, teapot.cosi.driver) beside the COSI provisioner sidecar in one Deployment, and a
BucketClass and a BucketAccessClass of the driver. Pure.

The sidecar watches Buckets and BucketAccesses (objectstorage.k8s.io/v1alpha2) and calls the
driver over a unix socket on an emptyDir both containers mount; both find it through
`COSI_ENDPOINT`, as the COSI specification has the sidecar tell its driver. The driver reads its
configuration from the cluster's Secret `openstack-object-storage` (S3 endpoint, EC2 credentials,
Keystone URL and application credential): nothing secret is rendered here. The COSI controller
and the CRDs themselves are the cluster operator's (they are cluster-wide, shared by drivers).
"""

from __future__ import annotations

from teapot.cosi import NAME as DRIVER

API_VERSION = "objectstorage.k8s.io/v1alpha2"
IMAGES = {
    "sidecar": "gcr.io/k8s-staging-sig-storage/objectstorage-sidecar:"
               "v20260226-controllerv0.2.0-rc1-265-g218399f",
    "driver": "quay.io/teapot/teapot:2025.2",
}
SERVICE_ACCOUNT = "teapot-cosi"
BUCKET_CLASS = "teapot-s3"
ACCESS_CLASS = "teapot-s3"
SOCKET_DIR = "/var/lib/cosi"
USER = 65532  # nonroot of distroless images
ENDPOINT = f"unix://{SOCKET_DIR}/cosi.sock"


def objects(namespace: str, secret: str, meta) -> list[dict]:
    """The driver's RBAC, Deployment and classes; `meta(name, namespaced=True, **extra)` makes
    the metadata of the storage add-ons (their namespace and label)."""

    def rule(groups: list[str], resources: list[str], verbs: list[str]) -> dict:
        return {"apiGroups": groups, "resources": resources, "verbs": verbs}

    watch = ["get", "list", "watch"]
    rules = [
        rule(["objectstorage.k8s.io"], ["buckets", "bucketaccesses"], [*watch, "update", "patch"]),
        rule(["objectstorage.k8s.io"], ["buckets/status", "bucketaccesses/status"],
             ["get", "update", "patch"]),
        rule(["objectstorage.k8s.io"], ["buckets/finalizers", "bucketaccesses/finalizers"],
             ["update"]),
        rule(["objectstorage.k8s.io"], ["bucketclaims", "bucketclasses", "bucketaccessclasses"],
             watch),
        rule([""], ["secrets"], [*watch, "create", "update", "patch", "delete"]),
        rule([""], ["events"], ["create", "patch"]),
        rule(["coordination.k8s.io"], ["leases"], [*watch, "create", "update", "patch"]),
    ]
    labels = {"app.kubernetes.io/name": "teapot-cosi"}
    socket = [{"name": "socket", "mountPath": SOCKET_DIR}]
    locked = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
              "capabilities": {"drop": ["ALL"]}}
    endpoint = {"name": "COSI_ENDPOINT", "value": ENDPOINT}
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta("teapot-cosi"),
        "spec": {
            "replicas": 1, "selector": {"matchLabels": labels},
            "strategy": {"type": "Recreate"},  # one sidecar at a time per driver
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": SERVICE_ACCOUNT,
                    # one user for both: the socket the driver makes is writable by its owner
                    # only, and the sidecar's image runs as this user (distroless nonroot)
                    "securityContext": {"runAsNonRoot": True, "runAsUser": USER,
                                        "runAsGroup": USER},
                    "containers": [
                        {"name": "objectstorage-sidecar", "image": IMAGES["sidecar"],
                         "env": [endpoint], "securityContext": locked,
                         "volumeMounts": socket},
                        {"name": "teapot-cosi", "image": IMAGES["driver"],
                         "command": ["teapot-cosi"], "env": [endpoint],
                         "envFrom": [{"secretRef": {"name": secret}}],
                         "securityContext": locked, "volumeMounts": socket},
                    ],
                    "volumes": [{"name": "socket", "emptyDir": {}}],
                },
            },
        },
    }
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(SERVICE_ACCOUNT)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": meta(SERVICE_ACCOUNT, namespaced=False), "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": meta(SERVICE_ACCOUNT, namespaced=False),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": SERVICE_ACCOUNT},
         "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT,
                       "namespace": namespace}]},
        deployment,
        {"apiVersion": API_VERSION, "kind": "BucketClass",
         "metadata": meta(BUCKET_CLASS, namespaced=False),
         "spec": {"driverName": DRIVER, "deletionPolicy": "Delete"}},
        {"apiVersion": API_VERSION, "kind": "BucketAccessClass",
         "metadata": meta(ACCESS_CLASS, namespaced=False),
         "spec": {"driverName": DRIVER, "authenticationType": "Key",
                  "multiBucketAccess": "MultipleBuckets"}},
    ]
