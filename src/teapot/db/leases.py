"""Leases: which conductor works on an object right now. One conditional UPDATE takes a lease, so
two conductors can never both hold it; a lease not renewed expires and another conductor takes over.
Works for any table with id, next_attempt_at, lease_owner and lease_expires_at columns."""

from __future__ import annotations

import time

from sqlalchemy import or_, select, update
from sqlalchemy.orm import sessionmaker


def due(sm: sessionmaker, model, now: float, limit: int) -> list[int]:
    """Objects whose next look is due and that no live lease holds."""
    with sm() as session:
        return list(session.scalars(
            select(model.id)
            .where(model.next_attempt_at <= now)
            .where(or_(model.lease_owner.is_(None), model.lease_expires_at < now))
            .order_by(model.next_attempt_at)
            .limit(limit)
        ))


def acquire(sm: sessionmaker, model, object_id: int, owner: str, seconds: float) -> bool:
    now = time.time()
    with sm.begin() as session:
        result = session.execute(
            update(model)
            .where(model.id == object_id)
            .where(or_(model.lease_owner.is_(None), model.lease_owner == owner,
                       model.lease_expires_at < now))
            .values(lease_owner=owner, lease_expires_at=now + seconds)
        )
        return result.rowcount == 1


def defer(sm: sessionmaker, model, object_id: int, seconds: float,
          reason: str | None = None) -> None:
    """Look at the object again in `seconds`, not before (whoever holds its lease); `reason`
    becomes its status reason, when it has one."""
    values: dict = {"next_attempt_at": time.time() + seconds}
    if reason is not None and hasattr(model, "status_reason"):
        values["status_reason"] = reason
    with sm.begin() as session:
        session.execute(update(model).where(model.id == object_id).values(**values))


def release(sm: sessionmaker, model, object_id: int, owner: str) -> None:
    with sm.begin() as session:
        session.execute(
            update(model).where(model.id == object_id, model.lease_owner == owner)
            .values(lease_owner=None, lease_expires_at=0.0)
        )
