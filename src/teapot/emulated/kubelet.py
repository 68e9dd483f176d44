"""The kubelet of the box's emulated hosts: the kubelet's API part, and static pods as processes.

An emulated host has no container runtime that could run kubeadm's static pods, so this stand-in
does what the kubelet does with the API server and runs the static pods' containers as processes
of the host (inside its network and mount namespaces, as `hostNetwork` pods are):

- like a kubelet started by systemd, it waits for its configuration: kubeadm writes
  `/var/lib/kubelet/config.yaml`, then either `/etc/kubernetes/kubelet.conf` (`kubeadm init`) or
  `/etc/kubernetes/bootstrap-kubelet.conf` (`kubeadm join`);
- with a bootstrap kubeconfig it does the kubelet's TLS bootstrap: a new key, a CertificateSigningRequest
  for `system:node:<name>` with the `kubernetes.io/kube-apiserver-client-kubelet` signer, approved
  and signed by the cluster's controller-manager; the certificate goes to
  `/var/lib/kubelet/pki/kubelet-client-current.pem` and `kubelet.conf` names it, which is what
  `kubeadm join` waits for;
- it runs every manifest of `staticPodPath`: each container's command is the program of the same
  name from the image's release (`registry.k8s.io/kube-apiserver:v1.36.3` → the kube-apiserver built
  for v1.36.3), restarted with backoff when it exits, stopped when its manifest goes;
- it registers the host's Node (its name, the labels a kubelet sets, the host's address, the
  release the host was provisioned with), posts the static pods' mirror pods (kubeadm finds the
  etcd members by them when a control-plane host joins), reports it Ready, and renews its Lease in `kube-node-lease` every 10 s: stop the host and the Node turns
  NotReady when the node controller sees the Lease expire;
- it answers `/healthz` where the configuration says (kubeadm waits for it).

It does not run pods the scheduler binds to the node: they stay Pending.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import datetime
import hashlib
import http.server
import json
import logging
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from teapot.emulated.host import die_with_parent

LOG = logging.getLogger("teapot.kubelet")
CONFIG = Path("/var/lib/kubelet/config.yaml")
KUBECONFIG = Path("/etc/kubernetes/kubelet.conf")
BOOTSTRAP_KUBECONFIG = Path("/etc/kubernetes/bootstrap-kubelet.conf")
RELEASE_PATH = Path("/etc/kubernetes/teapot/kubernetes-version")  # Teapot's user data writes it
FLAGS = Path("/var/lib/kubelet/kubeadm-flags.env")
CLIENT_PEM = Path("/var/lib/kubelet/pki/kubelet-client-current.pem")
SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
LEASE_SECONDS = 40
RENEW_EVERY = 10.0
STATUS_EVERY = 60.0
MAX_BACKOFF = 30.0


class KubeletError(RuntimeError):
    pass


# -- the API server, as the node's credentials reach it -------------------------------------------
@dataclass
class Api:
    """A minimal client of one API server with one kubeconfig's credentials (token or client
    certificate). The Python Kubernetes client would do, but it keeps no state we need and its
    configuration loader wants files: this reads the kubeconfig kubeadm wrote, as the kubelet does."""

    server: str
    context: ssl.SSLContext
    token: str | None = field(default=None, repr=False)

    @classmethod
    def from_kubeconfig(cls, path: Path) -> Api:
        config = yaml.safe_load(path.read_text())
        ctx_name = config.get("current-context")
        context = next(c["context"] for c in config["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
        tls = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        ca = cluster.get("certificate-authority-data")
        if ca:
            tls.load_verify_locations(cadata=base64.b64decode(ca).decode())
        elif cluster.get("certificate-authority"):
            tls.load_verify_locations(cafile=cluster["certificate-authority"])
        tls.check_hostname = True
        if user.get("client-certificate-data"):
            pem = path.parent / f".{path.name}.pem"
            fd = os.open(pem, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(base64.b64decode(user["client-certificate-data"]))
                f.write(base64.b64decode(user["client-key-data"]))
            tls.load_cert_chain(str(pem))
        elif user.get("client-certificate"):
            tls.load_cert_chain(user["client-certificate"], user.get("client-key"))
        return cls(cluster["server"].rstrip("/"), tls, user.get("token"))

    def call(self, method: str, path: str, body: dict | None = None,
             content_type: str = "application/json") -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.server + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", content_type)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=15) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as e:
            detail = e.read()[:300].decode(errors="replace")
            raise ApiStatus(e.code, f"{method} {path}: {e.code} {detail}") from None


class ApiStatus(KubeletError):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _now_seconds() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- TLS bootstrap ---------------------------------------------------------------------------------
def tls_bootstrap(node: str, timeout: float = 300.0) -> None:
    """kubelet.conf with a client certificate signed for `system:node:<node>`, obtained with the
    bootstrap token's credentials through a CertificateSigningRequest."""
    api = Api.from_kubeconfig(BOOTSTRAP_KUBECONFIG)
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                                    x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node}")]))
           .sign(key, hashes.SHA256()))
    pem = csr.public_bytes(serialization.Encoding.PEM)
    name = f"node-csr-{hashlib.sha256(pem).hexdigest()[:20]}"
    api.call("POST", "/apis/certificates.k8s.io/v1/certificatesigningrequests", {
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {"request": base64.b64encode(pem).decode(), "signerName": SIGNER,
                 "usages": ["digital signature", "client auth"]}})
    LOG.info("TLS bootstrap: CertificateSigningRequest %s made, waiting for its certificate", name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = api.call("GET", f"/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}"
                          ).get("status") or {}
        for condition in status.get("conditions") or ():
            if condition.get("type") in ("Denied", "Failed") and condition.get("status") == "True":
                raise KubeletError(f"CertificateSigningRequest {name} {condition['type'].lower()}: "
                                   f"{condition.get('message', '')}")
        if status.get("certificate"):
            cert = base64.b64decode(status["certificate"])
            key_pem = key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.TraditionalOpenSSL,
                                        serialization.NoEncryption())
            _write_private(CLIENT_PEM, cert + key_pem)
            bootstrap = yaml.safe_load(BOOTSTRAP_KUBECONFIG.read_text())
            cluster = bootstrap["clusters"][0]
            _write_private(KUBECONFIG, yaml.safe_dump({
                "apiVersion": "v1", "kind": "Config",
                "clusters": [{"name": "default-cluster", "cluster": cluster["cluster"]}],
                "contexts": [{"name": "default-context", "context": {
                    "cluster": "default-cluster", "namespace": "default", "user": "default-auth"}}],
                "current-context": "default-context",
                "users": [{"name": "default-auth", "user": {
                    "client-certificate": str(CLIENT_PEM), "client-key": str(CLIENT_PEM)}}],
            }).encode())
            LOG.info("TLS bootstrap: certificate for system:node:%s received", node)
            return
        time.sleep(1.0)
    raise KubeletError(f"CertificateSigningRequest {name} was not signed in {timeout:.0f} s")


