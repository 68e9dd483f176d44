"""kmock's Kubernetes API emulator, run in a thread, for `bench/render.py` (which measures Teapot's
side of a plan, without a server's cost). The tests in tests/kube run against a real kube-apiserver
(conftest.py); this mock accepts anything and validates nothing. Taught two things a real cluster does:

- Server-side apply creates a missing object (kmock only patches existing ones).
- Workloads and Jobs become ready at once (there are no kubelets): apply's waits can finish.
"""

from __future__ import annotations

import asyncio
import re
import threading

import aiohttp.web
import kmock
import yaml
from kmock._internal import enums, k8s

APPLY = "application/apply-patch+yaml"
# Custom resources a management cluster serves (cert-manager, Cluster API, CAPM3).
CRDS = {
    "cert-manager.io/v1/certificates": "Certificate",
    "cluster.x-k8s.io/v1beta2/clusters": "Cluster",
    "cluster.x-k8s.io/v1beta2/machinedeployments": "MachineDeployment",
    "controlplane.cluster.x-k8s.io/v1beta2/kubeadmcontrolplanes": "KubeadmControlPlane",
    "bootstrap.cluster.x-k8s.io/v1beta2/kubeadmconfigtemplates": "KubeadmConfigTemplate",
    "infrastructure.cluster.x-k8s.io/v1beta2/metal3clusters": "Metal3Cluster",
    "infrastructure.cluster.x-k8s.io/v1beta2/metal3machinetemplates": "Metal3MachineTemplate",
}


class ClusterEmulator(k8s.KubernetesEmulator):
    ready = True

    async def _handle(self, request):
        namespace = re.fullmatch(r"/api/v1/namespaces/([^/]+)", request.url.path)
        if namespace:  # every namespace exists (kmock serves no cluster-scoped object by name)
            return aiohttp.web.json_response({"apiVersion": "v1", "kind": "Namespace",
                                              "metadata": {"name": namespace.group(1)}})
        if request.action == enums.action.UPDATE and request.name and request.resource is not None \
                and APPLY in (request.headers.get("Content-Type") or ""):
            key = (request.resource, request.namespace, request.name)
            async with self._lock:
                if key not in self._objects:
                    self._objects[key] = {"metadata": {"name": request.name,
                                                       "namespace": request.namespace}}
                elif self._objects[key].deleted:
                    self._objects[key].create({"metadata": {"name": request.name,
                                                            "namespace": request.namespace}})
        response = await super()._handle(request)
        if self.ready and request.action in (enums.action.CREATE, enums.action.UPDATE):
            await self._become_ready(request)
        return response

    async def _serve_list(self, request):
        result = await super()._serve_list(request)
        return {"apiVersion": "v1", "kind": "List", **result}  # the official client needs a kind

    async def _become_ready(self, request) -> None:
        data = request.data if isinstance(request.data, dict) else {}
        kind = data.get("kind")
        status = {
            "Deployment": lambda d: {"readyReplicas": d.get("spec", {}).get("replicas", 1)},
            "StatefulSet": lambda d: {"readyReplicas": d.get("spec", {}).get("replicas", 1)},
            "DaemonSet": lambda d: {"desiredNumberScheduled": 2, "numberReady": 2},
            "Job": lambda d: {"succeeded": 1},
        }.get(kind)
        if status is None:
            return
        meta = data.get("metadata", {})
        key = (request.resource, request.namespace or meta.get("namespace"), request.name or meta.get("name"))
        async with self._lock:
            if key in self._objects and not self._objects[key].deleted:
                self._objects[key].patch({"status": status(data)})


class KubeCluster:
    """kmock in a background event loop, with a kubeconfig for the official client."""

    def __init__(self, tmp_path):
        self.kubeconfig = tmp_path / "kubeconfig"
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)
        return self

    async def _start(self):
        self.emulator = ClusterEmulator()
        await self.emulator.__aenter__()
        self.server = kmock.Server(self.emulator)
        await self.server.__aenter__()
        self.emulator.resources.load_bundled()
        for path, kind in CRDS.items():
            self.emulator.resources[path] = kmock.ResourceInfo(
                kind=kind, namespaced=True, singular=kind.lower(),
                verbs={"get", "list", "create", "patch", "update", "delete"})
        url = str(self.emulator.url).rstrip("/")
        self.kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "kmock",
            "clusters": [{"name": "kmock", "cluster": {"server": url}}],
            "users": [{"name": "kmock", "user": {"token": "test"}}],
            "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "kmock"}}],
        }))

    async def _stop(self):
        await self.server.__aexit__(None, None, None)
        await self.emulator.__aexit__(None, None, None)

    def __exit__(self, *exc):
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def patch(self, resource: str, namespace: str, name: str, patch: dict) -> None:
        async def do():
            key = (kmock.resource(resource), namespace, name)
            async with self.emulator._lock:
                self.emulator.objects[key].patch(patch)
        asyncio.run_coroutine_threadsafe(do(), self.loop).result(10)

    def objects(self) -> list[dict]:
        async def collect():
            async with self.emulator._lock:
                return [o.raw for o in self.emulator.objects.values() if not o.deleted]
        return asyncio.run_coroutine_threadsafe(collect(), self.loop).result(10)
