"""cluster: routing rules and nodes in the index, one pending job per once-key

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    op.create_table(
        "route_rule",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("rule", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_route_rule")),
    )
    op.create_table(
        "cluster_node",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("dicom_port", sa.Integer(), nullable=False),
        sa.Column("http_port", sa.Integer(), nullable=False),
        sa.Column("associations", sa.Integer(), server_default="0", nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_cluster_node")),
    )
    with op.batch_alter_table("job") as batch:
        batch.add_column(sa.Column("once_key", sa.String(length=200), nullable=True))
    # Route-wait jobs (the only ones queued once so far) that wait now: the first of
    # each key holds it; a second one, which a race on PostgreSQL could make, does not.
    op.execute(
        "UPDATE job SET once_key = queue_key WHERE pk IN (SELECT min(pk) FROM job "
        "WHERE kind = 'route-wait' AND status = 'pending' GROUP BY queue_key)"
    )
    op.create_index(
        "uq_job_pending_once_key",
        "job",
        ["once_key"],
        unique=True,
        sqlite_where=_PENDING,
        postgresql_where=_PENDING,
    )


def downgrade() -> None:
    op.drop_index("uq_job_pending_once_key", table_name="job")
    with op.batch_alter_table("job") as batch:
        batch.drop_column("once_key")
    op.drop_table("cluster_node")
    op.drop_table("route_rule")
