"""Subnets of tenant networks, the addresses allocated on them (hosts' and clusters' endpoints), and
the network configuration each host is handed.

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("networks") as batch:
        batch.add_column(sa.Column("subnet", sa.JSON, nullable=True))
    op.create_table(
        "addresses",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("network_uuid", sa.String(36), nullable=False, index=True),
        # The address as an integer: allocation finds the lowest free one in SQL. One address is
        # never given twice on one network: the constraint guards allocation.
        sa.Column("value", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),  # "host" | "endpoint"
        sa.Column("owner", sa.String(36), nullable=False),  # the host's or the cluster's uuid
        sa.Column("cluster_uuid", sa.String(36), nullable=True, index=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.UniqueConstraint("network_uuid", "value"),
        sa.UniqueConstraint("network_uuid", "kind", "owner"),
    )
    with op.batch_alter_table("hosts") as batch:
        batch.add_column(sa.Column("network_data", sa.JSON, nullable=True))


def downgrade():
    with op.batch_alter_table("hosts") as batch:
        batch.drop_column("network_data")
    op.drop_table("addresses")
    with op.batch_alter_table("networks") as batch:
        batch.drop_column("subnet")
