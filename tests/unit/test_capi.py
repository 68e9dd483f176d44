"""Cluster API + Metal³ objects for a Magnum cluster (teapot.drivers.bootstrap.capi), checked
against the upstream CRD schemas in /work/shared/crds (with unknown fields rejected)."""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from teapot.drivers.bootstrap import capi

NAMESPACE = "teapot-tenants"
VERSION = "v1.36.3"
IMAGE = {
    "url": "http://images.example.test/ubuntu-2404-kube-v1.36.3.img",
    "checksum": "a" * 64,
    "checksumType": "sha256",
    "format": "raw",
}
HOST_CLASSES = {
    "small": {"labels": {"teapot.openstack.org/host-class": "small"}},
    "gpu": {"labels": {"teapot.openstack.org/host-class": "gpu", "example.test/gpu": "a100"}},
}
NETWORK = {"uuid": "9a3e6f0c-1b2d-4c5e-8f70-112233445566", "name": "prod net (default)",
           "vlan_id": 1234}
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _cluster(**changes) -> dict:
    cluster = {
        "uuid": "5c2bd7e1-0d47-4a4e-9a55-2b1f7c3e9d10",
        "name": "prod",
        "project_id": "0123456789abcdef0123456789abcdef",
        "labels": {},
        "keypair": "mykey",
    }
    cluster.update(changes)
    return cluster


def _nodegroups() -> list[dict]:
    return [
        {"name": "default-master", "role": "master", "node_count": 3, "flavor_id": "small",
         "is_default": True},
        {"name": "default-worker", "role": "worker", "node_count": 2, "flavor_id": "small",
         "is_default": True},
        {"name": "gpu-workers", "role": "worker", "node_count": 1, "flavor_id": "gpu",
         "is_default": False},
    ]


def _render(cluster: dict | None = None, nodegroups: list[dict] | None = None, **kwargs):
    kwargs.setdefault("namespace", NAMESPACE)
    kwargs.setdefault("kubernetes_version", VERSION)
    kwargs.setdefault("image", IMAGE)
    kwargs.setdefault("control_plane_endpoint", {"host": "192.0.2.10", "port": 6443})
    return capi.render(_cluster() if cluster is None else cluster,
                       _nodegroups() if nodegroups is None else nodegroups,
                       HOST_CLASSES, **kwargs)


def _by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def _one(objects: list[dict], kind: str) -> dict:
    (found,) = _by_kind(objects, kind)
    return found


def _group(api_version: str) -> str:
    return api_version.split("/", 1)[0]


# --- CRD schemas ------------------------------------------------------------------------------

def _shared() -> Path:
    for candidate in (Path(__file__).resolve().parents[3] / "shared", Path("/work/shared")):
        if (candidate / "crds").is_dir():
            return candidate
    pytest.skip("no shared CRDs (/work/shared/crds)")


@functools.cache
def _crds() -> dict[tuple[str, str], dict]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    found = {}
    for path in sorted((_shared() / "crds").rglob("*.yaml")):
        with path.open() as stream:
            for doc in yaml.load_all(stream, Loader=loader):
                if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc["spec"]
                found[(spec["group"], spec["names"]["kind"])] = doc
    return found


def _crd_version(api_version: str, kind: str) -> dict:
    group, version = api_version.split("/", 1)
    crd = _crds().get((group, kind))
    assert crd is not None, f"no CRD for {kind}.{group} under {_shared() / 'crds'}"
    matches = [v for v in crd["spec"]["versions"] if v["name"] == version]
    assert matches, f"{kind}.{group} does not define {version}"
    return matches[0]


