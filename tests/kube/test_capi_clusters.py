"""Clusters through Cluster API: the conductor applies a cluster's objects to a management cluster
(kmock), settles when Cluster API reports it Available, and deletes the objects with the cluster."""

from __future__ import annotations

import json
import time
import uuid

import kmock
import pytest
from cryptography.fernet import Fernet

from teapot import pki
from teapot.conductor.clusters import ClusterReconciler
from teapot.conductor.hosts import Timing
from teapot.db import engine
from teapot.db.models import Cluster, ClusterTemplate, HostClass, Network, NodeGroup
from teapot.drivers.bootstrap.management import ManagementCluster
from teapot.resources import cluster as csm

NAMESPACE = "teapot-clusters"


@pytest.fixture
def setup(cluster, tmp_path):
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
    management = ManagementCluster(str(cluster.kubeconfig), "kmock", NAMESPACE)
    reconciler = ClusterReconciler(sm, fernet, "conductor-1", Timing(busy=0.1, resync=1, lease=10),
                                   management)
    with sm() as session:
        cluster_id = session.query(Cluster).filter_by(uuid=cluster_uuid).one().id
    return sm, reconciler, cluster_id, cluster_uuid


def _row(sm, cluster_id):
    with sm() as session:
        return session.get(Cluster, cluster_id)


def test_cluster_api_objects_are_applied_and_readiness_is_followed(cluster, setup):
    sm, reconciler, cluster_id, cluster_uuid = setup
    reconciler.reconcile(cluster_id)
    objects = [o for o in cluster.objects()
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
    cluster.patch("cluster.x-k8s.io/v1beta2/clusters", NAMESPACE, capi_cluster["metadata"]["name"], {
        "spec": {"controlPlaneEndpoint": {"host": "198.51.100.7", "port": 6443}},
        "status": {"conditions": [{"type": "Available", "status": "True"}]}})
    reconciler.reconcile(cluster_id)
    row = _row(sm, cluster_id)
    assert row.status == csm.CREATE_COMPLETE
    assert row.attrs["api_address"] == "https://198.51.100.7:6443"


def test_deleting_removes_the_objects_then_the_cluster(cluster, setup):
    sm, reconciler, cluster_id, cluster_uuid = setup
    reconciler.reconcile(cluster_id)
    assert any(o["kind"] == "Cluster" for o in cluster.objects())
    with sm.begin() as session:
        row = session.get(Cluster, cluster_id)
        row.deleting, row.status, row.next_attempt_at = True, csm.DELETE_IN_PROGRESS, 0.0
    reconciler.reconcile(cluster_id)
    assert not any(o["kind"] == "Cluster" for o in cluster.objects())
    for _ in range(10):  # the rest goes once Cluster API has removed what the Cluster owned
        remaining = [o for o in cluster.objects() if o["kind"] != "Cluster"]
        for obj in remaining:
            reconciler.management.kube.delete(obj)
        reconciler.reconcile(cluster_id)
        if _row(sm, cluster_id) is None:
            break
    assert _row(sm, cluster_id) is None


# --- the tenant network: a HostNetworkAttachment that follows the cluster's hosts ---------------

HOSTS = "metal3.io/v1alpha1/baremetalhosts"
ATTACHMENTS = "metal3.io/v1alpha1/hostnetworkattachments"
CLUSTER_NAME = "cluster.x-k8s.io/cluster-name"
SWITCH = {"switchID": "02:00:00:00:00:01"}


@pytest.fixture
def networked(cluster, setup):
    """The cluster on project p1's network (VLAN 321), and four BareMetalHosts for CAPM3 to pick."""
    sm, reconciler, cluster_id, cluster_uuid = setup
    for path, kind in ((HOSTS, "BareMetalHost"), (ATTACHMENTS, "HostNetworkAttachment")):
        cluster.emulator.resources[path] = kmock.ResourceInfo(
            kind=kind, namespaced=True, singular=kind.lower(),
            verbs={"get", "list", "create", "patch", "update", "delete"})
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
            "metadata": {"name": name, "namespace": NAMESPACE}, "spec": spec})
    return sm, reconciler, cluster_id, cluster_uuid, network_uuid


def _of_kind(cluster, kind):
    return {o["metadata"]["name"]: o for o in cluster.objects() if o.get("kind") == kind}


def _nics(cluster, host):
    return _of_kind(cluster, "BareMetalHost")[host]["spec"].get("networkInterfaces")


def _choose(cluster, host, capi_cluster):
    """What CAPM3 does to a host it picks for a Machine (None: releases it, deprovisioned)."""
    cluster.patch(HOSTS, NAMESPACE, host, {"metadata": {"labels": {CLUSTER_NAME: capi_cluster}}})


