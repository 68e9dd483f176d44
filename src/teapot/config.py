"""Teapot's own configuration (`teapot.conf`, oslo.config), one ConfigOpts per process."""

from __future__ import annotations

import os

from oslo_config import cfg, types

from teapot import releases as versions

OPTS = {
    "DEFAULT": [
        cfg.StrOpt("log_format", default="text", choices=["text", "json"],
                   help="text: one readable line per record; json: one JSON object per line, with "
                        "the request id of the API request that logged it."),
    ],
    "api": [
        cfg.HostAddressOpt("host", default="127.0.0.1", help="Address the API binds to."),
        cfg.PortOpt("port", default=9511, help="Port the API listens on."),
        cfg.IntOpt("max_limit", default=1000, min=1,
                   help="The most objects a list returns in one response (as Magnum's "
                        "[api] max_limit); clients page with limit and marker."),
    ],
    "database": [
        cfg.StrOpt("connection", required=True, help="SQLAlchemy URL of Teapot's database."),
    ],
    "keystone_authtoken": [
        cfg.URIOpt("auth_url", required=True, help="Keystone v3 URL used to validate tokens."),
        cfg.StrOpt("username", default="teapot"),
        cfg.StrOpt("password", secret=True, required=True),
        cfg.StrOpt("project_name", default="service"),
        cfg.StrOpt("user_domain_name", default="Default"),
        cfg.StrOpt("project_domain_name", default="Default"),
        cfg.IntOpt("cache_seconds", default=300, min=0,
                   help="How long a validated token is trusted before Keystone is asked again."),
        cfg.FloatOpt("http_connect_timeout", default=5.0, min=0.5,
                     help="Seconds Keystone has to answer a token validation (as "
                          "keystonemiddleware's option); past it the request is a 503 with "
                          "Retry-After."),
    ],
    "ironic": [
        cfg.URIOpt("endpoint", required=True, help="Ironic API URL (standalone, no Keystone)."),
        cfg.BoolOpt("emulated_deploy", default=False,
                    help="Deploy with Ironic's fake boot and deploy interfaces, keeping real power "
                         "control: for emulated hosts that have BMCs but no disks."),
    ],
    "conductor": [
        cfg.StrOpt("id", help="Conductor identity for leases; defaults to hostname and PID."),
        cfg.IntOpt("workers", default=16, min=1, help="Hosts reconciled at once."),
        cfg.FloatOpt("poll_interval", default=0.5, min=0.05,
                     help="Seconds between looks for hosts that need work."),
        cfg.FloatOpt("busy_interval", default=1.0, min=0.1,
                     help="Seconds between checks on a host whose operation is under way."),
        cfg.FloatOpt("resync_interval", default=15.0, min=1.0,
                     help="Seconds between checks on a settled host (power state)."),
        cfg.FloatOpt("lease_seconds", default=30.0, min=1.0,
                     help="How long a host lease lasts without renewal."),
        cfg.FloatOpt("max_backoff", default=300.0, min=1.0,
                     help="Longest wait before retrying a failed operation."),
        cfg.HostAddressOpt("metrics_host", default="127.0.0.1",
                           help="Address the conductor serves /metrics and /healthz on."),
        cfg.PortOpt("metrics_port", default=9512,
                    help="Port of the conductor's /metrics and /healthz (0: any free port)."),
    ],
    "clusters": [
        cfg.StrOpt("driver", default="hosts", choices=["hosts", "capi"],
                   help="hosts: Teapot claims hosts and provisions them with kubeadm user data; "
                        "capi: Cluster API and Metal³ in a management cluster do it."),
        cfg.StrOpt("readiness", default="kubernetes", choices=["provisioned", "kubernetes"],
                   help="When a cluster of hosts is ready: provisioned (every host provisioned; "
                        "for emulated hardware) or kubernetes (the apiserver's /readyz answers "
                        "and every host joined as a node)."),
        cfg.StrOpt("management_kubeconfig", help="kubeconfig of the management cluster (capi)."),
        cfg.StrOpt("management_context", help="Its context (capi)."),
        cfg.StrOpt("management_namespace", default="teapot-clusters",
                   help="Namespace of the clusters' objects and of the BareMetalHosts (capi)."),
        cfg.ListOpt("kubernetes_versions", default=list(versions.KUBERNETES),
                    item_type=types.String(regex=r"^v\d+\.\d+\.\d+$"),
                    help="The Kubernetes releases clusters may ask for (kube_tag, a label of "
                         "templates and clusters), such as v1.37.2; a template or cluster naming "
                         "another is refused. A cluster that names none gets "
                         f"{versions.KUBERNETES[-1]} when it is listed, else the last one listed."),
    ],
    "network": [
        cfg.BoolOpt("enabled", default=False,
                    help="Tenant networks: each project's hosts on its own VLAN of the top-of-rack "
                         "switches in switches_file."),
        cfg.StrOpt("switches_file",
                   help="YAML list of switches: name, macAddress (the switch id hosts' "
                        "networkInterfaces[].switchPort.switchID name) and device (the options of "
                        "a networking-generic-switch device). Holds credentials: keep it 0600."),
        cfg.ListOpt("vlan_ranges", default=["100:3000"],
                    help="VLAN ids tenant networks are allocated from, as MIN:MAX ranges."),
        cfg.IntOpt("idle_vlan", default=3999, min=1, max=4094,
                   help="Where a port waits while its host belongs to no one."),
        cfg.IntOpt("provisioning_vlan", default=4000, min=1, max=4094,
                   help="Where a host is while it is deployed."),
        cfg.IntOpt("cleaning_vlan", default=4001, min=1, max=4094,
                   help="Where a host is while it is cleaned (never on a tenant VLAN)."),
        cfg.StrOpt("physical_network", default="physnet1",
                   help="The physical network the switches' trunk ports carry tenant VLANs toward "
                        "(a Neutron provider network's provider:physical_network)."),
        cfg.StrOpt("default_cidr", default="10.20.0.0/24",
                   help="The subnet of a network created without one (every project's default "
                        "network among them). Projects may share it: their VLANs keep them apart."),
        cfg.ListOpt("default_dns_nameservers", default=[],
                    help="DNS servers of a subnet created without any."),
    ],
    "loadbalancer": [
        cfg.StrOpt("driver", default="none", choices=["none", "box"],
                   help="Load balancers' data plane (each cluster's API endpoint): none, or box "
                        "(HAProxy in namespaces cabled to a box's switch and public network)."),
        cfg.StrOpt("box_state_dir", help="The box's state directory (driver box)."),
    ],
    "block": [
        cfg.StrOpt("ceph_conf",
                   help="ceph.conf of the Ceph cluster behind Cinder's RBD back-end; unset: no "
                        "per-project Ceph users, so no volume attachments to hosts."),
        cfg.StrOpt("ceph_user", default="client.teapot",
                   help="Ceph entity Teapot manages the per-project users as (needs the mon caps "
                        "auth get-or-create and auth caps on client.teapot-*, and read access to "
                        "the pool's rbd_id. objects)."),
        cfg.StrOpt("ceph_keyring", help="Keyring file holding ceph_user's key (keep it 0600)."),
        cfg.StrOpt("pool", default="volumes", help="The RBD pool of Cinder's volumes."),
    ],
    "secrets": [
        cfg.StrOpt("key_file", required=True,
                   help="Fernet key file that encrypts BMC credentials and user data at rest; "
                        "created (0600) when missing."),
    ],
}


def load(config_file: str | None = None) -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    for group, opts in OPTS.items():
        conf.register_opts(opts, group=None if group == "DEFAULT" else group)
    path = config_file or os.environ.get("TEAPOT_CONFIG")
    if not path:
        raise SystemExit("no configuration: pass --config-file or set TEAPOT_CONFIG")
    conf(args=[], project="teapot", default_config_files=[path], use_env=False)
    return conf
