"""Service descriptions (teapot.deploy): dependency order, INI rendering, and the config files of
every service in a box, rendered with a fake Context."""

from __future__ import annotations

import configparser
import re
from collections.abc import Mapping
from pathlib import Path

import bcrypt
import pytest

from teapot.deploy import ini
from teapot.deploy.service import Service, config_dir, levels, order
from teapot.deploy.services import box, sushy_emulator

PORTS = {"keystone": 5000, "ironic": 6385, "sushy-emulator": 8000, "teapot-api": 9511,
         "teapot-conductor": 9512}
SECRETS = {"teapot-password": "tp-secret-123", "bmc-password": "bmc-secret-456",
           "admin-password": "admin-secret-789"}
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


class FakeContext:
    """A Context with paths under a tmp directory, fixed ports and fixed secrets."""

    bind_host = "127.0.0.1"

    def __init__(self, root: Path, settings: Mapping[str, object] | None = None):
        self.root = root
        self._settings = dict(settings or {"profile": "box", "hosts": 3})
        self.secrets_asked: list[str] = []

    def port(self, service: str) -> int:
        return PORTS[service]

    def url(self, service: str) -> str:
        return f"http://{self.bind_host}:{self.port(service)}"

    def public_url(self, service: str) -> str:
        return self.url(service)  # as in a box: no ingress

    def messaging_url(self, service: str) -> str:
        raise AssertionError(f"{service} asked for RabbitMQ, which a box does not run")

    def cache_servers(self) -> str | None:
        return None  # as in a box: no memcached

    def config_path(self, service: str, name: str) -> str:
        return str(self.root / "etc" / service / name)

    def data_path(self, service: str, name: str) -> str:
        return str(self.root / "data" / service / name)

    def database_url(self, service: str) -> str:
        return f"sqlite:///{self.root}/data/{service}/{service}.sqlite"

    def secret(self, name: str) -> str:
        self.secrets_asked.append(name)
        return SECRETS[name]

    @property
    def settings(self) -> Mapping[str, object]:
        return self._settings


@pytest.fixture
def ctx(tmp_path) -> FakeContext:
    return FakeContext(tmp_path)


def _svc(name: str, *depends_on: str) -> Service:
    return Service(name=name, description=name, package=name, image=name,
                   command=lambda ctx: [name], depends_on=depends_on)


def _file(name: str):
    for service in box():
        for cf in service.config_files:
            if cf.name == name:
                return cf
    raise AssertionError(f"no service renders {name}")


