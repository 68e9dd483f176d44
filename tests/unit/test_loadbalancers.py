"""Load balancers: the API (two projects, the reader role, administrators, bad input naming the
field and writing nothing), the state machine, and the reconciler driving a data plane that records
what it is asked (the real one, HAProxy in the box, is tested in tests/integration)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from teapot.conductor.hosts import Timing
from teapot.conductor.loadbalancers import LoadBalancerReconciler
from teapot.db.models import Address, LoadBalancer
from teapot.resources import loadbalancer as lbr
from teapot.resources import network as nsm
from tests.unit.conftest import call

LISTENER = [{"protocol": "TCP", "port": 80, "member_port": 8080}]


@pytest.fixture
def lb_client(tmp_path, db_url):
    from starlette.testclient import TestClient

    from teapot import config
    from teapot.api import app as api_app
    from tests.unit.conftest import Tokens

    conf_file = tmp_path / "teapot-lb.conf"
    conf_file.write_text(
        f"[database]\nconnection = {db_url}\n"
        "[keystone_authtoken]\nauth_url = http://127.0.0.1:9/v3\npassword = unused\n"
        "[ironic]\nendpoint = http://127.0.0.1:9\n"
        f"[secrets]\nkey_file = {tmp_path / 'secret.key'}\n"
        "[network]\nenabled = true\nvlan_ranges = 100:110\n"
        f"[loadbalancer]\ndriver = box\nbox_state_dir = {tmp_path}\n")
    with TestClient(api_app.build(config.load(str(conf_file)), validator=Tokens()),
                    base_url="http://teapot") as c:
        yield c


def test_members_create_readers_read_nothing_crosses_projects(lb_client):
    made = call(lb_client, "alice", "POST", "/v1/loadbalancers", json={
        "name": "web", "listeners": LISTENER, "members": [{"address": "10.20.0.2"}]})
    assert made.status_code == 201, made.text
    web = made.json()
    assert (web["provisioning_status"], web["operating_status"]) == ("PENDING_CREATE", "OFFLINE")
    assert web["vip_address"] is None  # the conductor allocates it
    assert web["listeners"] == LISTENER and web["members"] == [
        {"address": "10.20.0.2", "operating_status": "NO_MONITOR"}]
    # on the project's default network, made on first use
    nets = call(lb_client, "alice", "GET", "/v1/networks").json()["networks"]
    assert [n["uuid"] for n in nets] == [web["network_id"]]
    assert call(lb_client, "rita", "GET", f"/v1/loadbalancers/{web['id']}").status_code == 200
    assert [x["id"] for x in call(lb_client, "rita", "GET", "/v1/loadbalancers").json()
            ["loadbalancers"]] == [web["id"]]
    refused = call(lb_client, "rita", "POST", "/v1/loadbalancers",
                   json={"name": "r", "listeners": LISTENER, "members": [{"address": "10.20.0.3"}]})
    assert refused.status_code == 403 and "teapot:loadbalancer:create" in refused.text
    assert call(lb_client, "rita", "DELETE", f"/v1/loadbalancers/{web['id']}").status_code == 403
    # another project: nothing of it
    assert call(lb_client, "bob", "GET", "/v1/loadbalancers").json()["loadbalancers"] == []
    assert call(lb_client, "bob", "GET", f"/v1/loadbalancers/{web['id']}").status_code == 404
    assert call(lb_client, "bob", "DELETE", f"/v1/loadbalancers/{web['id']}").status_code == 404
    # administrators see every project's
    theirs = call(lb_client, "bob", "POST", "/v1/loadbalancers", json={
        "name": "web", "listeners": LISTENER, "members": [{"address": "10.20.0.2"}]}).json()
    seen = {x["id"] for x in call(lb_client, "admin", "GET", "/v1/loadbalancers").json()
            ["loadbalancers"]}
    assert seen == {web["id"], theirs["id"]}
    assert call(lb_client, "alice", "POST", "/v1/loadbalancers", json={
        "name": "web", "listeners": LISTENER, "members": [{"address": "10.20.0.9"}]}
    ).status_code == 409
    assert call(lb_client, "alice", "DELETE", f"/v1/loadbalancers/{web['id']}").status_code == 204
    assert call(lb_client, "alice", "GET", f"/v1/loadbalancers/{web['id']}").json()[
        "provisioning_status"] == "PENDING_DELETE"


@pytest.mark.parametrize("body,field,words", [
    ({"listeners": [{"protocol": "UDP", "port": 53}], "members": [{"address": "10.20.0.2"}]},
     "listeners[0].protocol", "this cloud balances TCP"),
    ({"listeners": LISTENER, "members": [{"address": "10.99.0.2"}]},
     "members[0].address", "not on the load balancer's network (10.20.0.0/24)"),
    ({"listeners": LISTENER, "members": [{"address": "10.20.0.2"}, {"address": "10.20.0.2"}]},
     "members[1].address", "a member already"),
    ({"listeners": [{"port": 80}, {"port": 80}], "members": [{"address": "10.20.0.2"}]},
     "listeners[1].port", "already"),
    ({"listeners": [{"port": 70000}], "members": [{"address": "10.20.0.2"}]},
     "listeners[0].port", ""),
    ({"listeners": LISTENER, "cluster": "nope", "members": []}, "cluster", "no cluster 'nope'"),
    ({"listeners": LISTENER, "network": "nope", "members": [{"address": "10.20.0.2"}]},
     "network", "no network 'nope'"),
])
def test_bad_requests_name_the_field_and_write_nothing(lb_client, sm, body, field, words):
    r = call(lb_client, "alice", "POST", "/v1/loadbalancers", json={"name": "bad", **body})
    assert r.status_code == 400, r.text
    detail = r.json()["errors"][0]["detail"]
    assert detail.startswith(field) and words in detail, detail
    with sm() as session:
        assert session.scalar(select(func.count(LoadBalancer.id))) == 0


def test_an_empty_load_balancer_is_filled_later_by_its_project_only(lb_client, sm):
    """Octavia's order: a load balancer with no listener and no member, then PATCH; each field it
    names replaces the load balancer's; the reader and another project change nothing."""
    made = call(lb_client, "alice", "POST", "/v1/loadbalancers", json={"name": "empty"})
    assert made.status_code == 201, made.text
    lb = made.json()
    assert (lb["listeners"], lb["members"]) == ([], [])
    path = f"/v1/loadbalancers/{lb['id']}"
    change = {"listeners": LISTENER, "members": [{"address": "10.20.0.2"}]}
    assert call(lb_client, "rita", "PATCH", path, json=change).status_code == 403
    assert call(lb_client, "bob", "PATCH", path, json=change).status_code == 404
    with sm() as session:
        assert session.scalars(select(LoadBalancer)).one().spec["listeners"] == []
    changed = call(lb_client, "alice", "PATCH", path, json=change)
    assert changed.status_code == 200, changed.text
    assert changed.json()["provisioning_status"] == "PENDING_UPDATE"
    assert changed.json()["listeners"] == LISTENER
    # only the members: the listeners stay
    again = call(lb_client, "alice", "PATCH", path, json={"members": [{"address": "10.20.0.3"}]})
    assert again.json()["listeners"] == LISTENER
    assert [m["address"] for m in again.json()["members"]] == ["10.20.0.3"]
    with sm() as session:
        row = session.scalars(select(LoadBalancer)).one()
        assert row.generation == 3 and row.spec["members"] == ["10.20.0.3"]
    for bad, field in (({"members": [{"address": "10.99.0.1"}]}, "members[0].address"),
                       ({"listeners": [{"port": 80, "protocol": "UDP"}]}, "listeners[0].protocol"),
                       ({}, "")):
        refused = call(lb_client, "alice", "PATCH", path, json=bad)
        assert refused.status_code == 400, refused.text
        assert field in refused.json()["errors"][0]["detail"]
    with sm() as session:  # nothing half-written
        assert session.scalars(select(LoadBalancer)).one().generation == 3
    assert call(lb_client, "alice", "DELETE", path).status_code == 204
    assert call(lb_client, "alice", "PATCH", path, json=change).status_code == 409


