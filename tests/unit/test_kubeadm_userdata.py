"""teapot.drivers.bootstrap.kubeadm: the cloud-init userData that runs kubeadm on a host."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from teapot import pki
from teapot.drivers.bootstrap import kubeadm
from teapot.drivers.bootstrap.kubeadm import NodeConfig, kubeadm_documents, user_data

CONFIG = "/etc/kubernetes/kubeadm.yaml"


@pytest.fixture(scope="module")
def ca() -> pki.CA:
    return pki.new_ca("teapot-cluster-ca")


@pytest.fixture(scope="module")
def token() -> str:
    return pki.bootstrap_token()


@pytest.fixture(scope="module")
def cert_key() -> str:
    return pki.certificate_key()


@pytest.fixture
def node(ca, token, cert_key):
    def make(role: str, **overrides) -> NodeConfig:
        fields = {
            "cluster_name": "prod",
            "node_name": f"prod-{role}-0",
            "role": role,
            "kubernetes_version": "v1.36.3",
            "api_endpoint": "203.0.113.10:6443",
            "ca": ca,
            "bootstrap_token": token,
            "certificate_key": cert_key,
        }
        fields.update(overrides)
        return NodeConfig(**fields)

    return make


def _parse(text: str) -> dict:
    first, _, rest = text.partition("\n")
    assert first == "#cloud-config"
    return yaml.safe_load(rest)


def _files(config: dict) -> dict[str, dict]:
    return {f["path"]: f for f in config["write_files"]}


def _kubeadm_config(config: dict) -> list[dict]:
    return list(yaml.safe_load_all(_files(config)[CONFIG]["content"]))


def _key_lines(ca: pki.CA) -> list[str]:
    """The base64 lines of the CA key, each a unique 64-character run of text."""
    return [line for line in ca.key_pem.decode().splitlines() if "-----" not in line]


# --- init ---------------------------------------------------------------------------------------


def test_init_node_user_data(node, ca, token, cert_key):
    text = user_data(node("init"))
    assert text.startswith("#cloud-config\n")
    config = _parse(text)
    files = _files(config)

    assert files["/etc/kubernetes/pki/ca.key"]["content"] == ca.key_pem.decode()
    assert files["/etc/kubernetes/pki/ca.key"]["permissions"] == "0600"
    assert files["/etc/kubernetes/pki/ca.crt"]["content"] == ca.cert_pem.decode()
    assert files[CONFIG]["permissions"] == "0600"  # it holds the token and the certificate key

    init, cluster = _kubeadm_config(config)
    assert init["apiVersion"] == "kubeadm.k8s.io/v1beta4"
    assert init["kind"] == "InitConfiguration"
    assert [t["token"] for t in init["bootstrapTokens"]] == [token]
    assert init["nodeRegistration"]["name"] == "prod-init-0"
    assert init["certificateKey"] == cert_key

    assert cluster["apiVersion"] == "kubeadm.k8s.io/v1beta4"
    assert cluster["kind"] == "ClusterConfiguration"
    assert cluster["kubernetesVersion"] == "v1.36.3"
    assert cluster["controlPlaneEndpoint"] == "203.0.113.10:6443"
    assert cluster["networking"] == {"podSubnet": "10.244.0.0/16", "serviceSubnet": "10.96.0.0/12"}
    assert cluster["clusterName"] == "prod"

    assert config["runcmd"] == [["kubeadm", "init", "--config", CONFIG, "--upload-certs"]]
    assert config["hostname"] == "prod-init-0"
    assert "ssh_authorized_keys" not in config


def test_user_data_says_the_image_must_carry_kubeadm(node):
    header = [line for line in user_data(node("worker")).splitlines() if line.startswith("#")]
    comment = " ".join(header)
    for needed in ("kubeadm", "kubelet", "container runtime"):
        assert needed in comment


def test_user_data_installs_nothing(node):
    config = _parse(user_data(node("init")))
    for module in ("packages", "apt", "yum_repos", "package_update", "snap", "bootcmd"):
        assert module not in config


def test_kubeadm_documents_equal_the_embedded_file(node):
    for role in kubeadm.ROLES:
        n = node(role)
        assert _kubeadm_config(_parse(user_data(n))) == kubeadm_documents(n)


# --- joins --------------------------------------------------------------------------------------


def test_worker_gets_no_ca_and_pins_the_ca_hash(node, ca, token):
    text = user_data(node("worker"))
    # no trace of the CA key anywhere in the document, however it is quoted
    assert "PRIVATE KEY" not in text
    for line in _key_lines(ca):
        assert line not in text
    config = _parse(text)
    files = _files(config)
    assert "/etc/kubernetes/pki/ca.key" not in files
    assert "/etc/kubernetes/pki/ca.crt" not in files  # kubeadm's join preflight refuses it

    (join,) = _kubeadm_config(config)
    assert join["apiVersion"] == "kubeadm.k8s.io/v1beta4"
    assert join["kind"] == "JoinConfiguration"
    discovery = join["discovery"]["bootstrapToken"]
    assert discovery["token"] == token
    assert discovery["apiServerEndpoint"] == "203.0.113.10:6443"
    assert discovery["caCertHashes"] == [pki.discovery_hash(ca.cert_pem)]
    assert "controlPlane" not in join
    assert join["nodeRegistration"]["name"] == "prod-worker-0"

    assert config["runcmd"] == [["kubeadm", "join", "--config", CONFIG]]
    assert config["hostname"] == "prod-worker-0"


def test_the_key_search_above_would_find_the_key(node, ca):
    # the same whole-text search does find the key where it is written
    text = user_data(node("init"))
    assert "PRIVATE KEY" in text
    for line in _key_lines(ca):
        assert line in text


def test_control_plane_join(node, ca, cert_key):
    config = _parse(user_data(node("control-plane")))
    files = _files(config)
    assert files["/etc/kubernetes/pki/ca.key"]["content"] == ca.key_pem.decode()
    assert files["/etc/kubernetes/pki/ca.key"]["permissions"] == "0600"

    (join,) = _kubeadm_config(config)
    assert join["kind"] == "JoinConfiguration"
    assert join["controlPlane"]["certificateKey"] == cert_key
    assert join["discovery"]["bootstrapToken"]["caCertHashes"] == [pki.discovery_hash(ca.cert_pem)]
    assert config["runcmd"] == [["kubeadm", "join", "--config", CONFIG]]


# --- options and validation ---------------------------------------------------------------------


def test_ssh_keys_and_cidrs(node):
    keys = ["ssh-ed25519 AAAAC3Nza alice@example.org", "ssh-rsa AAAAB3Nza bob"]
    n = node(
        "init", ssh_authorized_keys=keys, pod_cidr="192.168.0.0/16", service_cidr="10.0.0.0/16"
    )
    assert n.ssh_authorized_keys == tuple(keys)
    config = _parse(user_data(n))
    assert config["ssh_authorized_keys"] == keys
    _, cluster = _kubeadm_config(config)
    assert cluster["networking"] == {"podSubnet": "192.168.0.0/16", "serviceSubnet": "10.0.0.0/16"}


def test_repr_hides_the_secrets(node, token, cert_key):
    text = repr(node("init"))
    assert token not in text and cert_key not in text and "PRIVATE KEY" not in text


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"role": "master"}, "role"),
        ({"node_name": "Prod_Node"}, "node_name"),
        ({"kubernetes_version": "1.36.3"}, "kubernetes_version"),
        ({"kubernetes_version": "v1.30.5"}, "too old"),
        ({"api_endpoint": "https://api:6443"}, "api_endpoint"),
        ({"api_endpoint": "api"}, "api_endpoint"),
        ({"bootstrap_token": "abc.def"}, "bootstrap_token"),
        ({"certificate_key": "xyz"}, "certificate_key"),
        ({"pod_cidr": "10.244.0.0/33"}, "pod_cidr"),
    ],
)
def test_invalid_node_configs(node, overrides, message):
    overrides = dict(overrides)
    role = overrides.pop("role", "init")
    with pytest.raises(ValueError, match=message):
        node(role, **overrides)


def test_valid_edge_cases(node):
    node("worker", certificate_key="")  # workers do not use it
    node("init", api_endpoint="[2001:db8::1]:6443", kubernetes_version="v1.37.0-rc.1")
    node("init", pod_cidr="10.244.0.0/16,fd00:10:244::/56")


def test_node_config_is_frozen(node):
    with pytest.raises(dataclasses.FrozenInstanceError):
        node("init").role = "worker"


def test_the_api_servers_certificate_names_the_public_address(node):
    """kubeadm's controlPlaneEndpoint is the endpoint on the tenant network; the certificate also
    carries the endpoint's public address, where users reach it."""
    public = node("init", api_endpoint="10.20.0.250:6443", cert_sans=["172.31.250.10"])
    cluster = next(d for d in kubeadm.kubeadm_documents(public)
                   if d["kind"] == "ClusterConfiguration")
    assert cluster["controlPlaneEndpoint"] == "10.20.0.250:6443"
    assert cluster["apiServer"] == {"certSANs": ["172.31.250.10"]}
    plain = next(d for d in kubeadm.kubeadm_documents(node("init"))
                 if d["kind"] == "ClusterConfiguration")
    assert "apiServer" not in plain
