"""Clusters through Cluster API: the conductor applies a cluster's objects to a management cluster
(a real kube-apiserver with the upstream Cluster API, CAPM3 and Metal³ CRDs: it validates every
object against their schemas), settles when Cluster API reports it Available, and deletes the
objects with the cluster. No Cluster API controller runs: the tests write what it would (the
Cluster's endpoint and Available condition, the cluster-name label CAPM3 puts on the hosts it
picks) and delete what it would."""

from __future__ import annotations

import datetime
import json
import time
import uuid

import pytest
from cryptography.fernet import Fernet
from kubernetes.client.exceptions import ApiException

from teapot import pki
from teapot.conductor.clusters import ClusterReconciler
from teapot.conductor.hosts import Timing
from teapot.db import engine
from teapot.db.models import Cluster, ClusterTemplate, HostClass, Network, NodeGroup
from teapot.deploy import plan
from teapot.drivers.bootstrap import capi
from teapot.drivers.bootstrap.management import HOST, KINDS, ManagementCluster
from teapot.resources import cluster as csm

CLUSTERS = capi.CLUSTER_API_VERSION


@pytest.fixture
def setup(api, created_namespace, tmp_path):
    url = f"sqlite:///{tmp_path / 'teapot.sqlite'}"
    engine.upgrade(url)
    sm = engine.make_sessionmaker(engine.make_engine(url))
    fernet = Fernet(Fernet.generate_key())
    now = time.time()
    ca = pki.new_ca("c1 CA")
    cluster_uuid = str(uuid.uuid4())
    with sm.begin() as session:
        session.add(HostClass(name="small", description="", labels={"size": "small"}, created_at=now))
        template = ClusterTemplate(uuid=str(uuid.uuid4()), name="t", project_id="p1", user_id="u",
                                   public=False, hidden=False, created_at=now, attrs={
                                       "image_id": "https://images.example/k8s.raw",
                                       "labels": {"image_checksum": "ab" * 32}})
        session.add(template)
        session.add(Cluster(
            uuid=cluster_uuid, name="c1", project_id="p1", user_id="u",
            cluster_template_id=template.uuid, status=csm.CREATE_IN_PROGRESS, status_reason="",
            attrs={"labels": {"control_plane_endpoint": "198.51.100.7:6443"}, "flavor_id": "small",
                   "coe_version": "v1.36.3"},
            ca_cert=ca.cert_pem, ca_key=fernet.encrypt(ca.key_pem),
            secrets=fernet.encrypt(json.dumps({}).encode()), deleting=False, generation=1,
            next_attempt_at=0.0, lease_expires_at=0.0, created_at=now))
        for name, role, count in (("default-master", "master", 3), ("default-worker", "worker", 2)):
            session.add(NodeGroup(uuid=str(uuid.uuid4()), name=name, cluster_uuid=cluster_uuid,
                                  project_id="p1", role=role, flavor_id="small", node_count=count,
                                  is_default=True, labels={}, status=csm.CREATE_IN_PROGRESS,
                                  nodes_to_remove=[], created_at=now))
    management = ManagementCluster(str(api.kubeconfig), api.context, created_namespace)
    reconciler = ClusterReconciler(sm, fernet, "conductor-1", Timing(busy=0.1, resync=1, lease=10),
                                   management)
    with sm() as session:
        cluster_id = session.query(Cluster).filter_by(uuid=cluster_uuid).one().id
    return sm, reconciler, cluster_id, cluster_uuid


def _row(sm, cluster_id):
    with sm() as session:
        return session.get(Cluster, cluster_id)


def _objects(api, namespace) -> list[dict]:
    return api.objects(namespace, [*KINDS, HOST])


def _of_kind(api, namespace, kind):
    return {o["metadata"]["name"]: o for o in _objects(api, namespace) if o.get("kind") == kind}


def _available(api, namespace, name):
    """What Cluster API writes once the cluster is up: the endpoint (from the Metal3Cluster) on
    the Cluster, and its Available condition, in its status."""
    m3 = api.get(capi.INFRASTRUCTURE_API_VERSION, "Metal3Cluster", namespace, name)
    api.patch(CLUSTERS, "Cluster", namespace, name,
              {"spec": {"controlPlaneEndpoint": m3["spec"]["controlPlaneEndpoint"]}})
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    api.patch(CLUSTERS, "Cluster", namespace, name, {"status": {"conditions": [
        {"type": "Available", "status": "True", "reason": "Available", "message": "",
         "lastTransitionTime": now}]}}, subresource="status")


