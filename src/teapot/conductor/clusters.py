"""The cluster reconciler: one step of the cluster state machine, under a lease.

Claims hosts for node groups (all or none), gives each claimed host the template's image and a
cloud-init userData that runs kubeadm, waits for the hosts, and settles the cluster's status;
deleting (or failing to create) gives every host back, deprovisioned, to the pool.
"""

from __future__ import annotations

import json
import logging
import time

from cryptography.fernet import Fernet
from sqlalchemy import delete, select
from sqlalchemy.orm import sessionmaker

from teapot import pki
from teapot.conductor.hosts import Timing
from teapot.conductor.loadbalancers import allocate_legs
from teapot.db import addresses as adb
from teapot.db import clusters as cdb
from teapot.db import leases
from teapot.db import networks as ndb
from teapot.db.models import Cluster, ClusterTemplate, Host, Network, NodeGroup
from teapot.drivers.bootstrap import kubeadm, workload
from teapot.drivers.bootstrap.network_data import address_of, network_data
from teapot.drivers.switch import inventory
from teapot.resources import cluster as csm
from teapot.resources import cluster_rules, storage
from teapot.resources import loadbalancer as lbr
from teapot.resources import network as nsm
from teapot.resources.errors import ValidationError

LOG = logging.getLogger(__name__)
ADDRESS_LABEL = "teapot.openstack.org/address"
MAX_STEPS = 6
JOIN_TOKEN_LIFETIME = 24 * 3600.0  # from the moment a host is given its join


def host_address(host: Host) -> str:
    """Where a host is reached: the address it was handed on its tenant network, else the address
    its label names, else its name."""
    return address_of(host.network_data) or host.labels.get(ADDRESS_LABEL) or host.name


def template_image(template: ClusterTemplate) -> dict:
    labels = template.attrs.get("labels") or {}
    image = {"url": template.attrs["image_id"],
             "checksumType": labels.get("image_checksum_type", "sha256"),
             "format": labels.get("image_format", "raw")}
    if labels.get("image_checksum"):
        image["checksum"] = labels["image_checksum"]
    return image


