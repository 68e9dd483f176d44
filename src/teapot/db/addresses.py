"""Address allocation on tenant subnets. An address is taken by one INSERT ... SELECT that picks the
lowest free address of the subnet's pool, guarded by the unique constraint on (network, address):
two requests at once never get one address (the loser of a race retries and finds the next). An
owner (a host, or a cluster's endpoint) holds at most one address per network, so asking again
returns the one it has."""

from __future__ import annotations

import time

from sqlalchemy import delete, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from teapot.db.models import Address
from teapot.resources import network as nsm

HOST = "host"
ENDPOINT = "endpoint"
PUBLIC = "public"  # the network of public addresses (load balancers' VIPs)
LOADBALANCER = "loadbalancer"
ATTEMPTS = 8


class NoFreeAddress(Exception):
    pass


def allocate(session: Session, network_uuid: str, subnet: nsm.Subnet, kind: str, owner: str,
             cluster_uuid: str | None, highest: bool = False) -> str:
    """The owner's address on the network, allocated now if it has none (in the caller's
    transaction): the lowest free one, or with `highest` the highest (hosts take addresses from
    the bottom of the pool, load balancers' legs from the top). Raises NoFreeAddress when the
    pool is used up."""
    held = _held(session, network_uuid, kind, owner)
    if held is not None:
        return nsm.address_text(held)
    start, end = subnet.pool()
    first, step, pick = (":end", "- 1", "MAX") if highest else (":start", "+ 1", "MIN")
    statement = text(
        "INSERT INTO addresses (network_uuid, value, kind, owner, cluster_uuid, created_at) "
        "SELECT :net, free.v, :kind, :owner, :cluster, :now FROM ("
        f"  SELECT {pick}(c.v) AS v FROM ("
        f"    SELECT {first} AS v UNION ALL "
        f"    SELECT value {step} FROM addresses WHERE network_uuid = :net"
        "  ) AS c WHERE c.v BETWEEN :start AND :end "
        "  AND c.v NOT IN (SELECT value FROM addresses WHERE network_uuid = :net)"
        ") AS free WHERE free.v IS NOT NULL")
    values = {"net": network_uuid, "kind": kind, "owner": owner, "cluster": cluster_uuid,
              "now": time.time(), "start": start, "end": end}
    for _ in range(ATTEMPTS):
        try:
            with session.begin_nested():
                session.execute(statement, values)
        except IntegrityError:
            held = _held(session, network_uuid, kind, owner)
            if held is not None:  # made meanwhile by another request for the same owner
                return nsm.address_text(held)
            continue  # another owner took that address meanwhile: the next one
        held = _held(session, network_uuid, kind, owner)
        if held is None:
            raise NoFreeAddress(f"every address of {subnet.pool_start}-{subnet.pool_end} is taken")
        return nsm.address_text(held)
    raise NoFreeAddress("addresses are being taken faster than they can be allocated; try again")


def _held(session: Session, network_uuid: str, kind: str, owner: str) -> int | None:
    return session.scalar(select(Address.value).where(
        Address.network_uuid == network_uuid, Address.kind == kind, Address.owner == owner))


def of_cluster(session: Session, cluster_uuid: str) -> dict[tuple[str, str], str]:
    """(kind, owner) → address, for everything the cluster holds."""
    rows = session.execute(select(Address.kind, Address.owner, Address.value)
                           .where(Address.cluster_uuid == cluster_uuid)).all()
    return {(kind, owner): nsm.address_text(value) for kind, owner, value in rows}


def of_hosts(session: Session, host_uuids: list[str]) -> dict[str, str]:
    """Host uuid → its address (on whichever network it has one)."""
    if not host_uuids:
        return {}
    rows = session.execute(select(Address.owner, Address.value).where(
        Address.kind == HOST, Address.owner.in_(host_uuids))).all()
    return {owner: nsm.address_text(value) for owner, value in rows}


def release_hosts(session: Session, host_uuids: list[str]) -> None:
    if host_uuids:
        session.execute(delete(Address).where(Address.kind == HOST, Address.owner.in_(host_uuids)))


def release_cluster(session: Session, cluster_uuid: str) -> None:
    session.execute(delete(Address).where(Address.cluster_uuid == cluster_uuid))


def release_owner(session: Session, owner: str) -> None:
    """Every address `owner` holds, on any network."""
    session.execute(delete(Address).where(Address.owner == owner))