def test_cluster_api_objects_are_applied_and_readiness_is_followed(api, setup):
    sm, reconciler, cluster_id, cluster_uuid = setup
    namespace = reconciler.management.namespace
    reconciler.reconcile(cluster_id)
    objects = [o for o in _objects(api, namespace)
               if o["metadata"].get("labels", {}).get("teapot.openstack.org/cluster-uuid") == cluster_uuid]
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted(["Cluster", "Metal3Cluster", "KubeadmControlPlane", "Metal3MachineTemplate",
                            "Metal3MachineTemplate", "MachineDeployment", "KubeadmConfigTemplate"])
    kcp = next(o for o in objects if o["kind"] == "KubeadmControlPlane")
    assert kcp["spec"]["replicas"] == 3
    m3 = [o for o in objects if o["kind"] == "Metal3MachineTemplate"]
    assert all(t["spec"]["template"]["spec"]["hostSelector"]["matchLabels"] == {"size": "small"}
               for t in m3)
    assert _row(sm, cluster_id).status == csm.CREATE_IN_PROGRESS

    capi_cluster = next(o for o in objects if o["kind"] == "Cluster")
    _available(api, namespace, capi_cluster["metadata"]["name"])
    reconciler.reconcile(cluster_id)
    row = _row(sm, cluster_id)
    assert row.status == csm.CREATE_COMPLETE
    assert row.attrs["api_address"] == "https://198.51.100.7:6443"


def test_the_upstream_schemas_keep_every_field_and_a_second_apply_changes_nothing(api, setup):
    """The server validates each object against the upstream CRD's schema and prunes whatever the
    schema does not know: what it stored is all Teapot rendered. Applied again, nothing changes."""
    sm, reconciler, cluster_id, cluster_uuid = setup
    namespace = reconciler.management.namespace
    reconciler.reconcile(cluster_id)
    with sm() as session:
        row = session.get(Cluster, cluster_id)
        groups = session.query(NodeGroup).filter_by(cluster_uuid=cluster_uuid).all()
    rendered = reconciler._capi_objects(row, groups)
    stored = {(o["kind"], o["metadata"]["name"]): o for o in _objects(api, namespace)}
    for obj in rendered:
        live = stored[(obj["kind"], obj["metadata"]["name"])]
        assert plan.changed_fields(obj["spec"], live["spec"]) == [], obj["kind"]
        assert live["metadata"]["labels"] == obj["metadata"]["labels"]
    versions = {key: o["metadata"]["resourceVersion"] for key, o in stored.items()}

    reconciler.management.apply(rendered)
    assert {(o["kind"], o["metadata"]["name"]): o["metadata"]["resourceVersion"]
            for o in _objects(api, namespace)} == versions


def test_the_server_enforces_the_upstream_schemas(api, setup):
    """What makes the test above mean something: an object the schema forbids is refused."""
    sm, reconciler, cluster_id, cluster_uuid = setup
    reconciler.reconcile(cluster_id)
    template = next(iter(_of_kind(api, reconciler.management.namespace,
                                  "Metal3MachineTemplate").values()))
    bad = {"apiVersion": template["apiVersion"], "kind": template["kind"],
           "metadata": {"name": "bad", "namespace": reconciler.management.namespace},
           "spec": {"template": {"spec": {"image": {"url": "https://images.example/k8s.raw",
                                                      "checksum": "ab", "checksumType": "crc32"}}}}}
    with pytest.raises(ApiException) as refused:
        reconciler.management.kube.apply(bad)
    assert refused.value.status == 422 and "checksumType" in refused.value.body


def test_deleting_removes_the_objects_then_the_cluster(api, setup):
    sm, reconciler, cluster_id, cluster_uuid = setup
    namespace = reconciler.management.namespace
    reconciler.reconcile(cluster_id)
    assert any(o["kind"] == "Cluster" for o in _objects(api, namespace))
    with sm.begin() as session:
        row = session.get(Cluster, cluster_id)
        row.deleting, row.status, row.next_attempt_at = True, csm.DELETE_IN_PROGRESS, 0.0
    reconciler.reconcile(cluster_id)
    assert not any(o["kind"] == "Cluster" for o in _objects(api, namespace))
    for _ in range(10):  # the rest goes once Cluster API has removed what the Cluster owned
        remaining = [o for o in _objects(api, namespace) if o["kind"] != "Cluster"]
        for obj in remaining:
            reconciler.management.kube.delete(obj)
        reconciler.reconcile(cluster_id)
        if _row(sm, cluster_id) is None:
            break
    assert _row(sm, cluster_id) is None
    assert _objects(api, namespace) == []


