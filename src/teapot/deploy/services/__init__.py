"""One module per service. `box()` lists what `teapot up` runs; `kubernetes(settings)` what the
Kubernetes target runs for a teapot.yaml."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from teapot.deploy.service import Service, settings_key


def box(neutron: bool = False, storage: bool = False, switch: bool = False,
        octavia: bool = False) -> list[Service]:
    """What a box runs; with `switch`, also its emulated hosts (namespaces cabled to the switch);
    with `neutron`, also Neutron's API and the MariaDB it needs; with `octavia`, also Octavia's API
    and driver agent (Teapot's provider) and MariaDB; with `storage`, also Ceph (with RADOS
    Gateway), Manila, Cinder, Barbican and RabbitMQ (and MariaDB)."""
    from teapot.deploy.services import emulated_hosts, ironic, keystone, sushy_emulator, teapot

    services = [keystone.SERVICE, ironic.SERVICE, sushy_emulator.SERVICE, teapot.API,
                teapot.CONDUCTOR]
    if switch:
        services.append(emulated_hosts.SERVICE)
    if neutron or storage or octavia:
        from teapot.deploy.services import mariadb

        services.append(mariadb.SERVICE)
    if neutron:
        from teapot.deploy.services import neutron as neutron_service

        services.append(neutron_service.box_service())
    if octavia:
        from teapot.deploy.services import octavia as octavia_service

        services += octavia_service.box_services()
    if storage:
        from teapot.deploy.services import barbican, ceph, cinder, infrastructure, manila

        services += [infrastructure.BOX_EPMD, infrastructure.BOX_RABBITMQ, *ceph.box_services(),
                     *manila.box_services(), *cinder.box_services(), barbican.SERVICE]
    return services


def with_infrastructure(service: Service) -> Service:
    """The service with dependencies on what it stands on: galera for a database, rabbitmq for
    messaging, memcached for a cache (the service modules name only other services)."""
    wanted = (("galera", service.database), ("rabbitmq", service.messaging),
              ("memcached", service.cache))
    needs = tuple(name for name, needed in wanted if needed and name not in service.depends_on)
    if not needs:
        return service
    return dataclasses.replace(service, depends_on=service.depends_on + needs)


def kubernetes(settings: Mapping) -> list[Service]:
    """Every service of the enabled `services:` of a (completed) teapot.yaml, with Galera and
    memcached, and RabbitMQ when an enabled service needs it. When `identity.external` names
    another cloud's Keystone, Keystone is left out, and so are the dependencies on it."""
    from teapot.deploy.services import (
        cinder,
        glance,
        horizon,
        infrastructure,
        ironic,
        keystone,
        manila,
        neutron,
        nova,
        placement,
        rgw,
        swift,
        teapot,
    )

    candidates: list[Service] = []
    if not settings["identity"]["external"]:
        candidates.append(keystone.kubernetes_service())
    candidates += [glance.service(settings), placement.SERVICE, *nova.SERVICES, *neutron.SERVICES,
                   *cinder.SERVICES, *manila.SERVICES, ironic.kubernetes_service(),
                   horizon.SERVICE, *swift.services(settings), rgw.service(settings),
                   *teapot.kubernetes_services()]
    enabled = [s for s in candidates if settings["services"][settings_key(s)]["enabled"]]
    infrastructure_services = [infrastructure.galera(settings), infrastructure.MEMCACHED]
    if any(s.messaging for s in enabled):
        infrastructure_services.append(infrastructure.rabbitmq(settings))
    services = [with_infrastructure(s) for s in infrastructure_services + enabled]
    if settings["identity"]["external"]:
        services = [without_dependency(s, "keystone") for s in services]
    return services


def without_dependency(service: Service, name: str) -> Service:
    if name not in service.depends_on:
        return service
    return dataclasses.replace(service,
                               depends_on=tuple(d for d in service.depends_on if d != name))