def keep_client_pem() -> None:
    """As the kubelet's certificate store does: the client certificate of a kubelet.conf that
    embeds it is also kept as kubelet-client-current.pem (`kubeadm init` then points there)."""
    if CLIENT_PEM.exists():
        return
    config = yaml.safe_load(KUBECONFIG.read_text())
    user = config["users"][0]["user"]
    if user.get("client-certificate-data"):
        _write_private(CLIENT_PEM, base64.b64decode(user["client-certificate-data"])
                       + base64.b64decode(user["client-key-data"]))


# -- static pods -----------------------------------------------------------------------------------
@dataclass
class Container:
    pod: str
    name: str
    argv: list[str]
    env: dict[str, str]
    digest: str
    process: subprocess.Popen | None = None
    failures: int = 0
    next_start: float = 0.0


class StaticPods:
    """The containers of the manifests in `path`, as processes, restarted when they exit."""

    def __init__(self, path: Path, images: dict[str, Path], logs: Path):
        self.path, self.images, self.logs = path, images, logs
        self.containers: dict[str, Container] = {}
        self._seen: list[tuple] = []
        self._wanted: dict[str, Container] = {}
        self.pods: dict[str, tuple[dict, str]] = {}  # manifest's pod name → (pod, its hash)

    def program(self, image: str, command: str) -> str:
        repository, _, tag = image.rpartition(":")
        release = self.images.get(tag) or self.images.get("etcd" if "etcd" in repository else "")
        if release is None:
            raise KubeletError(f"image {image} is not in this host's image (no release {tag})")
        program = release / os.path.basename(command)
        if not program.exists():
            raise KubeletError(f"image {image} has no program {command}")
        return str(program)

    def wanted(self) -> dict[str, Container]:
        """The containers the manifests ask for (read again only when a manifest changed)."""
        manifests = sorted(self.path.glob("*.yaml")) if self.path.is_dir() else []
        seen = [(m.name, m.stat().st_mtime_ns, m.stat().st_size) for m in manifests]
        if seen == self._seen:
            return self._wanted
        out, pods = {}, {}
        for manifest in manifests:
            try:
                text = manifest.read_text()
                pod = yaml.safe_load(text)
                name = pod["metadata"]["name"]
                pods[name] = (pod, hashlib.sha256(text.encode()).hexdigest()[:32])
                for c in pod["spec"]["containers"]:
                    argv = [self.program(c["image"], c["command"][0]), *c["command"][1:],
                            *c.get("args", [])]
                    env = {e["name"]: str(e.get("value", "")) for e in c.get("env") or ()}
                    key = f"{name}/{c['name']}"
                    digest = hashlib.sha256(json.dumps([argv, env]).encode()).hexdigest()
                    out[key] = Container(name, c["name"], argv, env, digest)
            except (KubeletError, KeyError, TypeError, IndexError, yaml.YAMLError) as e:
                LOG.error("static pod %s: %s", manifest.name, e)
        self._seen, self._wanted, self.pods = seen, out, pods
        return out

    def sync(self) -> None:
        wanted = self.wanted()
        for key in list(self.containers):
            have = self.containers[key]
            if key not in wanted or wanted[key].digest != have.digest:
                LOG.info("static pod %s: stopping %s (manifest %s)", have.pod, have.name,
                         "changed" if key in wanted else "removed")
                _stop(have.process)
                del self.containers[key]
        now = time.monotonic()
        for key, want in wanted.items():
            have = self.containers.setdefault(key, dataclasses.replace(want))
            if have.process is not None and have.process.poll() is not None:
                code = have.process.returncode
                have.failures += 1
                have.next_start = now + min(MAX_BACKOFF, 2 ** min(have.failures, 5))
                LOG.warning("static pod %s: %s exited with %s; restarting in %.0f s", have.pod,
                            have.name, code, have.next_start - now)
                have.process = None
            if have.process is None and now >= have.next_start:
                self.logs.mkdir(parents=True, exist_ok=True)
                log = open(self.logs / f"{have.pod}_{have.name}.log", "ab")  # noqa: SIM115
                have.process = subprocess.Popen(have.argv, env={**_base_env(), **have.env},
                                                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                                start_new_session=True,
                                                preexec_fn=die_with_parent)
                log.close()
                LOG.info("static pod %s: %s started (pid %d)", have.pod, have.name,
                         have.process.pid)

    def stop(self) -> None:
        for c in self.containers.values():
            _stop(c.process)
        self.containers.clear()


