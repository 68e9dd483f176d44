"""The controller a cluster runs (its add-on, drivers/bootstrap/service_loadbalancers.py) that
turns its Services of type LoadBalancer into Teapot load balancers, as cloud-provider-openstack's
does with Octavia:

- each such Service gets the load balancer `k8s-<cluster uuid prefix>-<namespace>-<name>` below
  /v1/clusters/{uuid}/loadbalancers, whose members are the cluster's hosts: one listener per TCP
  port of the Service, sending to its node port (other protocols are skipped, with a Warning
  Event on the Service);
- the Service carries the finalizer `teapot.openstack.org/loadbalancer` while its load balancer
  exists; a changed port list is a PATCH (the VIP stays); once ACTIVE, the VIP is written into the
  Service's `status.loadBalancer.ingress`;
- a Service deleted, or no longer of type LoadBalancer, has its load balancer deleted, and then its
  finalizer and ingress removed; a load balancer of this controller's naming whose Service is gone
  is deleted at the next full pass;
- it records Events on the Service as Kubernetes' own service controller does
  (EnsuringLoadBalancer, EnsuredLoadBalancer, DeletingLoadBalancer, DeletedLoadBalancer, and the
  Warnings SyncLoadBalancerFailed and UnsupportedProtocol), each once while it says the same.

It lists every Service, then watches them (the Kubernetes client) and makes a full pass again every
`--resync` seconds, so nothing missed in a broken watch stays wrong for long. It talks to Teapot
with keystoneauth1 as the cluster's application credential (OS_* in its environment), whose access
rules reach only this cluster's load balancers; TEAPOT_URL, or the catalog's container-infra
endpoint, is Teapot. Services with a `spec.loadBalancerClass` are another controller's.

    python3 -m teapot.servicelb [--kubeconfig PATH] [--resync 30] [--once]
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import sys
import time

from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

LOG = logging.getLogger("teapot.servicelb")
FINALIZER = "teapot.openstack.org/loadbalancer"
SERVICE_TYPE = "container-infra"


class TeapotError(Exception):
    pass


class Teapot:
    """This cluster's load balancers in Teapot's API, as the cluster's credential."""

    def __init__(self, session: ks_session.Session, url: str, cluster: str):
        self.session, self.cluster = session, cluster
        self.base = f"{url.rstrip('/').removesuffix('/v1')}/v1/clusters/{cluster}/loadbalancers"

    @classmethod
    def from_env(cls, env=os.environ) -> Teapot:
        auth = v3.ApplicationCredential(
            auth_url=env["OS_AUTH_URL"], application_credential_id=env["OS_APPLICATION_CREDENTIAL_ID"],
            application_credential_secret=env["OS_APPLICATION_CREDENTIAL_SECRET"])
        session = ks_session.Session(auth=auth, timeout=30)
        url = env.get("TEAPOT_URL") or session.get_endpoint(
            service_type=SERVICE_TYPE, interface="public", region_name=env.get("OS_REGION_NAME"))
        if not url:
            raise TeapotError(f"no {SERVICE_TYPE} endpoint in the catalog; set TEAPOT_URL")
        return cls(session, url, env["TEAPOT_CLUSTER_UUID"])

    def _call(self, method: str, path: str = "", missing_ok: bool = False, **kw):
        """The JSON answer; None for a 404 when `missing_ok` (and for an empty answer)."""
        response = self.session.request(self.base + path, method, raise_exc=False,
                                        headers={"Accept": "application/json"}, **kw)
        if missing_ok and response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise TeapotError(f"{method} {path or '/'}: {response.status_code} "
                              f"{response.text[:300]}")
        return response.json() if response.content else None

    def list(self) -> list[dict]:
        return self._call("GET")["loadbalancers"]

    def get(self, name: str) -> dict | None:
        return self._call("GET", f"/{name}", missing_ok=True)

    def create(self, body: dict) -> dict:
        return self._call("POST", json=body)

    def update(self, name: str, body: dict) -> dict:
        return self._call("PATCH", f"/{name}", json=body)

    def delete(self, name: str) -> None:
        self._call("DELETE", f"/{name}", missing_ok=True)


