"""instance.received_at index: the dashboard's ingest rate without a table scan

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-09
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_instance_received_at", "instance", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_instance_received_at", table_name="instance")
