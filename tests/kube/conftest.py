"""A real Kubernetes API for tests/kube: one etcd and kube-apiserver for the session
(`tests/kubeapi.py`), with the upstream CRDs the tests need, and one namespace per test.

No kubelet, scheduler or controller manager runs, so pods never run. `Kubelets` below stands in for
them, and only for what `teapot deploy apply` waits for: the status of Deployments, StatefulSets,
DaemonSets and Jobs.
"""

from __future__ import annotations

import datetime
import re
import threading
import time
import types
import uuid
from pathlib import Path

import pytest

from teapot import kube
from tests.kube.emulator import KubeCluster  # noqa: F401 - kmock, for bench/render.py only
from tests.kubeapi import ApiError, KubeAPI, built, crds_from, minimal_crd

SHARED = Path(__file__).resolve().parents[3] / "shared" / "crds"
# What Teapot applies on a management cluster (Cluster API, CAPM3, Metal³), as upstream ships it.
UPSTREAM_CRDS = [
    "cluster-api/cluster.x-k8s.io_clusters.yaml",
    "cluster-api/cluster.x-k8s.io_machinedeployments.yaml",
    "cluster-api/controlplane.cluster.x-k8s.io_kubeadmcontrolplanes.yaml",
    "cluster-api/bootstrap.cluster.x-k8s.io_kubeadmconfigtemplates.yaml",
    "cluster-api/addons.cluster.x-k8s.io_clusterresourcesets.yaml",
    "capm3/infrastructure.cluster.x-k8s.io_metal3clusters.yaml",
    "capm3/infrastructure.cluster.x-k8s.io_metal3machinetemplates.yaml",
    "metal3/metal3.io_baremetalhosts.yaml",
    "metal3/metal3.io_hostnetworkattachments.yaml",
]
# cert-manager's CRD is not among ../shared/crds: a minimal one (any content) serves the kind, so
# the deployer's Certificates are stored and listed, but their schema is not checked here.
CERTIFICATE_CRD = minimal_crd("cert-manager.io", "v1", "Certificate", "certificates")


class Kubelets:
    """Stands in for the kubelets and the workload controllers this API server has not.

    Every Deployment, StatefulSet, DaemonSet and Job that is not ready gets, through its status
    subresource, the status they would report once its pods run: all replicas ready, a DaemonSet
    on one node, a Job succeeded. Nothing else is touched. One watch per kind, all namespaces.
    """

    KINDS = [("apps/v1", "Deployment"), ("apps/v1", "StatefulSet"), ("apps/v1", "DaemonSet"),
             ("batch/v1", "Job")]
    WATCH = 2  # seconds per watch request

    def __init__(self, api: KubeAPI):
        self.api = api
        self.stopping = threading.Event()
        self.errors: list[str] = []  # status the server refused: a stand-in that is wrong
        self.resyncs: list[str] = []  # watches that ended early (e.g. 410 Gone): listed again
        self.threads = [threading.Thread(target=self._run, args=k, daemon=True,
                                         name=f"kubelets-{k[1]}") for k in self.KINDS]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        """Ends the watches (each within WATCH seconds), so that the API server stops at once."""
        self.stopping.set()
        for t in self.threads:
            t.join(self.WATCH + 10)

    def _run(self, api_version: str, kind: str) -> None:
        while not self.stopping.is_set():
            try:
                listing = self.api.request("GET", self.api.path(api_version, kind)).json()
                for obj in listing["items"]:
                    self._report({"apiVersion": api_version, "kind": kind, **obj})
                version = listing["metadata"]["resourceVersion"]
                while not self.stopping.is_set():
                    with self.api.watching(api_version, kind, version, self.WATCH) as events:
                        for event in events:
                            obj = event["object"]
                            if event["type"] == "ERROR":
                                raise RuntimeError(obj.get("message"))  # e.g. 410: list again
                            version = obj["metadata"]["resourceVersion"]
                            if event["type"] in ("ADDED", "MODIFIED"):
                                self._report(obj)
            except Exception as e:  # the server going away at the end, or a resync
                if self.stopping.is_set():
                    return
                self.resyncs.append(f"{kind}: {e}")
                time.sleep(0.2)

    def _report(self, obj: dict) -> None:
        if (obj["metadata"].get("deletionTimestamp") or kube.readiness(obj)[0]
                or obj["metadata"]["namespace"] == "kube-system"):
            return
        status = self.status(obj)
        try:
            self.api.patch(obj["apiVersion"], obj["kind"], obj["metadata"]["namespace"],
                           obj["metadata"]["name"], {"status": status}, subresource="status")
        except ApiError as e:
            if e.status != 404:  # deleted meanwhile
                self.errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {e}")

    @staticmethod
    def status(obj: dict) -> dict:
        spec, generation = obj.get("spec") or {}, obj["metadata"].get("generation")
        if obj["kind"] in ("Deployment", "StatefulSet"):
            n = spec.get("replicas", 1)
            status = {"replicas": n, "readyReplicas": n, "availableReplicas": n,
                      "updatedReplicas": n}
            if obj["kind"] == "StatefulSet":
                status["currentReplicas"] = n
            return {"observedGeneration": generation, **status}
        if obj["kind"] == "DaemonSet":
            return {"observedGeneration": generation, "desiredNumberScheduled": 1,
                    "currentNumberScheduled": 1, "updatedNumberScheduled": 1, "numberReady": 1,
                    "numberAvailable": 1, "numberMisscheduled": 0}
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        done = {"status": "True", "lastProbeTime": now, "lastTransitionTime": now,
                "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods"}
        return {"startTime": now, "completionTime": now, "succeeded": 1, "active": 0, "ready": 0,
                "terminating": 0, "uncountedTerminatedPods": {},
                "conditions": [{"type": "SuccessCriteriaMet", **done}, {"type": "Complete", **done}]}


@pytest.fixture(scope="session")
def api(tmp_path_factory):
    """etcd and kube-apiserver for the whole session, the CRDs installed, the stand-in kubelets
    running; all stopped by PID at the end."""
    if not built():
        pytest.skip("the pinned Kubernetes release is not built (make install)")
    with KubeAPI(tmp_path_factory.mktemp("kube-api")) as server:
        server.install_crds(crds_from(SHARED / p for p in UPSTREAM_CRDS) + [CERTIFICATE_CRD])
        kubelets = Kubelets(server)
        kubelets.start()
        try:
            yield server
        finally:
            kubelets.stop()
        assert not kubelets.errors, kubelets.errors


@pytest.fixture
def namespace(request) -> str:
    """A fresh namespace name for this test (not created: see `created_namespace`)."""
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    return f"{stem}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def created_namespace(api, namespace) -> str:
    api.create_namespace(namespace)
    return namespace


@pytest.fixture
def fast_polls(monkeypatch):
    """`rollout.wait_ready` polls every 2 s, made for pods that take seconds to start; the
    stand-in kubelets answer in milliseconds, so the waits poll every 20 ms here."""
    from teapot.deploy import rollout

    monkeypatch.setattr(rollout, "time", types.SimpleNamespace(
        monotonic=time.monotonic, sleep=lambda seconds: time.sleep(min(seconds, 0.02))))
