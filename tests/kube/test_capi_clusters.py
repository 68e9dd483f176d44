"""Clusters through Cluster API: the conductor applies a cluster's objects to a management cluster
(kmock), settles when Cluster API reports it Available, and deletes the objects with the cluster."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from cryptography.fernet import Fernet

from teapot import pki
from teapot.conductor.clusters import ClusterReconciler
from teapot.conductor.hosts import Timing
from teapot.db import engine
from teapot.db.models import Cluster, ClusterTemplate, HostClass, NodeGroup
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
                   "coe_version": "v1.31.2"},
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
