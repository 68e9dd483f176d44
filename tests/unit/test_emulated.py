"""teapot.emulated: cloud-init parsing, the kubeadm shim, the stand-in kubelet's static pods and the
hosts agent's view of Ironic's database. Pure and fast: the only processes started are `sleep`s,
stopped in a `finally`."""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import sqlite3
import time
from pathlib import Path

import pytest
import yaml

from teapot import pki
from teapot.drivers.bootstrap import kubeadm as bootstrap
from teapot.drivers.bootstrap.network_data import network_data
from teapot.emulated import agent, cloudinit, kubeadm, kubelet
from teapot.emulated.cloudinit import CloudInitError
from teapot.resources.network import Subnet

# -- cloud-init: user data --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> pki.CA:
    return pki.new_ca("teapot-cluster-ca")


def _node(ca: pki.CA, role: str, **overrides) -> bootstrap.NodeConfig:
    fields = {
        "cluster_name": "prod",
        "node_name": f"prod-{role}-0",
        "role": role,
        "kubernetes_version": "v1.36.3",
        "api_endpoint": "203.0.113.10:6443",
        "ca": ca,
        "bootstrap_token": pki.bootstrap_token(),
        "certificate_key": pki.certificate_key(),
    }
    fields.update(overrides)
    return bootstrap.NodeConfig(**fields)


def test_user_data_of_an_init_node(ca):
    node = _node(ca, "init", addons="apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n")
    parsed = cloudinit.parse_user_data(bootstrap.user_data(node))

    assert parsed.hostname == "prod-init-0"
    files = {f.path: f for f in parsed.files}
    assert list(files) == [bootstrap.CA_CERT_PATH, bootstrap.CA_KEY_PATH,
                           bootstrap.KUBEADM_CONFIG_PATH, bootstrap.RELEASE_PATH,
                           bootstrap.ADDONS_PATH]
    assert files[bootstrap.RELEASE_PATH].content == node.kubernetes_version.encode() + b"\n"
    assert files[bootstrap.CA_CERT_PATH].content == ca.cert_pem
    assert files[bootstrap.CA_CERT_PATH].mode == 0o644
    assert files[bootstrap.CA_KEY_PATH].content == ca.key_pem
    assert files[bootstrap.CA_KEY_PATH].mode == 0o600
    assert files[bootstrap.KUBEADM_CONFIG_PATH].mode == 0o600
    docs = list(yaml.safe_load_all(files[bootstrap.KUBEADM_CONFIG_PATH].content))
    assert [d["kind"] for d in docs] == ["InitConfiguration", "ClusterConfiguration"]
    assert files[bootstrap.ADDONS_PATH].content.startswith(b"apiVersion: v1\n")

    # runcmd: each list became one shell line that splits back into the same argv
    assert len(parsed.commands) == 2
    assert shlex.split(parsed.commands[0]) == bootstrap.kubeadm_command(node)
    assert parsed.commands[0] == ("kubeadm init --config /etc/kubernetes/kubeadm.yaml "
                                  "--upload-certs")
    apply = shlex.split(parsed.commands[1])
    assert apply[:2] == ["sh", "-c"] and len(apply) == 3  # the script stays one word
    assert "kubectl --kubeconfig /etc/kubernetes/admin.conf apply" in apply[2]
    # preserve_hostname is known and ignored: nothing is unsupported
    assert parsed.unsupported == ()


def test_user_data_of_a_worker(ca):
    node = _node(ca, "worker", ssh_authorized_keys=("ssh-ed25519 AAAA teapot",))
    parsed = cloudinit.parse_user_data(bootstrap.user_data(node))

    assert parsed.hostname == "prod-worker-0"
    # no CA for workers
    assert [f.path for f in parsed.files] == [bootstrap.KUBEADM_CONFIG_PATH, bootstrap.RELEASE_PATH]
    assert [shlex.split(c) for c in parsed.commands] == [bootstrap.kubeadm_command(node)]
    assert parsed.unsupported == ()  # ssh_authorized_keys is ignored too