def test_administrators_make_load_balancers_in_other_projects(lb_client):
    """As Octavia's provider driver does for its users; members may not."""
    made = call(lb_client, "admin", "POST", "/v1/loadbalancers",
                json={"name": "for-bob", "project_id": "p-two"})
    assert made.status_code == 201, made.text
    assert made.json()["project_id"] == "p-two"
    assert [x["name"] for x in call(lb_client, "bob", "GET", "/v1/loadbalancers").json()
            ["loadbalancers"]] == ["for-bob"]
    refused = call(lb_client, "alice", "POST", "/v1/loadbalancers",
                   json={"name": "for-bob", "project_id": "p-two"})
    assert refused.status_code == 403 and "teapot:loadbalancer:create_any" in refused.text


def test_without_a_data_plane_the_cloud_says_so(tmp_path, db_url):
    from starlette.testclient import TestClient

    from teapot import config
    from teapot.api import app as api_app
    from tests.unit.conftest import Tokens

    conf_file = tmp_path / "plain.conf"
    conf_file.write_text(
        f"[database]\nconnection = {db_url}\n"
        "[keystone_authtoken]\nauth_url = http://127.0.0.1:9/v3\npassword = unused\n"
        "[ironic]\nendpoint = http://127.0.0.1:9\n"
        f"[secrets]\nkey_file = {tmp_path / 'secret.key'}\n[network]\nenabled = true\n")
    with TestClient(api_app.build(config.load(str(conf_file)), validator=Tokens()),
                    base_url="http://teapot") as c:
        r = call(c, "alice", "POST", "/v1/loadbalancers", json={
            "name": "web", "listeners": LISTENER, "members": [{"address": "10.20.0.2"}]})
        assert r.status_code == 409 and "runs no load balancers" in r.text


