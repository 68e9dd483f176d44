"""Render a Magnum cluster and its nodegroups as Cluster API + Metal³ (CAPM3) objects.

Pure and deterministic: ``render`` reads only its arguments and returns fresh dicts, ready to be
applied (server-side apply or create) on the management cluster in ``namespace``.

API versions are the storage versions of the CRDs Teapot ships against
(/work/shared/crds): Cluster API v1beta2 and CAPM3 v1beta2.  In those versions object references
are ``{apiGroup, kind, name}`` (no apiVersion, no namespace), kubelet extra args are a list of
``{name, value}`` and the Metal3MachineTemplate image format field is ``diskFormat``.

No Metal3DataTemplate is rendered: without one the baremetal-operator writes its default
meta_data into the config drive (``name`` = BareMetalHost name, ``uuid`` = BareMetalHost UID), which
is what ``{{ ds.meta_data.name }}`` and the ``metal3.io/uuid`` node label below rely on; CAPM3 then
sets providerIDs from that node label (``cloudProviderEnabled: false``).

The cluster's tenant network becomes a Metal³ HostNetworkAttachment (access mode, the network's
VLAN untagged) in the cluster's namespace.  Metal³ applies an attachment to a switch port when a
BareMetalHost's ``spec.networkInterfaces[].hostNetworkAttachment`` names it: the host's port is on
that VLAN once the host is deployed, and Ironic puts it back on the idle VLAN when the host is
deprovisioned.  Neither Metal3MachineTemplate nor Metal3DataTemplate can name an attachment (the
data template's VLAN links configure the host's own interfaces, not its switch port), so the
hosts CAPM3 picks for the cluster (labelled ``cluster.x-k8s.io/cluster-name``) are pointed at it
by the management cluster driver, with ``attach_interfaces``/``detach_interfaces`` below.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from typing import Any

from teapot.resources.host_schema import TRAIT_LABEL_PREFIX

CLUSTER_API_VERSION = "cluster.x-k8s.io/v1beta2"
CONTROLPLANE_API_VERSION = "controlplane.cluster.x-k8s.io/v1beta2"
BOOTSTRAP_API_VERSION = "bootstrap.cluster.x-k8s.io/v1beta2"
INFRASTRUCTURE_API_VERSION = "infrastructure.cluster.x-k8s.io/v1beta2"
METAL3_API_VERSION = "metal3.io/v1alpha1"
ADDONS_API_VERSION = "addons.cluster.x-k8s.io/v1beta2"
RESOURCE_SET_SECRET_TYPE = "addons.cluster.x-k8s.io/resource-set"

CLUSTER_NAME_LABEL = "cluster.x-k8s.io/cluster-name"
DEPLOYMENT_NAME_LABEL = "cluster.x-k8s.io/deployment-name"
PROJECT_ID_LABEL = "teapot.openstack.org/project-id"
CLUSTER_UUID_LABEL = "teapot.openstack.org/cluster-uuid"
NODEGROUP_ANNOTATION = "teapot.openstack.org/nodegroup"
# The clusterapi cluster-autoscaler scales a MachineDeployment within these.
AUTOSCALER_MIN = "cluster.x-k8s.io/cluster-api-autoscaler-node-group-min-size"
AUTOSCALER_MAX = "cluster.x-k8s.io/cluster-api-autoscaler-node-group-max-size"
NETWORK_UUID_LABEL = "teapot.openstack.org/network-uuid"
NETWORK_NAME_ANNOTATION = "teapot.openstack.org/network-name"

DEFAULT_POD_CIDR = "10.244.0.0/16"
DEFAULT_SERVICE_CIDR = "10.96.0.0/12"
DEFAULT_API_SERVER_PORT = 6443

# Node name and the label CAPM3 matches to set the Node's providerID (as CAPM3's own templates).
NODE_NAME = "{{ ds.meta_data.name }}"
NODE_UUID_LABEL = "metal3.io/uuid={{ ds.meta_data.uuid }}"

MAX_NAME = 63  # a DNS label; also the limit on label values such as cluster-name
_UUID_PART = 8
_COMPONENT_MAX = 24  # nodegroup part of derived names
_HASH_LEN = 6

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_VERSION = re.compile(r"^v\d+\.\d+\.\d+([-+][0-9A-Za-z.+-]+)?$")
_IMAGE_FIELDS = {"url": "url", "checksum": "checksum", "checksumType": "checksumType",
                 "format": "diskFormat", "diskFormat": "diskFormat"}
_CHECKSUM_TYPES = ("md5", "sha256", "sha512")  # the Metal3MachineTemplate v1beta2 enums
_DISK_FORMATS = ("raw", "qcow2", "vdi", "vmdk", "live-iso")


def _group(api_version: str) -> str:
    return api_version.split("/", 1)[0]


def _sanitize(text: str) -> str:
    """Lowercase, runs of anything outside [a-z0-9-] to one '-', no '-' at either end."""
    text = re.sub(r"[^a-z0-9-]+", "-", str(text).lower())
    return re.sub(r"-{2,}", "-", text).strip("-")


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:_HASH_LEN]


def _truncate(text: str, limit: int) -> str:
    return text[:limit].rstrip("-")


class _Names:
    """Object names for one cluster: ``<cluster>[-<nodegroup>]-<uuid[:8]>``, each a DNS label."""

    def __init__(self, cluster_name: str, cluster_uuid: str) -> None:
        stem = _sanitize(cluster_name) or "cluster"
        if not stem[0].isalpha():
            stem = "c-" + stem  # start with a letter: usable as a DNS-1035 label too
        self.stem = stem
        self.suffix = _sanitize(cluster_uuid).replace("-", "")[:_UUID_PART]
        if not self.suffix:
            raise ValueError(f"cluster uuid {cluster_uuid!r} has no usable characters")
        self.components: dict[str, str] = {}

    @property
    def cluster(self) -> str:
        stem = _truncate(self.stem, MAX_NAME - 1 - len(self.suffix))
        return f"{stem}-{self.suffix}"

    def component(self, nodegroup_name: str) -> str:
        part = _sanitize(nodegroup_name)
        if not part or part != nodegroup_name or len(part) > _COMPONENT_MAX:
            # Changed or cut: add a hash of the original so two groups cannot end up the same.
            keep = _COMPONENT_MAX - 1 - _HASH_LEN
            part = "-".join(p for p in (_truncate(part, keep), _short_hash(nodegroup_name)) if p)
        owner = self.components.setdefault(part, nodegroup_name)
        if owner != nodegroup_name:
            raise ValueError(
                f"nodegroups {owner!r} and {nodegroup_name!r} map to the same object name {part!r}")
        return part

    def for_nodegroup(self, nodegroup_name: str) -> str:
        part = self.component(nodegroup_name)
        # A fixed budget for the stem keeps names of distinct nodegroups distinct.
        stem = _truncate(self.stem, MAX_NAME - 2 - len(self.suffix) - _COMPONENT_MAX)
        return f"{stem}-{part}-{self.suffix}"


def _label_value(key: str, value: Any) -> str:
    value = "" if value is None else str(value)
    if len(value) > MAX_NAME or not _LABEL_VALUE.match(value):
        raise ValueError(f"{value!r} is not a valid Kubernetes label value for {key}")
    return value


def _cidr(labels: dict, key: str, default: str) -> str:
    value = labels.get(key) or default
    try:
        return str(ipaddress.ip_network(str(value).strip(), strict=False))
    except ValueError as exc:
        raise ValueError(f"label {key}={value!r} is not a CIDR: {exc}") from None


def _kubernetes_version(version: str) -> str:
    version = str(version).strip()
    if not version.startswith("v"):
        version = "v" + version  # as the CAPI defaulting webhooks do
    if not _VERSION.match(version):
        raise ValueError(f"kubernetes_version {version!r} is not a semantic version like v1.31.2")
    return version


def _image(image: dict) -> dict:
    unknown = sorted(set(image) - set(_IMAGE_FIELDS))
    if unknown:
        raise ValueError(f"unknown image field(s): {', '.join(unknown)}")
    if not image.get("url"):
        raise ValueError("image has no url")
    out = {}
    for key in ("url", "checksum", "checksumType", "format", "diskFormat"):
        if image.get(key) is not None:
            out[_IMAGE_FIELDS[key]] = str(image[key])
    if out.get("checksumType", "sha256") not in _CHECKSUM_TYPES:
        raise ValueError(f"image checksumType {out['checksumType']!r} is not one of "
                         f"{', '.join(_CHECKSUM_TYPES)}")
    if out.get("diskFormat", "raw") not in _DISK_FORMATS:
        raise ValueError(f"image format {out['diskFormat']!r} is not one of "
                         f"{', '.join(_DISK_FORMATS)}")
    if out["url"].startswith("oci://"):
        # OCI images carry their own digests; CAPM3 forbids a checksum or checksumType for them.
        if out.get("checksum"):
            raise ValueError("an oci:// image takes no checksum")
        out.pop("checksum", None)
        out.pop("checksumType", None)
    elif not out.get("checksum") and out.get("diskFormat") != "live-iso":
        # The baremetal-operator refuses a BareMetalHost image without one.
        raise ValueError("image has no checksum (required unless the format is live-iso)")
    return out


def _host_selector(flavor_id: Any, host_classes: dict[str, dict]) -> dict:
    host_class = host_classes.get(flavor_id) if isinstance(flavor_id, str) else None
    if host_class is None:
        raise ValueError(f"unknown host class (flavor_id) {flavor_id!r}")
    labels = dict(host_class.get("labels") or {})
    for trait in host_class.get("traits") or ():
        # BareMetalHosts have no traits: a host with a trait carries this label.
        if len(trait) > 63:
            raise ValueError(f"host class {flavor_id!r} trait {trait!r}: longer than the 63 characters "
                             "of a label name")
        labels[TRAIT_LABEL_PREFIX + trait] = "true"
    if not labels:
        # An empty selector would match every BareMetalHost in the namespace.
        raise ValueError(f"host class {flavor_id!r} has no labels or traits to select hosts by")
    for key, value in labels.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValueError(f"host class {flavor_id!r} label {key!r}: keys and values must be "
                             "strings")
    return {"matchLabels": dict(sorted(labels.items()))}


def _node_registration() -> dict:
    return {
        "name": NODE_NAME,
        "kubeletExtraArgs": [{"name": "node-labels", "value": NODE_UUID_LABEL}],
    }


def _vlan(network: dict) -> int:
    vlan = network.get("vlan_id")
    if isinstance(vlan, bool) or not isinstance(vlan, int) or not 1 <= vlan <= 4094:
        raise ValueError(f"network {network.get('uuid')!r}: vlan_id {vlan!r} is not a VLAN id "
                         "(1-4094)")
    return vlan


def _attachment_ref(attachment: dict) -> tuple[str, str]:
    meta = attachment["metadata"]
    return meta["name"], meta["namespace"]


def _refers_to(nic: dict, name: str, namespace: str, host_namespace: str) -> bool:
    ref = nic.get("hostNetworkAttachment") or {}
    return ref.get("name") == name and (ref.get("namespace") or host_namespace) == namespace


def attach_interfaces(host: dict, attachment: dict) -> list[dict] | None:
    """The BareMetalHost's ``spec.networkInterfaces`` with its tenant NIC pointed at ``attachment``.

    The tenant NIC is the first one cabled to a switch (``switchPort``, as Teapot's own switch
    driver reads it), else the first one listed, else the boot NIC (``bootMACAddress``).  Other
    NICs are left as they are.  None when the host names no NIC at all.
    """
    spec = host.get("spec") or {}
    interfaces = [dict(nic) for nic in spec.get("networkInterfaces") or ()]
    name, namespace = _attachment_ref(attachment)
    ref = {"name": name, "namespace": namespace}
    host_namespace = (host.get("metadata") or {}).get("namespace") or ""
    for nic in interfaces:  # one NIC on the network: the one chosen below
        if _refers_to(nic, name, namespace, host_namespace):
            del nic["hostNetworkAttachment"]

    def selects(nic: dict) -> bool:
        return bool(nic.get("name") or nic.get("macAddress"))

    cabled = [nic for nic in interfaces if selects(nic)
              and (nic.get("switchPort") or {}).get("switchID")
              and (nic.get("switchPort") or {}).get("portID")]
    listed = [nic for nic in interfaces if selects(nic)]
    if cabled or listed:
        (cabled or listed)[0]["hostNetworkAttachment"] = ref
    elif spec.get("bootMACAddress"):
        interfaces.append({"macAddress": str(spec["bootMACAddress"]), "hostNetworkAttachment": ref})
    else:
        return None
    return interfaces


def detach_interfaces(host: dict, attachment: dict) -> list[dict]:
    """The BareMetalHost's ``spec.networkInterfaces`` without references to ``attachment``.

    A NIC entry left with nothing but its name or MAC address says nothing and is dropped.
    """
    spec = host.get("spec") or {}
    host_namespace = (host.get("metadata") or {}).get("namespace") or ""
    name, namespace = _attachment_ref(attachment)
    out = []
    for nic in spec.get("networkInterfaces") or ():
        nic = dict(nic)
        if _refers_to(nic, name, namespace, host_namespace):
            del nic["hostNetworkAttachment"]
            if not set(nic) - {"name", "macAddress"}:
                continue
        out.append(nic)
    return out


def refers_to(host: dict, attachment: dict) -> bool:
    """Whether any NIC of the BareMetalHost names ``attachment``."""
    spec = host.get("spec") or {}
    host_namespace = (host.get("metadata") or {}).get("namespace") or ""
    name, namespace = _attachment_ref(attachment)
    return any(_refers_to(nic, name, namespace, host_namespace)
               for nic in spec.get("networkInterfaces") or ())


def _count(nodegroup: dict) -> int:
    count = nodegroup.get("node_count")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"nodegroup {nodegroup.get('name')!r}: node_count {count!r} is not a "
                         "non-negative integer")
    return count


def render(
    cluster: dict,
    nodegroups: list[dict],
    host_classes: dict[str, dict],
    *,
    namespace: str,
    kubernetes_version: str,
    image: dict,
    control_plane_endpoint: dict | None = None,
    network: dict | None = None,
    addons: str | None = None,
) -> list[dict]:
    """The Cluster API objects for ``cluster``, all in ``namespace``.

    Order: the HostNetworkAttachment of ``network`` (``uuid``, ``name``, ``vlan_id``: the
    cluster's tenant network) if one is given, so that it exists before hosts are chosen; then
    Cluster, Metal3Cluster, the control plane's Metal3MachineTemplate, KubeadmControlPlane, then
    per worker nodegroup (sorted by name) its Metal3MachineTemplate, KubeadmConfigTemplate and
    MachineDeployment.  Raises ValueError on input that cannot be rendered (unknown host class,
    not exactly one master nodegroup, an even or zero master count, bad CIDRs or version, a
    VLAN id out of range, names or label values Kubernetes would reject).

    ``addons`` (a YAML stream of objects for the workload cluster: its storage add-ons, holding
    its own credentials) become a Secret of type ``addons.cluster.x-k8s.io/resource-set`` and a
    ClusterResourceSet selecting only this cluster (by its uuid label), strategy Reconcile: Cluster
    API applies them once the cluster is up and again whenever the Secret changes (a rotation).
    """
    names = _Names(cluster["name"], cluster["uuid"])
    cluster_name = names.cluster
    labels = {
        CLUSTER_NAME_LABEL: cluster_name,
        PROJECT_ID_LABEL: _label_value(PROJECT_ID_LABEL, cluster.get("project_id")),
        CLUSTER_UUID_LABEL: _label_value(CLUSTER_UUID_LABEL, cluster["uuid"]),
    }
    magnum_labels = cluster.get("labels") or {}
    version = _kubernetes_version(kubernetes_version)
    m3_image = _image(image)

    for nodegroup in nodegroups:
        if not isinstance(nodegroup.get("name"), str) or not nodegroup["name"]:
            raise ValueError(f"nodegroup without a name: {nodegroup!r}")
    masters = [ng for ng in nodegroups if ng.get("role") == "master"]
    # Magnum roles other than "master" are free-form; all of them are workers.
    workers = sorted((ng for ng in nodegroups if ng.get("role") != "master"),
                     key=lambda ng: ng["name"])
    if len(masters) != 1:
        raise ValueError(f"expected exactly one master nodegroup, got {len(masters)}")
    seen_names = [ng["name"] for ng in nodegroups]
    duplicates = sorted({n for n in seen_names if seen_names.count(n) > 1})
    if duplicates:
        raise ValueError(f"duplicate nodegroup name(s): {', '.join(duplicates)}")
    master = masters[0]
    master_count = _count(master)
    if master_count < 1 or master_count % 2 == 0:
        # KubeadmControlPlane with stacked etcd only admits an odd number of replicas.
        raise ValueError(f"master nodegroup {master['name']!r}: node_count must be odd and at "
                         f"least 1, got {master_count}")

    def meta(name: str, nodegroup: dict | None = None) -> dict:
        out: dict[str, Any] = {"name": name, "namespace": namespace, "labels": dict(labels)}
        if nodegroup is not None:
            out["annotations"] = {NODEGROUP_ANNOTATION: nodegroup["name"]}
        return out

    def scaled(nodegroup: dict) -> bool:
        """Autoscaled (label auto_scaling_enabled): a worker node group with a maximum."""
        return str(magnum_labels.get("auto_scaling_enabled", "")).lower() in ("true", "1", "yes") \
            and nodegroup.get("max_node_count") is not None

    def ref(api_version: str, kind: str, name: str) -> dict:
        return {"apiGroup": _group(api_version), "kind": kind, "name": name}

    def machine_template(nodegroup: dict) -> dict:
        return {
            "apiVersion": INFRASTRUCTURE_API_VERSION,
            "kind": "Metal3MachineTemplate",
            "metadata": meta(names.for_nodegroup(nodegroup["name"]), nodegroup),
            "spec": {
                "nodeReuse": False,
                "template": {
                    "spec": {
                        "automatedCleaningMode": "metadata",
                        "hostSelector": _host_selector(nodegroup.get("flavor_id"), host_classes),
                        "image": dict(m3_image),
                    },
                },
            },
        }

    infra_cluster_spec: dict[str, Any] = {"cloudProviderEnabled": False}
    if control_plane_endpoint is not None:
        host = control_plane_endpoint.get("host")
        if not host:
            raise ValueError("control_plane_endpoint has no host")
        port = control_plane_endpoint.get("port") or DEFAULT_API_SERVER_PORT
        infra_cluster_spec["controlPlaneEndpoint"] = {"host": str(host), "port": int(port)}

    cp_template = machine_template(master)
    kcp_name = cluster_name
    objects: list[dict] = []
    if network is not None:
        if not network.get("uuid"):
            raise ValueError(f"network without a uuid: {network!r}")
        attachment = meta(cluster_name)
        attachment["labels"][NETWORK_UUID_LABEL] = _label_value(NETWORK_UUID_LABEL,
                                                                network.get("uuid"))
        attachment["annotations"] = {NETWORK_NAME_ANNOTATION: str(network.get("name") or "")}
        objects.append({
            "apiVersion": METAL3_API_VERSION,
            "kind": "HostNetworkAttachment",
            "metadata": attachment,
            # The host's port carries the tenant's VLAN untagged: the host needs no VLAN setup.
            "spec": {"mode": "access", "nativeVLAN": _vlan(network)},
        })
    objects += [
        {
            "apiVersion": CLUSTER_API_VERSION,
            "kind": "Cluster",
            "metadata": meta(cluster_name),
            "spec": {
                "clusterNetwork": {
                    "pods": {"cidrBlocks": [
                        _cidr(magnum_labels, "pod_cidr", DEFAULT_POD_CIDR)]},
                    "services": {"cidrBlocks": [
                        _cidr(magnum_labels, "service_cidr", DEFAULT_SERVICE_CIDR)]},
                },
                "controlPlaneRef": ref(CONTROLPLANE_API_VERSION, "KubeadmControlPlane", kcp_name),
                "infrastructureRef": ref(INFRASTRUCTURE_API_VERSION, "Metal3Cluster",
                                         cluster_name),
            },
        },
        {
            "apiVersion": INFRASTRUCTURE_API_VERSION,
            "kind": "Metal3Cluster",
            "metadata": meta(cluster_name),
            "spec": infra_cluster_spec,
        },
        cp_template,
        {
            "apiVersion": CONTROLPLANE_API_VERSION,
            "kind": "KubeadmControlPlane",
            "metadata": meta(kcp_name, master),
            "spec": {
                "replicas": master_count,
                "version": version,
                "machineTemplate": {
                    "metadata": {"labels": dict(labels)},
                    "spec": {
                        "infrastructureRef": ref(INFRASTRUCTURE_API_VERSION,
                                                 "Metal3MachineTemplate",
                                                 cp_template["metadata"]["name"]),
                    },
                },
                "kubeadmConfigSpec": {
                    "initConfiguration": {"nodeRegistration": _node_registration()},
                    "joinConfiguration": {
                        "controlPlane": {},
                        "nodeRegistration": _node_registration(),
                    },
                },
            },
        },
    ]

    for nodegroup in workers:
        name = names.for_nodegroup(nodegroup["name"])
        infra = machine_template(nodegroup)
        bootstrap = {
            "apiVersion": BOOTSTRAP_API_VERSION,
            "kind": "KubeadmConfigTemplate",
            "metadata": meta(name, nodegroup),
            "spec": {
                "template": {
                    "spec": {"joinConfiguration": {"nodeRegistration": _node_registration()}},
                },
            },
        }
        selector = {CLUSTER_NAME_LABEL: cluster_name, DEPLOYMENT_NAME_LABEL: name}
        deployment = {
            "apiVersion": CLUSTER_API_VERSION,
            "kind": "MachineDeployment",
            "metadata": meta(name, nodegroup),
            "spec": {
                "clusterName": cluster_name,
                **({} if scaled(nodegroup) else {"replicas": _count(nodegroup)}),
                "selector": {"matchLabels": dict(selector)},
                "template": {
                    "metadata": {"labels": {**labels, **selector}},
                    "spec": {
                        "clusterName": cluster_name,
                        "version": version,
                        "bootstrap": {
                            "configRef": ref(BOOTSTRAP_API_VERSION, "KubeadmConfigTemplate",
                                             name),
                        },
                        "infrastructureRef": ref(INFRASTRUCTURE_API_VERSION,
                                                 "Metal3MachineTemplate", name),
                    },
                },
            },
        }
        if scaled(nodegroup):  # the clusterapi autoscaler's bounds; it owns the replicas
            deployment["metadata"]["annotations"].update({
                AUTOSCALER_MIN: str(nodegroup.get("min_node_count") or 0),
                AUTOSCALER_MAX: str(nodegroup["max_node_count"])})
        objects += [infra, bootstrap, deployment]
    if addons:
        addons_name = f"{cluster_name}-addons"
        objects += [
            {"apiVersion": "v1", "kind": "Secret", "metadata": meta(addons_name),
             "type": RESOURCE_SET_SECRET_TYPE, "stringData": {"addons.yaml": addons}},
            {"apiVersion": ADDONS_API_VERSION, "kind": "ClusterResourceSet",
             "metadata": meta(addons_name),
             "spec": {"strategy": "Reconcile",
                      "clusterSelector": {"matchLabels": {
                          CLUSTER_UUID_LABEL: labels[CLUSTER_UUID_LABEL]}},
                      "resources": [{"kind": "Secret", "name": addons_name}]}},
        ]
    return objects