def test_a_master_that_replaces_another_removes_its_etcd_member_once_joined(ca):
    node = _node(ca, "control-plane", replaces="prod-old-0")
    parsed = cloudinit.parse_user_data(bootstrap.user_data(node))
    join, remove = (shlex.split(c) for c in parsed.commands)
    assert join == bootstrap.kubeadm_command(node)
    assert remove[:2] == ["python3", "-c"] and remove[3:] == ["prod-old-0"]
    compile(remove[2], "remove-etcd-member", "exec")  # the script is Python as written
    assert "/v3/cluster/member/" in remove[2] and 'call("remove"' in remove[2]
    for role in ("init", "worker"):
        with pytest.raises(ValueError, match="only a control-plane host replaces another"):
            _node(ca, role, replaces="prod-old-0")
    with pytest.raises(ValueError, match="only a control-plane host replaces another"):
        _node(ca, "control-plane", replaces="Not A Node Name")


def test_user_data_modules_not_carried_out_are_reported():
    parsed = cloudinit.parse_user_data("#cloud-config\npackages: [htop]\nruncmd: [echo hi]\n"
                                       "bootcmd: [true]\n")
    assert parsed.commands == ("echo hi",)
    assert parsed.unsupported == ("bootcmd", "packages")


def test_base64_file_and_quoted_list_command():
    text = ("#cloud-config\nwrite_files:\n- path: /etc/x\n  encoding: b64\n  content: aGk=\n"
            "runcmd:\n- [sh, -c, \"echo 'a b' > /tmp/y\"]\n")
    parsed = cloudinit.parse_user_data(text)
    assert parsed.files == (cloudinit.File("/etc/x", b"hi", 0o644),)
    assert shlex.split(parsed.commands[0]) == ["sh", "-c", "echo 'a b' > /tmp/y"]


def test_a_script_runs_as_it_is():
    script = "#!/bin/sh\necho hello > /tmp/hello\n"
    parsed = cloudinit.parse_user_data(script)
    assert parsed == cloudinit.UserData(None, (), (script,), ())
    assert cloudinit.parse_user_data("") == cloudinit.UserData(None, (), (), ())
    assert cloudinit.parse_user_data("  \n").commands == ()


def test_bad_yaml_raises():
    with pytest.raises(CloudInitError, match="not YAML"):
        cloudinit.parse_user_data("#cloud-config\nwrite_files: [\n")
    with pytest.raises(CloudInitError, match="not a mapping"):
        cloudinit.parse_user_data("#cloud-config\n- a\n- b\n")


@pytest.mark.parametrize("path", ["etc/kubernetes/x", "/etc/../root/x"])
def test_a_relative_path_raises_naming_the_item(path):
    text = ("#cloud-config\nwrite_files:\n- path: /etc/ok\n  content: fine\n"
            f"- path: {path}\n  content: bad\n")
    with pytest.raises(CloudInitError, match=r"write_files\[1\]\.path") as e:
        cloudinit.parse_user_data(text)
    assert repr(path) in str(e.value)


def test_a_file_without_path_or_with_bad_permissions_names_the_item():
    with pytest.raises(CloudInitError, match=r"write_files\[0\]: 'path'"):
        cloudinit.parse_user_data("#cloud-config\nwrite_files:\n- content: x\n")
    with pytest.raises(CloudInitError, match=r"write_files\[0\]"):
        cloudinit.parse_user_data("#cloud-config\nwrite_files:\n- {path: /x, permissions: '0999'}\n")


def test_a_command_of_another_type_names_the_item():
    with pytest.raises(CloudInitError, match=r"runcmd\[1\]"):
        cloudinit.parse_user_data("#cloud-config\nruncmd:\n- echo ok\n- {a: b}\n")


# -- cloud-init: network data -----------------------------------------------------------------------


