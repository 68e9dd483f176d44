"""Teapot itself: the API (behind Keystone) and the conductor, sharing one config file."""

from __future__ import annotations

import dataclasses

from teapot.deploy import ini
from teapot.deploy.service import (
    ConfigFile,
    Context,
    KeystoneRegistration,
    Readiness,
    Service,
    Step,
)
from teapot.deploy.services import _openstack as osp

API_NAME = "teapot-api"
CONDUCTOR_NAME = "teapot-conductor"
SERVICE_TYPE = "teapot"
KEY_FILE = "secret.key"
SWITCHES_FILE = "switches.yaml"  # written by the box once its switch runs


def _kubernetes(ctx: Context) -> bool:
    return ctx.settings.get("profile") == "kubernetes"


def _key_file(ctx: Context) -> str:
    # On Kubernetes every API and conductor pod must read the same key: a rendered file, not one
    # the first process creates.
    if _kubernetes(ctx):
        return ctx.config_path("teapot", KEY_FILE)
    return ctx.data_path("teapot", KEY_FILE)


def _network(ctx: Context) -> dict:
    """Tenant networks: on when the box runs its switch (`teapot up` without --no-switch)."""
    if not ctx.settings.get("switch"):
        return {"enabled": False}
    from teapot.net.fabric import FabricVlans

    vlans = FabricVlans()
    return {
        "enabled": True,
        "switches_file": ctx.config_path("teapot", SWITCHES_FILE),
        "vlan_ranges": ["100:3000"],
        "idle_vlan": vlans.idle,
        "provisioning_vlan": vlans.provisioning,
        "cleaning_vlan": vlans.cleaning,
        "physical_network": "physnet1",
    }


def _readiness(ctx: Context) -> str:
    """A box's clusters are complete when their Kubernetes is: its emulated hosts run it, behind
    an endpoint on the box's public network. Without a switch (no hosts to run it, no network),
    or before `make install` built Kubernetes, once their hosts are provisioned."""
    from teapot import releases

    return "kubernetes" if ctx.settings.get("switch") and releases.built() else "provisioned"


def _loadbalancer(ctx: Context) -> dict:
    """Clusters' API endpoints: HAProxy in namespaces cabled to the box's switch and public
    network."""
    if not ctx.settings.get("switch"):
        return {}
    return {"driver": "box", "box_state_dir": str(ctx.settings["state_dir"])}


def _block(ctx: Context) -> dict:
    """Volume attachments on the box's Ceph: Teapot manages per-project users as client.teapot."""
    from teapot.deploy.services import ceph

    return {"ceph_conf": ceph.conf_path(ctx), "ceph_user": ceph.TEAPOT_USER,
            "ceph_keyring": ceph.keyring_path(ctx, ceph.TEAPOT_USER), "pool": ceph.VOLUMES_POOL}


def teapot_conf(ctx: Context) -> str:
    box = ctx.settings.get("profile") == "box"
    return ini.render({
        "DEFAULT": {"debug": False, "log_format": "text"},
        "api": {"host": ctx.bind_host, "port": ctx.port(API_NAME)},
        "conductor": {"metrics_host": ctx.bind_host, "metrics_port": ctx.port(CONDUCTOR_NAME)},
        "database": {"connection": ctx.database_url("teapot")},
        "keystone_authtoken": {
            "auth_url": ctx.url("keystone") + "/v3",
            "username": "teapot",
            "password": ctx.secret("teapot-password"),
            "project_name": "service",
            "user_domain_name": "Default",
            "project_domain_name": "Default",
        },
        "ironic": {
            "endpoint": ctx.url("ironic"),
            # Emulated hosts have real (emulated) BMCs but no disks: the box deploys with Ironic's
            # fake deploy interface and controls power over Redfish.
            "emulated_deploy": box,
        },
        "clusters": {"readiness": _readiness(ctx) if box else "kubernetes"},
        "secrets": {"key_file": _key_file(ctx)},
        "network": _network(ctx) if box else {},
        "loadbalancer": _loadbalancer(ctx) if box else {},
        "block": _block(ctx) if box and ctx.settings.get("storage") else {},
    })


def _conf(ctx: Context) -> str:
    return ctx.config_path("teapot", "teapot.conf")


def _env(ctx: Context) -> dict[str, str]:
    return {"TEAPOT_CONFIG": _conf(ctx)}


_CONFIG = (ConfigFile("teapot.conf", teapot_conf, secret=True),)

API = Service(
    name=API_NAME,
    description="Teapot API",
    package="teapot",
    image="teapot",
    port=9511,
    config_files=_CONFIG,
    config_dir="teapot",
    database="teapot",
    bootstrap=(Step("db upgrade", lambda ctx: ["teapot", "db", "upgrade", "--config-file", _conf(ctx)]),),
    command=lambda ctx: [
        "uvicorn", "--factory", "teapot.api.app:create_app", "--host", ctx.bind_host,
        "--port", str(ctx.port(API_NAME)), "--no-access-log", "--log-level", "warning",
    ],
    env=_env,
    readiness=Readiness("/healthz"),  # answers, and its database does
    depends_on=("keystone",),
    ingress="teapot",
    keystone=KeystoneRegistration(
        service_type=SERVICE_TYPE, service_name="teapot", url_path="/v1",
        user="teapot", password_secret="teapot-password",
        # admin: Teapot registers its tenant VLANs in Neutron as provider networks shared with
        # one project by RBAC, which Neutron allows admins only.
        roles=osp.SERVICE_ROLES,
        # The same API is Magnum's: python-magnumclient and `openstack coe` find it by this type.
        also_types=(("container-infra", "teapot-container-infra"),),
    ),
)

CONDUCTOR = Service(
    name=CONDUCTOR_NAME,
    description="Teapot conductor",
    package="teapot",
    image="teapot",
    config_files=_CONFIG,
    port=9512,  # /metrics and /healthz
    config_dir="teapot",
    command=lambda ctx: ["teapot", "conductor", "--config-file", _conf(ctx)],
    env=_env,
    readiness=Readiness("/healthz"),
    depends_on=(API_NAME, "ironic"),
)


def kubernetes_services() -> list[Service]:
    """The API and the conductor on Kubernetes: the encryption key is a config file of both, derived
    from a generated secret."""
    key = ConfigFile(KEY_FILE, lambda ctx: osp.fernet_key(ctx, "teapot-secret-key") + "\n",
                     secret=True)
    return [dataclasses.replace(s, config_files=s.config_files + (key,)) for s in (API, CONDUCTOR)]