def test_the_state_machine():
    base = lbr.View(lbr.PENDING_CREATE, False, 1, 0, False, ("10.20.0.2",), ())
    assert isinstance(lbr.plan(base), lbr.Ensure)
    running = lbr.View(lbr.ACTIVE, False, 1, 1, True, ("10.20.0.2",), ("10.20.0.2",))
    assert isinstance(lbr.plan(running), lbr.Observe)
    import dataclasses

    assert isinstance(lbr.plan(dataclasses.replace(running, running=False)), lbr.Ensure)
    assert isinstance(lbr.plan(dataclasses.replace(running, members=("10.20.0.2", "10.20.0.3"))),
                      lbr.Ensure)
    assert isinstance(lbr.plan(dataclasses.replace(running, deleting=True)), lbr.Remove)
    assert lbr.operating_status({}) == lbr.OFFLINE
    assert lbr.operating_status({"a": True, "b": True}) == lbr.ONLINE
    assert lbr.operating_status({"a": True, "b": False}) == lbr.DEGRADED
    assert lbr.operating_status({"a": False}) == lbr.OP_ERROR


class Recorder:
    """A data plane that keeps what it is asked, and says what the test tells it."""

    def __init__(self):
        self.specs, self.removed, self.up = {}, [], {}

    def ensure(self, spec):
        self.specs[spec.name] = spec

    def remove(self, name):
        self.specs.pop(name, None)
        self.removed.append(name)

    def running(self, name):
        return name in self.specs

    def health(self, name):
        return dict(self.up)

    def public_cidr(self):
        return "172.31.250.0/24"


