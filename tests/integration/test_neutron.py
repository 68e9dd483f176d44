"""Tenant networks shared with a real Neutron: `teapot up --with-neutron` runs Neutron's API (ML2,
VLAN provider networks, no agents) on the box's MariaDB, and Teapot's Neutron driver registers a
tenant VLAN there, as Teapot's service user.

The demo project sees its network with the real `openstack` CLI and attaches a router to it;
another project neither sees it nor attaches to it; ensuring twice (or at once from two threads)
leaves one network; removing it removes the network and its RBAC policies.
"""

from __future__ import annotations

import json
import subprocess
import threading
import uuid

import pytest
import yaml
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

from teapot.deploy import keystone_setup
from teapot.drivers.neutron import NeutronError, NeutronNetworks

from .conftest import VENV_BIN, Box, _free_base, wait_for

pytestmark = pytest.mark.integration

OPENSTACK = str(VENV_BIN / "openstack")
PHYSNET = "physnet1"
BOX_PORTS = 7  # the five services of a box, MariaDB and Neutron



@pytest.fixture(scope="module")
def nbox(tmp_path_factory):
    b = Box(tmp_path_factory.mktemp("neutron-box"), hosts=1, port_base=_free_base(BOX_PORTS),
            args=("--with-neutron",))
    try:
        b.start(timeout=600)
        yield b
    finally:
        b.stop()


def _session(box: Box, user: str, password: str, project: str) -> ks_session.Session:
    return ks_session.Session(auth=v3.Password(
        auth_url=box.url("keystone") + "/v3", username=user, password=password,
        project_name=project, user_domain_name="Default", project_domain_name="Default"))


@pytest.fixture(scope="module")
def teapot_session(nbox):
    return _session(nbox, "teapot", nbox.secret("teapot-password"), "service")


@pytest.fixture(scope="module")
def networks(teapot_session):
    return NeutronNetworks(teapot_session)


@pytest.fixture(scope="module")
def demo_project(nbox):
    return _session(nbox, "demo", nbox.cloud_auth("teapot-demo")["password"], "demo") \
        .get_project_id()


@pytest.fixture(scope="module")
def other_cloud(nbox, tmp_path_factory):
    """A second project with a member, and a clouds.yaml (0600) for it: cloud `other`."""
    password = uuid.uuid4().hex
    conn = keystone_setup.admin_connection(nbox.url("keystone") + "/v3",
                                           nbox.secret("admin-password"))
    keystone_setup.ensure_user(conn, "other-user", password, "other", ["member"])
    clouds = yaml.safe_load(nbox.clouds.read_text())
    clouds["clouds"]["other"] = {**clouds["clouds"]["teapot-demo"], "auth": {
        **clouds["clouds"]["teapot-demo"]["auth"], "username": "other-user",
        "password": password, "project_name": "other"}}
    path = tmp_path_factory.mktemp("other") / "clouds.yaml"
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(clouds))
    return path


def cli(box: Box, cloud: str, *args: str, clouds=None, check: bool = True):
    """The real `openstack` CLI; JSON output parsed when asked for with -f json."""
    env = box.env()
    if clouds is not None:
        env["OS_CLIENT_CONFIG_FILE"] = str(clouds)
    result = subprocess.run([OPENSTACK, "--os-cloud", cloud, *args], capture_output=True,
                            text=True, env=env, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"openstack {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout}\n{result.stderr}")
    if check and "json" in args:
        return json.loads(result.stdout)
    return result


def _rbac(networks: NeutronNetworks, network_id: str) -> list[tuple[str, str]]:
    return sorted((p.action, p.target_project_id)
                  for p in networks.conn.network.rbac_policies(object_id=network_id))


def _named(networks: NeutronNetworks, name: str) -> list:
    return list(networks.conn.network.networks(name=name))


def test_the_catalog_has_neutron_and_teapot_may_make_provider_networks(teapot_session,
                                                                       networks):
    assert NeutronNetworks.available(teapot_session)
    networks.check_admin()  # Teapot's service user holds the admin role
    roles = teapot_session.auth.get_access(teapot_session).role_names
    assert {"admin", "service"} <= set(roles)


