"""The OpenStack service descriptions the Kubernetes target runs (`services.kubernetes(settings)`):
rendered with a fake Kubernetes-like Context, checked for what the target relies on, and a few
golden values of the config files they render."""

from __future__ import annotations

import base64
import configparser
import os
import stat
import struct
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from teapot.deploy import settings as settings_mod
from teapot.deploy.service import Service, config_dir, order
from teapot.deploy.services import box, kubernetes
from teapot.deploy.services import keystone as keystone_mod
from teapot.deploy.services import rgw as rgw_mod
from teapot.deploy.services import swift as swift_mod
from teapot.deploy.services import teapot as teapot_mod

SECRET_MARK = "s3cr3t"
DEFAULTS = [
    "galera", "memcached", "rabbitmq", "keystone", "glance-api", "placement-api",
    "nova-api", "nova-conductor", "nova-scheduler", "libvirt", "nova-compute",
    "neutron-server", "neutron-rpc-server", "neutron-periodic-workers", "openvswitch",
    "neutron-openvswitch-agent", "cinder-api", "cinder-scheduler", "cinder-volume",
    "manila-api", "manila-scheduler", "manila-share", "ironic", "horizon",
    "swift-proxy", "swift-storage", "teapot-api", "teapot-conductor",
]
# Files that are not INI (their own syntax), or INI with leading global options.
NOT_INI = {"libvirtd.conf", "qemu.conf", "rabbitmq.conf", "rsyncd.conf"}
# Files a box renders too (with SQLite, no password there): the Kubernetes target keeps every file
# that asked for a secret in a Secret whether or not it is marked.
BOX_FILES = {"keystone.conf", "ironic.conf"}
RGW_YAML = ("services: {rgw: {enabled: true}, swift: {enabled: false}}\n"
            "ceph: {monitors: ['10.0.0.1:6789', '10.0.0.2:6789']}")


class KubeContext:
    """A Context as the Kubernetes target gives one: in-cluster DNS names, ingress host names, MySQL
    on Galera, RabbitMQ, memcached, and recognisable generated secrets (holding SECRET_MARK)."""

    bind_host = "0.0.0.0"

    def __init__(self, settings: Mapping, services: list[Service], root: Path | None = None):
        self._settings = {**settings, "profile": "kubernetes"}
        self.services = {s.name: s for s in services}
        self.root = root  # config and data paths under it, for tests that run what is rendered
        self.secrets: dict[str, str] = {}

    @property
    def settings(self) -> Mapping:
        return self._settings

    @property
    def namespace(self) -> str:
        return self._settings["namespace"]

    def port(self, service: str) -> int:
        port = self.services[service].port  # KeyError: the service is not enabled
        assert port is not None, f"{service} listens on no port"
        return port

    def url(self, service: str) -> str:
        external = self._settings["identity"]["external"]
        if service == "keystone" and external:
            return external["authUrl"].rstrip("/").removesuffix("/v3")
        return f"http://{service}.{self.namespace}.svc:{self.port(service)}"

    def public_url(self, service: str) -> str:
        if service == "keystone" and self._settings["identity"]["external"]:
            return self.url(service)
        ingress = self.services[service].ingress
        return f"https://{ingress}.{self._settings['domain']}" if ingress else self.url(service)

    def config_path(self, service: str, name: str) -> str:
        return f"{self.root or ''}/etc/{service}/{name}"

    def data_path(self, service: str, name: str) -> str:
        return f"{self.root or ''}/var/lib/{service}/{name}"

    def database_url(self, database: str) -> str:
        password = self.secret(f"{database}-db-password")
        return f"mysql+pymysql://{database}:{password}@galera.{self.namespace}.svc:3306/{database}"

    def messaging_url(self, service: str) -> str:
        password = self.secret("rabbitmq-password")
        return f"rabbit://openstack:{password}@rabbitmq.{self.namespace}.svc:5672/"

    def cache_servers(self) -> str | None:
        return f"memcached.{self.namespace}.svc:11211" if "memcached" in self.services else None

    def secret(self, name: str) -> str:
        return self.secrets.setdefault(name, f"{SECRET_MARK}-{name}-{len(self.secrets)}")