def test_the_reconciler_allocates_runs_observes_and_removes(lb_client, sm):
    made = call(lb_client, "alice", "POST", "/v1/loadbalancers", json={
        "name": "web", "listeners": LISTENER,
        "members": [{"address": "10.20.0.3"}, {"address": "10.20.0.2"}],
        "health_check": {"interval": 1, "retries": 3}}).json()
    driver = Recorder()
    rec = LoadBalancerReconciler(sm, driver, "c1", Timing(busy=0.1, resync=1, lease=30,
                                                          max_backoff=5),
                                 nsm.Subnet.parse("10.20.0.0/24"))
    with sm() as session:
        lb_id = session.scalar(select(LoadBalancer.id))
    rec.reconcile(lb_id)
    (spec,) = driver.specs.values()
    # the load balancer's own leg takes the top of the pool, hosts take its bottom
    assert spec.public_address == "172.31.250.10" and spec.tenant_address == "10.20.0.254/24"
    assert spec.members == ("10.20.0.2", "10.20.0.3")
    assert (spec.check_interval, spec.check_fall) == (1.0, 3)
    shown = call(lb_client, "alice", "GET", f"/v1/loadbalancers/{made['id']}").json()
    assert (shown["provisioning_status"], shown["vip_address"]) == ("ACTIVE", "172.31.250.10")
    driver.up = {"10.20.0.2": True, "10.20.0.3": False}
    rec.reconcile(lb_id)
    shown = call(lb_client, "alice", "GET", f"/v1/loadbalancers/{made['id']}").json()
    assert shown["operating_status"] == "DEGRADED"
    assert {m["address"]: m["operating_status"] for m in shown["members"]} == {
        "10.20.0.2": "ONLINE", "10.20.0.3": "ERROR"}
    # a data plane that died is made again
    driver.specs.clear()
    rec.reconcile(lb_id)
    assert list(driver.specs) == [spec.name]
    call(lb_client, "alice", "DELETE", f"/v1/loadbalancers/{made['id']}")
    rec.reconcile(lb_id)
    assert driver.removed == [spec.name]
    with sm() as session:
        assert session.scalar(select(func.count(LoadBalancer.id))) == 0
        assert session.scalar(select(func.count(Address.id))) == 0


def test_a_pair_gets_addresses_for_each_instance_and_keeps_its_topology(lb_client, sm):
    made = call(lb_client, "alice", "POST", "/v1/loadbalancers", json={
        "name": "ha", "listeners": LISTENER, "topology": "ACTIVE_STANDBY",
        "members": [{"address": "10.20.0.2"}]}).json()
    assert made["topology"] == "ACTIVE_STANDBY"
    single = call(lb_client, "alice", "POST", "/v1/loadbalancers",
                  json={"name": "one", "listeners": LISTENER}).json()
    assert single["topology"] == "SINGLE"
    # chosen at create, kept for life: an update naming it is refused and changes nothing
    bad = call(lb_client, "alice", "PATCH", f"/v1/loadbalancers/{made['id']}",
               json={"topology": "SINGLE"})
    assert bad.status_code == 400 and "topology" in bad.text
    driver = Recorder()
    rec = LoadBalancerReconciler(sm, driver, "c1", Timing(busy=0.1, resync=1, lease=30,
                                                          max_backoff=5),
                                 nsm.Subnet.parse("10.20.0.0/24"))
    with sm() as session:
        ids = dict(session.execute(select(LoadBalancer.name, LoadBalancer.id)).all())
    rec.reconcile(ids["ha"])
    (spec,) = driver.specs.values()
    # the VIPs and each instance's own addresses, all different, from the top of the pool
    assert spec.tenant_address == "10.20.0.254/24" and spec.public_address == "172.31.250.10"
    assert [(p.tenant_address, p.public_address) for p in spec.peers] == [
        ("10.20.0.253/24", "172.31.250.11"), ("10.20.0.252/24", "172.31.250.12")]
    rec.reconcile(ids["one"])
    assert driver.specs["l" + str(ids["one"])].peers == ()
    assert call(lb_client, "bob", "GET", f"/v1/loadbalancers/{made['id']}").status_code == 404
    call(lb_client, "alice", "DELETE", f"/v1/loadbalancers/{made['id']}")
    rec.reconcile(ids["ha"])
    with sm() as session:  # the pair's six addresses go with it; the single's two stay
        assert session.scalar(select(func.count(Address.id))) == 2


