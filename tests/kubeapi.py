"""A real Kubernetes API for tests: etcd and kube-apiserver, the pinned upstream builds
(`make install`), on 127.0.0.1 with free ports and a folder of their own.

Certificates come from Teapot's own CA helpers (`teapot.pki`): one CA signs the server's certificate
and an admin's (`system:masters`), and is the client CA, so `workload.admin_client(api.ca, ...)`
works against it as against a tenant cluster. `kubeconfig` is the admin's. No controller manager,
scheduler or kubelet runs: what the server stores and validates is real, nothing acts on it.

    with KubeAPI(tmp) as api:
        api.install_crds(crd_documents)
        Cluster(str(api.kubeconfig), api.context)

Processes are stopped by PID (SIGTERM, then SIGKILL), also when starting fails, and are killed by
the kernel if the test process dies without stopping them (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import httpx
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from teapot import pki, releases

VERSION = releases.KUBERNETES[0]
CONTEXT_CLUSTER = "teapot-test"
SERVICE_RANGE = "10.96.0.0/16"
MERGE_PATCH = "application/merge-patch+json"


def built(version: str = VERSION) -> bool:
    return version in releases.built()


def _die_with_parent() -> None:
    """In the child: killed when the test process dies, even killed itself (Linux's
    PR_SET_PDEATHSIG); its data is of no use to anyone then."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def minimal_crd(group: str, version: str, kind: str, plural: str, scope: str = "Namespaced") -> dict:
    """A CRD that serves a kind whose upstream CRD is not at hand: any content, a status
    subresource."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group, "scope": scope,
            "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural,
                      "singular": kind.lower()},
            "versions": [{"name": version, "served": True, "storage": True,
                          "subresources": {"status": {}},
                          "schema": {"openAPIV3Schema": {
                              "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}],
        },
    }


def crds_from(paths: Iterable[Path]) -> list[dict]:
    docs = []
    for path in paths:
        docs += [d for d in yaml.safe_load_all(path.read_text())
                 if d and d.get("kind") == "CustomResourceDefinition"]
    return docs


class KubeAPI:
    def __init__(self, root: Path, version: str = VERSION):
        self.root = root
        self.version = version
        self.processes: dict[str, subprocess.Popen] = {}
        self.kubeconfig = root / "admin.kubeconfig"
        self.context = f"admin@{CONTEXT_CLUSTER}"
        self.etcd_port, self.peer_port, self.port = _free_port(), _free_port(), _free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self._local = threading.local()
        self._clients: list[httpx.Client] = []
        self._plural_cache: dict[str, dict[str, tuple[str, bool]]] = {}

    # -- processes -------------------------------------------------------------------------------
    def __enter__(self) -> KubeAPI:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = self.root / f"{name}.log"
        with open(log, "ab") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, cwd=self.root,
                                       start_new_session=True, preexec_fn=_die_with_parent)
        self.processes[name] = process
        return process

    def _certificates(self) -> None:
        pki_dir = self.root / "pki"
        pki_dir.mkdir(mode=0o700)
        self.ca = pki.new_ca("teapot-test kube CA")
        (pki_dir / "ca.crt").write_bytes(self.ca.cert_pem)
        cert, key = pki.issue(self.ca, "kube-apiserver", server_names=[
            "127.0.0.1", "localhost", "kubernetes", "kubernetes.default",
            "kubernetes.default.svc", "10.96.0.1"])
        (pki_dir / "apiserver.crt").write_bytes(cert)
        _private(pki_dir / "apiserver.key", key)
        sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _private(pki_dir / "sa.key", sa.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        (pki_dir / "sa.pub").write_bytes(sa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        self.admin_cert, self.admin_key = pki.issue(self.ca, "teapot-test-admin",
                                                    ["system:masters"], days=2)
        (pki_dir / "admin.crt").write_bytes(self.admin_cert)
        _private(pki_dir / "admin.key", self.admin_key)
        _private(self.kubeconfig, pki.kubeconfig(
            CONTEXT_CLUSTER, self.url, self.ca.cert_pem, self.admin_cert, self.admin_key).encode())
        self.pki = pki_dir

    def start(self, timeout: float = 90.0) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._certificates()
        etcd = releases.etcd_bin_dir() / "etcd"
        client_url = f"http://127.0.0.1:{self.etcd_port}"
        peer_url = f"http://127.0.0.1:{self.peer_port}"
        self._spawn("etcd", [
            str(etcd), "--name", "test", "--data-dir", str(self.root / "etcd"),
            "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"test={peer_url}", "--unsafe-no-fsync",
            "--log-level", "warn"])
        p = self.pki
        self._spawn("kube-apiserver", [
            str(releases.bin_dir(self.version) / "kube-apiserver"),
            "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
            "--secure-port", str(self.port), "--etcd-servers", client_url,
            "--cert-dir", str(self.root / "certs"),
            "--tls-cert-file", str(p / "apiserver.crt"),
            "--tls-private-key-file", str(p / "apiserver.key"),
            "--client-ca-file", str(p / "ca.crt"),
            "--service-account-key-file", str(p / "sa.pub"),
            "--service-account-signing-key-file", str(p / "sa.key"),
            "--service-account-issuer", "https://kubernetes.default.svc",
            "--service-cluster-ip-range", SERVICE_RANGE,
            "--authorization-mode", "Node,RBAC", "--allow-privileged=true", "--profiling=false",
            "--enable-priority-and-fairness=false", "--v", "1"])
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with {process.returncode}:\n"
                                       f"{_log_tail(self.root / f'{name}.log')}")
            try:
                response = self.http.get("/readyz")
                if response.status_code == 200:
                    return
                last = response.text
            except httpx.TransportError as e:
                last = repr(e)
            time.sleep(0.2)
        raise RuntimeError(f"kube-apiserver not ready after {timeout:.0f} s: {last}\n"
                           f"{_log_tail(self.root / 'kube-apiserver.log')}")

    def stop(self) -> None:
        # The API server first, then its store.
        for name in ("kube-apiserver", "etcd"):
            process = self.processes.pop(name, None)
            if process is None:
                continue
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)
        for client in self._clients:
            client.close()
        self._clients.clear()
        # The official client's discovery cache of this server (kubernetes.dynamic.discovery).
        digest = hashlib.md5(self.url.encode(), usedforsecurity=False).hexdigest()
        Path(tempfile.gettempdir(), f"osrcp-{digest}.json").unlink(missing_ok=True)

    # -- requests --------------------------------------------------------------------------------
    def new_http(self) -> httpx.Client:
        """An HTTPS client of the admin (system:masters), trusting only the test CA."""
        context = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        context.load_cert_chain(self.pki / "admin.crt", self.pki / "admin.key")
        return httpx.Client(base_url=self.url, verify=context, timeout=30)

    @property
    def http(self) -> httpx.Client:
        """The admin's client, one per thread."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self.new_http()
            self._clients.append(client)
        return client

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        for _ in range(50):
            response = self.http.request(method, path, **kwargs)
            if response.status_code != 429:  # e.g. "storage is (re)initializing": retry soon
                break
            time.sleep(0.2)
        if response.status_code >= 400:
            raise ApiError(method, path, response)
        return response

    def install_crds(self, documents: list[dict], timeout: float = 60.0) -> None:
        """Create the CRDs and wait until each is Established (served)."""
        path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        for doc in documents:
            self.request("POST", path, json=doc)
        deadline = time.monotonic() + timeout
        for doc in documents:
            while True:
                crd = self.request("GET", f"{path}/{doc['metadata']['name']}").json()
                conditions = (crd.get("status") or {}).get("conditions") or []
                if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"CRD {doc['metadata']['name']} not established: "
                                       f"{conditions}")
                time.sleep(0.1)
        # Established is not yet listable: until its watch cache is filled, a list gets 429.
        for doc in documents:
            spec = doc["spec"]
            version = next(v["name"] for v in spec["versions"] if v.get("storage"))
            path = f"/apis/{spec['group']}/{version}/{spec['names']['plural']}"
            while self.http.get(path).status_code == 429:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{path} still answers 429 (storage initializing)")
                time.sleep(0.1)

    def create_namespace(self, name: str) -> None:
        self.request("POST", "/api/v1/namespaces",
                     json={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def namespace_exists(self, name: str) -> bool:
        return self.http.get(f"/api/v1/namespaces/{name}").status_code == 200

    # -- objects ---------------------------------------------------------------------------------
    def _plurals(self, api_version: str) -> dict[str, tuple[str, bool]]:
        cache = self._plural_cache
        if api_version not in cache:
            prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            found = {}
            for r in self.request("GET", prefix).json()["resources"]:
                if "/" not in r["name"]:
                    found[r["kind"]] = (r["name"], r["namespaced"])
            cache[api_version] = found
        return cache[api_version]

    def path(self, api_version: str, kind: str, namespace: str | None = None,
             name: str | None = None, subresource: str | None = None) -> str:
        plural, namespaced = self._plurals(api_version)[kind]
        prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        parts = [prefix]
        if namespaced and namespace:
            parts.append(f"namespaces/{namespace}")
        parts.append(plural)
        if name:
            parts.append(name)
        if subresource:
            parts.append(subresource)
        return "/".join(parts)

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict | None:
        response = self.http.get(self.path(api_version, kind, namespace, name))
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise ApiError("GET", name, response)
        return response.json()

    def list(self, api_version: str, kind: str, namespace: str | None = None) -> list[dict]:
        items = self.request("GET", self.path(api_version, kind, namespace)).json()["items"]
        for item in items:
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return items

    def objects(self, namespace: str, kinds: Iterable[tuple[str, str]]) -> list[dict]:
        return [o for api_version, kind in kinds for o in self.list(api_version, kind, namespace)]

    def patch(self, api_version: str, kind: str, namespace: str | None, name: str, patch: dict,
              subresource: str | None = None) -> dict:
        """A JSON merge patch, of the object or of a subresource such as `status`."""
        return self.request("PATCH", self.path(api_version, kind, namespace, name, subresource),
                            json=patch, headers={"Content-Type": MERGE_PATCH}).json()

    @contextlib.contextmanager
    def watching(self, api_version: str, kind: str, resource_version: str,
                 timeout: int) -> Iterator[Iterator[dict]]:
        """Events of every namespace from `resource_version`, for at most `timeout` seconds."""
        params = {"watch": "true", "resourceVersion": resource_version,
                  "timeoutSeconds": str(timeout), "allowWatchBookmarks": "true"}
        with self.http.stream("GET", self.path(api_version, kind), params=params,
                              timeout=timeout + 10) as response:
            if response.status_code >= 400:
                response.read()
                raise ApiError("WATCH", kind, response)
            yield (json.loads(line) for line in response.iter_lines() if line)


class ApiError(Exception):
    def __init__(self, method: str, what: str, response: httpx.Response):
        self.status = response.status_code
        try:
            self.body = response.json()
        except ValueError:
            self.body = {"message": response.text}
        super().__init__(f"{method} {what}: {self.status} {self.body.get('message', '')}")
