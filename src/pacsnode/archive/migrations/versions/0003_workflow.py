"""workflow: job queue, MPPS, worklist, rejections

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 12:43:04.108730
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job",
        sa.Column("pk", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("queue_key", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_job")),
    )
    op.create_index("ix_job_due", "job", ["status", "next_run_at"], unique=False)
    op.create_index("ix_job_queue_key", "job", ["queue_key"], unique=False)
    op.create_table(
        "mpps",
        sa.Column("pk", sa.Integer(), nullable=False),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=True),
        sa.Column("calling_ae", sa.String(length=16), nullable=True),
        sa.Column("dataset", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_mpps")),
        sa.UniqueConstraint("sop_instance_uid", name=op.f("uq_mpps_sop_instance_uid")),
    )
    op.create_index(
        op.f("ix_mpps_study_instance_uid"), "mpps", ["study_instance_uid"], unique=False
    )
    op.create_table(
        "rejected_instance",
        sa.Column("pk", sa.Integer(), nullable=False),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("sop_class_uid", sa.String(length=64), nullable=False),
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("note_sop_instance_uid", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_rejected_instance")),
        sa.UniqueConstraint("sop_instance_uid", name=op.f("uq_rejected_instance_sop_instance_uid")),
    )
    op.create_table(
        "worklist_item",
        sa.Column("pk", sa.Integer(), nullable=False),
        sa.Column("order_number", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("dataset", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_worklist_item")),
    )
    op.create_index(
        op.f("ix_worklist_item_order_number"), "worklist_item", ["order_number"], unique=False
    )
    op.add_column("instance", sa.Column("rejection", sa.String(length=16), nullable=True))
    op.add_column("study", sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("study", "notified_at")
    op.drop_column("instance", "rejection")
    op.drop_index(op.f("ix_worklist_item_order_number"), table_name="worklist_item")
    op.drop_table("worklist_item")
    op.drop_table("rejected_instance")
    op.drop_index(op.f("ix_mpps_study_instance_uid"), table_name="mpps")
    op.drop_table("mpps")
    op.drop_index("ix_job_queue_key", table_name="job")
    op.drop_index("ix_job_due", table_name="job")
    op.drop_table("job")
