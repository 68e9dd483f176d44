"""The Services-of-type-LoadBalancer controller (teapot.servicelb) against a real kube-apiserver:
the node ports the apiserver allocates become listeners, the finalizer comes before the load
balancer, the VIP goes into the Service's status once the load balancer is ACTIVE, Events say what
happened (a UDP port skipped, a load balancer Teapot refused), and a deleted Service has its load
balancer deleted before its finalizer goes.

Teapot's side is an in-memory stand-in of the controller's `Teapot` client here, recording the
calls; the real API, reached with a cluster's application credential, is exercised in
tests/integration/test_tenant_kubernetes.py."""

from __future__ import annotations

import pytest
from kubernetes import client, config

from teapot import servicelb

CLUSTER = "0b5c3d9e-1111-4222-8333-444455556666"


class Teapot(servicelb.Teapot):
    """This cluster's load balancers, in memory: made PENDING_CREATE, ACTIVE when `settle()`."""

    def __init__(self):
        self.cluster = CLUSTER
        self.lbs: dict[str, dict] = {}
        self.calls: list[tuple[str, str]] = []
        self.refuse: set[str] = set()

    def list(self):
        return list(self.lbs.values())

    def get(self, name):
        return self.lbs.get(name)

    def create(self, body):
        self.calls.append(("POST", body["name"]))
        if body["name"] in self.refuse:
            raise servicelb.TeapotError("POST /: 409 your project has no free public address")
        self.lbs[body["name"]] = {**body, "id": body["name"], "vip_address": None,
                                  "provisioning_status": "PENDING_CREATE"}
        return self.lbs[body["name"]]

    def update(self, name, body):
        self.calls.append(("PATCH", name))
        self.lbs[name].update(body)
        return self.lbs[name]

    def delete(self, name):
        self.calls.append(("DELETE", name))
        self.lbs.pop(name, None)

    def settle(self):
        for n, lb in enumerate(self.lbs.values()):
            lb.update(provisioning_status="ACTIVE", vip_address=f"172.31.250.{10 + n}")


@pytest.fixture
def core(api):
    return client.CoreV1Api(config.new_client_from_config(str(api.kubeconfig),
                                                          context=api.context))


def _service(core, namespace: str, name: str, ports: list[dict]):
    return core.create_namespaced_service(namespace, {
        "metadata": {"name": name},
        "spec": {"type": "LoadBalancer", "selector": {"app": name}, "ports": ports}})


def _events(core, namespace: str, name: str) -> dict[str, str]:
    out = {}
    for e in core.list_namespaced_event(namespace).items:
        if e.involved_object.kind == "Service" and e.involved_object.name == name:
            assert e.source.component == "teapot-loadbalancers"
            out[e.reason] = f"{e.type}: {e.message}"
    return out


def test_a_service_gets_its_vip_with_events_and_loses_its_load_balancer_first(core,
                                                                              created_namespace):
    ns = created_namespace
    made = _service(core, ns, "web", [
        {"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080},
        {"name": "dns", "protocol": "UDP", "port": 53}])
    node_port = next(p.node_port for p in made.spec.ports if p.port == 80)
    assert node_port  # allocated by the apiserver
    teapot = Teapot()
    controller = servicelb.Controller(core, teapot)
    name = servicelb.lb_name(CLUSTER, ns, "web")

    controller.full_pass()
    assert teapot.lbs[name]["listeners"] == [{"protocol": "TCP", "port": 80,
                                              "member_port": node_port}]
    shown = core.read_namespaced_service("web", ns)
    assert servicelb.FINALIZER in shown.metadata.finalizers
    assert not (shown.status.load_balancer and shown.status.load_balancer.ingress)
    events = _events(core, ns, "web")
    assert events["UnsupportedProtocol"].startswith("Warning: port 53/UDP")
    assert events["EnsuringLoadBalancer"] == f"Normal: making {name}"

    teapot.settle()
    controller.full_pass()
    controller.full_pass()  # nothing new to say: no second Event, no second call
    shown = core.read_namespaced_service("web", ns)
    assert [x.ip for x in shown.status.load_balancer.ingress] == ["172.31.250.10"]
    assert _events(core, ns, "web")["EnsuredLoadBalancer"] == f"Normal: {name} at 172.31.250.10"
    assert teapot.calls == [("POST", name)]
    assert len([e for e in core.list_namespaced_event(ns).items
                if e.reason == "UnsupportedProtocol"]) == 1

    # deleted: the load balancer goes first, then the finalizer, then the Service
    core.delete_namespaced_service("web", ns)
    controller.sync(core.read_namespaced_service("web", ns))
    assert teapot.calls[-1] == ("DELETE", name) and name not in teapot.lbs
    assert core.read_namespaced_service("web", ns).metadata.deletion_timestamp is not None
    controller.sync(core.read_namespaced_service("web", ns))
    assert not [s for s in core.list_namespaced_service(ns).items if s.metadata.name == "web"]


def test_a_load_balancer_teapot_refuses_is_a_warning_on_the_service(core, created_namespace):
    ns = created_namespace
    _service(core, ns, "shop", [{"protocol": "TCP", "port": 443}])
    teapot = Teapot()
    teapot.refuse.add(servicelb.lb_name(CLUSTER, ns, "shop"))
    controller = servicelb.Controller(core, teapot)
    _, pending = controller.full_pass()
    assert pending
    failed = _events(core, ns, "shop")["SyncLoadBalancerFailed"]
    assert failed.startswith("Warning: POST /: 409") and "no free public address" in failed
    # once Teapot makes it, the Service gets its VIP
    teapot.refuse.clear()
    controller.full_pass()
    teapot.settle()
    _, pending = controller.full_pass()
    assert not pending
    shown = core.read_namespaced_service("shop", ns)
    assert [x.ip for x in shown.status.load_balancer.ingress] == ["172.31.250.10"]


def test_a_load_balancer_in_error_is_said_on_its_service(core, created_namespace):
    ns = created_namespace
    _service(core, ns, "api", [{"protocol": "TCP", "port": 6000}])
    teapot = Teapot()
    controller = servicelb.Controller(core, teapot)
    controller.full_pass()
    lb = teapot.lbs[servicelb.lb_name(CLUSTER, ns, "api")]
    lb.update(provisioning_status="ERROR", status_reason="haproxy: cannot bind socket")
    _, pending = controller.full_pass()
    assert pending
    assert "cannot bind socket" in _events(core, ns, "api")["SyncLoadBalancerFailed"]