def _base_env() -> dict[str, str]:
    return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}


def _stop(process: subprocess.Popen | None, timeout: float = 10.0) -> None:
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


# -- the Node and its Lease --------------------------------------------------------------------------
class Node:
    def __init__(self, api: Api, name: str, labels: dict[str, str]):
        self.api, self.name, self.labels = api, name, labels
        self.version = ""
        self.uid = ""
        self.last_status = 0.0
        self.mirrored: dict[str, tuple[str, str]] = {}  # pod name → (namespace, hash)

    def _address(self) -> str:
        host = self.api.server.split("//", 1)[1].rsplit(":", 1)[0].strip("[]")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((host, 6443))
            return s.getsockname()[0]

    def register(self) -> None:
        """Create the Node (as the kubelet does, one that exists already is kept)."""
        # the release the host was provisioned with (its kubelet's), else the API server's
        self.version = provisioned_release() or \
            self.api.call("GET", "/version").get("gitVersion", "")
        try:
            made = self.api.call("POST", "/api/v1/nodes", {
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.name, "labels": {
                    "kubernetes.io/hostname": self.name, "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
                    "beta.kubernetes.io/arch": "amd64", **self.labels},
                    "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                                    "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
                "spec": {}})
            LOG.info("node %s registered", self.name)
        except ApiStatus as e:
            if e.code != 409:
                raise
            made = self.api.call("GET", f"/api/v1/nodes/{self.name}")
        self.uid = made["metadata"]["uid"]
        self.report()

    def mirror(self, pods: dict[str, tuple[dict, str]]) -> None:
        """The static pods' mirror pods, as the kubelet posts them (owned by the Node, so that
        they go with it): `kubeadm join --control-plane` finds the etcd members by theirs."""
        for name, (pod, digest) in pods.items():
            if self.mirrored.get(name, ("", ""))[1] == digest:
                continue
            meta = pod.get("metadata") or {}
            namespace = meta.get("namespace") or "default"
            body = {"apiVersion": "v1", "kind": "Pod", "metadata": {
                "name": f"{name}-{self.name}", "namespace": namespace,
                "labels": meta.get("labels") or {},
                "annotations": {**(meta.get("annotations") or {}),
                                "kubernetes.io/config.mirror": digest,
                                "kubernetes.io/config.hash": digest,
                                "kubernetes.io/config.source": "file"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": self.name,
                                     "uid": self.uid, "controller": True}]},
                "spec": {**pod["spec"], "nodeName": self.name}}
            path = f"/api/v1/namespaces/{namespace}/pods"
            try:
                self.api.call("POST", path, body)
            except ApiStatus as e:
                if e.code != 409:
                    raise
                # one of an earlier manifest (or an earlier run of this kubelet): made again
                self.api.call("DELETE", f"{path}/{name}-{self.name}?gracePeriodSeconds=0")
                self.api.call("POST", path, body)
            self.mirrored[name] = (namespace, digest)
        for name in [n for n in self.mirrored if n not in pods]:
            namespace, _ = self.mirrored.pop(name)
            try:
                self.api.call("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}-{self.name}"
                                        "?gracePeriodSeconds=0")
            except ApiStatus as e:
                if e.code != 404:
                    raise

    def report(self) -> None:
        now = _now_seconds()

        def condition(kind: str, status: str, reason: str, message: str) -> dict:
            return {"type": kind, "status": status, "reason": reason, "message": message,
                    "lastHeartbeatTime": now, "lastTransitionTime": now}

        capacity = {"cpu": str(os.cpu_count() or 1), "memory": f"{_memory_kib()}Ki",
                    "pods": "110", "ephemeral-storage": "10Gi"}
        body = {"status": {
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory",
                          "kubelet has sufficient memory available"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure",
                          "kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID",
                          "kubelet has sufficient PID available"),
                condition("Ready", "True", "KubeletReady", "Teapot's emulated host is ready"),
            ],
            "addresses": [{"type": "InternalIP", "address": self._address()},
                          {"type": "Hostname", "address": self.name}],
            "capacity": capacity, "allocatable": capacity,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"kubeletVersion": self.version, "kubeProxyVersion": "",
                         "operatingSystem": "linux", "architecture": "amd64",
                         "containerRuntimeVersion": "teapot-emulated://1",
                         "osImage": "Teapot emulated host", "kernelVersion": os.uname().release,
                         "machineID": hashlib.md5(self.name.encode()).hexdigest(),  # noqa: S324
                         "systemUUID": hashlib.md5(self.name.encode()).hexdigest(),  # noqa: S324
                         "bootID": BOOT_ID}}}
        self.api.call("PATCH", f"/api/v1/nodes/{self.name}/status", body,
                      "application/strategic-merge-patch+json")
        self.last_status = time.monotonic()

    def renew(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.name}"
        spec = {"holderIdentity": self.name, "leaseDurationSeconds": LEASE_SECONDS,
                "renewTime": _now()}
        try:
            self.api.call("PATCH", path, {"spec": spec}, "application/merge-patch+json")
        except ApiStatus as e:
            if e.code != 404:
                raise
            self.api.call("POST", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                          {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                           "metadata": {"name": self.name, "namespace": "kube-node-lease"},
                           "spec": spec})
        if time.monotonic() - self.last_status > STATUS_EVERY:
            self.report()