def _ini(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    return parser


# --- order() and levels() -----------------------------------------------------------------------------


def test_order_puts_dependencies_first():
    services = [_svc("conductor", "api", "ironic"), _svc("api", "keystone"), _svc("ironic"),
                _svc("keystone")]
    names = [s.name for s in order(services)]
    assert sorted(names) == ["api", "conductor", "ironic", "keystone"]
    for service in services:
        for dep in service.depends_on:
            assert names.index(dep) < names.index(service.name)


def test_order_keeps_independent_services_in_given_order():
    assert [s.name for s in order([_svc("b"), _svc("a"), _svc("c")])] == ["b", "a", "c"]


def test_order_missing_dependency_is_named():
    with pytest.raises(ValueError, match="'api' depends on 'keystone'"):
        order([_svc("api", "keystone"), _svc("ironic")])


@pytest.mark.parametrize("services", [
    [_svc("a", "b"), _svc("b", "a")],
    [_svc("a", "c"), _svc("b", "a"), _svc("c", "b")],
    [_svc("a", "a")],
])
def test_order_cycle_is_an_error(services):
    with pytest.raises(ValueError, match="circle"):
        order(services)


def test_levels_group_services_that_can_start_at_once():
    services = [_svc("conductor", "api", "ironic"), _svc("api", "keystone"), _svc("ironic"),
                _svc("keystone"), _svc("emulator")]
    grouped = [sorted(s.name for s in group) for group in levels(services)]
    assert grouped == [["emulator", "ironic", "keystone"], ["api"], ["conductor"]]


def test_levels_of_nothing_is_empty():
    assert levels([]) == []


def test_levels_of_the_box():
    grouped = [sorted(s.name for s in group) for group in levels(box())]
    assert grouped == [["ironic", "keystone", "sushy-emulator"], ["teapot-api"],
                       ["teapot-conductor"]]


# --- ini.render() -------------------------------------------------------------------------------------


def test_ini_render_default_first_and_values_formatted():
    text = ini.render({
        "database": {"connection": "sqlite:///x.db", "retries": 3},
        "DEFAULT": {"debug": False, "use_stderr": True, "log_file": None},
        "api": {"hosts": ["a", "b", "c"], "ports": (1, 2), "flag": [True, False]},
    })
    assert text == (
        "[DEFAULT]\ndebug = false\nuse_stderr = true\n\n"
        "[database]\nconnection = sqlite:///x.db\nretries = 3\n\n"
        "[api]\nhosts = a,b,c\nports = 1,2\nflag = true,false\n"
    )


def test_ini_render_drops_none_and_sections_left_empty():
    text = ini.render({"a": {"x": None}, "b": {"y": None, "z": "1"}, "DEFAULT": {}})
    assert text == "[b]\nz = 1\n"
    assert "x" not in text and "[a]" not in text and "DEFAULT" not in text


def test_ini_render_keeps_key_order():
    text = ini.render({"s": {"zeta": 1, "alpha": 2, "mid": 3}})
    assert text.splitlines()[1:4] == ["zeta = 1", "alpha = 2", "mid = 3"]


# --- the box's config files ---------------------------------------------------------------------------


def test_box_has_the_expected_services():
    names = [s.name for s in box()]
    assert names == ["keystone", "ironic", "sushy-emulator", "teapot-api", "teapot-conductor"]


@pytest.mark.parametrize("service", box(), ids=lambda s: s.name)
def test_every_service_renders_its_config_files(ctx, service):
    assert service.command(ctx)  # the command is built from the context
    for cf in service.config_files:
        text = cf.render(ctx)
        assert isinstance(text, str) and text.strip(), cf.name
        assert str(ctx.root) in text or cf.name == "htpasswd", cf.name
    for step in service.bootstrap:
        assert step.argv(ctx)
        assert isinstance(dict(step.env(ctx)), dict)


def test_services_with_config_files_have_them_all():
    files = {s.name: [cf.name for cf in s.config_files] for s in box()}
    assert files == {
        "keystone": ["keystone.conf"], "ironic": ["ironic.conf"],
        "sushy-emulator": ["emulator.conf", "htpasswd"],
        "teapot-api": ["teapot.conf"], "teapot-conductor": ["teapot.conf"],
    }
    assert {config_dir(s) for s in box() if s.name.startswith("teapot-")} == {"teapot"}


def test_keystone_conf(ctx):
    conf = _ini(_file("keystone.conf").render(ctx))
    assert conf["database"]["connection"] == ctx.database_url("keystone")
    assert conf["token"]["provider"] == "fernet"
    assert conf["fernet_tokens"]["key_repository"] == ctx.data_path("keystone", "fernet-keys")
    assert "log_file" not in conf["DEFAULT"]
    assert conf["identity"]["password_hash_rounds"] == "4"  # the box profile
    # several workers and no shared cache: a per-worker cache would accept what another worker
    # deleted or revoked (an application credential, a token)
    assert conf["cache"]["enabled"] == "false" and "backend" not in conf["cache"]


def test_keystone_conf_outside_a_box_keeps_the_hash_rounds(tmp_path):
    conf = _ini(_file("keystone.conf").render(FakeContext(tmp_path, {"profile": "prod"})))
    assert not conf.has_section("identity")


def test_ironic_conf(ctx):
    conf = _ini(_file("ironic.conf").render(ctx))
    default = conf["DEFAULT"]
    assert default["rpc_transport"] == "none"
    assert default["auth_strategy"] == "noauth"
    hardware = default["enabled_hardware_types"].split(",")
    assert "redfish" in hardware and "fake-hardware" in hardware
    assert conf["api"]["host_ip"] == "127.0.0.1"
    assert conf["api"]["port"] == "6385"
    assert conf["database"]["connection"] == ctx.database_url("ironic")
    assert conf["conductor"]["automated_clean"] == "true"


def test_teapot_conf_holds_the_service_password_and_is_secret(ctx):
    cf = _file("teapot.conf")
    assert cf.secret is True
    conf = _ini(cf.render(ctx))
    assert conf["keystone_authtoken"]["password"] == SECRETS["teapot-password"]
    assert conf["keystone_authtoken"]["auth_url"] == "http://127.0.0.1:5000/v3"
    assert conf["database"]["connection"] == ctx.database_url("teapot")
    assert conf["ironic"]["endpoint"] == "http://127.0.0.1:6385"
    assert conf["ironic"]["emulated_deploy"] == "true"
    assert conf["api"]["port"] == "9511"
    assert conf["clusters"]["readiness"] == "provisioned"  # emulated hosts run no Kubernetes
    assert "teapot-password" in ctx.secrets_asked


def _emulator_settings(text: str) -> dict:
    namespace: dict = {}
    exec(compile(text, "emulator.conf", "exec"), {}, namespace)  # sushy-tools reads it as Python
    return namespace


@pytest.mark.parametrize("hosts", [1, 3, 7])
def test_sushy_emulator_conf_defines_one_fake_system_per_host(tmp_path, hosts):
    ctx = FakeContext(tmp_path, {"profile": "box", "hosts": hosts})
    settings = _emulator_settings(_file("emulator.conf").render(ctx))
    systems = settings["SUSHY_EMULATOR_FAKE_SYSTEMS"]
    assert len(systems) == hosts
    macs = [nic["mac"] for system in systems for nic in system["nics"]]
    assert len(macs) == hosts and all(MAC_RE.match(mac) for mac in macs)
    assert len(set(macs)) == hosts
    assert len({system["uuid"] for system in systems}) == hosts
    assert settings["SUSHY_EMULATOR_FAKE_DRIVER"] is True
    assert settings["SUSHY_EMULATOR_LISTEN_PORT"] == 8000
    assert settings["SUSHY_EMULATOR_AUTH_FILE"] == ctx.config_path("sushy-emulator", "htpasswd")


def test_emulated_hosts_are_stable_and_distinct():
    hosts = sushy_emulator.emulated_hosts(300)
    assert hosts == sushy_emulator.emulated_hosts(300)
    assert len({h["mac"] for h in hosts}) == 300
    assert all(MAC_RE.match(h["mac"]) for h in hosts)


def test_htpasswd_is_secret_and_holds_a_bcrypt_hash_of_the_bmc_password(ctx):
    cf = _file("htpasswd")
    assert cf.secret is True
    text = cf.render(ctx)
    assert SECRETS["bmc-password"] not in text
    user, digest = text.strip().split(":", 1)
    assert user == sushy_emulator.BMC_USERNAME
    assert digest.startswith("$2")
    assert bcrypt.checkpw(SECRETS["bmc-password"].encode(), digest.encode())
    assert not bcrypt.checkpw(b"wrong-password", digest.encode())