def test_network_data():
    subnet = Subnet.parse("10.20.0.0/24", dns_nameservers=["10.20.0.2", "192.0.2.53"])
    data = network_data("52:54:00:AB:CD:EF", "10.20.0.7", subnet, "net-uuid", mtu=9000)
    data = json.loads(json.dumps(data))  # as it comes out of the config drive

    assert cloudinit.parse_network_data(data) == [cloudinit.Interface(
        mac="52:54:00:ab:cd:ef", address="10.20.0.7/24", gateway="10.20.0.1", mtu=9000,
        dns=("10.20.0.2", "192.0.2.53"))]


def test_network_data_defaults_and_other_families():
    data = {"links": [{"id": "l0", "ethernet_mac_address": "AA:BB:CC:DD:EE:FF"}],
            "networks": [{"id": "v6", "type": "ipv6", "link": "l0"},
                         {"id": "n", "type": "ipv4", "link": "l0", "ip_address": "192.0.2.5",
                          "netmask": "255.255.255.128"}]}
    assert cloudinit.parse_network_data(data) == [
        cloudinit.Interface("aa:bb:cc:dd:ee:ff", "192.0.2.5/25", None, 1500, ())]
    assert cloudinit.parse_network_data({}) == []


def test_a_network_whose_link_has_no_mac_raises():
    subnet = Subnet.parse("10.20.0.0/24")
    data = network_data("52:54:00:ab:cd:ef", "10.20.0.7", subnet, "net-uuid")
    del data["links"][0]["ethernet_mac_address"]
    with pytest.raises(CloudInitError, match="network 'tenant' names no link with a MAC"):
        cloudinit.parse_network_data(data)
    data["links"] = []
    with pytest.raises(CloudInitError, match="'tenant'"):
        cloudinit.parse_network_data(data)


# -- the kubeadm shim -------------------------------------------------------------------------------


class Exec(Exception):
    """What os.execv was called with (raised in its place: execv never returns)."""


@pytest.fixture
def execv(monkeypatch):
    def fake(program, argv):
        raise Exec(program, argv)

    monkeypatch.setattr(kubeadm.os, "execv", fake)


@pytest.fixture
def carried(monkeypatch, tmp_path):
    dirs = {tag: tmp_path / tag / "bin" for tag in ("v1.36.3", "v1.37.2")}
    monkeypatch.setenv("TEAPOT_RELEASES", ":".join(f"{t}={d}" for t, d in dirs.items()))
    return dirs


def _config_file(tmp_path: Path, ca: pki.CA, role: str, version: str = "v1.36.3") -> Path:
    path = tmp_path / "kubeadm.yaml"
    path.write_text(yaml.safe_dump_all(
        bootstrap.kubeadm_documents(_node(ca, role, kubernetes_version=version))))
    return path


def test_releases_from_the_environment(monkeypatch):
    monkeypatch.setenv("TEAPOT_RELEASES", "v1.36.3=/a/bin::junk:v1.37.2=/b/bin")
    assert kubeadm.releases() == {"v1.36.3": Path("/a/bin"), "v1.37.2": Path("/b/bin")}
    monkeypatch.delenv("TEAPOT_RELEASES")
    assert kubeadm.releases() == {}


def test_wanted_version_of_init(ca):
    docs = bootstrap.kubeadm_documents(_node(ca, "init", kubernetes_version="v1.37.2"))
    assert [d["kind"] for d in docs] == ["InitConfiguration", "ClusterConfiguration"]
    assert kubeadm.wanted_version(docs) == "v1.37.2"
    assert kubeadm.wanted_version([]) is None
    assert kubeadm.wanted_version([{"kind": "ClusterConfiguration"}]) is None


def test_wanted_version_of_join_asks_the_api_server(ca, monkeypatch):
    asked = []
    monkeypatch.setattr(kubeadm, "server_version", lambda e: asked.append(e) or "v1.36.3")
    docs = bootstrap.kubeadm_documents(_node(ca, "worker"))
    assert kubeadm.wanted_version(docs) == "v1.36.3"
    assert asked == ["203.0.113.10:6443"]