BOOT_ID = hashlib.sha256(os.urandom(16)).hexdigest()[:32]


def _memory_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    return 0


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


# -- healthz ---------------------------------------------------------------------------------------
def serve_healthz(address: str, port: int) -> http.server.HTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer((address, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# -- the loop --------------------------------------------------------------------------------------
def provisioned_release() -> str | None:
    """The release Teapot's user data says the host was provisioned with."""
    try:
        return RELEASE_PATH.read_text().strip() or None
    except OSError:
        return None


def node_name(default: str) -> str:
    """--hostname-override from kubeadm's flags file, else the host's name."""
    if FLAGS.exists():
        for word in FLAGS.read_text().replace('"', " ").split():
            if word.startswith("--hostname-override="):
                return word.split("=", 1)[1]
    return default


def run(hostname: str, images: dict[str, Path], logs: Path, labels: dict[str, str],
        stop: threading.Event) -> None:
    while not CONFIG.exists() and not stop.wait(1.0):
        pass  # as a kubelet whose unit restarts until kubeadm has written its configuration
    if stop.is_set():
        return
    config = yaml.safe_load(CONFIG.read_text())
    healthz = serve_healthz(config.get("healthzBindAddress", "127.0.0.1"),
                            int(config.get("healthzPort", 10248)))
    pods = StaticPods(Path(config.get("staticPodPath") or "/etc/kubernetes/manifests"), images,
                      logs)
    node: Node | None = None
    next_renew = 0.0
    try:
        while not stop.is_set():
            pods.sync()
            try:
                if node is None:
                    name = node_name(hostname)
                    if not KUBECONFIG.exists() and BOOTSTRAP_KUBECONFIG.exists():
                        tls_bootstrap(name)
                    if KUBECONFIG.exists():
                        keep_client_pem()
                        candidate = Node(Api.from_kubeconfig(KUBECONFIG), name, labels)
                        candidate.register()
                        node = candidate
                elif time.monotonic() >= next_renew:
                    node.renew()
                    next_renew = time.monotonic() + RENEW_EVERY
                    node.mirror(pods.pods)
            except (KubeletError, OSError, KeyError, ValueError, StopIteration) as e:
                LOG.info("API server: %s", e)
                stop.wait(2.0)
            stop.wait(1.0)
    finally:
        healthz.shutdown()
        pods.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hostname", required=True)
    parser.add_argument("--release", action="append", default=[],
                        help="TAG=DIR: the programs of an image tag (repeatable); etcd=DIR for etcd")
    parser.add_argument("--logs", required=True, help="where static pods' containers log")
    parser.add_argument("--label", action="append", default=[], help="KEY=VALUE of the Node")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    images = {tag: Path(path) for tag, _, path in (r.partition("=") for r in args.release)}
    labels = dict(label.split("=", 1) for label in args.label)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    run(args.hostname, images, Path(args.logs), labels, stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
