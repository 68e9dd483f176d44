"""Teapot's tables. Migrations in `migrations/` create them; this module is their Python face."""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Float, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Host(Base):
    __tablename__ = "hosts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    name: Mapped[str] = mapped_column(String(253), unique=True)
    labels: Mapped[dict] = mapped_column(JSON, default=dict)
    spec: Mapped[dict] = mapped_column(JSON)
    generation: Mapped[int] = mapped_column(Integer, default=1)
    bmc_username: Mapped[str] = mapped_column(String(255))
    bmc_password: Mapped[bytes] = mapped_column(LargeBinary)  # encrypted
    user_data: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # encrypted
    bmc_version: Mapped[int] = mapped_column(Integer, default=1)
    deleting: Mapped[bool] = mapped_column(Boolean, default=False)

    # status, written by the conductor
    state: Mapped[str] = mapped_column(String(32), index=True)
    status: Mapped[dict] = mapped_column(JSON, default=dict)

    # scheduling and leases
    next_attempt_at: Mapped[float] = mapped_column(Float, default=0.0, index=True)
    lease_owner: Mapped[str | None] = mapped_column(String(255), nullable=True)
    lease_expires_at: Mapped[float] = mapped_column(Float, default=0.0)

    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)


class HostEvent(Base):
    """What a conductor did to a host and when: the audit trail, and how overlap is checked."""

    __tablename__ = "host_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host_uuid: Mapped[str] = mapped_column(String(36), index=True)
    conductor: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(32))
    operation: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[float] = mapped_column(Float)
    outcome: Mapped[str] = mapped_column(Text)