# --- the tenant network: a HostNetworkAttachment that follows the cluster's hosts ---------------

CLUSTER_NAME = "cluster.x-k8s.io/cluster-name"
SWITCH = {"switchID": "02:00:00:00:00:01"}


@pytest.fixture
def networked(api, setup):
    """The cluster on project p1's network (VLAN 321), and four BareMetalHosts for CAPM3 to pick."""
    sm, reconciler, cluster_id, cluster_uuid = setup
    network_uuid = str(uuid.uuid4())
    with sm.begin() as session:
        session.add(Network(uuid=network_uuid, name="default", project_id="p1", vlan_id=321,
                            is_default=True, status="active", created_at=time.time()))
        session.get(Cluster, cluster_id).network_uuid = network_uuid
    nics = {
        "host-0": [{"name": "eno1", "switchPort": {**SWITCH, "portID": "p0"}}],
        "host-1": [{"name": "eno1"},
                   {"macAddress": "52:54:00:00:01:02", "switchPort": {**SWITCH, "portID": "p1"}}],
        "host-2": [{"name": "eno1", "switchPort": {**SWITCH, "portID": "p2"}}],
        "host-3": None,  # no NIC listed and no boot MAC yet
    }
    for name, interfaces in nics.items():
        spec = {"online": False}
        if interfaces:
            spec["networkInterfaces"] = interfaces
        reconciler.management.kube.apply({
            "apiVersion": "metal3.io/v1alpha1", "kind": "BareMetalHost",
            "metadata": {"name": name, "namespace": reconciler.management.namespace},
            "spec": spec})
    return sm, reconciler, cluster_id, cluster_uuid, network_uuid


def _nics(api, namespace, host):
    return _of_kind(api, namespace, "BareMetalHost")[host]["spec"].get("networkInterfaces")


def _choose(api, namespace, host, capi_cluster):
    """What CAPM3 does to a host it picks for a Machine (None: releases it, deprovisioned)."""
    api.patch(*HOST, namespace, host, {"metadata": {"labels": {CLUSTER_NAME: capi_cluster}}})


def _boot_mac(api, namespace, host, mac):
    api.patch(*HOST, namespace, host, {"spec": {"bootMACAddress": mac}})


def test_hosts_chosen_for_the_cluster_are_put_on_its_network(api, networked):
    sm, reconciler, cluster_id, cluster_uuid, network_uuid = networked
    ns = reconciler.management.namespace
    reconciler.reconcile(cluster_id)
    (attachment,) = _of_kind(api, ns, "HostNetworkAttachment").values()
    capi_cluster = next(iter(_of_kind(api, ns, "Cluster")))
    assert attachment["spec"] == {"mode": "access", "nativeVLAN": 321}
    labels = attachment["metadata"]["labels"]
    assert labels["teapot.openstack.org/cluster-uuid"] == cluster_uuid
    assert labels["teapot.openstack.org/project-id"] == "p1"
    assert labels["teapot.openstack.org/network-uuid"] == network_uuid
    assert attachment["metadata"]["namespace"] == ns
    ref = {"name": attachment["metadata"]["name"], "namespace": ns}
    assert all("hostNetworkAttachment" not in nic for h in ("host-0", "host-1", "host-2")
               for nic in _nics(api, ns, h))  # no host is the cluster's yet

    for host in ("host-0", "host-1", "host-3"):
        _choose(api, ns, host, capi_cluster)
    _available(api, ns, capi_cluster)
    reconciler.reconcile(cluster_id)
    assert _nics(api, ns, "host-0") == [{"name": "eno1", "switchPort": {**SWITCH, "portID": "p0"},
                                         "hostNetworkAttachment": ref}]
    assert _nics(api, ns, "host-1") == [
        {"name": "eno1"},
        {"macAddress": "52:54:00:00:01:02", "switchPort": {**SWITCH, "portID": "p1"},
         "hostNetworkAttachment": ref}]
    assert _nics(api, ns, "host-2") == [{"name": "eno1",
                                         "switchPort": {**SWITCH, "portID": "p2"}}]
    # host-3 names no NIC: it cannot be put on the network, so the cluster is not complete.
    assert _nics(api, ns, "host-3") is None
    assert _row(sm, cluster_id).status == csm.CREATE_IN_PROGRESS

    _boot_mac(api, ns, "host-3", "52:54:00:00:03:01")
    reconciler.reconcile(cluster_id)
    assert _nics(api, ns, "host-3") == [{"macAddress": "52:54:00:00:03:01",
                                         "hostNetworkAttachment": ref}]
    assert _row(sm, cluster_id).status == csm.CREATE_COMPLETE


