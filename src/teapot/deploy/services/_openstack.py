"""Pieces every OpenStack service description shares: config sections rendered from the Context,
Keystone registrations, and workers made from an API's description.

Each section helper returns the options of one section (a dict for `ini.render`); `sections()` merges
them. Nothing here holds a password: they come from `ctx.secret(...)` and `ctx.database_url(...)`.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from teapot.deploy import ini
from teapot.deploy.service import Argv, Context, KeystoneRegistration, Service

# Roles of OpenStack service users. New-default policies accept `service` for service-to-service
# calls; a few (Neutron port binding by Nova, Cinder volume events) still ask for `admin`.
SERVICE_ROLES = ("admin", "service")

# Where container images may have installed the rootwrap filters of a project ({project} is filled
# in). The config directory itself is a read-only mount holding only rendered files.
_ROOTWRAP_FILTERS = ("/usr/share/{project}/rootwrap", "/usr/local/etc/{project}/rootwrap.d",
                     "/var/lib/openstack/etc/{project}/rootwrap.d", "/etc/{project}/rootwrap.d")


def password_secret(user: str) -> str:
    """The generated secret holding a Keystone service user's password."""
    return f"{user}-password"


def fernet_key(ctx: Context, secret_name: str) -> str:
    """A Fernet key (urlsafe base64 of 32 bytes) derived from a generated secret: the same in every
    replica that renders it, where a key created by the process would differ from pod to pod."""
    digest = hashlib.sha256(ctx.secret(secret_name).encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()


def region(ctx: Context) -> str:
    return str(ctx.settings.get("region") or "RegionOne")


def enabled(ctx: Context, key: str) -> bool:
    """Whether `services.<key>` is enabled in teapot.yaml (False outside Kubernetes settings)."""
    services = ctx.settings.get("services")
    if not isinstance(services, Mapping):
        return False
    section = services.get(key)
    return isinstance(section, Mapping) and bool(section.get("enabled"))


def registration(service_type: str, service_name: str, url_path: str,
                 user: str) -> KeystoneRegistration:
    """The catalog entry of a service and its service user `user`, whose password is the generated
    `password_secret(user)`, with the roles `SERVICE_ROLES`."""
    return KeystoneRegistration(service_type, service_name, url_path, user, password_secret(user),
                                SERVICE_ROLES)


def keystone_url(ctx: Context) -> str:
    return ctx.url("keystone") + "/v3"


def keystone_authtoken(ctx: Context, user: str,
                       service_type: str | None = None) -> dict[str, Any]:
    """[keystone_authtoken] of keystonemiddleware, validating tokens as service user `user`.

    `service_type` is the catalog type the service's access rules name: without it keystonemiddleware
    refuses every token of an application credential with access rules (the clusters' own)."""
    return {
        "service_type": service_type,
        "www_authenticate_uri": ctx.public_url("keystone") + "/v3",
        "auth_url": keystone_url(ctx),
        "auth_type": "password",
        "username": user,
        "password": ctx.secret(password_secret(user)),
        "project_name": "service",
        "user_domain_name": "Default",
        "project_domain_name": "Default",
        "region_name": region(ctx),
        "memcached_servers": ctx.cache_servers(),
        # Service tokens are only trusted from users holding the `service` role (CVE-2023-2088).
        "service_token_roles_required": True,
    }


def service_auth(ctx: Context, user: str, endpoint: str | None = None) -> dict[str, Any]:
    """A keystoneauth password section (e.g. nova.conf [neutron]) for calling another service as
    `user`; `endpoint` pins its in-cluster URL (`endpoint_override`) instead of the catalog's."""
    return {
        "auth_type": "password",
        "auth_url": keystone_url(ctx),
        "username": user,
        "password": ctx.secret(password_secret(user)),
        "project_name": "service",
        "user_domain_name": "Default",
        "project_domain_name": "Default",
        "region_name": region(ctx),
        "endpoint_override": endpoint,
    }


def transport_url(ctx: Context, project: str) -> str:
    return ctx.messaging_url(project)


def oslo_messaging_rabbit(ctx: Context) -> dict[str, Any]:
    """[oslo_messaging_rabbit]: quorum queues, which a RabbitMQ cluster keeps across a node loss."""
    return {"rabbit_quorum_queue": True, "rabbit_transient_quorum_queue": True,
            "heartbeat_rate": 3}


def messaging(ctx: Context, project: str) -> dict[str, dict[str, Any]]:
    """The sections of a service that talks RPC over RabbitMQ (merge with `sections`)."""
    return {
        "DEFAULT": {"transport_url": transport_url(ctx, project)},
        "oslo_messaging_rabbit": oslo_messaging_rabbit(ctx),
        "oslo_messaging_notifications": {"driver": "noop"},
    }


def oslo_concurrency(ctx: Context, project: str) -> dict[str, Any]:
    """[oslo_concurrency]: external locks in the service's own data directory."""
    return {"lock_path": ctx.data_path(project, "lock")}


def cache(ctx: Context) -> dict[str, Any]:
    """[cache] of oslo.cache: memcached when the target has one, else no shared cache."""
    servers = ctx.cache_servers()
    if servers is None:
        return {"enabled": False}
    return {"enabled": True, "backend": "dogpile.cache.pymemcache", "memcache_servers": servers}


def database(ctx: Context, db: str) -> dict[str, Any]:
    # Galera: retry forever while the cluster forms, recycle before its wait_timeout.
    return {"connection": ctx.database_url(db), "max_retries": -1, "connection_recycle_time": 600}


def common_sections(ctx: Context, project: str) -> dict[str, dict[str, Any]]:
    """The sections that close the config of every service here with RPC: external locks in its
    data directory, proxy headers (its API is behind the ingress), and the shared cache."""
    return {
        "oslo_concurrency": oslo_concurrency(ctx, project),
        "oslo_middleware": {"enable_proxy_headers_parsing": True},
        "cache": cache(ctx),
    }


def service_conf(ctx: Context, project: str, user: str,
                 own: Mapping[str, Mapping[str, Any]]) -> str:
    """The config file of a service with a database and RPC (e.g. cinder.conf): [DEFAULT] logging to
    stderr with its state in /var/lib/<project>, [database], [keystone_authtoken] as `user`; then
    its `own` sections (its [DEFAULT] options follow those); then `common_sections` and messaging."""
    return ini.render(sections(
        {
            "DEFAULT": {"use_stderr": True, "state_path": f"/var/lib/{project}"},
            "database": database(ctx, project),
            "keystone_authtoken": keystone_authtoken(ctx, user),
        },
        own,
        common_sections(ctx, project),
        messaging(ctx, project),
    ))


def sections(*parts: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Merge section dicts, later options winning."""
    out: dict[str, dict[str, Any]] = {}
    for part in parts:
        for name, options in part.items():
            out.setdefault(name, {}).update(options)
    return out


def rootwrap_conf(project: str) -> str:
    """rootwrap.conf for a project whose services run privileged commands through `sudo
    <project>-rootwrap`: the filters are looked for where images install them."""
    paths = ",".join(p.format(project=project) for p in _ROOTWRAP_FILTERS)
    return "\n".join([
        "[DEFAULT]",
        f"filters_path = {paths}",
        "exec_dirs = /sbin,/usr/sbin,/bin,/usr/bin,/usr/local/bin,/usr/local/sbin,"
        "/var/lib/openstack/bin",
        "use_syslog = false",
        "",
    ])


def command(binary: str, conf: Callable[[Context], str], *args: str) -> Argv:
    """The argv `binary --config-file <conf(ctx)> args...` of a daemon or a manage command."""
    return lambda ctx: [binary, "--config-file", conf(ctx), *args]


def uwsgi(ctx: Context, name: str, module: str, processes: int = 2, threads: int = 1,
          extra: Sequence[str] = ()) -> list[str]:
    """The argv of a WSGI API under uWSGI. uWSGI leaves sys.argv empty, which the OpenStack WSGI
    entry points need (they parse it with oslo.config), and runs each worker with its own app."""
    return [
        "uwsgi", "--master", "--die-on-term", "--lazy-apps", "--enable-threads",
        "--http-socket", f"{ctx.bind_host}:{ctx.port(name)}",
        "--processes", str(processes), "--threads", str(threads),
        "--buffer-size", "65535",
        "--module", module, *extra,
    ]


def paste_app(factory: str) -> dict[str, Any]:
    return {"paste.app_factory": factory}


def paste_filter(factory: str) -> dict[str, Any]:
    return {"paste.filter_factory": factory}


def paste_healthcheck() -> dict[str, Any]:
    """An oslo.middleware healthcheck app for a paste file (what readiness probes ask)."""
    return paste_app("oslo_middleware:Healthcheck.app_factory")


def paste_common() -> dict[str, dict[str, Any]]:
    """The paste sections every API pipeline here uses: proxy headers (the ingress), request size
    limit, Keystone tokens, and the healthcheck app."""
    return {
        "filter:http_proxy_to_wsgi": paste_filter(
            "oslo_middleware.http_proxy_to_wsgi:HTTPProxyToWSGI.factory"),
        "filter:sizelimit": paste_filter(
            "oslo_middleware.sizelimit:RequestBodySizeLimiter.factory"),
        "filter:authtoken": paste_filter("keystonemiddleware.auth_token:filter_factory"),
        "app:healthcheck": paste_healthcheck(),
    }


# What is the API's alone: a worker made from it gets these fields' defaults back.
_API_ONLY = ("port", "database", "bootstrap", "readiness", "keystone", "ingress", "env",
             "workload", "extra")


def worker(api: Service, name: str, description: str, argv: Argv, **changes: Any) -> Service:
    """A service of the same project as `api` (its package, image, config files and directory,
    settings, messaging and cache) that serves nothing: no port, database, bootstrap, readiness,
    catalog entry, ingress, environment, workload or extra of the API's. It starts after the API,
    whose bootstrap prepares the database; `changes` set any other field (e.g. `workload`)."""
    defaults = {f.name: f.default_factory() if f.default is dataclasses.MISSING else f.default
                for f in dataclasses.fields(Service) if f.name in _API_ONLY}
    return dataclasses.replace(api, **{**defaults, "name": name, "description": description,
                                       "command": argv, "depends_on": (api.name,), **changes})


def gunicorn(ctx: Context, name: str, app: str, workers: int = 1, threads: int = 4) -> list[str]:
    """The argv of a WSGI API under gunicorn (a box's), `app` being a teapot.deploy.wsgi entry
    point that gives the service its config file. A box stops it within two seconds: requests
    still open then are cut (a stopping box serves nobody). Idle connections are kept 75 s, not
    gunicorn's 2 s: a client polling every 2 s (openstacksdk's waits) would otherwise reuse a
    connection just as gunicorn closes it, and get "connection reset"."""
    return ["gunicorn", "--bind", f"{ctx.bind_host}:{ctx.port(name)}", "--workers", str(workers),
            "--threads", str(threads), "--keep-alive", "75", "--access-logfile", "-",
            "--graceful-timeout", "2", app]
