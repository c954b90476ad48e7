"""instance metadata cache

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "instance_metadata",
        sa.Column("instance_pk", sa.Integer(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["instance_pk"],
            ["instance.pk"],
            name=op.f("fk_instance_metadata_instance_pk"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("instance_pk", name=op.f("pk_instance_metadata")),
    )


def downgrade() -> None:
    op.drop_table("instance_metadata")