def test_a_clusters_credential_reaches_only_its_own_load_balancers():
    from teapot.api.auth import allows

    rules = tuple(lbr.access_rules("c-1", "container-infra"))
    for method, path in (("GET", "/v1/clusters/c-1/loadbalancers"),
                         ("POST", "/v1/clusters/c-1/loadbalancers"),
                         ("PATCH", "/v1/clusters/c-1/loadbalancers/k8s-web"),
                         ("DELETE", "/v1/clusters/c-1/loadbalancers/k8s-web")):
        assert allows(rules, "container-infra", method, path), (method, path)
    for method, path in (("GET", "/v1/clusters/c-2/loadbalancers"),
                         ("GET", "/v1/loadbalancers"),
                         ("PATCH", "/v1/loadbalancers/k8s-web"),
                         ("DELETE", "/v1/clusters/c-1"),
                         ("GET", "/v1/clusters/c-1/loadbalancers/x/y")):
        assert not allows(rules, "container-infra", method, path), (method, path)
    with pytest.raises(ValueError):
        lbr.access_rules("*", "container-infra")


def test_the_service_controller_add_on_reads_its_secret_only():
    from teapot.drivers.bootstrap import service_loadbalancers as addon

    cfg = addon.Config("http://keystone:5000/v3", "RegionOne", "c-1", "cred-id", "cred-secret")
    assert "cred-secret" not in repr(cfg)
    objects = addon.objects(cfg)
    secret = next(o for o in objects if o["kind"] == "Secret")
    assert secret["stringData"]["OS_APPLICATION_CREDENTIAL_SECRET"] == "cred-secret"
    assert secret["stringData"]["TEAPOT_CLUSTER_UUID"] == "c-1"
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": secret["metadata"]["name"]}}]
    assert "cred-secret" not in str(deployment)
    with pytest.raises(ValueError, match="application credential"):
        addon.Config("http://keystone:5000/v3", "RegionOne", "c-1", "cred-id", "")


def test_the_service_controller_balances_tcp_ports_to_node_ports():
    from kubernetes import client

    from teapot import servicelb

    service = client.V1Service(
        metadata=client.V1ObjectMeta(name="web", namespace="shop"),
        spec=client.V1ServiceSpec(type="LoadBalancer", ports=[
            client.V1ServicePort(port=80, node_port=30080, protocol="TCP"),
            client.V1ServicePort(port=53, node_port=30053, protocol="UDP"),
            client.V1ServicePort(port=443, node_port=30443)]))
    want, skipped = servicelb.listeners(service)
    assert want == [{"protocol": "TCP", "port": 80, "member_port": 30080},
                    {"protocol": "TCP", "port": 443, "member_port": 30443}]
    assert len(skipped) == 1 and "53/UDP" in skipped[0]
    assert servicelb.wanted(service)
    service.spec.load_balancer_class = "example.com/other"
    assert not servicelb.wanted(service)
    name = servicelb.lb_name("0a1b2c3d-0000-4000-8000-000000000000", "shop", "web")
    assert name == "k8s-0a1b2c3d-shop-web" and name.startswith(
        servicelb.prefix("0a1b2c3d-0000-4000-8000-000000000000"))


def test_services_of_type_loadbalancer_are_asked_for_by_magnums_label():
    from teapot.resources.errors import ValidationError

    assert not lbr.services_wanted({}) and not lbr.services_wanted(None)
    assert lbr.services_wanted({"cloud_provider_enabled": "True"})
    assert not lbr.services_wanted({"cloud_provider_enabled": "false"})
    with pytest.raises(ValidationError, match="labels.cloud_provider_enabled"):
        lbr.services_wanted({"cloud_provider_enabled": "maybe"})
