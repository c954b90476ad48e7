"""remote ae table

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "remote_ae",
        sa.Column("ae_title", sa.String(length=16), nullable=False),
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("duplicate_policy", sa.String(length=16), nullable=True),
        sa.Column("commitment_report", sa.String(length=16), nullable=False),
        sa.Column("pending_responses", sa.Boolean(), nullable=False),
        sa.Column("offers", sa.Text(), server_default="[]", nullable=False),
        sa.Column("allowed", sa.Text(), server_default="[]", nullable=False),
        sa.Column("transfer_syntaxes", sa.Text(), server_default="[]", nullable=False),
        sa.Column("move_destination_only", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("ae_title", name=op.f("pk_remote_ae")),
    )
    op.add_column("job", sa.Column("result", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("job", "result")
    op.drop_table("remote_ae")
