"""Real Kubernetes in the box's clusters: two projects each create a 1-master, 1-worker cluster; the
emulated hosts act on what Ironic deployed them with (network data, then cloud-init running the
real kubeadm; a stand-in kubelet does the TLS bootstrap and reports the Node), and the cluster is
CREATE_COMPLETE once its API server answers at its endpoint with both Nodes Ready. A member's
`openstack coe cluster config` kubeconfig then works unchanged with kubectl on this machine,
through the endpoint's public address: both Nodes Ready with the hosts' names, the server at the
template's kube_tag, a ConfigMap round-trips; the endpoint also answers on the tenant network and
from the box's outside world, and comes back when its HAProxy is killed; a Service of type
LoadBalancer gets its VIP from the controller the cluster was given; a certificate signed by
the other cluster's CA is refused; the other project cannot get this cluster's certificates; a
stopped worker turns NotReady; deleting the clusters leaves no process, file or load balancer."""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

from teapot import releases
from teapot.deploy.keystone_setup import admin_connection, ensure_user
from teapot.drivers.loadbalancer.box import BoxLoadBalancers
from teapot.net.fabric import Fabric

from .conftest import wait_for
from .test_tenant_networks import Api, _complete, _hosts_of

VERSION = releases.KUBERNETES[0]
KUBECTL = str(releases.bin_dir(VERSION) / "kubectl")
OPENSTACK = str(Path(sys.executable).parent / "openstack")

pytestmark = pytest.mark.skipif(VERSION not in releases.built(),
                                reason=f"Kubernetes {VERSION} is not built (make install)")


@pytest.fixture(scope="module")
def apis(box):
    conn = admin_connection(box.url("keystone") + "/v3", box.secret("admin-password"))
    ensure_user(conn, "kube-rival", "kube-rival-password", "kube-rival", ["member"])
    clouds = yaml.safe_load(box.clouds.read_text())
    rival = dict(clouds["clouds"]["teapot-demo"])
    rival["auth"] = {**rival["auth"], "username": "kube-rival", "password": "kube-rival-password",
                     "project_name": "kube-rival"}
    clouds["clouds"]["kube-rival"] = rival
    clouds_file = box.state_dir / "clouds-kube.yaml"
    clouds_file.write_text(yaml.safe_dump(clouds))
    clouds_file.chmod(0o600)
    return {"admin": Api(box, "admin", box.cloud_auth("teapot-admin")["password"], "admin"),
            "demo": Api(box, "demo", box.cloud_auth("teapot-demo")["password"], "demo"),
            "rival": Api(box, "kube-rival", "kube-rival-password", "kube-rival"),
            "clouds": clouds_file}


# The names of etcd's members, asked of the etcd on the host's loopback with the API server's etcd
# client certificate (argv[1]: the host's /etc/kubernetes/pki, on its disk).
ETCD_MEMBERS = """
import json, ssl, sys, urllib.request
pki = sys.argv[1]
context = ssl.create_default_context(cafile=pki + "/etcd/ca.crt")
context.load_cert_chain(pki + "/apiserver-etcd-client.crt", pki + "/apiserver-etcd-client.key")
request = urllib.request.Request("https://127.0.0.1:2379/v3/cluster/member/list", data=b"{}",
                                 method="POST")
with urllib.request.urlopen(request, context=context, timeout=30) as answer:
    print("\\n".join(m.get("name", "") for m in json.load(answer)["members"]))
"""


def _openstack_env(apis) -> dict[str, str]:
    """The environment of `openstack` as a user's shell has it: the clouds file, and SHELL, which
    `coe cluster config` reads to print its export line (CI runs without one)."""
    return {**os.environ, "OS_CLIENT_CONFIG_FILE": str(apis["clouds"]),
            "SHELL": os.environ.get("SHELL", "/bin/sh")}


