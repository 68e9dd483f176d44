"""Assemble a conductor from configuration: database, provisioner, reconcilers, loop."""

from __future__ import annotations

import logging
import time

from oslo_config import cfg

from teapot import crypto, dependencies
from teapot.conductor.clusters import ClusterReconciler
from teapot.conductor.hosts import HostReconciler, Timing
from teapot.conductor.loop import Loop, default_id
from teapot.conductor.networks import NetworkReconciler, NeutronRegistry
from teapot.conductor.ports import PortReconciler
from teapot.db import engine
from teapot.drivers.provisioner.ironic import IronicProvisioner
from teapot.drivers.switch import inventory
from teapot.observability import conductor as status
from teapot.observability import health
from teapot.resources import network as nsm

LOG = logging.getLogger(__name__)


def loop(conf: cfg.ConfigOpts) -> Loop:
    c, n = conf.conductor, conf.network
    if n.enabled and not n.switches_file:
        raise SystemExit("[network] enabled needs [network] switches_file")
    switches = inventory.load(n.switches_file) if n.enabled else []
    dependencies.name_configured(conf)
    sm = engine.make_sessionmaker(engine.make_engine(conf.database.connection))
    provisioner = IronicProvisioner(conf.ironic.endpoint, emulated_deploy=conf.ironic.emulated_deploy,
                                    switch_names={s.mac: s.name for s in switches})
    timing = Timing(busy=c.busy_interval, resync=c.resync_interval, lease=c.lease_seconds,
                    max_backoff=c.max_backoff)
    fernet = crypto.load_or_create_key(conf.secrets.key_file)
    owner = c.id or default_id()
    hosts = HostReconciler(sm, provisioner, fernet, owner, timing)
    management = None
    if conf.clusters.driver == "capi":
        from teapot.drivers.bootstrap.management import ManagementCluster

        management = ManagementCluster(conf.clusters.management_kubeconfig,
                                       conf.clusters.management_context,
                                       conf.clusters.management_namespace)
    reconcilers: list = [hosts]
    registry = _registry(conf)
    if n.enabled:
        vlans = nsm.Vlans(idle=n.idle_vlan, provisioning=n.provisioning_vlan, cleaning=n.cleaning_vlan)
        hosts.vlans = vlans
        ports = PortReconciler(sm, switches, vlans, owner, timing, poll=c.poll_interval)
        reconcilers += [ports, NetworkReconciler(sm, ports.all_drivers, owner, timing, registry)]
    else:
        # Without switches a network is a VLAN number (and a Neutron network): no ports to move.
        reconcilers.append(NetworkReconciler(sm, list, owner, timing, registry))
    default_subnet = nsm.Subnet.parse(n.default_cidr, dns_nameservers=n.default_dns_nameservers)
    loadbalancers = _loadbalancers(conf)
    if loadbalancers is not None:
        from teapot.conductor.loadbalancers import LoadBalancerReconciler

        reconcilers.append(LoadBalancerReconciler(sm, loadbalancers, owner, timing,
                                                  default_subnet))
    reconcilers.append(ClusterReconciler(sm, fernet, owner, timing, management,
                                         conf.clusters.readiness, networks=n.enabled,
                                         loadbalancers=loadbalancers,
                                         default_subnet=default_subnet,
                                         identity=_identity(conf), block=_block(conf)))
    return Loop(reconcilers, workers=c.workers, poll_interval=c.poll_interval)


def _loadbalancers(conf: cfg.ConfigOpts):
    if conf.loadbalancer.driver == "box":
        from teapot.drivers.loadbalancer.box import BoxLoadBalancers

        if not conf.loadbalancer.box_state_dir:
            raise SystemExit("[loadbalancer] driver box needs [loadbalancer] box_state_dir")
        return BoxLoadBalancers(conf.loadbalancer.box_state_dir)
    return None


def _service_session(conf: cfg.ConfigOpts):
    """A keystoneauth session of Teapot's service user ([keystone_authtoken])."""
    from keystoneauth1 import session
    from keystoneauth1.identity import v3

    ka = conf.keystone_authtoken
    auth = v3.Password(auth_url=ka.auth_url, username=ka.username, password=ka.password,
                       project_name=ka.project_name, user_domain_name=ka.user_domain_name,
                       project_domain_name=ka.project_domain_name)
    return session.Session(auth=auth, timeout=30)


def _registry(conf: cfg.ConfigOpts) -> NeutronRegistry:
    """Neutron, once the catalog has it: tenant networks become provider networks there, made by
    Teapot's service user (admin in its project)."""
    return NeutronRegistry(_service_session(conf), conf.network.physical_network)


def _identity(conf: cfg.ConfigOpts):
    """Clusters' storage credentials in Keystone, made as Teapot's service user; the project
    users' passwords are derived from the secrets key file (nothing more is stored)."""
    from teapot.drivers.identity import KeystoneCredentials

    return KeystoneCredentials.from_conf(conf)


def _block(conf: cfg.ConfigOpts):
    """The per-project Ceph users of volume attachments ([block]); None without Ceph."""
    from teapot.drivers.block import CephUsers

    return CephUsers.from_conf(conf)


def status_server(conf: cfg.ConfigOpts, loop: Loop, port: int | None = None) -> status.StatusServer | None:
    """/metrics and /healthz of a conductor: healthy while the database answers and the loop
    finishes passes. `port` overrides `[conductor] metrics_port`."""
    c = conf.conductor
    reader = engine.reader(engine.make_engine(conf.database.connection))
    checks = {
        "database": health.database(reader),
        "loop": health.loop(lambda: loop.metrics.last_pass_monotonic, loop.stopping.is_set,
                            started=time.monotonic(), max_age=max(60.0, 20 * c.poll_interval)),
    }
    return status.serve(c.metrics_host, c.metrics_port if port is None else port,
                        loop.metrics.registry, checks)
