"""Assemble a conductor from configuration: database, provisioner, reconcilers, loop."""

from __future__ import annotations

import time

from oslo_config import cfg

from teapot import crypto
from teapot.conductor.clusters import ClusterReconciler
from teapot.conductor.hosts import HostReconciler, Timing
from teapot.conductor.loop import Loop, default_id
from teapot.conductor.networks import NetworkReconciler
from teapot.conductor.ports import PortReconciler
from teapot.db import engine
from teapot.drivers.provisioner.ironic import IronicProvisioner
from teapot.drivers.switch import inventory
from teapot.observability import conductor as status
from teapot.observability import health
from teapot.resources import network as nsm


def _switch_names(conf: cfg.ConfigOpts) -> dict[str, str]:
    """Switch MAC -> name from [network] switches_file: the switch_info of Ironic's ports."""
    if not conf.network.enabled or not conf.network.switches_file:
        return {}
    import yaml

    try:
        with open(conf.network.switches_file) as f:
            switches = yaml.safe_load(f) or []
    except OSError:
        return {}
    return {str(s["macAddress"]).lower(): str(s["name"]) for s in switches
            if isinstance(s, dict) and s.get("macAddress") and s.get("name")}


def loop(conf: cfg.ConfigOpts) -> Loop:
    c = conf.conductor
    sm = engine.make_sessionmaker(engine.make_engine(conf.database.connection))
    provisioner = IronicProvisioner(conf.ironic.endpoint, emulated_deploy=conf.ironic.emulated_deploy,
                                    switch_names=_switch_names(conf))
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
    n = conf.network
    reconcilers = [hosts]
    if n.enabled:
        vlans = nsm.Vlans(idle=n.idle_vlan, provisioning=n.provisioning_vlan, cleaning=n.cleaning_vlan)
        hosts.vlans = vlans
        if not n.switches_file:
            raise SystemExit("[network] enabled needs [network] switches_file")
        ports = PortReconciler(sm, inventory.load(n.switches_file), vlans, owner, timing,
                               poll=c.poll_interval)
        reconcilers += [ports, NetworkReconciler(sm, ports.all_drivers, owner, timing,
                                                 _registry(conf))]
    else:
        # Without switches a network is only a VLAN number: it is active at once.
        reconcilers.append(NetworkReconciler(sm, list, owner, timing, _registry(conf)))
    reconcilers.append(ClusterReconciler(sm, fernet, owner, timing, management,
                                         conf.clusters.readiness, networks=n.enabled))
    return Loop(reconcilers, workers=c.workers, poll_interval=c.poll_interval)


def _registry(conf: cfg.ConfigOpts):
    """Neutron, when the catalog has it: tenant networks become provider networks there."""
    return None


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
