"""Hosts and their events.

Revision ID: 0001
Revises:
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "hosts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("uuid", sa.String(36), nullable=False, unique=True),
        sa.Column("name", sa.String(253), nullable=False, unique=True),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("bmc_username", sa.String(255), nullable=False),
        sa.Column("bmc_password", sa.LargeBinary, nullable=False),
        sa.Column("user_data", sa.LargeBinary, nullable=True),
        sa.Column("bmc_version", sa.Integer, nullable=False),
        sa.Column("deleting", sa.Boolean, nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("status", sa.JSON, nullable=False),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("lease_owner", sa.String(255), nullable=True),
        sa.Column("lease_expires_at", sa.Float, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_hosts_state", "hosts", ["state"])
    op.create_index("ix_hosts_next_attempt_at", "hosts", ["next_attempt_at"])
    op.create_table(
        "host_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("host_uuid", sa.String(36), nullable=False),
        sa.Column("conductor", sa.String(255), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("operation", sa.String(64), nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
    )
    op.create_index("ix_host_events_host_uuid", "host_events", ["host_uuid"])


def downgrade():
    op.drop_table("host_events")
    op.drop_table("hosts")
