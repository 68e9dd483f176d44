"""Readiness of a cluster of real hosts (teapot.drivers.bootstrap.readiness) against a real HTTPS
server that, like an apiserver, presents a certificate of the cluster's CA and wants a client
certificate of that CA."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from teapot import pki
from teapot.drivers.bootstrap import readiness


@pytest.fixture(scope="module")
def cluster_ca() -> pki.CA:
    return pki.new_ca("kubernetes")


@pytest.fixture(scope="module")
def other_ca() -> pki.CA:
    return pki.new_ca("kubernetes")  # same name, different key


@dataclass
class Apiserver:
    address: str
    readyz: int = 200
    nodes: list[bool | None] = field(default_factory=list)  # Ready condition per node
    nodes_body: bytes | None = None  # served as is instead of `nodes`
    paths: list[str] = field(default_factory=list)
    peers: list[dict] = field(default_factory=list)


def _node(index: int, ready: bool | None) -> dict:
    conditions = [{"type": "MemoryPressure", "status": "True"},
                  {"type": "DiskPressure", "status": "False"}]
    if ready is not None:
        conditions.append({"type": "Ready", "status": "True" if ready else "False"})
    return {"metadata": {"name": f"node-{index}"}, "status": {"conditions": conditions}}


def _serve(tmp_path, server_ca: pki.CA, client_ca: pki.CA):
    """Start an HTTPS server; returns (state, stop). Its certificate is from `server_ca`; it
    requires client certificates from `client_ca`."""
    cert_pem, key_pem = pki.issue(server_ca, "apiserver", server_names=["127.0.0.1"])
    directory = tmp_path / f"server-{pki.fingerprint(server_ca.cert_pem)[:8]}"
    directory.mkdir()
    (directory / "tls.crt").write_bytes(cert_pem)
    (directory / "tls.key").write_bytes(key_pem)
    (directory / "ca.crt").write_bytes(client_ca.cert_pem)

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "tls.crt", directory / "tls.key")
    context.load_verify_locations(cafile=directory / "ca.crt")
    context.verify_mode = ssl.CERT_REQUIRED

    state: Apiserver | None = None

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            state.paths.append(self.path)
            state.peers.append(self.connection.getpeercert())
            if self.path == "/readyz":
                code, body = state.readyz, b"ok" if state.readyz == 200 else b"[-]etcd failed"
                kind = "text/plain"
            elif self.path == "/api/v1/nodes":
                code, kind = 200, "application/json"
                body = state.nodes_body
                if body is None:
                    body = json.dumps({"kind": "NodeList", "items": [
                        _node(i, r) for i, r in enumerate(state.nodes)]}).encode()
            else:
                code, body, kind = 404, b"not found", "text/plain"
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    state = Apiserver(address=f"https://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()

    def stop():
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)

    return state, stop


@pytest.fixture
def apiserver(tmp_path, cluster_ca):
    state, stop = _serve(tmp_path, cluster_ca, cluster_ca)
    try:
        yield state
    finally:
        stop()


@pytest.fixture
def impostor(tmp_path, cluster_ca, other_ca):
    """A server with a certificate from another CA, though it would accept our client."""
    state, stop = _serve(tmp_path, other_ca, cluster_ca)
    try:
        yield state
    finally:
        stop()


def _subject(peer: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for rdn in peer.get("subject", ()):
        for key, value in rdn:
            out.setdefault(key, []).append(value)
    return out


# --- the server really is what the tests need ----------------------------------------------------


def test_the_test_server_wants_a_client_certificate(apiserver, cluster_ca):
    context = ssl.create_default_context(cadata=cluster_ca.cert_pem.decode())
    with pytest.raises(httpx.HTTPError), httpx.Client(verify=context, timeout=5) as client:
        client.get(f"{apiserver.address}/readyz")
    assert apiserver.paths == []


# --- readiness -----------------------------------------------------------------------------------


def test_ready_with_enough_ready_nodes(apiserver, cluster_ca):
    apiserver.nodes = [True, True, True, True]
    ok, why = readiness.check(cluster_ca, apiserver.address, 3)
    assert ok is True
    assert "4" in why
    assert apiserver.paths == ["/readyz", "/api/v1/nodes"]


def test_ready_with_exactly_the_nodes_asked_for(apiserver, cluster_ca):
    apiserver.nodes = [True, True, True, False]
    ok, why = readiness.check(cluster_ca, apiserver.address, 3)
    assert ok is True
    assert "3 nodes ready" in why


def test_the_client_certificate_is_an_admin_of_the_cluster_ca(apiserver, cluster_ca):
    apiserver.nodes = [True]
    assert readiness.check(cluster_ca, apiserver.address, 1)[0] is True
    assert len(apiserver.peers) == 2
    for peer in apiserver.peers:
        assert peer, "the server saw no client certificate"
        subject = _subject(peer)
        assert subject.get("organizationName") == ["system:masters"]
        assert subject.get("commonName")


def test_an_apiserver_not_ready_is_not_ready(apiserver, cluster_ca):
    apiserver.readyz = 500
    apiserver.nodes = [True, True, True]
    ok, why = readiness.check(cluster_ca, apiserver.address, 3)
    assert ok is False
    assert "500" in why
    assert "/api/v1/nodes" not in apiserver.paths


def test_too_few_ready_nodes(apiserver, cluster_ca):
    # node-2 is NotReady; node-3 has no Ready condition at all; only Ready=True counts.
    apiserver.nodes = [True, True, False, None]
    ok, why = readiness.check(cluster_ca, apiserver.address, 3)
    assert ok is False
    assert "2 of 3" in why


def test_no_nodes_yet(apiserver, cluster_ca):
    ok, why = readiness.check(cluster_ca, apiserver.address, 1)
    assert ok is False
    assert "0 of 1" in why


def test_nothing_listening_is_unreachable(cluster_ca):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ok, why = readiness.check(cluster_ca, f"https://127.0.0.1:{port}", 1, timeout=2.0)
    assert ok is False
    assert "unreachable" in why


def test_a_server_of_another_ca_is_not_trusted(impostor, cluster_ca):
    impostor.nodes = [True, True, True]
    ok, why = readiness.check(cluster_ca, impostor.address, 3)
    assert ok is False
    assert impostor.paths == []  # no request was sent to it


def test_the_impostor_answers_a_client_that_trusts_it(impostor, cluster_ca, other_ca, tmp_path):
    # The test above fails for the right reason: only the server's certificate is wrong.
    cert, key = pki.issue(cluster_ca, "probe", ["system:masters"])
    (tmp_path / "probe.crt").write_bytes(cert)
    (tmp_path / "probe.key").write_bytes(key)
    context = ssl.create_default_context(cadata=other_ca.cert_pem.decode())
    context.load_cert_chain(tmp_path / "probe.crt", tmp_path / "probe.key")
    with httpx.Client(verify=context, timeout=5) as client:
        assert client.get(f"{impostor.address}/readyz").status_code == 200
    assert impostor.paths == ["/readyz"]


def test_a_non_json_node_list_is_not_ready(apiserver, cluster_ca):
    apiserver.nodes_body = b"<html>502 Bad Gateway</html>"
    ok, why = readiness.check(cluster_ca, apiserver.address, 1)
    assert ok is False and "not JSON" in why
