"""Network queries. A network's VLAN is allocated by one INSERT ... SELECT that picks the lowest free
VLAN of the configured ranges, guarded by the unique constraint on `vlan_id`: two requests at once
can never get one VLAN (the loser of a race retries, and finds the next free one)."""

from __future__ import annotations

import time
import uuid as uuidlib
from collections.abc import Sequence

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from teapot.db import pagination
from teapot.db.hosts import NotFound, _is_uuid
from teapot.db.models import Cluster, Host, Network
from teapot.resources import network as nsm

DEFAULT_NAME = "default"
ATTEMPTS = 5


class NoFreeVlan(Exception):
    pass


def _candidates(ranges: list[tuple[int, int]]) -> tuple[str, dict]:
    """SQL of a recursive CTE listing every VLAN of `ranges`, with its parameters."""
    parts, params = [], {}
    for i, (lo, hi) in enumerate(ranges):
        parts.append(f"SELECT :lo{i} UNION ALL SELECT v + 1 FROM r{i} WHERE v < :hi{i}")
        params.update({f"lo{i}": lo, f"hi{i}": hi})
    ctes = ", ".join(f"r{i}(v) AS ({part})" for i, part in enumerate(parts))
    union = " UNION ALL ".join(f"SELECT v FROM r{i}" for i in range(len(parts)))
    return f"WITH RECURSIVE {ctes}, candidates(v) AS ({union})", params


def create(session: Session, *, project_id: str, name: str, subnet: nsm.Subnet,
           description: str = "", is_default: bool = False,
           ranges: list[tuple[int, int]]) -> Network:
    """A new network with the lowest free VLAN of `ranges` and `subnet`, in the caller's
    transaction.
    Raises NoFreeVlan when every VLAN is taken, LookupError when the project has one of that name."""
    cte, params = _candidates(ranges)
    now = time.time()
    for _ in range(ATTEMPTS):
        network_uuid = str(uuidlib.uuid4())
        values = {**params, "uuid": network_uuid, "name": name, "description": description,
                  "project_id": project_id, "is_default": is_default, "status": nsm.CREATING,
                  "now": now}
        statement = text(
            f"{cte} INSERT INTO networks (uuid, name, description, project_id, vlan_id, is_default, "
            "status, deleting, generation, error_count, next_attempt_at, lease_expires_at, created_at) "
            f"SELECT :uuid, :name, :description, :project_id, free.v, :is_default, :status, "
            f"{_false(session)}, 1, 0, 0, 0, :now "
            "FROM (SELECT MIN(v) AS v FROM candidates WHERE v NOT IN (SELECT vlan_id FROM networks)) "
            "AS free WHERE free.v IS NOT NULL")
        try:
            with session.begin_nested():
                session.execute(statement, values)  # (a WITH statement has no rowcount in pysqlite)
        except IntegrityError as e:
            if _exists(session, project_id, name):
                raise LookupError(f"project already has a network named {name!r}") from None
            if "vlan" in str(e.orig).lower():
                continue  # another request took that VLAN meanwhile: the next one
            raise
        row = session.scalars(select(Network).where(Network.uuid == network_uuid)).first()
        if row is None:
            raise NoFreeVlan("every VLAN of the tenant ranges is taken")
        row.subnet = subnet.record()
        return row
    raise NoFreeVlan("VLANs are being taken faster than they can be allocated; try again")


def _false(session: Session) -> str:
    return "false" if session.bind.dialect.name == "postgresql" else "0"


def _exists(session: Session, project_id: str, name: str) -> bool:
    return session.scalar(select(func.count(Network.id)).where(
        Network.project_id == project_id, Network.name == name)) > 0


def get(session: Session, ident: str, project_id: str | None) -> Network:
    """By uuid or name; `project_id` None means any project (admins)."""
    column = Network.uuid if _is_uuid(ident) else Network.name
    query = select(Network).where(column == ident)
    if project_id is not None:
        query = query.where(Network.project_id == project_id)
    rows = session.scalars(query).all()
    if not rows:
        raise NotFound(f"network {ident}")
    if len(rows) > 1:
        raise LookupError(f"several networks are named {ident}; use the uuid")
    return rows[0]


def listed(session: Session, project_id: str | None, page: pagination.Page) -> Sequence[Network]:
    query = select(Network)
    if project_id is not None:
        query = query.where(Network.project_id == project_id)
    return session.scalars(pagination.apply(session, query, page)).all()


def default_for(session: Session, project_id: str, ranges: list[tuple[int, int]],
                subnet: nsm.Subnet) -> Network:
    """The project's default network, created on first use."""
    row = session.scalars(select(Network).where(Network.project_id == project_id,
                                                Network.is_default.is_(True))).first()
    if row is not None:
        return row
    try:
        return create(session, project_id=project_id, name=DEFAULT_NAME, is_default=True,
                      subnet=subnet,
                      description="created with the project's first cluster", ranges=ranges)
    except LookupError:  # created meanwhile by another request of the project
        return session.scalars(select(Network).where(Network.project_id == project_id,
                                                     Network.name == DEFAULT_NAME)).one()


def subnet_of(network: Network, default: nsm.Subnet) -> nsm.Subnet:
    """The network's subnet (networks made before subnets existed have the default one)."""
    return nsm.Subnet.from_record(network.subnet) if network.subnet else default


def users(session: Session, network: Network) -> list[str]:
    """What still uses the network: clusters on it and hosts whose ports are on its VLAN."""
    clusters = session.scalars(select(Cluster.name).where(Cluster.network_uuid == network.uuid)
                               .order_by(Cluster.name)).all()
    hosts = session.scalars(select(Host.name).where(Host.port_vlan == network.vlan_id)
                            .order_by(Host.name)).all()
    return [f"cluster {c}" for c in clusters] + [f"host {h}" for h in hosts]
