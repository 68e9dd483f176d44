"""Host queries. Every write that must not race is one statement or one IMMEDIATE transaction."""

from __future__ import annotations

import time
import uuid as uuidlib
from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from teapot.db import leases, pagination
from teapot.db.models import Host, HostEvent
from teapot.resources.errors import ValidationError


class NotFound(LookupError):
    pass


def get(session: Session, ident: str) -> Host:
    column = Host.uuid if _is_uuid(ident) else Host.name
    host = session.scalars(select(Host).where(column == ident)).first()
    if host is None:
        raise NotFound(f"host {ident}")
    return host


def _is_uuid(value: str) -> bool:
    try:
        uuidlib.UUID(value)
    except ValueError:
        return False
    return True


def list_all(session: Session, page: pagination.Page | None = None) -> Sequence[Host]:
    query = select(Host).order_by(Host.name)
    if page is not None:
        query = pagination.apply(session, query, page)
    return session.scalars(query).all()


def create(session: Session, host: Host) -> Host:
    session.add(host)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise ValidationError("name", f"a host named {host.name!r} already exists") from None
    return host


def due(sm: sessionmaker, now: float, limit: int) -> list[int]:
    """Hosts whose next look is due and that no live lease holds."""
    return leases.due(sm, Host, now, limit)


def acquire_lease(sm: sessionmaker, host_id: int, owner: str, seconds: float) -> bool:
    """Take the host's lease if it is free or expired (see `leases`)."""
    return leases.acquire(sm, Host, host_id, owner, seconds)


def release_lease(sm: sessionmaker, host_id: int, owner: str) -> None:
    leases.release(sm, Host, host_id, owner)


def save_status(sm: sessionmaker, host_id: int, owner: str, seen_generation: int, state: str,
                status: dict, next_attempt_at: float, lease_seconds: float) -> bool:
    """Record a conductor's result while it holds the lease. A spec changed meanwhile (a newer
    generation) makes the host due at once instead of after the delay."""
    now = time.time()
    with sm.begin() as session:
        host = session.get(Host, host_id)
        if host is None or host.lease_owner != owner:
            return False
        host.state = state
        host.status = status
        host.next_attempt_at = next_attempt_at if host.generation == seen_generation else 0.0
        host.lease_expires_at = now + lease_seconds
        host.updated_at = now
        return True


def remove(sm: sessionmaker, host_id: int, owner: str) -> None:
    with sm.begin() as session:
        session.execute(delete(Host).where(Host.id == host_id, Host.lease_owner == owner))


def record_event(sm: sessionmaker, event: HostEvent) -> None:
    with sm.begin() as session:
        session.add(event)