def test_hosts_chosen_for_the_cluster_are_put_on_its_network(cluster, networked):
    sm, reconciler, cluster_id, cluster_uuid, network_uuid = networked
    reconciler.reconcile(cluster_id)
    (attachment,) = _of_kind(cluster, "HostNetworkAttachment").values()
    capi_cluster = next(iter(_of_kind(cluster, "Cluster")))
    assert attachment["spec"] == {"mode": "access", "nativeVLAN": 321}
    labels = attachment["metadata"]["labels"]
    assert labels["teapot.openstack.org/cluster-uuid"] == cluster_uuid
    assert labels["teapot.openstack.org/project-id"] == "p1"
    assert labels["teapot.openstack.org/network-uuid"] == network_uuid
    assert attachment["metadata"]["namespace"] == NAMESPACE
    ref = {"name": attachment["metadata"]["name"], "namespace": NAMESPACE}
    assert all("hostNetworkAttachment" not in nic for h in ("host-0", "host-1", "host-2")
               for nic in _nics(cluster, h))  # no host is the cluster's yet

    for host in ("host-0", "host-1", "host-3"):
        _choose(cluster, host, capi_cluster)
    cluster.patch("cluster.x-k8s.io/v1beta2/clusters", NAMESPACE, capi_cluster, {
        "spec": {"controlPlaneEndpoint": {"host": "198.51.100.7", "port": 6443}},
        "status": {"conditions": [{"type": "Available", "status": "True"}]}})
    reconciler.reconcile(cluster_id)
    assert _nics(cluster, "host-0") == [{"name": "eno1", "switchPort": {**SWITCH, "portID": "p0"},
                                         "hostNetworkAttachment": ref}]
    assert _nics(cluster, "host-1") == [
        {"name": "eno1"},
        {"macAddress": "52:54:00:00:01:02", "switchPort": {**SWITCH, "portID": "p1"},
         "hostNetworkAttachment": ref}]
    assert _nics(cluster, "host-2") == [{"name": "eno1",
                                         "switchPort": {**SWITCH, "portID": "p2"}}]
    # host-3 names no NIC: it cannot be put on the network, so the cluster is not complete.
    assert _nics(cluster, "host-3") is None
    assert _row(sm, cluster_id).status == csm.CREATE_IN_PROGRESS

    cluster.patch(HOSTS, NAMESPACE, "host-3", {"spec": {"bootMACAddress": "52:54:00:00:03:01"}})
    reconciler.reconcile(cluster_id)
    assert _nics(cluster, "host-3") == [{"macAddress": "52:54:00:00:03:01",
                                         "hostNetworkAttachment": ref}]
    assert _row(sm, cluster_id).status == csm.CREATE_COMPLETE


def test_released_hosts_leave_and_the_attachment_goes_with_the_cluster(cluster, networked):
    sm, reconciler, cluster_id, cluster_uuid, network_uuid = networked
    reconciler.reconcile(cluster_id)
    (name,) = _of_kind(cluster, "HostNetworkAttachment")
    capi_cluster = next(iter(_of_kind(cluster, "Cluster")))
    for host in ("host-0", "host-1"):
        _choose(cluster, host, capi_cluster)
    reconciler.reconcile(cluster_id)
    assert all(any("hostNetworkAttachment" in nic for nic in _nics(cluster, h))
               for h in ("host-0", "host-1"))

    _choose(cluster, "host-1", None)  # scaled down: deprovisioned and released by CAPM3
    reconciler.reconcile(cluster_id)
    assert _nics(cluster, "host-1") == [
        {"name": "eno1"}, {"macAddress": "52:54:00:00:01:02",
                           "switchPort": {**SWITCH, "portID": "p1"}}]
    assert _nics(cluster, "host-0")[0]["hostNetworkAttachment"]["name"] == name

    with sm.begin() as session:
        row = session.get(Cluster, cluster_id)
        row.deleting, row.status, row.next_attempt_at = True, csm.DELETE_IN_PROGRESS, 0.0
    reconciler.reconcile(cluster_id)
    assert not _of_kind(cluster, "Cluster")
    # Cluster API removes what the Cluster owned ...
    for obj in cluster.objects():
        if obj.get("apiVersion", "").split("/")[0].endswith("cluster.x-k8s.io"):
            reconciler.management.kube.delete(obj)
    for _ in range(3):
        reconciler.reconcile(cluster_id)
    # ... but while CAPM3 has not released host-0 (deprovisioning), it keeps its network.
    assert name in _of_kind(cluster, "HostNetworkAttachment")
    assert _nics(cluster, "host-0")[0]["hostNetworkAttachment"]["name"] == name
    assert _row(sm, cluster_id).status == csm.DELETE_IN_PROGRESS
    _choose(cluster, "host-0", None)
    for _ in range(5):
        reconciler.reconcile(cluster_id)
        if _row(sm, cluster_id) is None:
            break
    assert _row(sm, cluster_id) is None
    assert not _of_kind(cluster, "HostNetworkAttachment")
    assert _nics(cluster, "host-0") == [{"name": "eno1", "switchPort": {**SWITCH, "portID": "p0"}}]
    assert len(_of_kind(cluster, "BareMetalHost")) == 4  # hosts are not the cluster's to delete