class ClusterReconciler:
    kind = "cluster"
    model = Cluster  # what the loop defers when a reconcile raises

    def __init__(self, sm: sessionmaker, fernet: Fernet, owner: str, timing: Timing,
                 management=None, readiness: str = "kubernetes", networks: bool = False,
                 identity=None, block=None, default_subnet: nsm.Subnet | None = None,
                 loadbalancers=None):
        self.sm, self.fernet, self.owner, self.timing = sm, fernet, owner, timing
        # a drivers.loadbalancer LoadBalancers: each cluster's API endpoint, when the cloud has one
        self.loadbalancers = loadbalancers
        self.default_subnet = default_subnet  # of networks made before subnets were
        self.block = block  # a drivers.block.CephUsers: the project's Ceph user for volumes
        self.identity = identity  # a drivers.identity.KeystoneCredentials: storage credentials
        self.networks = networks  # hosts must reach the tenant VLAN before the cluster is ready
        self.readiness = readiness
        self.management = management  # a ManagementCluster when Cluster API does the work

    def due(self, now: float, limit: int) -> list[int]:
        return leases.due(self.sm, Cluster, now, limit)

    def refresh(self) -> None:
        pass  # everything a cluster needs to know is in Teapot's database

    def reconcile(self, cluster_id: int) -> None:
        if not leases.acquire(self.sm, Cluster, cluster_id, self.owner, self.timing.lease):
            return
        try:
            for _ in range(MAX_STEPS):
                if not self._step(cluster_id):
                    break
        finally:
            leases.release(self.sm, Cluster, cluster_id, self.owner)

    # -- looking ---------------------------------------------------------------------------------
    def _view(self, session, row: Cluster) -> tuple[csm.ClusterView, list[NodeGroup], list[Host]]:
        groups = cdb.nodegroups(session, [row.uuid])[row.uuid]
        hosts = list(cdb.hosts_of(session, row.uuid))
        vlan = None
        if self.networks and row.network_uuid:
            vlan = session.scalar(select(Network.vlan_id).where(Network.uuid == row.network_uuid))

        def on_network(h: Host) -> bool:
            return vlan is None or inventory.host_port(h.spec) is None or h.port_vlan == vlan

        endpoint = row.attrs.get("endpoint") or {}
        wanted = self.loadbalancers is not None and vlan is not None
        role_of = {g.name: g.role for g in groups}
        allocated = adb.of_hosts(session, [h.uuid for h in hosts
                                           if role_of.get(h.nodegroup) == csm.ROLE_MASTER])
        masters = sorted(allocated.values(), key=_ip_key)
        healing, max_unhealthy = _auto_healing(row.attrs.get("labels"))
        releases = row.attrs.get("releases") or {}
        upgrade = row.attrs.get("upgrade") or {}
        view = csm.ClusterView(
            **credential_fields(row.attrs), auto_healing=healing, max_unhealthy=max_unhealthy,
            release=release_of(row), upgrading=bool(upgrade),
            in_place=tuple(upgrade.get("in_place", ())), leaving=tuple(upgrade.get("leaving", ())),
            redone=tuple(upgrade.get("redone", ())),
            endpoint_wanted=wanted, endpoint_held=bool(endpoint),
            endpoint_ready=bool(endpoint) and endpoint.get("members") == masters
            and self.loadbalancers is not None and self.loadbalancers.running(endpoint["name"]),
            status=row.status, deleting=row.deleting,
            nodegroups=tuple(csm.NodeGroupView(g.name, g.role, g.node_count, g.flavor_id,
                                               tuple(g.nodes_to_remove or ())) for g in groups),
            hosts=tuple(csm.HostView(h.name, h.uuid, h.nodegroup or "", h.state,
                                     bool(h.spec.get("image")), h.status.get("errorCount", 0),
                                     h.status.get("errorMessage", ""), h.created_at,
                                     on_network(h), h.port_error or "",
                                     h.status.get("waiting", ""), releases.get(h.name, ""))
                   for h in hosts))
        return view, groups, hosts

    def _step(self, cluster_id: int) -> bool:
        with self.sm() as session:
            row = session.get(Cluster, cluster_id)
            if row is None:
                return False
            view, groups, hosts = self._view(session, row)
            generation = row.generation
        if self.management is not None:
            return self._step_capi(row, groups, generation)
        step = csm.plan(view)
        LOG.debug("cluster %s: %s", row.name, step)
        if isinstance(step, csm.Gone):
            with self.sm.begin() as session:
                session.execute(delete(NodeGroup).where(NodeGroup.cluster_uuid == row.uuid))
                adb.release_cluster(session, row.uuid)
                session.execute(delete(Cluster).where(Cluster.id == cluster_id,
                                                      Cluster.lease_owner == self.owner))
            LOG.info("cluster %s deleted", row.name)
            return False
        if isinstance(step, csm.MakeCredentials):
            return self._make_credentials(row, step, generation)
        if isinstance(step, csm.EnsureEndpoint):
            return self._ensure_endpoint(row, groups, hosts, generation)
        if isinstance(step, csm.RemoveEndpoint):
            return self._remove_endpoint(row, generation)
        if isinstance(step, csm.PushCredentials):
            return self._push_credentials(row, groups, hosts, step, generation)
        if isinstance(step, csm.DeleteCredentials):
            return self._delete_credentials(row, step, generation)
        if isinstance(step, csm.Claim):
            return self._claim(row, groups, step, generation)
        if isinstance(step, csm.Heal):
            return self._heal(row, groups, hosts, step, generation)
        if isinstance(step, csm.HoldHealing):
            return self._hold_healing(row, step, generation)
        if isinstance(step, csm.Retire):
            return self._retire(row, groups, hosts, step, generation)
        if isinstance(step, csm.Redo):
            self._set_hosts((step.host,), image=None, user_data=None)
            self._upgrade_attrs(row, host=step.host, redone=True)
            LOG.warning("cluster %s: upgrade: %s failed; provisioning it once more", row.name,
                        step.host)
            return self._save(cluster_id, generation, delay=self.timing.busy,
                              reason=f"upgrading: {step.host} failed; provisioning it once more")
        if isinstance(step, csm.Provision):
            from teapot.drivers.identity import IdentityError

            try:
                self._provision(row, groups, hosts, step.hosts)
            except IdentityError as e:  # the catalog, for the storage add-ons
                return self._credential_failed(row, generation, e)
            except adb.NoFreeAddress as e:
                return self._settle(row, groups, hosts, csm.Settle(
                    csm.FAILED[row.status], f"no address for its hosts: {e}", False), generation)
            except workload.PushError as e:  # readying the running cluster for hosts to join
                return self._save(cluster_id, generation, delay=self.timing.busy * 4,
                                  reason=f"joining {', '.join(step.hosts)}: {e}; retrying")
            return self._save(cluster_id, generation, delay=self.timing.busy,
                              reason=f"upgrading: provisioning {', '.join(step.hosts)}"
                              if view.upgrading else f"provisioning {len(hosts)} host(s)")
        if isinstance(step, csm.Deprovision):
            refused = self._drain(row, groups, hosts, step.hosts)
            if refused:
                return self._save(cluster_id, generation, delay=self.timing.busy * 4,
                                  reason=f"draining: {refused}; retrying")
            self._set_hosts(step.hosts, image=None, user_data=None)
            self._forget(row, step.hosts)
            return self._save(cluster_id, generation, delay=self.timing.busy,
                              reason=f"deprovisioning {len(step.hosts)} host(s)")
        if isinstance(step, csm.Release):
            cdb.release(self.sm, row.uuid, step.hosts)
            self._forget(row, step.hosts, released=True)
            return self._save(cluster_id, generation, delay=0.0)
        if isinstance(step, csm.Verify):
            return self._verify(row, view, groups, hosts, step, generation)
        if isinstance(step, csm.Settle):
            return self._settle(row, groups, hosts, step, generation)
        settled = row.status in csm.SETTLED and not row.deleting and not hosts_missing(view)
        # a cluster that heals itself looks at its hosts as often as they are checked
        quiet = self.timing.resync * (1 if view.auto_healing else 4)
        return self._save(cluster_id, generation, delay=quiet if settled else self.timing.busy,
                          reason=step.reason if isinstance(step, csm.Wait) else None)

    # -- Cluster API ------------------------------------------------------------------------------
    def _step_capi(self, row: Cluster, groups: list[NodeGroup], generation: int) -> bool:
        observed = self.management.observe(row.uuid)
        step = csm.plan_capi(row.status, row.deleting, generation,
                             row.attrs.get("applied_generation", 0), observed,
                             csm.ClusterView(row.status, row.deleting, (), (),
                                             **credential_fields(row.attrs)),
                             row.attrs.get("applied_rotation", 0))
        if isinstance(step, csm.MakeCredentials):
            return self._make_credentials(row, step, generation)
        if isinstance(step, csm.DeleteCredentials):
            return self._delete_credentials(row, step, generation)
        if isinstance(step, csm.Gone):
            with self.sm.begin() as session:
                session.execute(delete(NodeGroup).where(NodeGroup.cluster_uuid == row.uuid))
                session.execute(delete(Cluster).where(Cluster.id == row.id,
                                                      Cluster.lease_owner == self.owner))
            return False
        if isinstance(step, csm.DeleteObjects):
            self.management.delete(row.uuid)
            return self._save(row.id, generation, delay=self.timing.busy)
        if isinstance(step, csm.ApplyObjects):
            from teapot.drivers.identity import IdentityError

            try:
                objects = self._capi_objects(row, groups)
            except IdentityError as e:  # the catalog, for the storage add-ons
                return self._credential_failed(row, generation, e)
            self.management.apply(objects)
            made = (row.attrs.get("credentials") or {}).get("rotation", 0)
            with self.sm.begin() as session:
                current = session.get(Cluster, row.id)
                current.attrs = {**current.attrs, "applied_generation": generation,
                                 "applied_rotation": made}
            return self._save(row.id, generation, delay=self.timing.busy,
                              reason="Cluster API objects applied")
        if isinstance(step, csm.Settle):
            with self.sm.begin() as session:
                current = session.get(Cluster, row.id)
                if current.generation != generation:
                    return True
                address = observed.endpoint.rsplit(":", 1)[0] if observed.endpoint else None
                attrs = {k: v for k, v in current.attrs.items() if k != "upgrade"}  # rolled
                current.attrs = {**attrs, "health_status": "HEALTHY",
                                 "api_address": f"https://{observed.endpoint}" if address else None,
                                 "master_addresses": [address] if address else []}
                current.status, current.status_reason = step.status, step.reason
                current.updated_at = time.time()
                current.next_attempt_at = time.time() + 60
                for g in session.scalars(select(NodeGroup).where(NodeGroup.cluster_uuid == row.uuid)):
                    g.status = step.status
            return False
        return self._save(row.id, generation, delay=self.timing.busy)

    def _capi_objects(self, row: Cluster, groups: list[NodeGroup]) -> list[dict]:
        from teapot.db.models import HostClass
        from teapot.drivers.bootstrap import capi

        with self.sm() as session:
            template = session.scalars(select(ClusterTemplate).where(
                ClusterTemplate.uuid == row.cluster_template_id)).one()
            classes = {c.name: {"labels": c.labels, "traits": c.traits or []}
                       for c in session.scalars(select(HostClass))}
            network = None
            if row.network_uuid:
                net = session.scalars(select(Network).where(
                    Network.uuid == row.network_uuid)).one_or_none()
                if net is None:
                    raise ValueError(f"cluster {row.name}: its network {row.network_uuid} is gone")
                network = {"uuid": net.uuid, "name": net.name, "vlan_id": net.vlan_id}
        labels = row.attrs.get("labels") or {}
        endpoint = labels.get("control_plane_endpoint")
        host, _, port = (endpoint or "").partition(":")
        return capi.render(
            {"uuid": row.uuid, "name": row.name, "project_id": row.project_id, "labels": labels,
             "keypair": row.attrs.get("keypair")},
            [{"name": g.name, "role": g.role, "node_count": g.node_count, "flavor_id": g.flavor_id,
              "is_default": g.is_default, "min_node_count": g.min_node_count,
              "max_node_count": g.max_node_count} for g in groups],
            classes, namespace=self.management.namespace,
            kubernetes_version=row.attrs.get("coe_version") or csm.DEFAULT_KUBERNETES_VERSION,
            image=template_image(template),
            control_plane_endpoint={"host": host, "port": int(port or 6443)} if host else None,
            network=network, addons=self._addons(row) or None)

    # -- storage credentials ---------------------------------------------------------------------
    def _addons(self, row: Cluster) -> str:
        """The add-ons the cluster receives (a YAML stream) with its own credential: its storage
        objects, and the controller of its Services of type LoadBalancer; "" when it has none.
        The endpoints come from the catalog."""
        from teapot.drivers.bootstrap import service_loadbalancers
        from teapot.drivers.bootstrap import storage as addons

        kinds = tuple(row.attrs.get("storage_kinds") or ())
        balanced = bool(row.attrs.get("service_loadbalancers"))
        creds = json.loads(self.fernet.decrypt(row.secrets)).get("storage")
        if not (kinds or balanced) or not creds or self.identity is None:
            return ""
        catalog = self.identity.catalog(row.project_id)
        identity_url, region = catalog.get("identity", (self.identity.auth_url, ""))
        region = region or "RegionOne"
        objects = []
        if balanced:
            objects += service_loadbalancers.objects(service_loadbalancers.Config(
                auth_url=identity_url, region=region, cluster_uuid=row.uuid,
                application_credential_id=creds["application_credential_id"],
                application_credential_secret=creds["application_credential_secret"],
                teapot_url=catalog.get(storage.TEAPOT_SERVICE, (None,))[0]))
        if not kinds:
            return addons.dump(objects)
        labels = row.attrs.get("labels") or {}
        ceph_user = ceph_key = None
        if storage.BLOCK in kinds and self.block is not None:
            from teapot.drivers import block
            from teapot.drivers.identity import IdentityError

            try:  # the key the hosts open attached volumes with; its caps follow attachments
                ceph_key = self.block.key(row.project_id)
            except block.CephError as e:
                raise IdentityError(f"the project's Ceph user: {e}") from None
            ceph_user = block.ceph_user(row.project_id).removeprefix("client.")
        return addons.dump(objects + addons.objects(addons.StorageConfig(
            kinds=kinds, auth_url=identity_url, region=region,
            project_id=row.project_id, cluster_uuid=row.uuid,
            application_credential_id=creds["application_credential_id"],
            application_credential_secret=creds["application_credential_secret"],
            ec2_access=creds.get("ec2_access"), ec2_secret=creds.get("ec2_secret"),
            s3_endpoint=catalog.get("s3", (None,))[0],
            swift_endpoint=catalog.get("object-store", (None,))[0],
            share_type=labels.get("manila_share_type") or "default",
            ceph_user=ceph_user, ceph_key=ceph_key)))

    def _credential_failed(self, row: Cluster, generation: int, error: Exception) -> bool:
        """Keystone failed: record why, show it in status_reason, retry with a growing delay."""
        failures = row.attrs.get("credential_failures", 0) + 1
        delay = min(self.timing.max_backoff, self.timing.busy * 2 ** min(failures, 20))
        message = str(error)
        LOG.warning("cluster %s: storage credentials: %s (retry %d in %.0f s)", row.name, message,
                    failures, delay)
        with self.sm.begin() as session:
            current = session.get(Cluster, row.id)
            if current is None or current.lease_owner != self.owner:
                return False
            current.attrs = {**current.attrs, "credential_failures": failures,
                             "credential_error": message}
        return self._save(row.id, generation, delay=delay,
                          reason=f"storage credentials: {message}; retrying in {delay:.0f} s")

    def _make_credentials(self, row: Cluster, step: csm.MakeCredentials, generation: int) -> bool:
        from teapot.drivers.identity import IdentityError

        if self.identity is None:
            return self._credential_failed(row, generation, IdentityError(
                "this conductor has no Keystone identity driver"))
        kinds = tuple(row.attrs.get("storage_kinds") or ())
        try:
            rules = storage.access_rules(kinds, row.uuid)
            if row.attrs.get("service_loadbalancers"):
                rules += lbr.access_rules(row.uuid, storage.TEAPOT_SERVICE)
            made = self.identity.create(row.project_id, row.uuid, step.rotation, rules,
                                        ec2=storage.OBJECT in kinds)
        except IdentityError as e:
            return self._credential_failed(row, generation, e)
        with self.sm.begin() as session:
            current = session.get(Cluster, row.id)
            if current is None or current.lease_owner != self.owner:
                lost = True
            else:
                lost = False
                secrets = json.loads(self.fernet.decrypt(current.secrets))
                secrets["storage"] = {
                    "application_credential_id": made.application_credential_id,
                    "application_credential_secret": made.application_credential_secret,
                    "ec2_access": made.ec2_access, "ec2_secret": made.ec2_secret}
                current.secrets = self.fernet.encrypt(json.dumps(secrets).encode())
                attrs = dict(current.attrs)
                old = attrs.get("credentials")
                stale = list(attrs.get("stale_credentials") or [])
                if old:
                    stale.append({k: old.get(k) for k in
                                  ("user_id", "application_credential_id", "ec2_access")})
                attrs.update(credentials={**made.public(), "rotation": step.rotation},
                             stale_credentials=stale, credential_failures=0, credential_error="",
                             credentials_swept=False)
                current.attrs = attrs
                current.updated_at = time.time()
        if lost:  # another conductor took the cluster: this credential is nobody's
            self.identity.delete(made.user_id, made.application_credential_id, made.ec2_access)
            return False
        LOG.info("cluster %s: storage credential %s made (rotation %d)", row.name,
                 made.application_credential_id, step.rotation)
        return self._save(row.id, generation, delay=0.0, reason="storage credentials made")

    def _push_credentials(self, row: Cluster, groups, hosts, step: csm.PushCredentials,
                          generation: int) -> bool:
        """The rotated credentials into the running cluster's Secrets (the old ones still work
        meanwhile); a refusal is retried like Keystone's, and the old ones stay."""
        from teapot.drivers.identity import IdentityError

        if self.readiness == "kubernetes":
            from teapot.drivers.bootstrap import workload

            ca = pki.CA(row.ca_cert, self.fernet.decrypt(row.ca_key))
            try:
                manifest = self._addons(row)
                with workload.admin_client(ca, "teapot-credentials") as client:
                    pushed = workload.push_secrets(
                        client, self._api_address(row, groups, hosts), manifest)
            except (IdentityError, workload.PushError) as e:
                return self._credential_failed(
                    row, generation, IdentityError(f"pushing into the cluster: {e}"))
            LOG.info("cluster %s: rotation %d pushed into %s", row.name, step.rotation,
                     ", ".join(pushed))
        else:  # hosts that run no Kubernetes (a box's emulated ones): nothing holds the old one
            LOG.info("cluster %s: rotation %d: its hosts run no Kubernetes to push into",
                     row.name, step.rotation)
        with self.sm.begin() as session:
            current = session.get(Cluster, row.id)
            if current is None or current.lease_owner != self.owner:
                return False
            current.attrs = {**current.attrs, "pushed_rotation": step.rotation}
        return self._save(row.id, generation, delay=0.0,
                          reason="storage credentials pushed into the cluster")

    def _masters(self, groups, hosts) -> list[str]:
        role_of = {g.name: g.role for g in groups}
        return sorted(host_address(h) for h in hosts
                      if role_of.get(h.nodegroup) == csm.ROLE_MASTER)

    def _delete_credentials(self, row: Cluster, step: csm.DeleteCredentials,
                            generation: int) -> bool:
        from teapot.drivers.identity import IdentityError

        if self.identity is None:
            return self._credential_failed(row, generation, IdentityError(
                "this conductor has no Keystone identity driver"))
        try:
            for old in row.attrs.get("stale_credentials") or []:
                self.identity.delete(old["user_id"], old["application_credential_id"],
                                     old.get("ec2_access"))
            if not step.stale_only:
                current = row.attrs.get("credentials")
                if current:
                    self.identity.delete(current["user_id"], current["application_credential_id"],
                                         current.get("ec2_access"))
                self.identity.delete_cluster(row.project_id, row.uuid)
        except IdentityError as e:
            return self._credential_failed(row, generation, e)
        with self.sm.begin() as session:
            current = session.get(Cluster, row.id)
            if current is None or current.lease_owner != self.owner:
                return False
            attrs = {**current.attrs, "stale_credentials": [], "credential_failures": 0,
                     "credential_error": ""}
            if not step.stale_only:
                attrs.update(credentials=None, credentials_swept=True)
                secrets = json.loads(self.fernet.decrypt(current.secrets))
                secrets.pop("storage", None)
                current.secrets = self.fernet.encrypt(json.dumps(secrets).encode())
            current.attrs = attrs
        return self._save(row.id, generation, delay=0.0,
                          reason=None if step.stale_only else "storage credentials deleted")

    # -- doing -----------------------------------------------------------------------------------
    def _claim(self, row: Cluster, groups: list[NodeGroup], step: csm.Claim, generation: int) -> bool:
        wants = {}
        with self.sm() as session:
            for g in groups:
                if g.name in step.counts:
                    hc = cdb.host_class(session, g.flavor_id or "")
                    selector = (cdb.Selector.of(hc) if hc else
                                cdb.Selector({"teapot.openstack.org/no-such-class": g.flavor_id or ""}))
                    wants[g.name] = (step.counts[g.name], g.flavor_id, selector)
        try:
            cdb.claim(self.sm, row.uuid, wants)
        except cdb.ClaimShortage as e:
            if step.surge:  # no free host to surge onto: this one is replaced in place
                self._upgrade_attrs(row, host=step.surge, in_place=True)
                return self._save(row.id, generation, delay=0.0,
                                  reason=f"upgrading: {step.surge} in place ({e})")
            if row.attrs.get("healing"):  # a replacement waits for a host (its own, cleaned)
                return self._save(row.id, generation, delay=self.timing.busy * 5,
                                  reason=f"waiting for a free host: {e}")
            return self._settle(row, groups, [], csm.Settle(csm.FAILED[row.status], str(e), False),
                                generation)
        claimed = f"upgrading: a host claimed to replace {step.surge}" if step.surge \
            else "hosts claimed"
        return self._save(row.id, generation, delay=0.0, reason=claimed)

    # -- rolling upgrades ---------------------------------------------------------------------------
    def _retire(self, row: Cluster, groups, hosts, step: csm.Retire, generation: int) -> bool:
        """The upgrade's next host leaves, once what replaced the hosts before it is Ready."""
        if self.readiness == "kubernetes":
            from teapot.drivers.bootstrap import readiness

            ca = pki.CA(row.ca_cert, self.fernet.decrypt(row.ca_key))
            ok, why = readiness.check(ca, self._api_address(row, groups, hosts), step.nodes,
                                      require=step.ready)
            if not ok:
                return self._save(row.id, generation, delay=self.timing.resync,
                                  reason=f"upgrading: waiting before {step.host} leaves: {why}")
        refused = self._drain(row, groups, hosts, (step.host,), strict=True)
        if refused:
            return self._save(row.id, generation, delay=self.timing.busy * 4,
                              reason=f"upgrading: draining {step.host}: {refused}; retrying")
        self._set_hosts((step.host,), image=None, user_data=None)
        self._forget(row, (step.host,))
        self._upgrade_attrs(row, host=step.host, leaving=not step.in_place)
        how = "to be provisioned again" if step.in_place else "replaced"
        LOG.info("cluster %s: upgrade: %s drained and deprovisioned, %s", row.name, step.host, how)
        return self._save(row.id, generation, delay=self.timing.busy,
                          reason=f"upgrading: {step.host} deprovisioned, {how}")

    def _upgrade_attrs(self, row: Cluster, host: str, in_place: bool = False,
                       leaving: bool = False, redone: bool = False) -> None:
        """Note a host in the upgrade's record: replaced in place, leaving, or redone."""
        with self.sm.begin() as session:
            current = session.get(Cluster, row.id)
            upgrade = dict(current.attrs.get("upgrade") or {})
            for key, wanted in (("in_place", in_place), ("leaving", leaving), ("redone", redone)):
                if wanted and host not in upgrade.get(key, []):
                    upgrade[key] = [*upgrade.get(key, []), host]
            current.attrs = {**current.attrs, "upgrade": upgrade}

    def _forget(self, row: Cluster, names, released: bool = False) -> None:
        """Hosts deprovisioned run no release of the cluster's any more; given back (`released`),
        they are no longer an upgrade's to give back (one may be claimed again)."""
        with self.sm.begin() as session:
            current = session.get(Cluster, row.id)
            if current is None:
                return
            attrs = dict(current.attrs)
            attrs["releases"] = {k: v for k, v in (attrs.get("releases") or {}).items()
                                 if k not in names}
            if released and attrs.get("upgrade"):
                attrs["upgrade"] = {**attrs["upgrade"], "leaving": [
                    n for n in attrs["upgrade"].get("leaving", []) if n not in names]}
            current.attrs = attrs

    # -- auto-healing -------------------------------------------------------------------------------
    def _heal(self, row: Cluster, groups, hosts, step: csm.Heal, generation: int) -> bool:
        """Failed workers leave the cluster (their Nodes deleted when its API server answers;
        a dead one cannot be drained), go back to the pool to be deprovisioned and cleaned, and the
        cluster claims their replacements as an update."""
        if step.hosts:
            refused = self._drain(row, groups, hosts, step.hosts)
            if refused:
                LOG.warning("cluster %s: replacing %s without draining it: %s", row.name,
                            ", ".join(step.hosts), refused)
            self._set_hosts(step.hosts, image=None, user_data=None)
            cdb.release(self.sm, row.uuid, step.hosts)
            self._forget(row, step.hosts, released=True)
        event = {"at": time.time(), "hosts": list(step.hosts), "reason": step.reason}
        with self.sm.begin() as session:
            current = session.get(Cluster, row.id)
            if current is None or current.lease_owner != self.owner:
                return False
            attrs = dict(current.attrs)
            attrs.update(healing=event, healed=(attrs.get("healed") or [])[-19:] + [event],
                         health_status="UNHEALTHY",
                         health_status_reason={"auto_healing": f"replacing: {step.reason}"})
            current.attrs = attrs
            current.status = csm.UPDATE_IN_PROGRESS
            current.status_reason = f"auto-healing ({step.reason}): replacing " + (
                ", ".join(step.hosts) if step.hosts else "the missing hosts")
            current.updated_at = time.time()
            for g in session.scalars(select(NodeGroup).where(NodeGroup.cluster_uuid == row.uuid)):
                g.status = csm.UPDATE_IN_PROGRESS
        LOG.warning("cluster %s: auto-healing: %s", row.name, step.reason)
        return self._save(row.id, generation, delay=0.0)

    def _hold_healing(self, row: Cluster, step: csm.HoldHealing, generation: int) -> bool:
        reason = {"auto_healing": f"held: {step.reason}"}
        if row.attrs.get("health_status_reason") != reason:
            with self.sm.begin() as session:
                current = session.get(Cluster, row.id)
                if current is None or current.lease_owner != self.owner:
                    return False
                current.attrs = {**current.attrs, "health_status": "UNHEALTHY",
                                 "health_status_reason": reason}
            LOG.warning("cluster %s: auto-healing held: %s", row.name, step.reason)
        return self._save(row.id, generation, delay=self.timing.resync)

    def _provision(self, row: Cluster, groups: list[NodeGroup], hosts: list[Host],
                   names: tuple[str, ...]) -> None:
        with self.sm() as session:
            template = session.scalars(select(ClusterTemplate).where(
                ClusterTemplate.uuid == row.cluster_template_id)).one()
            image = template_image(template)
        secrets = json.loads(self.fernet.decrypt(row.secrets))
        ca = pki.CA(row.ca_cert, self.fernet.decrypt(row.ca_key))
        role_of = {g.name: g.role for g in groups}
        ordered = sorted(hosts, key=lambda h: (role_of.get(h.nodegroup) != csm.ROLE_MASTER, h.name))
        # a cluster whose control plane runs: every host provisioned now joins it
        running = [h for h in ordered if h.name not in names and h.spec.get("image")
                   and role_of.get(h.nodegroup) == csm.ROLE_MASTER]
        roles = csm.kubeadm_roles([(h.name, role_of.get(h.nodegroup, csm.ROLE_WORKER))
                                   for h in running + [h for h in ordered if h not in running]])
        masters = [h for h in ordered if role_of.get(h.nodegroup) == csm.ROLE_MASTER]
        configs = self._addresses(row, ordered)
        address = {h.name: configs[h.name][0] if h.name in configs else host_address(h)
                   for h in ordered}
        made = row.attrs.get("endpoint") or {}
        endpoint = f"{made['tenant']}:6443" if made else \
            f"{address[masters[0].name]}:6443" if masters else ""
        version = row.attrs.get("coe_version") or csm.DEFAULT_KUBERNETES_VERSION
        upgrade = row.attrs.get("upgrade") or {}
        releases = row.attrs.get("releases") or {}
        # an upgrade's new master replaces the first master not yet on the new release
        replaces = next((h.name for h in masters if h.name not in names
                         and releases.get(h.name) != release_of(row)), "") if upgrade else ""
        if running and self.readiness == "kubernetes":
            joining_masters = any(role_of.get(h.nodegroup) == csm.ROLE_MASTER for h in hosts
                                  if h.name in names)
            with workload.admin_client(ca, "teapot-join") as client:
                workload.prepare_join(client, self._api_address(row, groups, hosts),
                                      secrets["bootstrap_token"], JOIN_TOKEN_LIFETIME,
                                      version if upgrade and joining_masters else None)
        addons = self._addons(row) if "init" in [roles[n] for n in names] else ""
        for host in hosts:
            if host.name not in names:
                continue
            node = kubeadm.NodeConfig(
                addons=addons if roles[host.name] == "init" else "",
                cluster_name=row.name, node_name=host.name, role=roles[host.name],
                kubernetes_version=version,
                api_endpoint=endpoint, ca=ca, bootstrap_token=secrets["bootstrap_token"],
                certificate_key=secrets["certificate_key"],
                cert_sans=(made["public"],) if made else (),
                replaces=replaces if roles[host.name] == "control-plane" else "")
            self._set_hosts((host.name,), image=image, user_data=kubeadm.user_data(node),
                            network_data=configs.get(host.name, (None, None))[1])
        with self.sm.begin() as session:
            current = session.get(Cluster, row.id)
            releases = dict(current.attrs.get("releases") or {})
            releases.update({n: release_of(current) for n in names})
            current.attrs = {**current.attrs, "releases": releases}

    # -- the API endpoint -------------------------------------------------------------------------
    def _ensure_endpoint(self, row: Cluster, groups, hosts, generation: int) -> bool:
        """The cluster's endpoint: an address on its network and one on the public network, and
        a load balancer between them and the masters' API servers (port 6443)."""
        from teapot.drivers.loadbalancer.base import Listener, LoadBalancerError, Spec

        role_of = {g.name: g.role for g in groups}
        ordered = sorted(hosts, key=lambda h: (role_of.get(h.nodegroup) != csm.ROLE_MASTER, h.name))
        try:
            configs = self._addresses(row, ordered)
            # several masters are worth an endpoint that outlives an instance: a pair
            pair = sum(g.node_count for g in groups if g.role == csm.ROLE_MASTER) > 1
            with self.sm.begin() as session:
                net = session.scalars(select(Network).where(Network.uuid == row.network_uuid)).one()
                subnet = ndb.subnet_of(net, self.default_subnet)
                tenant, public, peers = allocate_legs(
                    session, net, subnet, self.loadbalancers.public_cidr(), adb.ENDPOINT,
                    row.uuid, row.uuid, pair)
                vlan = net.vlan_id
        except adb.NoFreeAddress as e:
            return self._settle(row, groups, hosts, csm.Settle(
                csm.FAILED.get(row.status, csm.CREATE_FAILED), f"no address for its endpoint: {e}",
                False), generation)
        members = sorted((configs[h.name][0] for h in ordered
                          if role_of.get(h.nodegroup) == csm.ROLE_MASTER and h.name in configs),
                         key=_ip_key)
        name = f"c{row.id}"
        spec = Spec(name=name, vlan=vlan, tenant_address=f"{tenant}/{subnet.prefixlen}",
                    public_address=public, listeners=(Listener(6443, 6443),),
                    members=tuple(members), peers=peers)
        try:
            self.loadbalancers.ensure(spec)
        except LoadBalancerError as e:
            LOG.warning("cluster %s: endpoint: %s", row.name, e)
            return self._save(row.id, generation, delay=self.timing.busy * 4,
                              reason=f"endpoint: {e}; retrying")
        with self.sm.begin() as session:
            current = session.get(Cluster, row.id)
            if current is None or current.lease_owner != self.owner:
                return False
            current.attrs = {**current.attrs, "endpoint": {
                "name": name, "tenant": tenant, "public": public, "members": members}}
        LOG.info("cluster %s: endpoint %s:6443 (public %s) to %s", row.name, tenant, public,
                 ", ".join(members))
        return self._save(row.id, generation, delay=0.0, reason="endpoint ready")

    def _remove_endpoint(self, row: Cluster, generation: int) -> bool:
        from teapot.drivers.loadbalancer.base import LoadBalancerError

        endpoint = row.attrs.get("endpoint") or {}
        try:
            if self.loadbalancers is not None and endpoint:
                self.loadbalancers.remove(endpoint["name"])
        except LoadBalancerError as e:
            return self._save(row.id, generation, delay=self.timing.busy * 4,
                              reason=f"endpoint: {e}; retrying")
        with self.sm.begin() as session:
            current = session.get(Cluster, row.id)
            if current is None or current.lease_owner != self.owner:
                return False
            adb.release_cluster(session, row.uuid)
            current.attrs = {**current.attrs, "endpoint": None}
        return self._save(row.id, generation, delay=0.0)

    def _api_address(self, row: Cluster, groups, hosts) -> str:
        """https://host:6443 where Teapot and the cluster's users reach its API server: the
        endpoint's public address, else the first master."""
        endpoint = row.attrs.get("endpoint") or {}
        if endpoint:
            return f"https://{endpoint['public']}:6443"
        masters = self._masters(groups, hosts)
        return f"https://{masters[0]}:6443" if masters else ""

    def _addresses(self, row: Cluster, ordered: list[Host]) -> dict[str, tuple[str, dict]]:
        """Host name → (its address on the cluster's network, its network_data), allocated now
        for hosts that have none (masters first, so they take the lowest). Empty when the cluster
        has no tenant network."""
        if not self.networks or not row.network_uuid:
            return {}
        out = {}
        with self.sm.begin() as session:
            net = session.scalars(select(Network).where(Network.uuid == row.network_uuid)).first()
            if net is None:
                raise ValueError(f"cluster {row.name}: its network {row.network_uuid} is gone")
            if not net.subnet and self.default_subnet is None:
                return {}
            subnet = ndb.subnet_of(net, self.default_subnet)
            for h in ordered:
                ip = adb.allocate(session, net.uuid, subnet, adb.HOST, h.uuid, row.uuid)
                mac = h.spec.get("bootMACAddress") or ""
                out[h.name] = (ip, network_data(mac, ip, subnet, net.uuid))
        return out

    def _drain(self, row: Cluster, groups, hosts, names: tuple[str, ...],
               strict: bool = False) -> str | None:
        """Hosts leaving a running cluster leave its Kubernetes first (drained, Node deleted).
        Returns why it cannot be done yet; an API server that does not answer has nothing to
        drain (a cluster being deleted or that failed is not asked), unless `strict`: a host an
        upgrade replaces leaves no Node behind for a host of the same name to be taken for."""
        if self.readiness != "kubernetes" or row.deleting or row.status == csm.CREATE_FAILED:
            return None
        from teapot.drivers.bootstrap import workload

        ca = pki.CA(row.ca_cert, self.fernet.decrypt(row.ca_key))
        try:
            with workload.admin_client(ca, "teapot-drain") as client:
                removed = workload.remove_nodes(client, self._api_address(row, groups, hosts),
                                                list(names))
        except workload.PushError as e:
            if "unreachable" in str(e) and not strict:
                LOG.warning("cluster %s: not drained, its API server does not answer: %s",
                            row.name, e)
                return None
            return str(e)
        if removed:
            LOG.info("cluster %s: node(s) %s drained and deleted", row.name, ", ".join(removed))
        return None

    def _verify(self, row: Cluster, view: csm.ClusterView, groups, hosts, step: csm.Verify,
                generation: int) -> bool:
        if self.readiness == "kubernetes":
            from teapot.drivers.bootstrap import readiness

            ca = pki.CA(row.ca_cert, self.fernet.decrypt(row.ca_key))
            ok, why = readiness.check(ca, self._api_address(row, groups, hosts), step.nodes)
            if not ok:
                timeout = 60 * (row.attrs.get("create_timeout") or 60)
                if time.time() - (row.updated_at or row.created_at) > timeout:
                    return self._settle(row, groups, hosts, csm.Settle(
                        csm.FAILED[row.status], f"not ready after {timeout // 60} min: {why}",
                        False), generation)
                return self._save(row.id, generation, delay=self.timing.resync, reason=why)
        return self._settle(row, groups, hosts, csm.settle_verified(view), generation)

    def _set_hosts(self, names, image: dict | None, user_data: str | None,
                   network_data: dict | None = None) -> None:
        with self.sm.begin() as session:
            for host in session.scalars(select(Host).where(Host.name.in_(list(names)))):
                spec = dict(host.spec)
                if image is None:
                    spec.pop("image", None)
                    spec.pop("userData", None)
                    spec["online"] = False
                else:
                    spec["image"] = image
                    spec["userData"] = {"name": f"{host.name}-user-data"}
                    spec["online"] = True
                host.spec = spec
                host.user_data = self.fernet.encrypt(user_data.encode()) if user_data else None
                host.network_data = network_data if image is not None else None
                host.generation += 1
                host.next_attempt_at = 0.0
                host.updated_at = time.time()

    def _settle(self, row: Cluster, groups: list[NodeGroup], hosts: list[Host], step: csm.Settle,
                generation: int) -> bool:
        role_of = {g.name: g.role for g in groups}
        masters = sorted(host_address(h) for h in hosts if role_of.get(h.nodegroup) == csm.ROLE_MASTER)
        workers = sorted(host_address(h) for h in hosts if role_of.get(h.nodegroup) != csm.ROLE_MASTER)
        with self.sm.begin() as session:
            current = session.get(Cluster, row.id)
            if current is None or current.lease_owner != self.owner:
                return False
            if current.generation != generation:
                current.next_attempt_at = 0.0
                return True  # changed meanwhile: look again
            attrs = dict(current.attrs)
            if step.healthy:
                attrs.pop("upgrade", None)  # finished: every host runs the new release
                healed = attrs.pop("healing", None)
                attrs.update(master_addresses=masters, node_addresses=workers,
                             api_address=self._api_address(current, groups, hosts) or None,
                             health_status="HEALTHY",
                             health_status_reason={"auto_healing": f"replaced: {healed['reason']}"}
                             if healed else {})
            else:
                attrs.update(health_status="UNHEALTHY", faults={"reason": step.reason})
            current.attrs = attrs
            current.status, current.status_reason = step.status, step.reason
            current.updated_at = time.time()
            current.next_attempt_at = 0.0 if step.status == csm.CREATE_FAILED else time.time() + 60
            for g in session.scalars(select(NodeGroup).where(NodeGroup.cluster_uuid == row.uuid)):
                if g.status == csm.DELETE_IN_PROGRESS and step.healthy:
                    session.delete(g)  # its hosts are back in the pool
                else:
                    g.status = step.status
                    g.nodes_to_remove = []
        LOG.info("cluster %s: %s (%s)", row.name, step.status, step.reason)
        return step.status == csm.CREATE_FAILED

    def _save(self, cluster_id: int, generation: int, delay: float, reason: str | None = None) -> bool:
        with self.sm.begin() as session:
            current = session.get(Cluster, cluster_id)
            if current is None or current.lease_owner != self.owner:
                return False
            if reason and current.status in csm.IN_PROGRESS + (csm.DELETE_IN_PROGRESS,):
                healing = current.attrs.get("healing") if current.status in csm.IN_PROGRESS else None
                # an update that auto-healing began says so at every step
                current.status_reason = f"auto-healing ({healing['reason']}): {reason}" \
                    if healing else reason
            current.next_attempt_at = 0.0 if current.generation != generation else time.time() + delay
            current.lease_expires_at = time.time() + self.timing.lease
        return delay == 0.0