def test_init_execs_the_wanted_release_without_preflight(ca, tmp_path, carried, execv):
    config = _config_file(tmp_path, ca, "init", "v1.36.3")
    with pytest.raises(Exec) as e:
        kubeadm.main(["init", "--config", str(config), "--upload-certs"])
    program, argv = e.value.args
    assert program == carried["v1.36.3"] / "kubeadm"
    assert argv == [str(program), "init", "--config", str(config), "--upload-certs",
                    "--skip-phases=preflight"]

    config = _config_file(tmp_path, ca, "init", "v1.37.2")
    with pytest.raises(Exec) as e:
        kubeadm.main(["init", f"--config={config}"])
    assert e.value.args[0] == carried["v1.37.2"] / "kubeadm"
    assert e.value.args[1][-1] == "--skip-phases=preflight"


def test_join_skips_preflight(ca, tmp_path, carried, execv, monkeypatch):
    monkeypatch.setattr(kubeadm, "server_version", lambda endpoint: "v1.37.2")
    config = _config_file(tmp_path, ca, "worker")
    with pytest.raises(Exec) as e:
        kubeadm.main(["join", "--config", str(config)])
    program, argv = e.value.args
    assert program == carried["v1.37.2"] / "kubeadm"
    assert argv[1:] == ["join", "--config", str(config), "--skip-phases=preflight"]


@pytest.mark.parametrize("argv", [["version", "-o", "short"], ["token", "list"],
                                  ["reset", "--force"]])
def test_other_commands_use_the_newest_release_as_they_are(argv, carried, execv):
    with pytest.raises(Exec) as e:
        kubeadm.main(argv)
    program, args = e.value.args
    assert program == carried["v1.37.2"] / "kubeadm"
    assert args == [str(program), *argv]
    assert "--skip-phases=preflight" not in args


def test_a_release_the_image_does_not_carry_is_refused(ca, tmp_path, carried, execv):
    config = _config_file(tmp_path, ca, "init", "v1.35.0")
    with pytest.raises(SystemExit) as e:
        kubeadm.main(["init", "--config", str(config)])
    message = str(e.value)
    assert "v1.36.3, v1.37.2" in message and "not v1.35.0" in message


def test_an_image_without_releases_is_refused(monkeypatch, execv):
    monkeypatch.delenv("TEAPOT_RELEASES", raising=False)
    with pytest.raises(SystemExit, match="carries no Kubernetes release"):
        kubeadm.main(["version"])


# -- the stand-in kubelet's static pods -------------------------------------------------------------

FAKE_IMAGE = "registry.k8s.io/fake:v9.9.9"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _manifest(path: Path, image: str = FAKE_IMAGE, args: tuple[str, ...] = ("30",),
              name: str = "sleepy") -> None:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "kube-system"},
        "spec": {"hostNetwork": True, "containers": [{
            "name": "main", "image": image, "command": ["sleeper"], "args": list(args),
            "env": [{"name": "GREETING", "value": "hi"}]}]}}))


@pytest.fixture
def pods(tmp_path):
    image = tmp_path / "image"
    image.mkdir()
    sleeper = image / "sleeper"
    sleeper.write_text('#!/bin/sh\nexec sleep "${1:-30}"\n')
    sleeper.chmod(0o755)
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    static = kubelet.StaticPods(manifests, {"v9.9.9": image}, tmp_path / "logs")
    try:
        yield static
    finally:
        static.stop()


def _pid(pods: kubelet.StaticPods, key: str = "sleepy/main") -> int:
    process = pods.containers[key].process
    assert process is not None
    return process.pid


def test_a_static_pod_runs_as_a_process(pods):
    _manifest(pods.path / "sleepy.yaml")
    pods.sync()
    container = pods.containers["sleepy/main"]
    assert container.argv == [str(pods.images["v9.9.9"] / "sleeper"), "30"]
    assert container.env == {"GREETING": "hi"}
    pid = _pid(pods)
    assert _alive(pid)
    pods.sync()  # nothing changed: the same process
    assert _pid(pods) == pid
    assert (pods.logs / "sleepy_main.log").exists()