def _strict(schema):
    """Drop x-kubernetes-* keys; forbid properties a schema with `properties` does not list."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    if ("properties" in schema and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def _validator(api_version: str, kind: str) -> jsonschema.Draft7Validator:
    schema = _strict(_crd_version(api_version, kind)["schema"]["openAPIV3Schema"])
    return jsonschema.Draft7Validator(schema)


def _errors(obj: dict) -> list[str]:
    validator = _validator(obj["apiVersion"], obj["kind"])
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(obj)]


# --- tests ------------------------------------------------------------------------------------

def test_renders_the_expected_kinds():
    objects = _render()
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted(["Cluster", "Metal3Cluster", "KubeadmControlPlane"]
                           + ["Metal3MachineTemplate"] * 3
                           + ["KubeadmConfigTemplate"] * 2 + ["MachineDeployment"] * 2)


def test_api_versions_are_the_crd_storage_versions():
    for obj in _render():
        version = _crd_version(obj["apiVersion"], obj["kind"])
        assert version.get("served") and version.get("storage"), (obj["kind"], obj["apiVersion"])


@pytest.mark.parametrize("network", [None, {"uuid": "9a3e6f0c-1b2d-4c5e-8f70-112233445566",
                                             "name": "n", "vlan_id": 4094}])
@pytest.mark.parametrize("endpoint", [{"host": "192.0.2.10", "port": 6443}, None])
def test_every_object_validates_against_its_crd(endpoint, network):
    objects = _render(control_plane_endpoint=endpoint, network=network)
    assert len(_by_kind(objects, "HostNetworkAttachment")) == (network is not None)
    for obj in objects:
        assert _errors(obj) == [], f"{obj['kind']} {obj['metadata']['name']}"


def test_strict_schema_rejects_misspelled_and_old_fields():
    objects = _render()
    template = copy.deepcopy(_by_kind(objects, "Metal3MachineTemplate")[0])
    image = template["spec"]["template"]["spec"]["image"]
    image["format"] = image.pop("diskFormat")  # the v1beta1 spelling
    assert any("format" in e for e in _errors(template))

    deployment = copy.deepcopy(_by_kind(objects, "MachineDeployment")[0])
    deployment["spec"]["replica"] = deployment["spec"].pop("replicas")
    assert any("replica" in e for e in _errors(deployment))

    kcp = copy.deepcopy(_one(objects, "KubeadmControlPlane"))
    kcp["spec"]["machineTemplate"]["spec"]["infrastructureRef"]["apiVersion"] = "x/v1"
    assert _errors(kcp)


def test_everything_is_namespaced_and_labelled():
    cluster = _cluster()
    objects = _render(cluster, network=NETWORK)
    cluster_name = _one(objects, "Cluster")["metadata"]["name"]
    for obj in objects:
        assert obj["metadata"]["namespace"] == NAMESPACE
        labels = obj["metadata"]["labels"]
        assert labels["cluster.x-k8s.io/cluster-name"] == cluster_name
        assert labels["teapot.openstack.org/project-id"] == cluster["project_id"]
        assert labels["teapot.openstack.org/cluster-uuid"] == cluster["uuid"]
        assert all(LABEL_VALUE.match(v) and len(v) <= 63 for v in labels.values())


def _walk_refs(node, path=""):
    if isinstance(node, dict):
        for key, value in node.items():
            if key.endswith("Ref") and isinstance(value, dict):
                yield f"{path}.{key}", value
            yield from _walk_refs(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk_refs(value, f"{path}[{index}]")


def test_references_point_at_rendered_objects():
    objects = _render()
    index = {(_group(o["apiVersion"]), o["kind"], o["metadata"]["name"]): o for o in objects}
    referenced = set()
    count = 0
    for obj in objects:
        for path, ref in _walk_refs(obj):
            count += 1
            group = ref.get("apiGroup")
            if group is None:
                group = _group(ref["apiVersion"])
            key = (group, ref["kind"], ref["name"])
            assert key in index, f"{obj['kind']} {path} -> {key} not rendered"
            if "apiVersion" in ref:
                assert ref["apiVersion"] == index[key]["apiVersion"]
            assert ref.get("namespace", NAMESPACE) == NAMESPACE
            referenced.add(key)
    # Cluster: 2, KCP: 1, each MachineDeployment: 2.
    assert count == 2 + 1 + 2 * 2
    unreferenced = set(index) - referenced - {
        ("cluster.x-k8s.io", "Cluster", _one(objects, "Cluster")["metadata"]["name"])}
    assert {k for k in unreferenced if k[1] != "MachineDeployment"} == set()

    cluster_name = _one(objects, "Cluster")["metadata"]["name"]
    for deployment in _by_kind(objects, "MachineDeployment"):
        spec = deployment["spec"]
        assert spec["clusterName"] == spec["template"]["spec"]["clusterName"] == cluster_name
        selector = spec["selector"]["matchLabels"]
        assert selector.items() <= spec["template"]["metadata"]["labels"].items()
        assert spec["template"]["spec"]["version"] == VERSION


def _template(objects: list[dict], ref: dict) -> dict:
    (found,) = [o for o in objects if o["kind"] == ref["kind"]
                and o["metadata"]["name"] == ref["name"]]
    return found


def test_replicas_and_host_selectors_follow_nodegroups():
    nodegroups = _nodegroups()
    objects = _render(nodegroups=nodegroups)
    by_name = {ng["name"]: ng for ng in nodegroups}

    def selector_of(ref):
        return _template(objects, ref)["spec"]["template"]["spec"]["hostSelector"]["matchLabels"]

    kcp = _one(objects, "KubeadmControlPlane")
    assert kcp["spec"]["replicas"] == 3
    assert kcp["spec"]["version"] == VERSION
    assert selector_of(kcp["spec"]["machineTemplate"]["spec"]["infrastructureRef"]) \
        == HOST_CLASSES["small"]["labels"]

    deployments = _by_kind(objects, "MachineDeployment")
    assert len(deployments) == 2
    seen = set()
    for deployment in deployments:
        nodegroup = by_name[deployment["metadata"]["annotations"]["teapot.openstack.org/nodegroup"]]
        seen.add(nodegroup["name"])
        assert deployment["spec"]["replicas"] == nodegroup["node_count"]
        infra = deployment["spec"]["template"]["spec"]["infrastructureRef"]
        assert selector_of(infra) == HOST_CLASSES[nodegroup["flavor_id"]]["labels"]
    assert seen == {"default-worker", "gpu-workers"}

    for template in _by_kind(objects, "Metal3MachineTemplate"):
        spec = template["spec"]["template"]["spec"]
        assert "dataTemplate" not in spec
        assert spec["image"] == {"url": IMAGE["url"], "checksum": IMAGE["checksum"],
                                 "checksumType": "sha256", "diskFormat": "raw"}


def test_bootstrap_configuration():
    objects = _render()
    kcp = _one(objects, "KubeadmControlPlane")["spec"]["kubeadmConfigSpec"]
    worker = _by_kind(objects, "KubeadmConfigTemplate")[0]["spec"]["template"]["spec"]
    registrations = [kcp["initConfiguration"]["nodeRegistration"],
                     kcp["joinConfiguration"]["nodeRegistration"],
                     worker["joinConfiguration"]["nodeRegistration"]]
    for registration in registrations:
        assert registration["name"] == "{{ ds.meta_data.name }}"
        assert {"name": "node-labels", "value": "metal3.io/uuid={{ ds.meta_data.uuid }}"} \
            in registration["kubeletExtraArgs"]
    assert "controlPlane" in kcp["joinConfiguration"]
    assert "users" not in kcp and "users" not in worker


def test_cluster_network_and_endpoint():
    objects = _render(control_plane_endpoint=None)
    network = _one(objects, "Cluster")["spec"]["clusterNetwork"]
    assert network["pods"]["cidrBlocks"] == ["10.244.0.0/16"]
    assert network["services"]["cidrBlocks"] == ["10.96.0.0/12"]
    assert "controlPlaneEndpoint" not in _one(objects, "Metal3Cluster")["spec"]

    objects = _render(_cluster(labels={"pod_cidr": "172.16.0.0/16",
                                       "service_cidr": "172.17.0.0/16"}),
                      control_plane_endpoint={"host": "api.example.test", "port": 6443})
    network = _one(objects, "Cluster")["spec"]["clusterNetwork"]
    assert network["pods"]["cidrBlocks"] == ["172.16.0.0/16"]
    assert network["services"]["cidrBlocks"] == ["172.17.0.0/16"]
    assert _one(objects, "Metal3Cluster")["spec"]["controlPlaneEndpoint"] == {
        "host": "api.example.test", "port": 6443}

    with pytest.raises(ValueError, match="pod_cidr"):
        _render(_cluster(labels={"pod_cidr": "not-a-cidr"}))


def _names(objects: list[dict]) -> set[tuple[str, str]]:
    return {(o["kind"], o["metadata"]["name"]) for o in objects}


@pytest.mark.parametrize("name", [
    "prod",
    "My Cluster_With.Weird!!Chars",
    "9lives",
    "---",
    "x" * 300,
    "Ünïcödé-クラスタ",
])
def test_names_are_dns_labels(name):
    objects = _render(_cluster(name=name))
    names = _names(objects)
    assert len(names) == len(objects)  # no two objects of a kind share a name
    for _, object_name in names:
        assert len(object_name) <= 63 and DNS_LABEL.match(object_name), object_name
    assert _one(objects, "Cluster")["metadata"]["name"].endswith("-5c2bd7e1")


def test_same_cluster_name_in_two_projects_does_not_collide():
    first = _render(_cluster(uuid="11111111-aaaa-4aaa-8aaa-aaaaaaaaaaaa", project_id="a" * 32))
    second = _render(_cluster(uuid="22222222-bbbb-4bbb-8bbb-bbbbbbbbbbbb", project_id="b" * 32))
    first_names = {n for _, n in _names(first)}
    second_names = {n for _, n in _names(second)}
    assert first_names.isdisjoint(second_names)


def test_long_similar_nodegroup_names_stay_distinct():
    nodegroups = _nodegroups() + [
        {"name": "a-very-long-nodegroup-name-number-1", "role": "worker", "node_count": 1,
         "flavor_id": "small", "is_default": False},
        {"name": "a-very-long-nodegroup-name-number-2", "role": "worker", "node_count": 1,
         "flavor_id": "small", "is_default": False},
        {"name": "GPU_workers", "role": "worker", "node_count": 1, "flavor_id": "gpu",
         "is_default": False},
    ]
    objects = _render(_cluster(name="n" * 80), nodegroups)
    deployments = _by_kind(objects, "MachineDeployment")
    assert len({d["metadata"]["name"] for d in deployments}) == 5
    for _, name in _names(objects):
        assert len(name) <= 63 and DNS_LABEL.match(name), name


def test_unknown_flavor_raises_naming_it():
    nodegroups = _nodegroups()
    nodegroups[2]["flavor_id"] = "no-such-class"
    with pytest.raises(ValueError, match="no-such-class"):
        _render(nodegroups=nodegroups)
    nodegroups = _nodegroups()
    nodegroups[0]["flavor_id"] = "missing-master-class"
    with pytest.raises(ValueError, match="missing-master-class"):
        _render(nodegroups=nodegroups)


@pytest.mark.parametrize("count", [0, 2, 4])
def test_control_plane_count_must_be_odd(count):
    nodegroups = _nodegroups()
    nodegroups[0]["node_count"] = count
    with pytest.raises(ValueError, match="odd"):
        _render(nodegroups=nodegroups)


def test_exactly_one_master_nodegroup():
    with pytest.raises(ValueError, match="master"):
        _render(nodegroups=_nodegroups()[1:])


def test_host_class_without_labels_is_refused():
    with pytest.raises(ValueError, match="no labels or traits"):
        capi.render(_cluster(), _nodegroups(), {**HOST_CLASSES, "small": {"labels": {}}},
                    namespace=NAMESPACE, kubernetes_version=VERSION, image=IMAGE)


def test_host_class_traits_select_by_trait_labels():
    classes = {**HOST_CLASSES, "small": {"labels": {"size": "small"},
                                         "traits": ["CUSTOM_GPU", "HW_CPU_X86_AVX2"]}}
    objects = capi.render(_cluster(), _nodegroups(), classes, namespace=NAMESPACE,
                          kubernetes_version=VERSION, image=IMAGE)
    kcp = _one(objects, "KubeadmControlPlane")
    ref = kcp["spec"]["machineTemplate"]["spec"]["infrastructureRef"]
    assert _template(objects, ref)["spec"]["template"]["spec"]["hostSelector"]["matchLabels"] == {
        "size": "small", "trait.teapot.openstack.org/CUSTOM_GPU": "true",
        "trait.teapot.openstack.org/HW_CPU_X86_AVX2": "true"}
    only_traits = {**HOST_CLASSES, "small": {"labels": {}, "traits": ["CUSTOM_GPU"]}}
    capi.render(_cluster(), _nodegroups(), only_traits, namespace=NAMESPACE,
                kubernetes_version=VERSION, image=IMAGE)
    too_long = {**HOST_CLASSES, "small": {"traits": ["CUSTOM_" + "X" * 60]}}
    with pytest.raises(ValueError, match="63 characters"):
        capi.render(_cluster(), _nodegroups(), too_long, namespace=NAMESPACE,
                    kubernetes_version=VERSION, image=IMAGE)


def test_version_gets_a_v_prefix():
    objects = _render(kubernetes_version="1.36.3")
    assert _one(objects, "KubeadmControlPlane")["spec"]["version"] == "v1.36.3"
    with pytest.raises(ValueError, match="kubernetes_version"):
        _render(kubernetes_version="latest")


def test_deterministic_and_independent_of_nodegroup_order():
    nodegroups = _nodegroups()
    first = _render(nodegroups=nodegroups)
    second = _render(nodegroups=list(reversed(copy.deepcopy(nodegroups))))
    assert first == second
    # Fresh dicts: changing one object's labels leaves the others alone.
    first[0]["metadata"]["labels"]["extra"] = "x"
    assert all("extra" not in o["metadata"]["labels"] for o in first[1:])


@pytest.mark.parametrize("change, message", [
    ({"checksum": None}, "checksum"),
    ({"checksumType": "crc32"}, "checksumType"),
    ({"format": "iso"}, "format"),
    ({"fromat": "raw"}, "fromat"),
    ({"url": ""}, "url"),
])
def test_bad_images_are_refused(change, message):
    image = {k: v for k, v in {**IMAGE, **change}.items() if v is not None}
    with pytest.raises(ValueError, match=message):
        _render(image=image)


def test_oci_image_has_no_checksum_fields():
    image = {"url": "oci://registry.example.test/node:v1.36.3", "checksumType": "sha256",
             "format": "raw"}
    for template in _by_kind(_render(image=image), "Metal3MachineTemplate"):
        assert template["spec"]["template"]["spec"]["image"] == {
            "url": image["url"], "diskFormat": "raw"}
    with pytest.raises(ValueError, match="oci"):
        _render(image={**image, "checksum": "a" * 64})


# --- the tenant network -----------------------------------------------------------------------


def _host(name: str = "host-0", **spec) -> dict:
    return {"apiVersion": "metal3.io/v1alpha1", "kind": "BareMetalHost",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"online": False, "bootMACAddress": "52:54:00:00:00:10", **spec}}


def test_network_becomes_an_access_attachment_that_validates():
    objects = _render(network=NETWORK)
    attachment = _one(objects, "HostNetworkAttachment")
    assert objects[0] is attachment  # applied before Cluster API chooses hosts
    assert attachment["apiVersion"] == "metal3.io/v1alpha1"
    assert attachment["spec"] == {"mode": "access", "nativeVLAN": 1234}
    assert _errors(attachment) == []
    version = _crd_version(attachment["apiVersion"], attachment["kind"])
    assert version.get("served") and version.get("storage")

    meta = attachment["metadata"]
    cluster = _one(objects, "Cluster")
    assert meta["namespace"] == NAMESPACE
    assert meta["name"] == cluster["metadata"]["name"] and DNS_LABEL.match(meta["name"])
    assert meta["labels"] == {**cluster["metadata"]["labels"],
                              "teapot.openstack.org/network-uuid": NETWORK["uuid"]}
    assert meta["annotations"] == {"teapot.openstack.org/network-name": NETWORK["name"]}
    # Everything else is as without a network.
    assert [o for o in objects if o is not attachment] == _render()
    assert _by_kind(_render(), "HostNetworkAttachment") == []


def test_attachment_names_are_per_cluster_and_deterministic():
    first = _render(_cluster(uuid="11111111-aaaa-4aaa-8aaa-aaaaaaaaaaaa"), network=NETWORK)
    again = _render(_cluster(uuid="11111111-aaaa-4aaa-8aaa-aaaaaaaaaaaa"), network=NETWORK)
    second = _render(_cluster(uuid="22222222-bbbb-4bbb-8bbb-bbbbbbbbbbbb"), network=NETWORK)
    assert first == again
    assert (_one(first, "HostNetworkAttachment")["metadata"]["name"]
            != _one(second, "HostNetworkAttachment")["metadata"]["name"])


def test_strict_schema_rejects_a_misspelled_attachment():
    attachment = copy.deepcopy(_one(_render(network=NETWORK), "HostNetworkAttachment"))
    attachment["spec"]["nativeVlan"] = attachment["spec"].pop("nativeVLAN")
    errors = _errors(attachment)
    assert any("nativeVlan" in e for e in errors) and any("nativeVLAN" in e for e in errors)
    attachment["spec"] = {"mode": "tagged", "nativeVLAN": 5}
    assert any("tagged" in e for e in _errors(attachment))


@pytest.mark.parametrize("vlan", [0, 4095, "100", True, None])
def test_bad_vlan_is_refused_naming_it(vlan):
    with pytest.raises(ValueError, match="vlan_id"):
        _render(network={**NETWORK, "vlan_id": vlan})


def test_network_needs_a_uuid_that_is_a_label_value():
    with pytest.raises(ValueError, match="uuid"):
        _render(network={**NETWORK, "uuid": None})
    with pytest.raises(ValueError, match="network-uuid"):
        _render(network={**NETWORK, "uuid": "not a label value!"})


def test_attach_points_the_cabled_nic_and_validates_against_the_host_crd():
    attachment = _one(_render(network=NETWORK), "HostNetworkAttachment")
    ref = {"name": attachment["metadata"]["name"], "namespace": NAMESPACE}
    host = _host(networkInterfaces=[
        {"name": "eno1"},
        {"macAddress": "52:54:00:00:00:11",
         "switchPort": {"switchID": "02:00:00:00:00:01", "portID": "p3"}},
        {"name": "eno3", "switchPort": {"switchID": "02:00:00:00:00:01", "portID": "p4"}},
    ])
    before = copy.deepcopy(host)
    interfaces = capi.attach_interfaces(host, attachment)
    assert host == before  # a new list; the host is left alone
    assert interfaces == [before["spec"]["networkInterfaces"][0],
                          {**before["spec"]["networkInterfaces"][1], "hostNetworkAttachment": ref},
                          before["spec"]["networkInterfaces"][2]]
    attached = copy.deepcopy(host)
    attached["spec"]["networkInterfaces"] = interfaces
    assert _errors(attached) == []
    assert capi.refers_to(attached, attachment) and not capi.refers_to(host, attachment)
    assert capi.attach_interfaces(attached, attachment) == interfaces  # idempotent
    # The reference moves to the cabled NIC if another one had it.
    stale = copy.deepcopy(host)
    stale["spec"]["networkInterfaces"][0]["hostNetworkAttachment"] = ref
    assert capi.attach_interfaces(stale, attachment) == interfaces

    # Another cluster's attachment on that NIC (a host released and chosen again) is replaced.
    other = _one(_render(_cluster(uuid="22222222-bbbb-4bbb-8bbb-bbbbbbbbbbbb"), network=NETWORK),
                 "HostNetworkAttachment")
    moved = copy.deepcopy(attached)
    moved["spec"]["networkInterfaces"] = capi.attach_interfaces(attached, other)
    assert capi.refers_to(moved, other) and not capi.refers_to(moved, attachment)


def test_attach_falls_back_to_the_first_listed_nic_then_the_boot_nic():
    attachment = _one(_render(network=NETWORK), "HostNetworkAttachment")
    ref = {"name": attachment["metadata"]["name"], "namespace": NAMESPACE}
    listed = _host(networkInterfaces=[{"name": "eno1"}, {"name": "eno2"}])
    assert capi.attach_interfaces(listed, attachment) == [
        {"name": "eno1", "hostNetworkAttachment": ref}, {"name": "eno2"}]

    boot_only = _host()
    interfaces = capi.attach_interfaces(boot_only, attachment)
    assert interfaces == [{"macAddress": "52:54:00:00:00:10", "hostNetworkAttachment": ref}]
    boot_only["spec"]["networkInterfaces"] = interfaces
    assert _errors(boot_only) == []

    nothing = _host()
    del nothing["spec"]["bootMACAddress"]
    assert capi.attach_interfaces(nothing, attachment) is None


def test_detach_removes_only_this_attachment():
    attachment = _one(_render(network=NETWORK), "HostNetworkAttachment")
    name = attachment["metadata"]["name"]
    storage = {"name": "storage-trunk", "namespace": NAMESPACE}
    port = {"switchID": "02:00:00:00:00:01", "portID": "p3"}
    host = _host(networkInterfaces=[
        {"name": "eno1", "switchPort": port, "hostNetworkAttachment": {"name": name}},
        {"name": "eno2", "hostNetworkAttachment": storage},
        {"macAddress": "52:54:00:00:00:10", "hostNetworkAttachment": {"name": name,
                                                                      "namespace": NAMESPACE}},
    ])
    assert capi.refers_to(host, attachment)  # a reference without namespace is the host's
    interfaces = capi.detach_interfaces(host, attachment)
    # The cabled NIC keeps its switch port, the other attachment stays, the bare entry goes.
    assert interfaces == [{"name": "eno1", "switchPort": port},
                          {"name": "eno2", "hostNetworkAttachment": storage}]
    host["spec"]["networkInterfaces"] = interfaces
    assert not capi.refers_to(host, attachment)
    assert _errors(host) == []
    assert capi.detach_interfaces(host, attachment) == interfaces

    elsewhere = _host(networkInterfaces=[{"name": "eno1", "hostNetworkAttachment": {
        "name": name, "namespace": "some-other-namespace"}}])
    assert not capi.refers_to(elsewhere, attachment)
    assert capi.detach_interfaces(elsewhere, attachment) == elsewhere["spec"]["networkInterfaces"]


def test_autoscaled_node_groups_carry_the_clusterapi_autoscalers_bounds_and_leave_it_replicas():
    groups = _nodegroups()
    groups[1].update(min_node_count=1, max_node_count=5)  # default-worker: bounded
    scaled = _render(_cluster(labels={"auto_scaling_enabled": "true"}), groups)
    deployments = {d["metadata"]["annotations"][capi.NODEGROUP_ANNOTATION]: d
                   for d in _by_kind(scaled, "MachineDeployment")}
    worker = deployments["default-worker"]
    assert worker["metadata"]["annotations"][capi.AUTOSCALER_MIN] == "1"
    assert worker["metadata"]["annotations"][capi.AUTOSCALER_MAX] == "5"
    assert "replicas" not in worker["spec"]  # the autoscaler owns it
    gpu = deployments["gpu-workers"]  # no maximum: not scaled
    assert capi.AUTOSCALER_MAX not in gpu["metadata"]["annotations"]
    assert gpu["spec"]["replicas"] == 1
    # without the label, bounds are only what a resize keeps to
    plain = _render(_cluster(), groups)
    for deployment in _by_kind(plain, "MachineDeployment"):
        assert capi.AUTOSCALER_MAX not in deployment["metadata"]["annotations"]
        assert "replicas" in deployment["spec"]
