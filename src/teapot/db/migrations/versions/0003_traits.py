"""Hardware traits on hosts and host classes.

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    for table in ("hosts", "host_classes"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("traits", sa.JSON, nullable=False, server_default="[]"))


def downgrade():
    for table in ("hosts", "host_classes"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("traits")