def _load(text: str = "") -> tuple[dict, list[Service]]:
    settings = settings_mod.load(text)
    return settings, kubernetes(settings)


def _ctx(text: str = "", root: Path | None = None) -> KubeContext:
    settings, services = _load(text)
    return KubeContext(settings, services, root)


def _service(ctx: KubeContext, name: str) -> Service:
    return ctx.services[name]


def _file(ctx: KubeContext, service: str, name: str) -> str:
    for cf in _service(ctx, service).config_files:
        if cf.name == name:
            return cf.render(ctx)
    raise AssertionError(f"{service} has no config file {name}")


def _ini(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keep the case of keys (paste and Ceph options)
    parser.read_string(text)
    return parser


def _conf(ctx: KubeContext, service: str, name: str) -> configparser.ConfigParser:
    return _ini(_file(ctx, service, name))


# --- the list -------------------------------------------------------------------------------------


def test_defaults_give_every_service_once():
    _, services = _load()
    names = [s.name for s in services]
    assert names == DEFAULTS
    assert len(set(names)) == len(names)


EXTERNAL_YAML = ("identity: {external: {authUrl: 'https://id.example/v3', "
                 "adminCredentialsSecret: x}}")


@pytest.mark.parametrize("text", ["", RGW_YAML, EXTERNAL_YAML])
def test_names_are_unique_and_kubernetes_friendly(text):
    _, services = _load(text)
    names = [s.name for s in services]
    assert len(set(names)) == len(names)
    for name in names:
        assert name.replace("-", "").isalnum() and name.islower() and len(name) <= 63, name


def test_dependencies_are_all_there_and_not_circular():
    _, services = _load()
    ordered = [s.name for s in order(services)]
    assert sorted(ordered) == sorted(DEFAULTS)
    assert ordered.index("galera") < ordered.index("keystone") < ordered.index("nova-api")
    assert ordered.index("nova-api") < ordered.index("nova-compute")


def test_infrastructure_dependencies_follow_the_needs():
    _, services = _load()
    for s in services:
        assert ("galera" in s.depends_on) == bool(s.database), s.name
        assert ("rabbitmq" in s.depends_on) == s.messaging, s.name
        assert ("memcached" in s.depends_on) == s.cache, s.name


def test_messaging_only_for_the_services_that_still_need_rabbitmq():
    _, services = _load()
    talking = {s.name for s in services if s.messaging}
    projects = {s.settings_key for s in services if s.messaging}
    assert projects == {"nova", "neutron", "cinder", "manila"}
    assert "libvirt" not in talking and "openvswitch" not in talking
    assert {"nova-api", "nova-compute", "neutron-openvswitch-agent", "cinder-volume",
            "manila-share"} <= talking


@pytest.mark.parametrize("enabled", [[], ["nova"], ["neutron"], ["cinder"], ["manila"]])
def test_rabbitmq_only_when_an_enabled_service_needs_it(enabled):
    flags = {key: {"enabled": key in enabled} for key in ("nova", "neutron", "cinder", "manila")}
    if "nova" in enabled:  # nova needs neutron; rabbitmq is then there for both
        flags["neutron"] = {"enabled": True}
    settings = settings_mod.load("")
    settings["services"] = {**settings["services"], **flags}
    names = [s.name for s in kubernetes(settings)]
    assert ("rabbitmq" in names) == bool(enabled)
    assert "galera" in names and "memcached" in names


def test_external_identity_leaves_keystone_out():
    ctx = _ctx(EXTERNAL_YAML)
    assert "keystone" not in ctx.services
    assert not [s.name for s in ctx.services.values() if "keystone" in s.depends_on]
    order(list(ctx.services.values()))  # nothing missing
    authtoken = _conf(ctx, "glance-api", "glance-api.conf")["keystone_authtoken"]
    assert authtoken["auth_url"] == "https://id.example/v3"
    assert authtoken["www_authenticate_uri"] == "https://id.example/v3"


def test_disabled_keystone_is_left_out_too():
    _, services = _load("services: {keystone: {enabled: false}}")
    assert "keystone" not in [s.name for s in services]


def test_only_the_first_service_of_a_project_bootstraps_its_database():
    _, services = _load()
    by_name = {s.name: s for s in services}

    def needs(service: Service) -> set[str]:
        out: set[str] = set()
        for dep in service.depends_on:
            out |= {dep} | needs(by_name[dep])
        return out

    by_dir: dict[str, list[Service]] = {}
    for s in services:
        by_dir.setdefault(config_dir(s), []).append(s)
    for directory, group in by_dir.items():
        owners = [s for s in group if s.database]
        assert len(owners) <= 1, directory
        assert sum(1 for s in group if s.bootstrap) <= 1, directory
        if owners:
            assert owners[0] is group[0], directory
            for later in group[1:]:  # started after the database is there
                assert owners[0].name in needs(later), later.name
    assert len([d for d, g in by_dir.items() if len(g) > 1]) >= 5


def test_apis_are_registered_with_official_service_types_and_public_names():
    _, services = _load()
    by_name = {s.name: s for s in services}
    expected = {
        "glance-api": ("image", "image"), "placement-api": ("placement", "placement"),
        "nova-api": ("compute", "compute"), "neutron-server": ("network", "network"),
        "cinder-api": ("block-storage", "volume"),
        "manila-api": ("shared-file-system", "share"),
        "swift-proxy": ("object-store", "object-store"),
    }
    for name, (service_type, ingress) in expected.items():
        service = by_name[name]
        assert service.keystone is not None and service.keystone.service_type == service_type
        assert service.ingress == ingress
        assert service.keystone.password_secret == f"{service.keystone.user}-password"
        assert service.readiness is not None and service.port is not None
    assert by_name["keystone"].ingress == "identity"
    assert by_name["horizon"].ingress == "dashboard"
    assert by_name["ironic"].ingress is None  # no authentication: never published
    assert by_name["teapot-api"].ingress == "teapot"


def test_workloads():
    settings, services = _load("galera: {storage: 50Gi, replicas: 5}\nswift: {storage: 3Ti}\n"
                               "rabbitmq: {storage: 2Gi}")
    by_name = {s.name: s for s in services}
    for name in ("nova-compute", "libvirt"):
        w = by_name[name].workload
        assert (w.kind, w.nodes, w.privileged, w.host_network) == ("DaemonSet", "compute", True,
                                                                   True)
        assert {"/var/lib/nova", "/var/lib/libvirt", "/run/libvirt",
                "/lib/modules"} <= set(w.host_paths)
    for name in ("neutron-openvswitch-agent", "openvswitch"):
        w = by_name[name].workload
        assert (w.kind, w.nodes, w.privileged, w.host_network) == ("DaemonSet", "all", True, True)
        assert "/run/openvswitch" in w.host_paths
    for name, storage in (("galera", "50Gi"), ("swift-storage", "3Ti"), ("rabbitmq", "2Gi")):
        w = by_name[name].workload
        assert (w.kind, w.storage) == ("StatefulSet", storage), name
        assert w.data_dir and w.data_dir.startswith("/"), name
    for name in ("keystone", "nova-api", "neutron-server", "horizon", "swift-proxy"):
        assert by_name[name].workload.kind == "Deployment", name


def test_nova_api_carries_the_cells_and_databases():
    ctx = _ctx()
    api = _service(ctx, "nova-api")
    assert api.database == "nova"
    assert tuple(api.extra["databases"]) == ("nova_api", "nova_cell0")
    assert [s.name for s in api.bootstrap] == ["api_db sync", "map_cell0", "create_cell", "db sync"]
    assert list(api.bootstrap[0].argv(ctx)) == [
        "nova-manage", "--config-file", "/etc/nova/nova.conf", "api_db", "sync"]
    for name in ("nova-conductor", "nova-scheduler", "nova-compute"):
        assert not _service(ctx, name).bootstrap and not _service(ctx, name).database


# --- rendering everything -------------------------------------------------------------------------


def _everything(ctx: KubeContext):
    for service in ctx.services.values():
        yield service, "command", list(service.command(ctx)), dict(service.env(ctx))
        for step in service.bootstrap:
            yield service, f"step {step.name}", list(step.argv(ctx)), dict(step.env(ctx))


@pytest.mark.parametrize("text", ["", RGW_YAML, "services: {cinder: {enabled: false}, "
                                                "manila: {enabled: false}, swift: {enabled: false},"
                                                " horizon: {enabled: false}}"])
def test_every_config_file_renders(text):
    ctx = _ctx(text)
    for service in ctx.services.values():
        for cf in service.config_files:
            rendered = cf.render(ctx)
            assert isinstance(rendered, str) and rendered.strip(), (service.name, cf.name)
            if cf.name.endswith((".conf", ".ini", ".cnf")) and cf.name not in NOT_INI:
                _ini(rendered)  # parses
    for service, what, argv, env in _everything(ctx):
        assert argv and all(isinstance(a, str) and a for a in argv), (service.name, what)
        assert all(isinstance(v, str) for v in env.values()), (service.name, what)


@pytest.mark.parametrize("text", ["", RGW_YAML])
def test_secrets_stay_in_secret_files_and_environment(text):
    """Generated passwords only in config files marked secret (Secrets on Kubernetes) and in the
    environment (the target takes it from the passwords Secret); never in a command line, which
    a Deployment or Job spec shows to whoever can read it."""
    ctx = _ctx(text)
    for service in ctx.services.values():
        for cf in service.config_files:
            before = len(ctx.secrets)
            text = cf.render(ctx)
            if cf.secret or cf.name in BOX_FILES:
                continue
            assert SECRET_MARK not in text and len(ctx.secrets) == before, (service.name, cf.name)
    for service, what, argv, _env in _everything(ctx):
        assert not any(SECRET_MARK in a for a in argv), (service.name, what)
    assert ctx.secrets  # the checks above looked at real secrets


def test_service_users_passwords_are_the_users_secrets():
    ctx = _ctx()
    checked = 0
    for service in ctx.services.values():
        for cf in service.config_files:
            if not cf.name.endswith((".conf", ".ini")) or cf.name in NOT_INI:
                continue
            conf = _ini(cf.render(ctx))
            for section in conf.sections():
                options = conf[section]
                if "username" in options and "password" in options:
                    assert options["password"] == ctx.secret(f"{options['username']}-password")
                    checked += 1
    assert checked >= 10


# --- golden values --------------------------------------------------------------------------------


def test_keystone_conf_uses_mysql_and_memcached():
    ctx = _ctx()
    conf = _conf(ctx, "keystone", "keystone.conf")
    assert conf["database"]["connection"] == ctx.database_url("keystone")
    assert conf["cache"]["backend"] == "dogpile.cache.pymemcache"
    assert conf["cache"]["memcache_servers"] == "memcached.openstack.svc:11211"
    assert conf["cache"]["enabled"] == "true"


def test_keystone_keys_come_from_secrets_and_every_replica_has_the_same():
    ctx = _ctx()
    keystone = _service(ctx, "keystone")
    keys = {cf.name: cf.render(ctx) for cf in keystone.config_files if cf.name != "keystone.conf"}
    assert set(keys) == {"fernet-0", "fernet-1", "credential-0", "credential-1"}
    assert len(set(keys.values())) == 4
    for key in keys.values():
        Fernet(key.encode())  # a valid Fernet key
    assert all(cf.secret for cf in keystone.config_files if cf.name in keys)
    again = {cf.name: cf.render(ctx) for cf in keystone.config_files if cf.name in keys}
    assert again == keys
    assert [s.name for s in keystone.bootstrap] == ["db_sync", "bootstrap"]
    script = keystone.command(ctx)[-1]
    assert "cp /etc/keystone/fernet-1 /var/lib/keystone/fernet-keys/1" in script
    assert "exec gunicorn" in script
    bootstrap = list(keystone.bootstrap[-1].argv(ctx))
    after = {bootstrap[i]: bootstrap[i + 1] for i in range(len(bootstrap) - 1)}
    assert after["--bootstrap-public-url"] == "https://identity.openstack.cluster/v3"
    assert after["--bootstrap-internal-url"] == "http://keystone.openstack.svc:5000/v3"
    # teapot up still creates its keys with keystone-manage.
    box_steps = [s.name for s in keystone_mod.SERVICE.bootstrap]
    assert box_steps[1:3] == ["fernet_setup", "credential_setup"]


def test_nova_conf():
    ctx = _ctx()
    conf = _conf(ctx, "nova-api", "nova.conf")
    region = ctx.settings["region"]
    assert conf["DEFAULT"]["transport_url"] == ctx.messaging_url("nova")
    assert conf["database"]["connection"] == ctx.database_url("nova")
    assert conf["api_database"]["connection"] == ctx.database_url("nova_api")
    placement = conf["placement"]
    assert placement["auth_url"] == "http://keystone.openstack.svc:5000/v3"
    assert placement["username"] == "placement"
    assert placement["password"] == ctx.secret("placement-password")
    assert placement["region_name"] == region
    neutron = conf["neutron"]
    assert neutron["auth_url"] == "http://keystone.openstack.svc:5000/v3"
    assert neutron["username"] == "neutron"
    assert neutron["password"] == ctx.secret("neutron-password")
    assert neutron["region_name"] == region
    assert neutron["endpoint_override"] == "http://neutron-server.openstack.svc:9696"
    assert conf["keystone_authtoken"]["username"] == "nova"
    assert conf["keystone_authtoken"]["memcached_servers"] == ctx.cache_servers()
    assert conf["cinder"]["endpoint_template"] == \
        "http://cinder-api.openstack.svc:8776/v3/%(project_id)s"
    assert conf["wsgi"]["api_paste_config"] == "/etc/nova/api-paste.ini"
    paste = _conf(ctx, "nova-api", "api-paste.ini")
    assert "authtoken" in paste["composite:openstack_compute_api_v21"]["keystone"].split()


def test_nova_conf_without_cinder_names_no_cinder():
    ctx = _ctx("services: {cinder: {enabled: false}}\nregion: Lyon")
    conf = _conf(ctx, "nova-api", "nova.conf")
    assert not conf.has_section("cinder")
    assert conf["neutron"]["region_name"] == "Lyon"


def test_neutron_conf():
    ctx = _ctx()
    conf = _conf(ctx, "neutron-server", "neutron.conf")
    assert conf["database"]["connection"] == ctx.database_url("neutron")
    authtoken = conf["keystone_authtoken"]
    assert authtoken["username"] == "neutron"
    assert authtoken["password"] == ctx.secret("neutron-password")
    assert authtoken["auth_url"] == "http://keystone.openstack.svc:5000/v3"
    assert authtoken["www_authenticate_uri"] == "https://identity.openstack.cluster/v3"
    assert conf["nova"]["username"] == "nova"
    assert conf["DEFAULT"]["transport_url"] == ctx.messaging_url("neutron")
    agent = _conf(ctx, "neutron-openvswitch-agent", "openvswitch_agent.ini")
    assert agent["agent"]["tunnel_types"] == "vxlan"
    env = _service(ctx, "neutron-server").env(ctx)
    assert env["OS_NEUTRON_CONFIG_FILES"] == "neutron.conf;ml2_conf.ini"


def test_api_commands_run_the_upstream_wsgi_modules():
    ctx = _ctx()
    modules = {"glance-api": "glance.wsgi.api:application",
               "placement-api": "placement.wsgi.api:application",
               "nova-api": "nova.wsgi.osapi_compute:application",
               "neutron-server": "neutron.wsgi.api:application",
               "cinder-api": "cinder.wsgi.api:application",
               "manila-api": "manila.wsgi.api:application"}
    for name, module in modules.items():
        argv = list(_service(ctx, name).command(ctx))
        assert argv[0] == "uwsgi"
        assert argv[argv.index("--module") + 1] == module
        assert argv[argv.index("--http-socket") + 1] == f"0.0.0.0:{ctx.port(name)}"


def test_horizon_local_settings():
    ctx = _ctx()
    namespace: dict = {}
    exec(compile(_file(ctx, "horizon", "local_settings.py"), "local_settings.py", "exec"), {},
         namespace)
    assert namespace["OPENSTACK_KEYSTONE_URL"] == "https://identity.openstack.cluster/v3"
    assert namespace["SECRET_KEY"] == ctx.secret("horizon-secret-key")
    assert namespace["CACHES"]["default"]["LOCATION"] == ["memcached.openstack.svc:11211"]
    assert "dashboard.openstack.cluster" in namespace["ALLOWED_HOSTS"]
    assert "*" not in namespace["ALLOWED_HOSTS"]
    assert namespace["CSRF_TRUSTED_ORIGINS"] == ["https://dashboard.openstack.cluster"]


def test_teapot_key_is_shared_on_kubernetes_and_created_in_a_box(tmp_path):
    from tests.unit.test_deploy_services import FakeContext

    ctx = _ctx()
    conf = _conf(ctx, "teapot-api", "teapot.conf")
    assert conf["secrets"]["key_file"] == "/etc/teapot/secret.key"
    for name in ("teapot-api", "teapot-conductor"):
        key = _file(ctx, name, "secret.key")
        Fernet(key.strip().encode())
    box_ctx = FakeContext(tmp_path)
    box_conf = _ini(teapot_mod.teapot_conf(box_ctx))
    assert box_conf["secrets"]["key_file"] == box_ctx.data_path("teapot", "secret.key")
    assert [s.name for s in box()] == ["keystone", "ironic", "sushy-emulator", "teapot-api",
                                       "teapot-conductor"]


def test_ironic_on_kubernetes_only_migrates():
    ctx = _ctx()
    ironic = _service(ctx, "ironic")
    assert [s.name for s in ironic.bootstrap] == ["upgrade"]
    conf = _conf(ctx, "ironic", "ironic.conf")
    assert conf["database"]["connection"] == ctx.database_url("ironic")


# --- infrastructure -------------------------------------------------------------------------------


@pytest.mark.parametrize("replicas", [1, 3, 5])
def test_galera_lists_exactly_its_members(replicas):
    ctx = _ctx(f"galera: {{replicas: {replicas}}}\nnamespace: cloud")
    mysqld = _conf(ctx, "galera", "my.cnf")["mysqld"]
    address = mysqld["wsrep_cluster_address"]
    assert address.startswith("gcomm://")
    members = address.removeprefix("gcomm://").split(",")
    assert members == [f"galera-{i}.galera.cloud.svc" for i in range(replicas)]
    assert mysqld["wsrep_sst_auth"] == f"root:{ctx.secret('galera-root-password')}"
    galera = _service(ctx, "galera")
    assert galera.env(ctx)["MARIADB_ROOT_PASSWORD"] == ctx.secret("galera-root-password")
    assert galera.port == 3306 and galera.workload.kind == "StatefulSet"


@pytest.mark.parametrize("replicas", [1, 3])
def test_rabbitmq_cluster_and_user(replicas):
    ctx = _ctx(f"rabbitmq: {{replicas: {replicas}}}")
    lines = _file(ctx, "rabbitmq", "rabbitmq.conf").splitlines()
    nodes = [line.split(" = ")[1] for line in lines if "classic_config.nodes." in line]
    assert nodes == [f"rabbit@rabbitmq-{i}.rabbitmq.openstack.svc" for i in range(replicas)]
    assert "default_user = openstack" in lines
    assert f"default_pass = {ctx.secret('rabbitmq-password')}" in lines
    assert _service(ctx, "rabbitmq").port == 5672


def test_memcached():
    ctx = _ctx()
    memcached = _service(ctx, "memcached")
    assert memcached.port == 11211 and memcached.image == "memcached"
    argv = list(memcached.command(ctx))
    assert argv[argv.index("--port") + 1] == "11211"


# --- RADOS Gateway and Swift ----------------------------------------------------------------------


def test_rgw_replaces_swift_and_talks_to_the_monitors():
    ctx = _ctx(RGW_YAML)
    assert "rgw" in ctx.services and "swift-proxy" not in ctx.services
    assert "rgw" in _service(ctx, "glance-api").depends_on
    rgw = _service(ctx, "rgw")
    assert rgw.ingress == "object-store" and rgw.keystone.service_type == "object-store"
    conf = _conf(ctx, "rgw", "ceph.conf")
    assert conf["global"]["mon_host"] == "10.0.0.1:6789,10.0.0.2:6789"
    client = conf["client.rgw.teapot"]
    assert client["rgw_keystone_url"] == "http://keystone.openstack.svc:5000"
    assert client["rgw_keystone_admin_password"] == ctx.secret("rgw-password")
    assert client["keyring"] == "/etc/rgw/client.rgw.teapot.keyring"
    assert rgw.extra["secret_files"] == ({"secret": "ceph-admin-keyring", "key": "keyring",
                                          "path": rgw_mod.ADMIN_KEYRING},)
    swift_conf = _ini(_file(ctx, "glance-api", "glance-swift.conf"))
    assert swift_conf["service"]["user"] == "service:glance"


def test_rgw_bootstrap_creates_the_pools_and_users():
    ctx = _ctx(RGW_YAML)
    steps = {s.name: " ".join(s.argv(ctx)) for s in _service(ctx, "rgw").bootstrap}
    for pool, pg in ((".rgw.root", 8), ("default.rgw.buckets.data", 32)):
        assert f"osd pool create {pool} {pg}" in steps[f"pool {pool}"]
        assert "osd pool ls" in steps[f"pool {pool}"]  # created only when missing
    assert steps["user client.rgw.teapot"].endswith(
        "auth import -i /etc/rgw/client.rgw.teapot.keyring")
    keyring = _file(ctx, "rgw", "client.rgw.teapot.keyring")
    assert keyring.splitlines()[0] == "[client.rgw.teapot]"
    assert '\tcaps mon = "allow rw"' in keyring and '\tcaps osd = "allow rwx"' in keyring
    key = keyring.splitlines()[1].split(" = ")[1]
    raw = base64.b64decode(key)
    assert len(raw) == 28 and struct.unpack("<HIIH", raw[:12]) == (1, 0, 0, 16)


def test_rgw_users_from_settings():
    ctx = _ctx("services: {rgw: {enabled: true}, swift: {enabled: false}}\n"
               "ceph: {monitors: ['10.0.0.1:6789'], users: [{name: client.objects, "
               "caps: {mon: 'allow r'}}, {name: client.extra}]}")
    names = [s.name for s in _service(ctx, "rgw").bootstrap]
    assert names[-2:] == ["user client.objects", "user client.extra"]
    assert _conf(ctx, "rgw", "ceph.conf").has_section("client.objects")
    assert list(_service(ctx, "rgw").command(ctx))[-1] == "client.objects"


def test_swift_proxy_and_storage():
    ctx = _ctx("services: {swift: {replicas: 4}}")
    proxy = _conf(ctx, "swift-proxy", "proxy-server.conf")
    pipeline = proxy["pipeline:main"]["pipeline"].split()
    assert pipeline.index("authtoken") < pipeline.index("keystoneauth")
    assert pipeline.index("keystoneauth") < pipeline.index("proxy-server")
    assert proxy["filter:cache"]["memcache_servers"] == ctx.cache_servers()
    assert proxy["filter:authtoken"]["password"] == ctx.secret("swift-password")
    assert _service(ctx, "swift-proxy").port == 8080
    rings = _file(ctx, "swift-proxy", "build-rings.sh")
    hosts = [f"swift-storage-{i}.swift-storage.openstack.svc" for i in range(4)]
    for port in (6200, 6201, 6202):
        for host in hosts:
            assert f"--ip {host} --port {port} " in rings
    assert "create 10 3 1" in rings  # partPower 10, three replicas of four devices
    assert _file(ctx, "swift-storage", "build-rings.sh") == rings
    # Every server and daemon the storage pod starts finds its section in its file.
    script = list(_service(ctx, "swift-storage").command(ctx))[-1]
    started = [line.split()[:2] for line in script.splitlines() if line.startswith("swift-")]
    assert len(started) == 12
    for binary, path in started:
        section = binary.removeprefix("swift-")
        kind, daemon = section.split("-")
        conf = _conf(ctx, "swift-storage", Path(path).name)
        assert conf.has_section(f"app:{section}" if daemon == "server" else section), binary
        assert conf["DEFAULT"]["bind_port"] == str(swift_mod.PORTS[kind])


# --- running what is rendered (with stand-ins for the OpenStack and Ceph commands) ---------------


def _stub(bin_dir: Path, name: str, script: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def _write_config(ctx: KubeContext, service: Service) -> None:
    for cf in service.config_files:
        path = Path(ctx.config_path(config_dir(service), cf.name))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(cf.render(ctx))


def _run(argv: list[str], bin_dir: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **env}
    return subprocess.run(argv, env=environ, capture_output=True, text=True, timeout=60)


def test_nova_cell_steps_read_the_password_from_the_config_and_run_again(tmp_path):
    ctx = _ctx(root=tmp_path)
    api = _service(ctx, "nova-api")
    _write_config(ctx, api)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls"
    cells = tmp_path / "cells"
    _stub(bin_dir, "nova-manage", f"""echo "$@" >> {log}
case "$*" in
  *list_cells*) cat {cells} 2>/dev/null ;;
  *create_cell*) echo "| cell1 | x |" >> {cells} ;;
esac
""")
    steps = {s.name: list(s.argv(ctx)) for s in api.bootstrap}
    for _ in range(2):  # the bootstrap Job runs again after a config change
        for name in ("map_cell0", "create_cell"):
            result = _run(steps[name], bin_dir)
            assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    map_cell0 = [c for c in calls if "map_cell0" in c]
    assert len(map_cell0) == 2
    assert map_cell0[0].endswith(f"--database_connection {ctx.database_url('nova_cell0')}")
    assert sum("create_cell" in c for c in calls) == 1


def test_rgw_pool_step_creates_only_missing_pools(tmp_path):
    ctx = _ctx(RGW_YAML, root=tmp_path)
    rgw = _service(ctx, "rgw")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls"
    _stub(bin_dir, "ceph", f"""echo "$@" >> {log}
case "$*" in
  *"pool ls"*) printf '.rgw.root\\nother\\n' ;;
esac
""")
    for step in rgw.bootstrap:
        if step.name.startswith("pool "):
            result = _run(list(step.argv(ctx)), bin_dir)
            assert result.returncode == 0, result.stderr
    creates = [c for c in log.read_text().splitlines() if "pool create" in c]
    assert len(creates) == 1 and creates[0].endswith("osd pool create default.rgw.buckets.data 32")


@pytest.mark.parametrize(("rebalance_exit", "ok"), [(0, True), (1, True), (2, False)])
def test_swift_rings_script(tmp_path, rebalance_exit, ok):
    ctx = _ctx("services: {swift: {replicas: 2}}", root=tmp_path)
    proxy = _service(ctx, "swift-proxy")
    _write_config(ctx, proxy)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls"
    _stub(bin_dir, "swift-ring-builder", f"""echo "$@" >> {log}
case "$*" in *rebalance*) exit {rebalance_exit} ;; esac
""")
    result = _run(["sh", ctx.config_path("swift", "build-rings.sh"), str(tmp_path / "rings")],
                  bin_dir)
    assert (result.returncode == 0) == ok, result.stderr
    if ok:
        calls = log.read_text().splitlines()
        assert sum(" add " in c for c in calls) == 6  # 2 devices in 3 rings
        assert sum(c.endswith(f"rebalance --seed {swift_mod.SEED}") for c in calls) == 3


@pytest.mark.parametrize(("hostname", "bootstraps"), [("galera-0", True), ("galera-2", False)])
def test_galera_pod_0_bootstraps_when_no_peer_answers(tmp_path, hostname, bootstraps):
    ctx = _ctx("galera: {replicas: 3}\nnamespace: teapot-test-nowhere", root=tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stub(bin_dir, "docker-entrypoint.sh", 'echo "$@"\n')
    result = _run(list(_service(ctx, "galera").command(ctx)), bin_dir, HOSTNAME=hostname)
    assert result.returncode == 0, result.stderr
    assert ("--wsrep-new-cluster" in result.stdout) == bootstraps
    assert "--defaults-extra-file=" in result.stdout
