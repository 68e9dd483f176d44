"""Keystone registration of services and the identities of a box, idempotent (openstacksdk)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from teapot.deploy.service import KeystoneRegistration


def admin_connection(auth_url: str, password: str):
    import openstack

    return openstack.connection.Connection(
        auth={"auth_url": auth_url, "username": "admin", "password": password, "project_name": "admin",
              "user_domain_name": "Default", "project_domain_name": "Default"},
        auth_type="password", region_name="RegionOne", identity_api_version="3", app_name="teapot-up",
    )


def _project(conn, name: str):
    return conn.identity.find_project(name, domain_id="default") or conn.identity.create_project(
        name=name, domain_id="default", description=f"{name} (created by Teapot)")


def _role(conn, name: str):
    return conn.identity.find_role(name) or conn.identity.create_role(name=name)


def ensure_user(conn, name: str, password: str, project: str, roles: Iterable[str]) -> None:
    proj = _project(conn, project)
    user = conn.identity.find_user(name, domain_id="default")
    if user is None:
        user = conn.identity.create_user(name=name, password=password, domain_id="default",
                                         default_project_id=proj.id)
    else:
        conn.identity.update_user(user, password=password)
    for role in roles:
        conn.identity.assign_project_role_to_user(proj, user, _role(conn, role))


def register_endpoints(conn, service_type: str, service_name: str, region: str,
                       urls: dict[str, str]) -> None:
    """A catalog entry with one endpoint per interface, created or corrected."""
    service = next(iter(conn.identity.services(type=service_type)), None)
    if service is None:
        service = conn.identity.create_service(name=service_name, type=service_type,
                                               description=f"{service_name} (registered by Teapot)")
    existing = {e.interface: e for e in conn.identity.endpoints(service_id=service.id)}
    for interface, url in urls.items():
        endpoint = existing.get(interface)
        if endpoint is None:
            conn.identity.create_endpoint(service_id=service.id, interface=interface, url=url,
                                          region_id=region)
        elif endpoint.url != url:
            conn.identity.update_endpoint(endpoint, url=url)


def unregister(conn, service_type: str, url: str) -> None:
    """Remove the endpoints of `service_type` at `url`, and the catalog entry left without any."""
    for service in list(conn.identity.services(type=service_type)):
        endpoints = list(conn.identity.endpoints(service_id=service.id))
        ours = [e for e in endpoints if e.url == url]
        for endpoint in ours:
            conn.identity.delete_endpoint(endpoint, ignore_missing=True)
        if ours and len(ours) == len(endpoints):
            conn.identity.delete_service(service, ignore_missing=True)


def register(conn, reg: KeystoneRegistration, url: str, secret: Callable[[str], str]) -> None:
    for service_type, service_name in ((reg.service_type, reg.service_name), *reg.also_types):
        register_endpoints(conn, service_type, service_name, "RegionOne",
                           {"public": url, "internal": url})
    if reg.user and reg.password_secret:
        ensure_user(conn, reg.user, secret(reg.password_secret), "service", reg.roles)