def test_a_changed_manifest_restarts_the_container(pods):
    _manifest(pods.path / "sleepy.yaml")
    pods.sync()
    first = _pid(pods)
    _manifest(pods.path / "sleepy.yaml", args=("31",))
    pods.sync()
    second = _pid(pods)
    assert second != first
    assert not _alive(first) and _alive(second)
    assert pods.containers["sleepy/main"].argv[-1] == "31"


def test_a_container_that_exits_is_restarted_after_backoff(pods):
    _manifest(pods.path / "sleepy.yaml")
    pods.sync()
    first = _pid(pods)
    os.kill(first, signal.SIGKILL)
    pods.containers["sleepy/main"].process.wait(10)
    pods.sync()
    container = pods.containers["sleepy/main"]
    assert container.process is None  # waiting for its backoff
    assert container.failures == 1
    assert container.next_start > time.monotonic()
    pods.sync()
    assert container.process is None  # still waiting
    container.next_start = 0.0
    pods.sync()
    second = _pid(pods)
    assert second != first and _alive(second)


def test_a_removed_manifest_stops_its_container(pods):
    _manifest(pods.path / "sleepy.yaml")
    _manifest(pods.path / "other.yaml", name="other")
    pods.sync()
    sleepy, other = _pid(pods), _pid(pods, "other/main")
    (pods.path / "sleepy.yaml").unlink()
    pods.sync()
    assert list(pods.containers) == ["other/main"]
    assert not _alive(sleepy) and _alive(other)


def test_stop_stops_every_container(pods):
    _manifest(pods.path / "a.yaml", name="a")
    _manifest(pods.path / "b.yaml", name="b")
    pods.sync()
    pids = [_pid(pods, "a/main"), _pid(pods, "b/main")]
    assert all(_alive(p) for p in pids)
    pods.stop()
    assert pods.containers == {}
    assert not any(_alive(p) for p in pids)


def test_an_image_of_an_unknown_tag_is_logged_and_not_started(pods, caplog):
    _manifest(pods.path / "unknown.yaml", image="registry.k8s.io/fake:v0.0.1", name="unknown")
    _manifest(pods.path / "sleepy.yaml")
    with caplog.at_level(logging.ERROR, logger="teapot.kubelet"):
        pods.sync()
    assert list(pods.containers) == ["sleepy/main"]
    assert any("unknown.yaml" in r.getMessage() and "no release v0.0.1" in r.getMessage()
               for r in caplog.records)


def test_an_image_without_the_program_is_logged(pods, caplog):
    (pods.path / "other.yaml").write_text(yaml.safe_dump({
        "metadata": {"name": "other"},
        "spec": {"containers": [{"name": "c", "image": FAKE_IMAGE, "command": ["nothere"]}]}}))
    with caplog.at_level(logging.ERROR, logger="teapot.kubelet"):
        pods.sync()
    assert pods.containers == {}
    assert any("has no program nothere" in r.getMessage() for r in caplog.records)


def test_etcd_images_map_to_the_etcd_folder(tmp_path):
    static = kubelet.StaticPods(tmp_path, {"etcd": tmp_path}, tmp_path / "logs")
    (tmp_path / "etcd").write_text("")
    assert static.program("registry.k8s.io/etcd:3.6.8-0", "etcd") == str(tmp_path / "etcd")
    with pytest.raises(kubelet.KubeletError, match="no release v1.2.3"):
        static.program("registry.k8s.io/kube-apiserver:v1.2.3", "kube-apiserver")


# -- the hosts agent: Ironic's nodes ----------------------------------------------------------------