@pytest.fixture(scope="module")
def clusters(box, apis, tmp_path_factory):
    """{"demo": {...}, "rival": {...}}: each with uuid, hosts, the master and worker, and the
    kubeconfig `openstack coe cluster config` wrote; deleted at the end, hosts checked clean."""
    made = {}
    for who in ("demo", "rival"):
        template = apis[who]("POST", "/v1/clustertemplates", json={
            "name": f"kube-{who}", "image_id": "https://images.example/node.raw",
            "flavor_id": "baremetal", "master_flavor_id": "baremetal",
            "labels": {"image_checksum": "34" * 32, "kube_tag": VERSION,
                       "cloud_provider_enabled": "true"}})
        made[who] = {"uuid": apis[who]("POST", "/v1/clusters", json={
            "name": f"kube-{who}", "cluster_template_id": template["uuid"], "master_count": 1,
            "node_count": 1})["uuid"], "template": template["uuid"]}
    fabric = Fabric.load(box.state_dir)
    try:
        for who, c in made.items():
            shown = _complete(apis[who], c["uuid"])
            c["hosts"] = _hosts_of(apis, c["uuid"])
            c["master"] = shown["master_addresses"][0]
            c["api_address"] = shown["api_address"]
            c["addresses"] = {h: apis["admin"]("GET", f"/v1/hosts/{h}")["network"]["address"]
                              for h in c["hosts"]}
            c["worker"] = next(h for h, a in c["addresses"].items() if a != c["master"])
            folder = tmp_path_factory.mktemp(f"kube-{who}")
            cloud = "teapot-demo" if who == "demo" else "kube-rival"
            proc = subprocess.run([OPENSTACK, "--os-cloud", cloud, "coe", "cluster", "config",
                                   c["uuid"], "--dir", str(folder), "--force"],
                                  env=_openstack_env(apis),
                                  capture_output=True, text=True, timeout=120)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            c["kubeconfig"] = folder / "config"
        yield {"fabric": fabric, **made}
    finally:
        for who, c in made.items():
            apis[who]("DELETE", f"/v1/clusters/{c['uuid']}", expect=(204, 404))
        for who, c in made.items():
            wait_for(lambda c=c, who=who: apis[who]("GET", f"/v1/clusters/{c['uuid']}",
                                                    expect=(200, 404)).get("status") is None,
                     timeout=300, interval=2, what=f"cluster {c['uuid']} deleted")


def _status(box) -> dict:
    """`teapot status -f json` of the box."""
    proc = subprocess.run([str(Path(sys.executable).parent / "teapot"), "status", "--state-dir",
                           str(box.state_dir), "-f", "json"], capture_output=True, text=True,
                          check=True)
    return json.loads(proc.stdout)


def kubectl(kubeconfig: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """kubectl on this machine, as a user runs it."""
    proc = subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), "--request-timeout=10s",
                           *args], capture_output=True, text=True, timeout=60)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def _nodes(c: dict) -> dict[str, str]:
    proc = kubectl(c["kubeconfig"], "get", "nodes", "-o", "json", check=False)
    if proc.returncode != 0:
        return {}
    out = {}
    for node in json.loads(proc.stdout)["items"]:
        ready = next(x["status"] for x in node["status"]["conditions"] if x["type"] == "Ready")
        out[node["metadata"]["name"]] = ready
    return out


def test_complete_means_both_nodes_ready_with_the_hosts_names(clusters):
    for who in ("demo", "rival"):
        c = clusters[who]
        nodes = _nodes(c)
        assert sorted(nodes) == sorted(c["hosts"]) and set(nodes.values()) == {"True"}, nodes