def test_a_host_changed_since_it_was_read_is_left_for_the_next_pass(api, networked):
    """The hosts' NICs are patched only if nobody changed the host since it was read: the server
    refuses a stale resourceVersion (409), and the next look at the cluster tries again."""
    sm, reconciler, cluster_id, cluster_uuid, network_uuid = networked
    ns = reconciler.management.namespace
    reconciler.reconcile(cluster_id)
    (attachment,) = _of_kind(api, ns, "HostNetworkAttachment").values()
    _choose(api, ns, "host-0", next(iter(_of_kind(api, ns, "Cluster"))))
    host = _of_kind(api, ns, "BareMetalHost")["host-0"]
    _boot_mac(api, ns, "host-0", "52:54:00:00:00:01")  # someone else writes meanwhile
    wanted = capi.attach_interfaces(host, attachment)
    assert reconciler.management._set_interfaces(host, wanted) is False
    assert "hostNetworkAttachment" not in _nics(api, ns, "host-0")[0]
    assert reconciler.management.follow_hosts(attachment) == 0
    assert _nics(api, ns, "host-0")[0]["hostNetworkAttachment"]["name"] == \
        attachment["metadata"]["name"]


def test_released_hosts_leave_and_the_attachment_goes_with_the_cluster(api, networked):
    sm, reconciler, cluster_id, cluster_uuid, network_uuid = networked
    ns = reconciler.management.namespace
    reconciler.reconcile(cluster_id)
    (name,) = _of_kind(api, ns, "HostNetworkAttachment")
    capi_cluster = next(iter(_of_kind(api, ns, "Cluster")))
    for host in ("host-0", "host-1"):
        _choose(api, ns, host, capi_cluster)
    reconciler.reconcile(cluster_id)
    assert all(any("hostNetworkAttachment" in nic for nic in _nics(api, ns, h))
               for h in ("host-0", "host-1"))

    _choose(api, ns, "host-1", None)  # scaled down: deprovisioned and released by CAPM3
    reconciler.reconcile(cluster_id)
    assert _nics(api, ns, "host-1") == [
        {"name": "eno1"}, {"macAddress": "52:54:00:00:01:02",
                           "switchPort": {**SWITCH, "portID": "p1"}}]
    assert _nics(api, ns, "host-0")[0]["hostNetworkAttachment"]["name"] == name

    with sm.begin() as session:
        row = session.get(Cluster, cluster_id)
        row.deleting, row.status, row.next_attempt_at = True, csm.DELETE_IN_PROGRESS, 0.0
    reconciler.reconcile(cluster_id)
    assert not _of_kind(api, ns, "Cluster")
    # Cluster API removes what the Cluster owned ...
    for obj in _objects(api, ns):
        if obj.get("apiVersion", "").split("/")[0].endswith("cluster.x-k8s.io"):
            reconciler.management.kube.delete(obj)
    for _ in range(3):
        reconciler.reconcile(cluster_id)
    # ... but while CAPM3 has not released host-0 (deprovisioning), it keeps its network.
    assert name in _of_kind(api, ns, "HostNetworkAttachment")
    assert _nics(api, ns, "host-0")[0]["hostNetworkAttachment"]["name"] == name
    assert _row(sm, cluster_id).status == csm.DELETE_IN_PROGRESS
    _choose(api, ns, "host-0", None)
    for _ in range(5):
        reconciler.reconcile(cluster_id)
        if _row(sm, cluster_id) is None:
            break
    assert _row(sm, cluster_id) is None
    assert not _of_kind(api, ns, "HostNetworkAttachment")
    assert _nics(api, ns, "host-0") == [{"name": "eno1", "switchPort": {**SWITCH, "portID": "p0"}}]
    assert len(_of_kind(api, ns, "BareMetalHost")) == 4  # hosts are not the cluster's to delete