def test_read_nodes(tmp_path):
    database = tmp_path / "ironic.sqlite"
    drive = {"user_data": "#cloud-config\n", "network_data": {"links": []}}
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE nodes (id INTEGER PRIMARY KEY, name TEXT, provision_state TEXT, "
                   "power_state TEXT, instance_info TEXT)")
        db.executemany("INSERT INTO nodes (name, provision_state, power_state, instance_info) "
                       "VALUES (?, ?, ?, ?)", [
                           ("host-0", "active", "power on",
                            json.dumps({"configdrive": drive, "image_source": "https://i/x.raw"})),
                           ("host-1", "available", "power off", None),
                           ("host-2", "clean wait", None, "{}"),
                       ])
    db.close()

    assert agent.read_nodes(database) == {
        "host-0": {"provision_state": "active", "power_state": "power on",
                   "configdrive": drive, "image": "https://i/x.raw"},
        "host-1": {"provision_state": "available", "power_state": "power off",
                   "configdrive": None, "image": None},
        "host-2": {"provision_state": "clean wait", "power_state": None,
                   "configdrive": None, "image": None},
    }


def test_read_nodes_without_a_database(tmp_path):
    assert agent.read_nodes(tmp_path / "missing.sqlite") == {}
    assert not (tmp_path / "missing.sqlite").exists()  # read-only: never created


def test_read_nodes_before_ironic_made_its_tables(tmp_path):
    database = tmp_path / "ironic.sqlite"
    sqlite3.connect(database).close()
    assert agent.read_nodes(database) == {}


class _RecordingApi:
    """An API server that records calls and says 409 for a pod it already holds."""

    def __init__(self):
        self.calls, self.pods = [], set()

    def call(self, method, path, body=None, content_type="application/json"):
        self.calls.append((method, path.split("?")[0], body))
        if method == "POST" and path.endswith("/pods"):
            name = body["metadata"]["name"]
            if name in self.pods:
                raise kubelet.ApiStatus(409, "exists")
            self.pods.add(name)
        if method == "DELETE":
            self.pods.discard(path.split("?")[0].rsplit("/", 1)[1])
        return {}


def test_static_pods_get_mirror_pods_owned_by_the_node_and_follow_their_manifests():
    api = _RecordingApi()
    node = kubelet.Node(api, "host-4", {})
    node.uid = "uid-4"
    etcd = {"metadata": {"name": "etcd", "namespace": "kube-system",
                         "labels": {"component": "etcd", "tier": "control-plane"},
                         "annotations": {"kubeadm.kubernetes.io/etcd.advertise-client-urls":
                                         "https://10.20.0.4:2379"}},
            "spec": {"hostNetwork": True, "containers": [{"name": "etcd", "image": "e:1"}]}}
    node.mirror({"etcd": (etcd, "h1")})
    (method, path, body), = api.calls
    assert (method, path) == ("POST", "/api/v1/namespaces/kube-system/pods")
    assert body["metadata"]["name"] == "etcd-host-4" and body["spec"]["nodeName"] == "host-4"
    assert body["metadata"]["labels"] == {"component": "etcd", "tier": "control-plane"}
    annotations = body["metadata"]["annotations"]
    assert annotations["kubernetes.io/config.mirror"] == "h1"
    assert annotations["kubeadm.kubernetes.io/etcd.advertise-client-urls"] == \
        "https://10.20.0.4:2379"
    assert body["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Node", "name": "host-4", "uid": "uid-4", "controller": True}]

    node.mirror({"etcd": (etcd, "h1")})  # unchanged: nothing sent
    assert len(api.calls) == 1
    node.mirror({"etcd": (etcd, "h2")})  # changed: made again
    assert [(m, p) for m, p, _ in api.calls[1:]] == [
        ("POST", "/api/v1/namespaces/kube-system/pods"),
        ("DELETE", "/api/v1/namespaces/kube-system/pods/etcd-host-4"),
        ("POST", "/api/v1/namespaces/kube-system/pods")]
    node.mirror({})  # its manifest gone: so is the mirror pod
    assert api.calls[-1][:2] == ("DELETE", "/api/v1/namespaces/kube-system/pods/etcd-host-4")
    assert api.pods == set()
