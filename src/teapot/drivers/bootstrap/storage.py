"""The storage objects a tenant cluster receives: manila-csi with its CephFS node plugin and a
default StorageClass for shared (RWX) file systems; a Secret with the S3/Swift endpoint and the
cluster's own credentials. Pure: ``objects`` reads only its argument.

manila-csi (cloud-provider-openstack) provisions Manila shares and grants the node access to them
with the credential in the StorageClass's secrets; it forwards the mounting itself to the CephFS
CSI plugin of ceph-csi running beside it (``--fwdendpoint``), as the upstream chart does. Every
object is in the ``openstack-storage`` namespace or cluster-scoped, and the only secrets in them
are the cluster's own application credential and EC2 credentials, and, for volume attachments
(``cinder_attachments_enabled``), the key of the project's own Ceph user (``client.teapot-<project>``,
whose caps open only the volumes attached to the project's hosts: drivers/block.py) in the Secret
``openstack-block-storage`` (``userID``, ``userKey``: the names ceph-csi reads).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from teapot.drivers.bootstrap import cosi
from teapot.resources import storage

NAMESPACE = "openstack-storage"
DRIVER = "cephfs.manila.csi.openstack.org"
CEPHFS_DRIVER = "cephfs.csi.ceph.com"
CREDENTIALS_SECRET = "manila-csi-credentials"
OBJECT_SECRET = "openstack-object-storage"
STORAGE_CLASS = "manila-cephfs"
BLOCK_SECRET = "openstack-block-storage"
BLOCK_SECRET_REF = {"namespace": NAMESPACE, "name": BLOCK_SECRET, "key": "userKey"}
LABEL = "teapot.openstack.org/storage"
IMAGES = {
    "manila": "registry.k8s.io/provider-os/manila-csi-plugin:v1.31.2",
    "cephfs": "quay.io/cephcsi/cephcsi:v3.12.2",
    "provisioner": "registry.k8s.io/sig-storage/csi-provisioner:v5.1.0",
    "resizer": "registry.k8s.io/sig-storage/csi-resizer:v1.12.0",
    "registrar": "registry.k8s.io/sig-storage/csi-node-driver-registrar:v2.12.0",
}
PLUGINS = "/var/lib/kubelet/plugins"
MANILA_SOCKET = f"{PLUGINS}/{DRIVER}/csi.sock"
CEPHFS_SOCKET = f"{PLUGINS}/{CEPHFS_DRIVER}/csi.sock"


@dataclass(frozen=True)
class StorageConfig:
    """What a cluster's storage objects need: the kinds it asked for, Keystone, and its own
    credentials (ids in the clear, secrets hidden from repr)."""

    kinds: tuple[str, ...]
    auth_url: str
    region: str
    project_id: str
    application_credential_id: str
    application_credential_secret: str = field(repr=False)
    ec2_access: str | None = None
    ec2_secret: str | None = field(default=None, repr=False)
    s3_endpoint: str | None = None
    swift_endpoint: str | None = None
    share_type: str = "default"
    ceph_user: str | None = None  # the project's Ceph user (volume attachments), without client.
    ceph_key: str | None = field(default=None, repr=False)
    cluster_uuid: str | None = None  # the COSI driver asks Teapot for this cluster's bucket keys

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(storage.LABELS.values())
        if unknown:
            raise ValueError(f"unknown kinds of storage: {', '.join(sorted(unknown))}")
        if not self.auth_url.startswith(("http://", "https://")):
            raise ValueError(f"auth_url must be an http(s) URL, not {self.auth_url!r}")
        if not self.application_credential_id or not self.application_credential_secret:
            raise ValueError("the cluster's application credential is missing")
        if storage.OBJECT in self.kinds and not (self.ec2_access and self.ec2_secret):
            raise ValueError("object storage needs the cluster's EC2 credentials")


def _meta(name: str, namespaced: bool = True, **extra) -> dict:
    meta = {"name": name, "labels": {LABEL: "true"}, **extra}
    if namespaced:
        meta["namespace"] = NAMESPACE
    return meta


def _secret(name: str, data: dict[str, str]) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(name), "type": "Opaque",
            "stringData": {k: v for k, v in data.items() if v is not None}}


def _rule(groups: list[str], resources: list[str], verbs: list[str]) -> dict:
    return {"apiGroups": groups, "resources": resources, "verbs": verbs}


def _rbac(name: str, rules: list[dict]) -> list[dict]:
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(name)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": _meta(name, namespaced=False), "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": _meta(name, namespaced=False),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}]},
    ]


def _socket_env(path: str) -> list[dict]:
    return [{"name": "ADDRESS", "value": path}]


def _host_dir(name: str, path: str, kind: str = "DirectoryOrCreate") -> dict:
    return {"name": name, "hostPath": {"path": path, "type": kind}}


def _manila(cfg: StorageConfig) -> dict:
    """The manila-csi plugin container (the same on the controller and on nodes)."""
    return {
        "name": "manila-csi-plugin", "image": IMAGES["manila"],
        "args": ["--v=2", "--nodeid=$(NODE_ID)", f"--endpoint=unix://{MANILA_SOCKET}",
                 f"--drivername={DRIVER}", "--share-protocol-selector=CEPHFS",
                 f"--fwdendpoint=unix://{CEPHFS_SOCKET}", f"--cluster-id={cfg.project_id}"],
        "env": [{"name": "NODE_ID", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
        "volumeMounts": [{"name": "plugin-dir", "mountPath": f"{PLUGINS}/{DRIVER}"},
                         {"name": "cephfs-plugin-dir", "mountPath": f"{PLUGINS}/{CEPHFS_DRIVER}"}],
    }


def _cephfs(mode: str) -> dict:
    """ceph-csi's CephFS plugin, which manila-csi forwards staging and mounting to."""
    container = {
        "name": "cephfs-plugin", "image": IMAGES["cephfs"],
        "args": ["--nodeid=$(NODE_ID)", "--type=cephfs", f"--endpoint=unix://{CEPHFS_SOCKET}",
                 "--v=2", f"--drivername={CEPHFS_DRIVER}",
                 "--nodeserver=true" if mode == "node" else "--controllerserver=true"],
        "env": [{"name": "NODE_ID", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
        "volumeMounts": [{"name": "cephfs-plugin-dir", "mountPath": f"{PLUGINS}/{CEPHFS_DRIVER}"}],
    }
    if mode == "node":
        container["securityContext"] = {"privileged": True,
                                        "capabilities": {"add": ["SYS_ADMIN"]},
                                        "allowPrivilegeEscalation": True}
        container["volumeMounts"] += [
            {"name": "pods-mount-dir", "mountPath": "/var/lib/kubelet/pods",
             "mountPropagation": "Bidirectional"},
            {"name": "plugin-mount-dir", "mountPath": PLUGINS, "mountPropagation": "Bidirectional"},
            {"name": "host-dev", "mountPath": "/dev"},
            {"name": "host-sys", "mountPath": "/sys"},
            {"name": "lib-modules", "mountPath": "/lib/modules", "readOnly": True},
        ]
    return container


def _file_objects(cfg: StorageConfig) -> list[dict]:
    controller_rules = [
        _rule([""], ["persistentvolumes"], ["get", "list", "watch", "create", "delete", "patch"]),
        _rule([""], ["persistentvolumeclaims"], ["get", "list", "watch", "update"]),
        _rule([""], ["persistentvolumeclaims/status"], ["patch"]),
        _rule([""], ["events"], ["list", "watch", "create", "update", "patch"]),
        _rule([""], ["nodes"], ["get", "list", "watch"]),
        _rule([""], ["secrets"], ["get"]),
        _rule(["storage.k8s.io"], ["storageclasses", "csinodes"], ["get", "list", "watch"]),
        _rule(["coordination.k8s.io"], ["leases"], ["get", "watch", "list", "delete", "update",
                                                     "create"]),
    ]
    node_rules = [_rule([""], ["nodes"], ["get"])]
    selector = {"app.kubernetes.io/name": "manila-csi", "app.kubernetes.io/component": ""}
    controller_labels = {**selector, "app.kubernetes.io/component": "controller"}
    node_labels = {**selector, "app.kubernetes.io/component": "nodeplugin"}
    secret_params = {}
    for step in ("provisioner", "node-stage", "node-publish", "controller-expand"):
        secret_params[f"csi.storage.k8s.io/{step}-secret-name"] = CREDENTIALS_SECRET
        secret_params[f"csi.storage.k8s.io/{step}-secret-namespace"] = NAMESPACE
    sidecar_mount = [{"name": "plugin-dir", "mountPath": f"{PLUGINS}/{DRIVER}"}]
    sidecar_args = [f"--csi-address={MANILA_SOCKET}", "--v=2", "--leader-election=true",
                    f"--leader-election-namespace={NAMESPACE}"]
    controller = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta("manila-csi-controller"),
        "spec": {
            "replicas": 1, "selector": {"matchLabels": controller_labels},
            "template": {
                "metadata": {"labels": controller_labels},
                "spec": {
                    "serviceAccountName": "manila-csi-controller",
                    "containers": [
                        {"name": "csi-provisioner", "image": IMAGES["provisioner"],
                         "args": [*sidecar_args, "--extra-create-metadata"],
                         "volumeMounts": sidecar_mount},
                        {"name": "csi-resizer", "image": IMAGES["resizer"],
                         "args": [*sidecar_args, "--handle-volume-inuse-error=false"],
                         "volumeMounts": sidecar_mount},
                        _manila(cfg),
                        _cephfs("controller"),
                    ],
                    "volumes": [{"name": "plugin-dir", "emptyDir": {}},
                                {"name": "cephfs-plugin-dir", "emptyDir": {}}],
                },
            },
        },
    }
    node = {
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": _meta("manila-csi-nodeplugin"),
        "spec": {
            "selector": {"matchLabels": node_labels},
            "template": {
                "metadata": {"labels": node_labels},
                "spec": {
                    "serviceAccountName": "manila-csi-nodeplugin",
                    "hostNetwork": True, "dnsPolicy": "ClusterFirstWithHostNet",
                    "priorityClassName": "system-node-critical",
                    "tolerations": [{"operator": "Exists"}],
                    "containers": [
                        {"name": "node-driver-registrar", "image": IMAGES["registrar"],
                         "args": ["--v=2", f"--csi-address={MANILA_SOCKET}",
                                  f"--kubelet-registration-path={MANILA_SOCKET}"],
                         "volumeMounts": [*sidecar_mount,
                                          {"name": "registration-dir",
                                           "mountPath": "/registration"}]},
                        _manila(cfg),
                        _cephfs("node"),
                    ],
                    "volumes": [
                        _host_dir("plugin-dir", f"{PLUGINS}/{DRIVER}"),
                        _host_dir("cephfs-plugin-dir", f"{PLUGINS}/{CEPHFS_DRIVER}"),
                        _host_dir("registration-dir", "/var/lib/kubelet/plugins_registry",
                                  "Directory"),
                        _host_dir("pods-mount-dir", "/var/lib/kubelet/pods", "Directory"),
                        _host_dir("plugin-mount-dir", PLUGINS, "Directory"),
                        _host_dir("host-dev", "/dev", "Directory"),
                        _host_dir("host-sys", "/sys", "Directory"),
                        _host_dir("lib-modules", "/lib/modules", "Directory"),
                    ],
                },
            },
        },
    }
    return [
        *_rbac("manila-csi-controller", controller_rules),
        *_rbac("manila-csi-nodeplugin", node_rules),
        _secret(CREDENTIALS_SECRET, {
            "os-authURL": cfg.auth_url, "os-region": cfg.region,
            "os-applicationCredentialID": cfg.application_credential_id,
            "os-applicationCredentialSecret": cfg.application_credential_secret}),
        {"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver",
         "metadata": _meta(DRIVER, namespaced=False),
         "spec": {"attachRequired": False, "podInfoOnMount": False,
                  "volumeLifecycleModes": ["Persistent"], "fsGroupPolicy": "None"}},
        {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
         "metadata": _meta(STORAGE_CLASS, namespaced=False, annotations={
             "storageclass.kubernetes.io/is-default-class": "true"}),
         "provisioner": DRIVER, "reclaimPolicy": "Delete", "allowVolumeExpansion": True,
         "volumeBindingMode": "Immediate",
         "parameters": {"type": cfg.share_type, **secret_params}},
        controller, node,
    ]


def objects(cfg: StorageConfig) -> list[dict]:
    """The cluster's storage objects, in the order they are applied; [] without storage."""
    block = storage.BLOCK in cfg.kinds and bool(cfg.ceph_user and cfg.ceph_key)
    if not set(cfg.kinds) & {storage.FILE, storage.OBJECT} and not block:
        return []
    out: list[dict] = [{"apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": NAMESPACE, "labels": {LABEL: "true"}}}]
    if storage.FILE in cfg.kinds:
        out += _file_objects(cfg)
    if storage.OBJECT in cfg.kinds:
        out.append(_secret(OBJECT_SECRET, {
            "AWS_ACCESS_KEY_ID": cfg.ec2_access, "AWS_SECRET_ACCESS_KEY": cfg.ec2_secret,
            "S3_ENDPOINT": cfg.s3_endpoint, "SWIFT_URL": cfg.swift_endpoint,
            "OS_AUTH_URL": cfg.auth_url, "OS_REGION_NAME": cfg.region,
            "OS_AUTH_TYPE": "v3applicationcredential",
            "OS_APPLICATION_CREDENTIAL_ID": cfg.application_credential_id,
            "OS_APPLICATION_CREDENTIAL_SECRET": cfg.application_credential_secret,
            "TEAPOT_CLUSTER_UUID": cfg.cluster_uuid}))
        out += cosi.objects(NAMESPACE, OBJECT_SECRET, _meta)  # the COSI driver and classes
    if block:
        out.append(_secret(BLOCK_SECRET, {"userID": cfg.ceph_user, "userKey": cfg.ceph_key}))
    return out


def dump(objects: list[dict]) -> str:
    """Objects as one multi-document YAML stream ("" for none)."""
    return yaml.safe_dump_all(objects, default_flow_style=False, sort_keys=False) if objects else ""


def manifest(cfg: StorageConfig) -> str:
    """The objects as one multi-document YAML stream (empty without storage)."""
    return dump(objects(cfg))
