"""Load balancers of projects: a public VIP, an address on a tenant network, listeners, members.

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "loadbalancers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("uuid", sa.String(36), nullable=False, unique=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("project_id", sa.String(64), nullable=False, index=True),
        sa.Column("network_uuid", sa.String(36), nullable=False, index=True),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("vip_address", sa.String(45), nullable=True),
        sa.Column("tenant_address", sa.String(45), nullable=True),
        sa.Column("provisioning_status", sa.String(32), nullable=False),
        sa.Column("operating_status", sa.String(32), nullable=False),
        sa.Column("status", sa.JSON, nullable=False),  # applied members, health of each member
        sa.Column("status_reason", sa.Text, nullable=True),
        sa.Column("deleting", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("generation", sa.Integer, nullable=False, server_default="1"),
        sa.Column("applied_generation", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.Float, nullable=False, server_default="0", index=True),
        sa.Column("lease_owner", sa.String(255), nullable=True),
        sa.Column("lease_expires_at", sa.Float, nullable=False, server_default="0"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=True),
        sa.UniqueConstraint("project_id", "name"),
    )


def downgrade():
    op.drop_table("loadbalancers")
