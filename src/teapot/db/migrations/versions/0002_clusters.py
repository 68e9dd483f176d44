"""Clusters: host classes, cluster templates, clusters, node groups, quotas, host claims.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("hosts") as batch:
        batch.add_column(sa.Column("cluster_uuid", sa.String(36), nullable=True))
        batch.add_column(sa.Column("nodegroup", sa.String(255), nullable=True))
        batch.create_index("ix_hosts_cluster_uuid", ["cluster_uuid"])
    op.create_table(
        "host_classes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "cluster_templates",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("uuid", sa.String(36), nullable=False, unique=True),
        sa.Column("name", sa.String(255), nullable=False, index=True),
        sa.Column("project_id", sa.String(64), nullable=False, index=True),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("public", sa.Boolean, nullable=False),
        sa.Column("hidden", sa.Boolean, nullable=False),
        sa.Column("attrs", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=True),
    )
    op.create_table(
        "clusters",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("uuid", sa.String(36), nullable=False, unique=True),
        sa.Column("name", sa.String(255), nullable=False, index=True),
        sa.Column("project_id", sa.String(64), nullable=False, index=True),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("cluster_template_id", sa.String(36), nullable=False, index=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("status_reason", sa.Text, nullable=True),
        sa.Column("attrs", sa.JSON, nullable=False),
        sa.Column("ca_cert", sa.LargeBinary, nullable=False),
        sa.Column("ca_key", sa.LargeBinary, nullable=False),
        sa.Column("secrets", sa.LargeBinary, nullable=False),
        sa.Column("deleting", sa.Boolean, nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.Float, nullable=False, index=True),
        sa.Column("lease_owner", sa.String(255), nullable=True),
        sa.Column("lease_expires_at", sa.Float, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=True),
    )
    op.create_table(
        "nodegroups",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("uuid", sa.String(36), nullable=False, unique=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("cluster_uuid", sa.String(36), nullable=False, index=True),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("flavor_id", sa.String(255), nullable=True),
        sa.Column("image_id", sa.String(255), nullable=True),
        sa.Column("node_count", sa.Integer, nullable=False),
        sa.Column("min_node_count", sa.Integer, nullable=False),
        sa.Column("max_node_count", sa.Integer, nullable=True),
        sa.Column("is_default", sa.Boolean, nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("status_reason", sa.Text, nullable=True),
        sa.Column("nodes_to_remove", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=True),
        sa.UniqueConstraint("cluster_uuid", "name"),
    )
    op.create_table(
        "quotas",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("resource", sa.String(64), nullable=False),
        sa.Column("hard_limit", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=True),
        sa.UniqueConstraint("project_id", "resource"),
    )


def downgrade():
    for table in ("quotas", "nodegroups", "clusters", "cluster_templates", "host_classes"):
        op.drop_table(table)
    with op.batch_alter_table("hosts") as batch:
        batch.drop_index("ix_hosts_cluster_uuid")
        batch.drop_column("nodegroup")
        batch.drop_column("cluster_uuid")
