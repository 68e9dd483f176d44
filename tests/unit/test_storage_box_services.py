"""Storage in a box (`teapot up --storage`): the service descriptions of Ceph, RabbitMQ, Manila,
Cinder and Barbican as a box renders them, their order, and the box's port layout."""

from __future__ import annotations

import configparser
from pathlib import Path

import yaml

from teapot.deploy.box import DEFAULT_PORTS, NEUTRON_PORTS, OCTAVIA_PORTS, STORAGE_PORTS, Box
from teapot.deploy.secrets import SecretStore
from teapot.deploy.service import levels
from teapot.deploy.services import barbican, box, ceph, cinder, infrastructure, manila
from teapot.deploy.targets.local import LocalContext

PORTS = {**DEFAULT_PORTS, **NEUTRON_PORTS, **OCTAVIA_PORTS, **STORAGE_PORTS}
STORAGE = {"epmd", "rabbitmq", "ceph-mon", "ceph-mgr", "ceph-osd", "ceph-mds", "rgw",
           "manila-api", "manila-scheduler", "manila-share", "cinder-api", "cinder-scheduler",
           "cinder-volume", "barbican-api"}


def _ctx(tmp_path: Path) -> LocalContext:
    return LocalContext(tmp_path, PORTS, SecretStore(tmp_path / "secrets.yaml"),
                        settings={"profile": "box", "hosts": 1,
                                  "mariadb": ["manila", "cinder"]})


def _ini(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    return parser


def test_storage_is_off_unless_asked_for_and_brings_mariadb():
    assert STORAGE.isdisjoint(s.name for s in box())
    names = {s.name for s in box(storage=True)}
    assert STORAGE | {"mariadb"} <= names
    assert "neutron-server" not in names


def test_storage_services_start_after_what_they_need():
    at = {s.name: i for i, level in enumerate(levels(box(storage=True))) for s in level}
    assert at["ceph-mon"] < at["ceph-mgr"] < at["ceph-mds"]
    assert at["ceph-osd"] < at["ceph-mds"] < at["manila-share"]
    assert at["ceph-mds"] < at["cinder-volume"]
    assert at["epmd"] < at["rabbitmq"] < at["manila-api"]
    assert at["mariadb"] < at["cinder-api"] and at["keystone"] < at["rgw"]


def test_ceph_conf_binds_loopback_and_keys_are_generated(tmp_path):
    ctx = _ctx(tmp_path)
    conf = _ini(ceph.ceph_conf(ctx))
    assert conf["global"]["mon_host"] == f"[v2:127.0.0.1:{PORTS['ceph-mon']}]"
    assert conf["global"]["public_addr"] == "127.0.0.1"
    first = int(conf["global"]["ms_bind_port_min"])
    assert first == PORTS["ceph-daemons"]
    assert int(conf["global"]["ms_bind_port_max"]) == first + ceph.DAEMON_PORT_COUNT - 1
    assert conf["client.rgw.box"]["rgw_frontends"] == f"beast endpoint=127.0.0.1:{PORTS['rgw']}"
    assert conf["client.rgw.box"]["rgw_keystone_admin_password"] == ctx.secret("rgw-password")
    # Stable across renders (restart-safe), different between boxes.
    assert ceph.ceph_conf(ctx) == ceph.ceph_conf(ctx)
    other = _ctx(tmp_path / "other")
    assert ceph.fsid(other) != ceph.fsid(ctx)
    assert ceph.key(other, "client.cinder") != ceph.key(ctx, "client.cinder")


def test_the_monitor_is_made_with_every_key_and_each_daemon_has_its_own(tmp_path):
    ctx = _ctx(tmp_path)
    files = {cf.name: cf for cf in ceph.CONFIG}
    mon = files["ceph.mon.keyring"].render(ctx)
    for entity in ceph.ENTITIES:
        assert f"[{entity}]" in mon and ceph.key(ctx, entity) in mon
    cinder_keyring = files["ceph.client.cinder.keyring"].render(ctx)
    assert cinder_keyring.count("key = ") == 1
    assert 'caps osd = "profile rbd pool=volumes"' in cinder_keyring
    assert all(cf.secret for name, cf in files.items() if name.endswith(".keyring"))


def test_manila_and_cinder_use_ceph_rabbitmq_and_mariadb(tmp_path):
    ctx = _ctx(tmp_path)
    rabbit = ctx.secret("rabbitmq-password")
    m = _ini(manila.box_manila_conf(ctx))
    assert m["DEFAULT"]["transport_url"] == (
        f"rabbit://openstack:{rabbit}@127.0.0.1:{PORTS['rabbitmq']}/")
    assert m["database"]["connection"].startswith("mysql+pymysql://manila:")
    assert m["cephfsnative"]["cephfs_auth_id"] == "manila"
    assert m["cephfsnative"]["cephfs_conf_path"] == ceph.conf_path(ctx)
    c = _ini(cinder.box_cinder_conf(ctx))
    assert c["database"]["connection"].startswith("mysql+pymysql://cinder:")
    assert c["ceph"]["rbd_user"] == "cinder" and c["ceph"]["rbd_pool"] == "volumes"
    assert c["keystone_authtoken"]["password"] == ctx.secret("cinder-password")


def test_rabbitmq_and_barbican_secrets_are_generated(tmp_path):
    ctx = _ctx(tmp_path)
    conf = infrastructure.box_rabbitmq_conf(ctx)
    assert f"listeners.tcp.default = 127.0.0.1:{PORTS['rabbitmq']}" in conf
    assert f"default_pass = {ctx.secret('rabbitmq-password')}" in conf
    env = infrastructure.BOX_RABBITMQ.env(ctx)
    assert "{127,0,0,1}" in env["RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS"]
    b = _ini(barbican.barbican_conf(ctx))
    assert b["simple_crypto_plugin"]["kek"] == barbican.kek(ctx)
    assert barbican.kek(ctx) != barbican.kek(_ctx(tmp_path / "other"))


def test_catalog_entries_of_the_storage_services():
    services = {s.name: s for s in box(storage=True)}
    assert services["manila-api"].keystone.service_type == "sharev2"
    assert ("share", "manila") in services["manila-api"].keystone.also_types
    assert services["cinder-api"].keystone.service_type == "volumev3"
    assert services["rgw"].keystone.service_type == "object-store"
    assert services["barbican-api"].keystone.service_type == "key-manager"


def test_the_box_remembers_storage_and_lays_its_ports_after_the_others(tmp_path):
    b = Box(tmp_path / "s", hosts=1, port_base=30000, say=lambda line: None, switch=False,
            storage=True)
    assert b.storage
    ports = b.ctx.ports
    assert sorted(ports.values()) == list(range(30000, 30000 + len(PORTS)))
    assert ports["ceph-daemons"] == max(ports.values())  # its range follows
    saved = yaml.safe_load((tmp_path / "s" / "box.yaml").read_text())
    assert saved["storage"] is True
    assert Box(tmp_path / "s", say=lambda line: None, switch=False).storage
    assert not Box(tmp_path / "s", say=lambda line: None, switch=False, storage=False).storage
    assert set(b.ctx.server_databases()) == {"manila", "cinder"}
