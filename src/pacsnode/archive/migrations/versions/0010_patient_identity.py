"""patient identity: assigning authorities, edited records, admission issuers

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "authority",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("universal_entity_id", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "universal_entity_id_type", sa.String(length=16), server_default="", nullable=False
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_authority")),
    )
    with op.batch_alter_table("remote_ae") as batch:
        batch.add_column(sa.Column("fallback_authority", sa.Integer(), nullable=True))
    with op.batch_alter_table("patient") as batch:
        batch.add_column(
            sa.Column("edited", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    with op.batch_alter_table("study") as batch:
        batch.add_column(
            sa.Column("edited", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch.add_column(sa.Column("issuer_of_admission_id_sequence", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("study") as batch:
        batch.drop_column("issuer_of_admission_id_sequence")
        batch.drop_column("edited")
    with op.batch_alter_table("patient") as batch:
        batch.drop_column("edited")
    with op.batch_alter_table("remote_ae") as batch:
        batch.drop_column("fallback_authority")
    op.drop_table("authority")
