"""Neutron in a box: the service descriptions (`teapot up --with-neutron`), the local target's
databases in MariaDB and its bootstrap after the database server, and the Neutron driver's
checks of its input."""

from __future__ import annotations

import configparser
import time
from pathlib import Path

import pytest
from keystoneauth1 import session as ks_session

from teapot.deploy.secrets import SecretStore
from teapot.deploy.service import Service, Step, levels
from teapot.deploy.services import box, mariadb, neutron
from teapot.deploy.targets.local import LocalContext, LocalTarget
from teapot.drivers.neutron import NeutronError, NeutronNetworks

PORTS = {"keystone": 5000, "ironic": 6385, "sushy-emulator": 8000, "teapot-api": 9511,
         "teapot-conductor": 9512, "mariadb": 13306, "neutron-server": 9696}


def _ctx(tmp_path: Path, databases=("neutron",)) -> LocalContext:
    return LocalContext(tmp_path, PORTS, SecretStore(tmp_path / "secrets.yaml"),
                        settings={"profile": "box", "hosts": 1, "mariadb": list(databases)})


def _ini(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    return parser


def test_neutron_is_off_unless_asked_for():
    assert {"mariadb", "neutron-server"}.isdisjoint(s.name for s in box())
    names = [s.name for s in box(neutron=True)]
    assert names[-2:] == ["mariadb", "neutron-server"]


def test_neutron_starts_after_keystone_and_mariadb():
    grouped = [sorted(s.name for s in level) for level in levels(box(neutron=True))]
    at = {name: i for i, level in enumerate(grouped) for name in level}
    assert at["neutron-server"] > max(at["keystone"], at["mariadb"])
    assert at["mariadb"] == 0  # it needs nothing


def test_databases_named_for_mariadb_are_there_and_the_others_stay_sqlite(tmp_path):
    ctx = _ctx(tmp_path)
    password = ctx.secret("neutron-db-password")
    assert ctx.database_url("neutron") == (
        f"mysql+pymysql://neutron:{password}@127.0.0.1:13306/neutron?charset=utf8")
    assert ctx.database_url("ironic").startswith("sqlite:///")
    assert _ctx(tmp_path, ()).database_url("neutron").startswith("sqlite:///")


def test_box_neutron_conf_needs_no_rabbitmq_and_uses_keystone(tmp_path):
    ctx = _ctx(tmp_path)  # a box's context refuses RabbitMQ: rendering proves none is asked for
    conf = _ini(neutron.neutron_conf(ctx))
    assert conf["DEFAULT"]["transport_url"] == "fake:/"
    assert conf["DEFAULT"]["auth_strategy"] == "keystone"
    assert conf["DEFAULT"]["service_plugins"] == "router"
    assert conf["database"]["connection"] == ctx.database_url("neutron")
    assert conf["keystone_authtoken"]["username"] == "neutron"
    assert conf["keystone_authtoken"]["password"] == ctx.secret("neutron-password")
    assert conf["keystone_authtoken"]["auth_url"] == "http://127.0.0.1:5000/v3"
    ml2 = _ini(neutron.ml2_conf(ctx))
    assert ml2["ml2"]["type_drivers"] == "vlan"
    assert ml2["ml2"]["mechanism_drivers"] == ""
    assert ml2["ml2_type_vlan"]["network_vlan_ranges"] == "physnet1:100:3000"
    paste = _ini(neutron.api_paste_ini(ctx))
    assert "authtoken keystonecontext" in paste["composite:neutronapi_v2_0"]["keystone"]


def test_box_neutron_service_is_the_api_alone_with_its_secrets_in_secret_files(tmp_path):
    service = neutron.box_service()
    assert service.keystone.service_type == "network"
    assert service.depends_on == ("keystone", "mariadb")
    assert {cf.name: cf.secret for cf in service.config_files} == {
        "neutron.conf": True, "ml2_conf.ini": False, "api-paste.ini": False}
    argv = list(service.command(_ctx(tmp_path)))
    assert argv[0] == "uwsgi" and "127.0.0.1:9696" in argv
    assert [s.name for s in service.bootstrap] == ["upgrade heads"]


def test_mariadb_config_binds_to_loopback_and_keeps_its_data_in_the_state_dir(tmp_path):
    ctx = _ctx(tmp_path)
    cnf = _ini(mariadb.my_cnf(ctx))["mysqld"]
    assert (cnf["bind_address"], cnf["port"]) == ("127.0.0.1", "13306")
    assert cnf["datadir"] == str(tmp_path / "data" / "mariadb" / "db")
    assert Path(cnf["socket"]).parent == tmp_path / "data" / "mariadb"
    assert {cf.name: cf.secret for cf in mariadb.SERVICE.config_files} == {
        "my.cnf": False, "init.sql": True}


def test_mariadb_init_sql_makes_each_database_and_its_user_with_its_password(tmp_path):
    ctx = _ctx(tmp_path, ("neutron", "other"))
    sql = mariadb.init_sql(ctx)
    for db in ("neutron", "other"):
        password = ctx.secret(f"{db}-db-password")
        assert f"CREATE DATABASE IF NOT EXISTS `{db}`;" in sql
        assert f"ALTER USER '{db}'@'127.0.0.1' IDENTIFIED BY '{password}';" in sql
        assert f"GRANT ALL PRIVILEGES ON `{db}`.* TO '{db}'@'127.0.0.1';" in sql


def test_mariadb_quotes_what_it_is_given_and_refuses_odd_database_names(tmp_path):
    assert mariadb._quoted("it's\\") == "'it\\'s\\\\'"
    with pytest.raises(ValueError, match="database name 'x`; DROP'"):
        mariadb.init_sql(_ctx(tmp_path, ("x`; DROP",)))


def test_a_database_in_a_server_bootstraps_when_launched_not_when_prepared(tmp_path):
    ctx = _ctx(tmp_path, ("app",))
    marker = tmp_path / "migrated"
    service = Service(
        name="app", description="app", package="", image="app", database="app",
        bootstrap=(Step("migrate", lambda c: ["sh", "-c", f"touch {marker}"]),),
        command=lambda c: ["sh", "-c", f"test -f {marker} && exec sleep 30"])
    target = LocalTarget(ctx)
    try:
        target.prepare(service)
        assert not marker.exists()
        running = target.launch(service)
        assert marker.exists()
        time.sleep(0.2)
        assert running.process.poll() is None  # it found its migrations done
    finally:
        target.stop_all()


def test_a_database_in_sqlite_bootstraps_when_prepared(tmp_path):
    ctx = _ctx(tmp_path, ())
    marker = tmp_path / "migrated"
    service = Service(
        name="app", description="app", package="", image="app", database="app",
        bootstrap=(Step("migrate", lambda c: ["sh", "-c", f"touch {marker}"]),),
        command=lambda c: ["sleep", "30"])
    LocalTarget(ctx).prepare(service)
    assert marker.exists()


@pytest.mark.parametrize(("args", "message"), [
    (("", "teapot-x", 100, "physnet1"), "project_id must be a Keystone project id"),
    (("p1", "", 100, "physnet1"), "network name must be 1 to 255 characters"),
    (("p1", "teapot-x", 0, "physnet1"), "VLAN must be an integer from 1 to 4094, not 0"),
    (("p1", "teapot-x", 4095, "physnet1"), "VLAN must be an integer from 1 to 4094, not 4095"),
    (("p1", "teapot-x", True, "physnet1"), "VLAN must be an integer"),
    (("p1", "teapot-x", "100", "physnet1"), "VLAN must be an integer"),
    (("p1", "teapot-x", 100, " "), "physical_network must be a name"),
])
def test_ensure_names_what_is_wrong_before_asking_neutron(args, message):
    # A session without credentials: any call to Neutron would fail differently.
    networks = NeutronNetworks(ks_session.Session())
    with pytest.raises(NeutronError, match=message):
        networks.ensure(*args)
