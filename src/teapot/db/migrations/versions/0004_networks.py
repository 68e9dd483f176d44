"""Tenant networks (one VLAN each, never shared), the switches whose ports the conductor moves, the
VLAN each host's port is on, and the network of each cluster.

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "networks",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("uuid", sa.String(36), nullable=False, unique=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("project_id", sa.String(64), nullable=False, index=True),
        # One VLAN per network, never two networks on one VLAN: the constraint guards allocation.
        sa.Column("vlan_id", sa.Integer, nullable=False, unique=True),
        sa.Column("is_default", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("status_reason", sa.Text, nullable=True),
        sa.Column("neutron_id", sa.String(36), nullable=True),
        sa.Column("deleting", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("generation", sa.Integer, nullable=False, server_default="1"),
        sa.Column("error_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.Float, nullable=False, server_default="0", index=True),
        sa.Column("lease_owner", sa.String(255), nullable=True),
        sa.Column("lease_expires_at", sa.Float, nullable=False, server_default="0"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=True),
        sa.UniqueConstraint("project_id", "name"),
    )
    op.create_table(
        "switches",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("error_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.Float, nullable=False, server_default="0", index=True),
        sa.Column("lease_owner", sa.String(255), nullable=True),
        sa.Column("lease_expires_at", sa.Float, nullable=False, server_default="0"),
    )
    with op.batch_alter_table("hosts") as batch:
        batch.add_column(sa.Column("port_vlan", sa.Integer, nullable=True))
        batch.add_column(sa.Column("port_error", sa.Text, nullable=True))
    with op.batch_alter_table("clusters") as batch:
        batch.add_column(sa.Column("network_uuid", sa.String(36), nullable=True))
        batch.create_index("ix_clusters_network_uuid", ["network_uuid"])


def downgrade():
    with op.batch_alter_table("clusters") as batch:
        batch.drop_index("ix_clusters_network_uuid")
        batch.drop_column("network_uuid")
    with op.batch_alter_table("hosts") as batch:
        batch.drop_column("port_error")
        batch.drop_column("port_vlan")
    op.drop_table("switches")
    op.drop_table("networks")