def test_demo_sees_its_network_and_attaches_a_router(nbox, networks, demo_project):
    name = f"teapot-{uuid.uuid4()}"
    network_id = networks.ensure(demo_project, name, 2001, PHYSNET)

    shown = cli(nbox, "teapot-admin", "network", "show", network_id, "-f", "json")
    assert (shown["provider:network_type"], shown["provider:physical_network"],
            shown["provider:segmentation_id"]) == ("vlan", PHYSNET, 2001)
    assert shown["shared"] is False  # not shared with everyone
    assert _rbac(networks, network_id) == [("access_as_shared", demo_project)]

    listed = cli(nbox, "teapot-demo", "network", "list", "-f", "json")
    assert [n["ID"] for n in listed if n["Name"] == name] == [network_id]

    subnet = cli(nbox, "teapot-demo", "subnet", "create", "--network", network_id,
                 "--subnet-range", "10.250.0.0/24", "--gateway", "10.250.0.254",
                 "--no-dhcp", f"{name}-subnet", "-f", "json")
    router = cli(nbox, "teapot-demo", "router", "create", f"{name}-router", "-f", "json")
    cli(nbox, "teapot-demo", "router", "add", "subnet", router["id"], subnet["id"])
    ports = cli(nbox, "teapot-demo", "port", "list", "--router", router["id"], "-f", "json")
    assert [(p["Fixed IP Addresses"][0]["subnet_id"], p["Fixed IP Addresses"][0]["ip_address"])
            for p in ports] == [(subnet["id"], "10.250.0.254")]


def test_another_project_neither_sees_nor_attaches(nbox, networks, demo_project, other_cloud):
    name = f"teapot-{uuid.uuid4()}"
    network_id = networks.ensure(demo_project, name, 2002, PHYSNET)
    subnet = cli(nbox, "teapot-demo", "subnet", "create", "--network", network_id,
                 "--subnet-range", "10.251.0.0/24", "--no-dhcp", f"{name}-subnet", "-f", "json")

    listed = cli(nbox, "other", "network", "list", "-f", "json", clouds=other_cloud)
    assert network_id not in [n["ID"] for n in listed]
    shown = cli(nbox, "other", "network", "show", network_id, clouds=other_cloud, check=False)
    assert shown.returncode != 0 and "No Network found" in shown.stderr

    router = cli(nbox, "other", "router", "create", f"{name}-intruder", "-f", "json",
                 clouds=other_cloud)
    attach = cli(nbox, "other", "router", "add", "subnet", router["id"], subnet["id"],
                 clouds=other_cloud, check=False)
    assert attach.returncode != 0, attach.stdout
    port = cli(nbox, "other", "port", "create", "--network", network_id, f"{name}-intruder",
               clouds=other_cloud, check=False)
    assert port.returncode != 0, port.stdout
    owners = {p.project_id for p in networks.conn.network.ports(network_id=network_id)}
    assert owners <= {demo_project}


def test_only_the_owning_project_keeps_access(nbox, networks, demo_project, other_cloud):
    """A project may share a network it owns; Teapot's next ensure() takes that back."""
    name = f"teapot-{uuid.uuid4()}"
    network_id = networks.ensure(demo_project, name, 2003, PHYSNET)
    other_project = _session(nbox, "other-user", yaml.safe_load(other_cloud.read_text())
                             ["clouds"]["other"]["auth"]["password"], "other").get_project_id()
    cli(nbox, "teapot-demo", "network", "rbac", "create", "--type", "network",
        "--action", "access_as_shared", "--target-project", other_project, network_id)
    listed = cli(nbox, "other", "network", "list", "-f", "json", clouds=other_cloud)
    assert network_id in [n["ID"] for n in listed]

    assert networks.ensure(demo_project, name, 2003, PHYSNET) == network_id
    assert _rbac(networks, network_id) == [("access_as_shared", demo_project)]
    listed = cli(nbox, "other", "network", "list", "-f", "json", clouds=other_cloud)
    assert network_id not in [n["ID"] for n in listed]


def test_ensure_twice_or_at_once_makes_one_network(networks, demo_project):
    name = f"teapot-{uuid.uuid4()}"
    first = networks.ensure(demo_project, name, 2004, PHYSNET)
    assert networks.ensure(demo_project, name, 2004, PHYSNET) == first
    assert [n.id for n in _named(networks, name)] == [first]
    assert _rbac(networks, first) == [("access_as_shared", demo_project)]

    name = f"teapot-{uuid.uuid4()}"
    ids: list[str] = []
    errors: list[Exception] = []

    def ensure():
        try:
            ids.append(networks.ensure(demo_project, name, 2005, PHYSNET))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=ensure) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert len(set(ids)) == 1 and len(ids) == 3
    assert [n.id for n in _named(networks, name)] == ids[:1]
    assert _rbac(networks, ids[0]) == [("access_as_shared", demo_project)]


def test_a_vlan_in_use_or_a_changed_vlan_is_refused_by_name(networks, demo_project):
    name = f"teapot-{uuid.uuid4()}"
    network_id = networks.ensure(demo_project, name, 2006, PHYSNET)
    with pytest.raises(NeutronError, match=f"VLAN 2006 on physical network {PHYSNET} is "
                                           f"already in use by network {network_id}"):
        networks.ensure(demo_project, f"teapot-{uuid.uuid4()}", 2006, PHYSNET)
    with pytest.raises(NeutronError, match="exists with VLAN 2006 \\(not 2007\\)"):
        networks.ensure(demo_project, name, 2007, PHYSNET)
    with pytest.raises(NeutronError, match="failed: 400: .*physnet-unknown"):
        networks.ensure(demo_project, f"teapot-{uuid.uuid4()}", 2008, "physnet-unknown")