def test_the_kubeconfig_reaches_the_clusters_own_api_server_at_its_kube_tag(box, clusters):
    fabric, c = clusters["fabric"], clusters["demo"]
    config = yaml.safe_load(c["kubeconfig"].read_text())
    server = config["clusters"][0]["cluster"]["server"]
    assert server == c["api_address"]
    public = ipaddress.ip_network(_status(box)["public_cidr"])
    assert ipaddress.ip_address(server.split("//")[1].split(":")[0]) in public
    version = json.loads(kubectl(c["kubeconfig"], "version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == VERSION
    name = "teapot-round-trip"
    kubectl(c["kubeconfig"], "create", "configmap", name, "--from-literal=answer=42")
    got = json.loads(kubectl(c["kubeconfig"], "get", "configmap", name, "-o", "json").stdout)
    assert got["data"] == {"answer": "42"}
    # every host runs what its own user data asked for, at the address it was handed
    for host, address in c["addresses"].items():
        carried = fabric.exec_in(host, "ip", "-4", "-o", "addr", "show", "dev", "eth0").stdout
        assert f"{address}/24" in carried


def test_the_endpoint_answers_inside_and_outside_and_survives_its_haproxy(box, clusters):
    """Nodes reach the API at the endpoint's tenant address (kubeadm's controlPlaneEndpoint), the
    outside world at its public one; kill the endpoint's HAProxy and the conductor restores it."""
    fabric, c = clusters["fabric"], clusters["demo"]
    public = c["api_address"].split("//")[1].split(":")[0]
    master = next(h for h, a in c["addresses"].items() if a == c["master"])
    handed = yaml.safe_load_all((box.state_dir / "data" / "teapot-hosts" / "disks" / master
                                 / "etc/kubernetes/kubeadm.yaml").read_text())
    config = next(d for d in handed if d["kind"] == "ClusterConfiguration")
    tenant, port = config["controlPlaneEndpoint"].split(":")
    assert port == "6443" and tenant not in c["addresses"].values()
    assert config["apiServer"]["certSANs"] == [public]
    assert fabric.exec_in(c["worker"], "curl", "-sk", "--max-time", "5",
                          f"https://{tenant}:6443/livez").stdout == "ok"
    outside = _status(box)["public_namespace"]
    got = subprocess.run(["ip", "netns", "exec", outside, "curl", "-sk", "--max-time", "5",
                          f"https://{public}:6443/livez"], capture_output=True, text=True)
    assert got.stdout == "ok", got
    pidfile = _load_balancer(box, public) / "haproxy.pid"
    old = int(pidfile.read_text().split()[0])
    os.kill(old, signal.SIGTERM)
    wait_for(lambda: kubectl(c["kubeconfig"], "get", "--raw", "/livez", check=False).returncode
             != 0, timeout=10, interval=0.2, what="the endpoint down")
    wait_for(lambda: kubectl(c["kubeconfig"], "get", "--raw", "/livez", check=False).stdout
             == "ok", timeout=180, interval=2, what="the endpoint restored by the conductor")
    assert int(pidfile.read_text().split()[0]) != old


def _load_balancer(box, public: str) -> Path:
    """The folder of the load balancer instance whose public leg holds `public`."""
    driver = BoxLoadBalancers(box.state_dir)
    for folder in (box.state_dir / "loadbalancers").iterdir():
        active = driver.active(folder.name)
        legs = subprocess.run(["ip", "-n", active.namespace, "-4", "-o", "addr", "show", "dev",
                               "pub0"], capture_output=True, text=True).stdout if active else ""
        if f" {public}/" in legs:
            return active.folder
    raise AssertionError(f"no load balancer holds {public}")


@pytest.fixture
def web_servers(clusters, apis, tmp_path):
    """An HTTP server on port 8080 of every host of both clusters, answering with the host's name
    (stopped by PID at the end)."""
    fabric = clusters["fabric"]
    started = []
    try:
        for who in ("demo", "rival"):
            for host in _hosts_of(apis, clusters[who]["uuid"]):
                folder = tmp_path / host
                folder.mkdir()
                (folder / "index.html").write_text(host)
                address = apis["admin"]("GET", f"/v1/hosts/{host}")["network"]["address"]
                started.append((host, subprocess.Popen(
                    ["ip", "netns", "exec", fabric.host(host).namespace, sys.executable, "-m",
                     "http.server", "8080", "--bind", address, "--directory", str(folder)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
        yield dict(started)
    finally:
        for _, proc in started:
            proc.terminate()
            proc.wait(timeout=10)


def _get(namespace: str, url: str) -> str | None:
    proc = subprocess.run(["ip", "netns", "exec", namespace, "curl", "-s", "--max-time", "3", url],
                          capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else None


def test_load_balancers_reach_only_their_projects_hosts_and_survive_failures(box, clusters, apis,
                                                                               web_servers):
    """A load balancer per project, TCP 80 → 8080, the project's cluster's hosts as members (the
    same addresses in both projects): from the outside world each VIP reaches only its own
    project's hosts, spread over both; a member stopped is taken out within the health check's
    interval × retries; its HAProxy killed, the conductor makes it again."""
    outside = _status(box)["public_namespace"]
    made = {}
    for who, topology in (("demo", "SINGLE"), ("rival", "ACTIVE_STANDBY")):
        made[who] = apis[who]("POST", "/v1/loadbalancers", json={
            "name": "web", "cluster": clusters[who]["uuid"], "topology": topology,
            "listeners": [{"protocol": "TCP", "port": 80, "member_port": 8080}],
            "health_check": {"interval": 1, "retries": 2}})
    for who, lb in made.items():
        made[who] = wait_for(
            lambda who=who, lb=lb: (x := apis[who]("GET", f"/v1/loadbalancers/{lb['id']}"))
            ["operating_status"] == "ONLINE" and x, timeout=120, interval=1,
            what=f"{who}'s load balancer ONLINE")
        assert made[who]["provisioning_status"] == "ACTIVE"
    # the other project sees nothing of it
    apis["rival"]("GET", f"/v1/loadbalancers/{made['demo']['id']}", expect=(404,))
    # rival's is a pair: two instances run, one holds the VIP (failover: test_loadbalancer_pair)
    driver = BoxLoadBalancers(box.state_dir)
    pair = _load_balancer(box, made["rival"]["vip_address"])
    assert made["rival"]["topology"] == "ACTIVE_STANDBY" and pair.name in "ab"
    assert len(driver.instances(pair.parent.name)) == 2 and driver.running(pair.parent.name)
    assert made["demo"]["vip_address"] != made["rival"]["vip_address"]
    for who in ("demo", "rival"):
        mine = set(_hosts_of(apis, clusters[who]["uuid"]))
        assert {m["address"] for m in made[who]["members"]} == {
            apis["admin"]("GET", f"/v1/hosts/{h}")["network"]["address"] for h in mine}
        answers = [_get(outside, f"http://{made[who]['vip_address']}/") for _ in range(12)]
        assert set(answers) == mine, (who, answers)  # both, and nobody else's

    lb = made["demo"]
    stopped, kept = sorted(_hosts_of(apis, clusters["demo"]["uuid"]))
    web_servers[stopped].terminate()
    web_servers[stopped].wait(timeout=10)
    time.sleep(1 * 2 + 1)  # the health check's interval × retries, and a second
    answers = [_get(outside, f"http://{lb['vip_address']}/") for _ in range(12)]
    assert answers == [kept] * 12, answers  # no request failed, none went to the stopped one
    wait_for(lambda: apis["demo"]("GET", f"/v1/loadbalancers/{lb['id']}")["operating_status"]
             == "DEGRADED", timeout=30, what="the load balancer DEGRADED")

    folder = _load_balancer(box, lb["vip_address"])
    old = int((folder / "haproxy.pid").read_text().split()[0])
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: _get(outside, f"http://{lb['vip_address']}/") == kept, timeout=60,
             interval=1, what="the load balancer restored")
    assert int((folder / "haproxy.pid").read_text().split()[0]) != old

    for who, lb in made.items():
        apis[who]("DELETE", f"/v1/loadbalancers/{lb['id']}", expect=(204,))
    wait_for(lambda: not any(apis[w]("GET", "/v1/loadbalancers")["loadbalancers"]
                             for w in made), timeout=60, what="load balancers deleted")
    assert not folder.exists()
    assert _get(outside, f"http://{lb['vip_address']}/") is None


SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{name: http, protocol: TCP, port: 80, targetPort: 8080}]
"""


def test_a_service_of_type_loadbalancer_gets_a_vip_from_the_clusters_controller(
        box, clusters, apis, tmp_path):
    """The add-on Teapot put in the cluster, run as its Deployment says with the Secret Teapot put
    there: a Service of type LoadBalancer gets a load balancer of its cluster and its VIP in the
    Service's status, with HAProxy sending the VIP's port to the node port of every host (the
    emulated hosts run no kube-proxy: traffic to node ports is not tested here). The cluster's
    credential reaches no other cluster's load balancers. The Service deleted, its load balancer
    goes, then the Service."""
    demo = clusters["demo"]
    secret = wait_for(lambda: json.loads(kubectl(
        demo["kubeconfig"], "get", "secret", "-n", "kube-system", "teapot-loadbalancers", "-o",
        "json", check=False).stdout or "null"), timeout=120, interval=2, what="the add-on applied")
    env = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert env["TEAPOT_CLUSTER_UUID"] == demo["uuid"]
    deployment = json.loads(kubectl(demo["kubeconfig"], "get", "deployment", "-n", "kube-system",
                                    "teapot-loadbalancers", "-o", "json").stdout)
    command = deployment["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command == ["python3", "-m", "teapot.servicelb"]

    # the credential: this cluster's load balancers, nothing else
    auth = v3.ApplicationCredential(auth_url=env["OS_AUTH_URL"],
                                    application_credential_id=env["OS_APPLICATION_CREDENTIAL_ID"],
                                    application_credential_secret=env[
                                        "OS_APPLICATION_CREDENTIAL_SECRET"])
    teapot = ks_session.Session(auth=auth).get_endpoint(service_type="container-infra",
                                                        interface="public").removesuffix("/v1")
    as_cluster = ks_session.Session(auth=auth)
    for path, code in ((f"/v1/clusters/{demo['uuid']}/loadbalancers", 200),
                       (f"/v1/clusters/{clusters['rival']['uuid']}/loadbalancers", 401),
                       ("/v1/loadbalancers", 401), ("/v1/clusters", 401)):  # as keystonemiddleware
        assert as_cluster.get(teapot + path, raise_exc=False).status_code == code, path

    log = (tmp_path / "controller.log").open("w")
    controller = subprocess.Popen([sys.executable, *command[1:], "--kubeconfig",
                                   str(demo["kubeconfig"]), "--resync", "5"],
                                  env={"PATH": os.environ["PATH"], **env}, stdout=log,
                                  stderr=subprocess.STDOUT)
    try:
        service = tmp_path / "service.yaml"
        service.write_text(SERVICE)
        kubectl(demo["kubeconfig"], "apply", "-f", str(service))
        shown = json.loads(kubectl(demo["kubeconfig"], "get", "service", "web", "-o",
                                   "json").stdout)
        node_port = shown["spec"]["ports"][0]["nodePort"]
        ingress = wait_for(lambda: json.loads(kubectl(
            demo["kubeconfig"], "get", "service", "web", "-o", "json").stdout)["status"]
            ["loadBalancer"].get("ingress"), timeout=120, interval=1, what="the Service's VIP")
        vip = ingress[0]["ip"]
        lbs = apis["demo"]("GET", f"/v1/clusters/{demo['uuid']}/loadbalancers")["loadbalancers"]
        assert [(x["vip_address"], x["listeners"], x["cluster_id"], x["provisioning_status"])
                for x in lbs] == [(vip, [{"protocol": "TCP", "port": 80, "member_port": node_port}],
                                   demo["uuid"], "ACTIVE")]
        assert {m["address"] for m in lbs[0]["members"]} == set(demo["addresses"].values())
        # its data plane: HAProxy sends the VIP's port 80 to the node port of every host
        config = (_load_balancer(box, vip) / "haproxy.cfg").read_text()
        assert {f"{a}:{node_port}" for a in demo["addresses"].values()} == {
            line.split()[2] for line in config.splitlines() if line.split()[:1] == ["server"]}
        shown = json.loads(kubectl(demo["kubeconfig"], "get", "service", "web", "-o",
                                   "json").stdout)
        assert "teapot.openstack.org/loadbalancer" in shown["metadata"]["finalizers"]

        kubectl(demo["kubeconfig"], "delete", "service", "web", "--wait=false")
        wait_for(lambda: kubectl(demo["kubeconfig"], "get", "service", "web",
                                 check=False).returncode != 0, timeout=120, interval=1,
                 what="the Service gone")
        assert apis["demo"]("GET", f"/v1/clusters/{demo['uuid']}/loadbalancers")[
            "loadbalancers"] == []
    finally:
        controller.terminate()
        controller.wait(timeout=10)
        log.close()
    assert "EnsuredLoadBalancer" in (tmp_path / "controller.log").read_text()


def test_a_certificate_of_another_clusters_ca_is_refused(clusters, tmp_path):
    demo, rival = clusters["demo"], clusters["rival"]
    mine = yaml.safe_load(demo["kubeconfig"].read_text())
    theirs = yaml.safe_load(rival["kubeconfig"].read_text())
    mixed = dict(mine)
    mixed["users"] = theirs["users"]  # rival's client certificate, signed by rival's CA
    mixed["contexts"] = [{**ctx, "context": {**ctx["context"], "user": theirs["users"][0]["name"]}}
                         for ctx in mine["contexts"]]
    path = tmp_path / "mixed"
    path.write_text(yaml.safe_dump(mixed))
    refused = kubectl(path, "get", "nodes", check=False)
    assert refused.returncode != 0 and "Unauthorized" in refused.stderr, refused.stderr
    # and the same certificate works on its own cluster
    assert kubectl(rival["kubeconfig"], "get", "nodes").returncode == 0


def test_another_project_gets_neither_certificates_nor_a_kubeconfig(clusters, apis):
    uuid = clusters["demo"]["uuid"]
    apis["rival"]("GET", f"/v1/certificates/{uuid}", expect=(404,))
    proc = subprocess.run([OPENSTACK, "--os-cloud", "kube-rival", "coe", "cluster", "config",
                           uuid, "--dir", "/nonexistent"], capture_output=True, text=True,
                          env=_openstack_env(apis),
                          timeout=120)
    assert proc.returncode != 0 and "404" in proc.stderr + proc.stdout
    ca = apis["demo"]("GET", f"/v1/certificates/{uuid}")["pem"]
    config = yaml.safe_load(clusters["demo"]["kubeconfig"].read_text())
    served = base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"])
    assert served.decode().strip() == ca.strip()  # the CA the API server was started with


def test_a_resize_removes_and_adds_nodes(clusters, apis):
    """Scaled down, the worker leaves Kubernetes (drained, its Node deleted) before its host is
    cleaned; scaled up, a new host joins and its Node is Ready before UPDATE_COMPLETE."""
    c = clusters["demo"]
    leaving = c["worker"]
    apis["demo"]("POST", f"/v1/clusters/{c['uuid']}/actions/resize", json={"node_count": 0})
    _complete(apis["demo"], c["uuid"])
    assert list(_nodes(c)) == [h for h in c["hosts"] if h != leaving]
    apis["demo"]("POST", f"/v1/clusters/{c['uuid']}/actions/resize", json={"node_count": 1})
    _complete(apis["demo"], c["uuid"])
    hosts = _hosts_of(apis, c["uuid"])
    nodes = _nodes(c)
    assert sorted(nodes) == hosts and set(nodes.values()) == {"True"}, nodes
    c["hosts"] = sorted(set(c["hosts"]) | set(hosts))  # all of them must end up bare


def test_a_stopped_worker_turns_not_ready_and_back(clusters):
    """The worker host stops (every process of it frozen): the node controller sees its Lease
    expire and marks the Node NotReady; the host resumes and the Node is Ready again."""
    fabric, c = clusters["fabric"], clusters["rival"]
    worker_host = c["worker"]
    pids = [int(p) for p in subprocess.run(["ip", "netns", "pids",
                                            fabric.host(worker_host).namespace],
                                           capture_output=True, text=True).stdout.split()]
    assert pids
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        def status() -> str | None:
            proc = kubectl(c["kubeconfig"], "get", "node", worker_host,
                           "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                           check=False)
            return proc.stdout.strip() if proc.returncode == 0 else None
        wait_for(lambda: status() == "Unknown", timeout=180, interval=3,
                 what=f"{worker_host} NotReady")
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
    wait_for(lambda: status() == "True", timeout=120, interval=3, what=f"{worker_host} Ready")


def test_an_upgrade_replaces_every_host_masters_first_and_keeps_the_clusters_data(
        box, clusters, apis):
    """The demo cluster moves to a template of the next Kubernetes release. With free hosts in
    the box, each host is surged: a new one joins (the new master removes the old one's etcd
    member), is Ready, then the old one is drained and given back, masters first (the old master,
    cleaned, may come back as the worker's replacement). At the end the
    API server, reached through the same endpoint and kubeconfig, is the new release, every Node
    is a new host, and what was stored before the upgrade is still there."""
    c = clusters["demo"]
    newer = releases.KUBERNETES[1]
    kubectl(c["kubeconfig"], "create", "configmap", "before-upgrade", "--from-literal=kept=yes")
    template = apis["demo"]("POST", "/v1/clustertemplates", json={
        "name": "kube-demo-next", "image_id": "https://images.example/node.raw",
        "flavor_id": "baremetal", "master_flavor_id": "baremetal",
        "labels": {"image_checksum": "34" * 32, "kube_tag": newer,
                   "cloud_provider_enabled": "true"}})["uuid"]
    old_hosts = _hosts_of(apis, c["uuid"])
    apis["demo"]("POST", f"/v1/clusters/{c['uuid']}/actions/upgrade",
                 json={"cluster_template": template}, expect=(202,))
    reasons = []

    def done():
        shown = apis["demo"]("GET", f"/v1/clusters/{c['uuid']}")
        assert shown["status"] != "UPDATE_FAILED", shown
        if not reasons or reasons[-1] != shown["status_reason"]:
            reasons.append(shown["status_reason"])
        return shown if shown["status"] == "UPDATE_COMPLETE" else None

    shown = wait_for(done, timeout=900, interval=2, what=f"cluster {c['uuid']} upgraded")
    assert shown["coe_version"] == newer and shown["cluster_template_id"] == template
    # the progress was there to read: an old host waiting for its replacement, then leaving
    assert any(r.startswith("upgrading: waiting before ") for r in reasons), reasons
    assert any(r.endswith(" deprovisioned, replaced") for r in reasons), reasons
    hosts = _hosts_of(apis, c["uuid"])
    # surged: the last old host left (an earlier one, cleaned, may have come back as a new one);
    # every kubelet below runs the release its host was provisioned with
    assert hosts != old_hosts, (hosts, old_hosts)
    version = json.loads(kubectl(c["kubeconfig"], "version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == newer
    nodes = _nodes(c)
    assert sorted(nodes) == hosts and set(nodes.values()) == {"True"}, nodes
    kubelets = kubectl(c["kubeconfig"], "get", "nodes", "-o",
                       "jsonpath={.items[*].status.nodeInfo.kubeletVersion}").stdout.split()
    assert kubelets == [newer] * len(hosts), kubelets
    # etcd has one member per master: the old master's was removed when the new one joined
    masters = [h for h in hosts if apis["admin"]("GET", f"/v1/hosts/{h}")["network"]["address"]
               in shown["master_addresses"]]
    pki = box.state_dir / "data" / "teapot-hosts" / "disks" / masters[0] / "etc/kubernetes/pki"
    members = subprocess.run(
        ["ip", "netns", "exec", clusters["fabric"].host(masters[0]).namespace, sys.executable,
         "-c", ETCD_MEMBERS, str(pki)], capture_output=True, text=True, timeout=60)
    assert members.returncode == 0, members.stderr
    assert sorted(members.stdout.split()) == masters, members.stdout
    kept = kubectl(c["kubeconfig"], "get", "configmap", "before-upgrade",
                   "-o", "jsonpath={.data.kept}").stdout
    assert kept == "yes"
    c["hosts"] = sorted(set(c["hosts"]) | set(hosts))  # all of them must end up bare


def test_deleted_clusters_leave_no_process_and_no_file(box, clusters, apis):
    """Runs last in the module: delete both clusters, then every one of their hosts is bare."""
    fabric = clusters["fabric"]
    hosts = clusters["demo"]["hosts"] + clusters["rival"]["hosts"]
    for who in ("demo", "rival"):
        apis[who]("DELETE", f"/v1/clusters/{clusters[who]['uuid']}", expect=(204,))
    disks = box.state_dir / "data" / "teapot-hosts" / "disks"

    def bare() -> bool:
        for host in hosts:
            ns = fabric.host(host).namespace
            if subprocess.run(["ip", "netns", "pids", ns], capture_output=True,
                              text=True).stdout.split():
                return False
            if (disks / host).exists():
                return False
            if fabric.exec_in(host, "ip", "-4", "-o", "addr", "show", "dev", "eth0").stdout:
                return False
        return True
    wait_for(bare, timeout=300, interval=2, what="the clusters' hosts bare")
    wait_for(lambda: not any((box.state_dir / "loadbalancers").iterdir()), timeout=300,
             what="the clusters' load balancers gone")
