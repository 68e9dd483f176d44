"""Assemble a conductor from configuration: database, provisioner, reconcilers, loop."""

from __future__ import annotations

import time

from oslo_config import cfg

from teapot import crypto
from teapot.conductor.clusters import ClusterReconciler
from teapot.conductor.hosts import HostReconciler, Timing
from teapot.conductor.loop import Loop, default_id
from teapot.db import engine
from teapot.drivers.provisioner.ironic import IronicProvisioner
from teapot.observability import conductor as status
from teapot.observability import health


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