def test_remove_takes_the_network_and_its_rbac(nbox, networks, demo_project):
    name = f"teapot-{uuid.uuid4()}"
    network_id = networks.ensure(demo_project, name, 2009, PHYSNET)
    subnet = cli(nbox, "teapot-demo", "subnet", "create", "--network", network_id,
                 "--subnet-range", "10.252.0.0/24", "--no-dhcp", f"{name}-subnet", "-f", "json")
    router = cli(nbox, "teapot-demo", "router", "create", f"{name}-router", "-f", "json")
    cli(nbox, "teapot-demo", "router", "add", "subnet", router["id"], subnet["id"])
    assert _rbac(networks, network_id)

    assert networks.remove(name) is True
    assert _named(networks, name) == []
    assert _rbac(networks, network_id) == []
    shown = cli(nbox, "teapot-admin", "network", "show", network_id, check=False)
    assert shown.returncode != 0
    # the project's router stays, without its interface on the network that went away
    assert cli(nbox, "teapot-demo", "port", "list", "--router", router["id"], "-f", "json") == []
    assert networks.remove(name) is False
    # the VLAN is free again
    again = networks.ensure(demo_project, name, 2009, PHYSNET)
    assert again != network_id
    assert networks.remove(name) is True


def test_a_teapot_network_is_a_neutron_network_of_its_project_until_deleted(nbox, networks,
                                                                            other_cloud):
    """Through Teapot's API and conductor: demo's tenant network appears in demo's
    `openstack network list` on its VLAN, attachable by a router, invisible to another project;
    deleting it in Teapot removes it from Neutron."""
    import httpx



    demo = _session(nbox, "demo", nbox.cloud_auth("teapot-demo")["password"], "demo")
    api = nbox.url("teapot-api") + "/v1/networks"
    headers = {"X-Auth-Token": demo.get_token()}
    made = httpx.post(api, json={"name": "shared-with-neutron"}, headers=headers, timeout=30)
    assert made.status_code == 201, made.text
    network = wait_for(lambda: (n := httpx.get(f"{api}/{made.json()['uuid']}", headers=headers,
                                                timeout=30).json())["status"] == "active" and n,
                       timeout=120, what="the network active in Teapot and Neutron")
    neutron_id = network["neutron_network_id"]
    admin = _session(nbox, "admin", nbox.cloud_auth("teapot-admin")["password"], "admin")
    vlan = httpx.get(f"{api}/{network['uuid']}", headers={"X-Auth-Token": admin.get_token()},
                     timeout=30).json()["vlan_id"]
    shown = cli(nbox, "teapot-admin", "network", "show", neutron_id, "-f", "json")
    assert shown["provider:segmentation_id"] == vlan and shown["project_id"] == demo.get_project_id()
    listed = cli(nbox, "teapot-demo", "network", "list", "-f", "json")
    assert neutron_id in [n["ID"] for n in listed]
    subnet = cli(nbox, "teapot-demo", "subnet", "create", "--network", neutron_id,
                 "--subnet-range", "10.251.0.0/24", "--no-dhcp", "tp-subnet", "-f", "json")
    router = cli(nbox, "teapot-demo", "router", "create", "tp-router", "-f", "json")
    cli(nbox, "teapot-demo", "router", "add", "subnet", router["id"], subnet["id"])
    theirs = cli(nbox, "other", "network", "list", "-f", "json", clouds=other_cloud)
    assert neutron_id not in [n["ID"] for n in theirs]

    assert httpx.delete(f"{api}/{network['uuid']}", headers=headers, timeout=30).status_code == 204
    wait_for(lambda: httpx.get(f"{api}/{network['uuid']}", headers=headers,
                               timeout=30).status_code == 404,
             timeout=120, what="the network gone from Teapot")
    assert _named(networks, f"teapot-{network['uuid']}") == []


def test_neutron_is_remembered_until_turned_off(nbox):
    """Last: restarts the box. Without a flag it comes back with Neutron; --without-neutron
    takes Neutron and its catalog entry away."""
    nbox.stop()
    nbox.args = ()
    nbox.start(timeout=600)
    assert "neutron-server" in nbox.child_pids() and "mariadb" in nbox.child_pids()
    session = _session(nbox, "teapot", nbox.secret("teapot-password"), "service")
    assert NeutronNetworks.available(session)

    nbox.stop()
    nbox.args = ("--without-neutron",)
    nbox.start(timeout=600)
    assert not {"neutron-server", "mariadb"} & set(nbox.child_pids())
    session = _session(nbox, "teapot", nbox.secret("teapot-password"), "service")
    assert not NeutronNetworks.available(session)
    assert yaml.safe_load((nbox.state_dir / "box.yaml").read_text())["neutron"] is False