def lb_name(cluster: str, namespace: str, name: str) -> str:
    return f"{prefix(cluster)}{namespace}-{name}"


def prefix(cluster: str) -> str:
    return f"k8s-{cluster.replace('-', '')[:8]}-"


def listeners(service) -> tuple[list[dict], list[str]]:
    """The Service's TCP ports as listeners to its node ports, and what was skipped, said."""
    out, skipped = [], []
    for port in service.spec.ports or ():
        if (port.protocol or "TCP") != "TCP":
            skipped.append(f"port {port.port}/{port.protocol}: Teapot's load balancers balance "
                           "TCP only; this port gets no listener")
        elif port.node_port:
            out.append({"protocol": "TCP", "port": port.port, "member_port": port.node_port})
    return out, skipped


def wanted(service) -> bool:
    return (service.spec.type == "LoadBalancer" and service.metadata.deletion_timestamp is None
            and not service.spec.load_balancer_class)


class Controller:
    COMPONENT = "teapot-loadbalancers"

    def __init__(self, core: client.CoreV1Api, teapot: Teapot):
        self.core, self.teapot = core, teapot
        self.said: dict[tuple[str, str], str] = {}  # (Service uid, reason) → the last message

    def event(self, service, warning: bool, reason: str, message: str) -> None:
        """An Event on the Service (best effort: a refusal is logged), unless this process said
        the same last time."""
        meta = service.metadata
        key = (meta.uid or f"{meta.namespace}/{meta.name}", reason)
        if self.said.get(key) == message:
            return
        self.said[key] = message
        (LOG.warning if warning else LOG.info)("service %s/%s: %s: %s", meta.namespace,
                                               meta.name, reason, message)
        now = datetime.datetime.now(datetime.UTC)
        try:
            self.core.create_namespaced_event(meta.namespace, client.CoreV1Event(
                metadata=client.V1ObjectMeta(generate_name=f"{meta.name}."),
                involved_object=client.V1ObjectReference(
                    api_version="v1", kind="Service", namespace=meta.namespace, name=meta.name,
                    uid=meta.uid, resource_version=meta.resource_version),
                reason=reason, message=message, type="Warning" if warning else "Normal",
                source=client.V1EventSource(component=self.COMPONENT), count=1,
                first_timestamp=now, last_timestamp=now, reporting_component=self.COMPONENT,
                reporting_instance=os.environ.get("HOSTNAME", self.COMPONENT)))
        except ApiException as e:
            LOG.warning("service %s/%s: event %s not recorded: %s", meta.namespace, meta.name,
                        reason, e.reason)

    def failed(self, service, error: Exception) -> None:
        self.event(service, True, "SyncLoadBalancerFailed", str(error)[:1000])

    def sync(self, service) -> bool:
        """One Service made right as far as it can be now; whether it is settled (its VIP in its
        status, or no load balancer and no finalizer left)."""
        meta = service.metadata
        name = lb_name(self.teapot.cluster, meta.namespace, meta.name)
        finalizers = list(meta.finalizers or ())
        if not wanted(service):
            if FINALIZER not in finalizers:
                return True
            if self.teapot.get(name) is not None:
                self.teapot.delete(name)
                self.event(service, False, "DeletingLoadBalancer", f"deleting {name}")
                return False  # the next pass removes the finalizer once it is gone
            version = meta.resource_version
            if service.status.load_balancer and service.status.load_balancer.ingress:
                version = self.core.patch_namespaced_service_status(
                    meta.name, meta.namespace, {"status": {"loadBalancer": {"ingress": None}}}
                ).metadata.resource_version
            # a JSON patch: a merge patch merges finalizer lists, it cannot take one out
            self.core.patch_namespaced_service(meta.name, meta.namespace, [
                {"op": "test", "path": "/metadata/resourceVersion", "value": version},
                {"op": "replace", "path": "/metadata/finalizers",
                 "value": [f for f in finalizers if f != FINALIZER]}])
            self.event(service, False, "DeletedLoadBalancer", f"{name} deleted")
            return True
        if FINALIZER not in finalizers:  # before anything exists in Teapot
            self.core.patch_namespaced_service(meta.name, meta.namespace, {"metadata": {
                "finalizers": [*finalizers, FINALIZER], "resourceVersion": meta.resource_version}})
        want, skipped = listeners(service)
        for said in skipped:
            self.event(service, True, "UnsupportedProtocol", said)
        lb = self.teapot.get(name)
        if lb is None:
            self.event(service, False, "EnsuringLoadBalancer", f"making {name}")
            lb = self.teapot.create({"name": name, "listeners": want,
                                     "description": f"Service {meta.namespace}/{meta.name}"})
        elif [{k: x[k] for k in ("protocol", "port", "member_port")} for x in lb["listeners"]] \
                != want:
            self.event(service, False, "EnsuringLoadBalancer", f"changing {name}'s listeners")
            lb = self.teapot.update(name, {"listeners": want})
        if lb["provisioning_status"] == "ERROR":
            raise TeapotError(f"load balancer {name}: {lb.get('status_reason') or 'ERROR'}")
        ingress = [{"ip": lb["vip_address"]}] if lb["provisioning_status"] == "ACTIVE" \
            and lb.get("vip_address") else None
        current = [{"ip": x.ip} for x in (service.status.load_balancer.ingress or ())] \
            if service.status.load_balancer else []
        if ingress and ingress != current:
            self.core.patch_namespaced_service_status(
                meta.name, meta.namespace, {"status": {"loadBalancer": {"ingress": ingress}}})
            self.said.pop((meta.uid or f"{meta.namespace}/{meta.name}", "SyncLoadBalancerFailed"),
                          None)
            self.event(service, False, "EnsuredLoadBalancer", f"{name} at {ingress[0]['ip']}")
        return bool(ingress)

    def full_pass(self) -> tuple[str, bool]:
        """Every Service synced, orphaned load balancers deleted; (resourceVersion to watch from,
        whether some Service still waits for its load balancer)."""
        listed = self.core.list_service_for_all_namespaces()
        names, pending = set(), False
        for service in listed.items:
            if wanted(service):
                names.add(lb_name(self.teapot.cluster, service.metadata.namespace,
                                  service.metadata.name))
            try:
                pending |= not self.sync(service)
            except (ApiException, TeapotError) as e:
                self.failed(service, e)
                pending = True
        for lb in self.teapot.list():
            if lb["name"].startswith(prefix(self.teapot.cluster)) and lb["name"] not in names:
                LOG.info("load balancer %s has no Service: deleting it", lb["name"])
                self.teapot.delete(lb["id"])
        return listed.metadata.resource_version, pending

    def run(self, resync: float) -> None:
        while True:
            try:
                version, pending = self.full_pass()
            except (ApiException, TeapotError, OSError) as e:
                LOG.warning("full pass: %s", e)
                time.sleep(5)
                continue
            # while a load balancer is on its way, look again soon; else watch until the resync
            timeout = 2 if pending else resync
            try:
                for event in watch.Watch().stream(self.core.list_service_for_all_namespaces,
                                                  resource_version=version,
                                                  timeout_seconds=int(timeout)):
                    try:
                        self.sync(event["object"])
                    except (ApiException, TeapotError) as e:
                        self.failed(event["object"], e)
            except (ApiException, OSError) as e:
                LOG.warning("watch: %s", e)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m teapot.servicelb", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kubeconfig", help="default: the in-cluster service account")
    parser.add_argument("--resync", type=float, default=30.0)
    parser.add_argument("--once", action="store_true", help="one full pass, then exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    missing = [k for k in ("OS_AUTH_URL", "OS_APPLICATION_CREDENTIAL_ID",
                           "OS_APPLICATION_CREDENTIAL_SECRET", "TEAPOT_CLUSTER_UUID")
               if not os.environ.get(k)]
    if missing:
        print(f"missing in the environment: {', '.join(missing)}", file=sys.stderr)
        return 2
    if args.kubeconfig:
        config.load_kube_config(args.kubeconfig)
    else:
        config.load_incluster_config()
    controller = Controller(client.CoreV1Api(), Teapot.from_env())
    if args.once:
        controller.full_pass()
        return 0
    controller.run(args.resync)
    return 0


if __name__ == "__main__":
    sys.exit(main())