def release_of(row: Cluster) -> str:
    """What a cluster's hosts run: its template (the image) and its Kubernetes release."""
    return f"{row.cluster_template_id} {row.attrs.get('coe_version') or csm.DEFAULT_KUBERNETES_VERSION}"


def _auto_healing(labels: dict | None) -> tuple[bool, int]:
    try:
        return cluster_rules.auto_healing(labels)
    except ValidationError:  # made before the labels were checked: no healing
        return False, 0


def credential_fields(attrs: dict) -> dict:
    """The credential fields of a cluster's state-machine view, from its attributes."""
    made = attrs.get("credentials") or {}
    wanted = bool(attrs.get("storage_kinds")) or bool(attrs.get("service_loadbalancers"))
    return {"credential_rotation": attrs.get("credential_rotation", 0) if wanted else 0,
            "credential_made": made.get("rotation", 0),
            "credentials_held": bool(made or wanted) and not attrs.get("credentials_swept"),
            "stale_credentials": bool(attrs.get("stale_credentials")),
            "credential_pushed": attrs.get("pushed_rotation", 0)}


def _ip_key(address: str) -> tuple[int, ...]:
    return tuple(int(p) for p in address.split("."))


def hosts_missing(view: csm.ClusterView) -> bool:
    return any(len([h for h in view.hosts if h.nodegroup == g.name]) != g.node_count
               for g in view.nodegroups)
