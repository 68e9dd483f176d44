"""Assemble a conductor from configuration: database, provisioner, reconcilers, loop."""

from __future__ import annotations

from oslo_config import cfg

from teapot import crypto
from teapot.conductor.clusters import ClusterReconciler
from teapot.conductor.hosts import HostReconciler, Timing
from teapot.conductor.loop import Loop, default_id
from teapot.db import engine
from teapot.drivers.provisioner.ironic import IronicProvisioner


def loop(conf: cfg.ConfigOpts) -> Loop:
    c = conf.conductor
    sm = engine.make_sessionmaker(engine.make_engine(conf.database.connection))
    provisioner = IronicProvisioner(conf.ironic.endpoint, emulated_deploy=conf.ironic.emulated_deploy)
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
    clusters = ClusterReconciler(sm, fernet, owner, timing, management, conf.clusters.readiness)
    return Loop([hosts, clusters], workers=c.workers, poll_interval=c.poll_interval)
