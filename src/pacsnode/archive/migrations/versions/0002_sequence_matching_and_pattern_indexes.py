"""sequence matching, pattern indexes, more return keys, normalised times

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 12:20:39.503037
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op
from pydicom import Dataset

from pacsnode.archive.attributes import fold, item_values, normalized_time

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# (table, column) of the keys matched with wildcards: PostgreSQL needs text_pattern_ops.
PATTERN_INDEXES = [
    ("patient", "patient_id"),
    ("patient", "patient_name_ci"),
    ("study", "accession_number_ci"),
    ("study", "referring_physician_name_ci"),
    ("study", "study_id"),
    ("series", "modality_ci"),
]
# As they were at this revision: later revisions may add columns that do not exist yet.
TIME_COLUMNS = [
    ("patient", "patient_birth_time"),
    ("study", "study_time"),
    ("series", "series_time"),
    ("series", "performed_procedure_step_start_time"),
    ("series", "performed_procedure_step_end_time"),
    ("instance", "content_time"),
    ("instance", "acquisition_time"),
    ("instance", "presentation_creation_time"),
]
SEQUENCE_COLUMNS = [
    ("series", "RequestAttributesSequence", "request_attributes_sequence"),
    ("instance", "ContentTemplateSequence", "content_template_sequence"),
    ("instance", "ReferencedRequestSequence", "referenced_request_sequence"),
    ("instance", "ConceptNameCodeSequence", "concept_name_code_sequence"),
    ("instance", "VerifyingObserverSequence", "verifying_observer_sequence"),
    ("instance", "ReferencedSeriesSequence", "referenced_series_sequence"),
    (
        "instance",
        "CurrentRequestedProcedureEvidenceSequence",
        "current_requested_procedure_evidence_sequence",
    ),
]


def upgrade() -> None:
    sequence_value = op.create_table(
        "sequence_value",
        sa.Column("pk", sa.Integer(), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("owner_pk", sa.Integer(), nullable=False),
        sa.Column("sequence", sa.String(length=64), nullable=False),
        sa.Column("item", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=256), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("value_ci", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_sequence_value")),
    )
    op.create_index("ix_sequence_value_owner", "sequence_value", ["level", "owner_pk"])
    op.create_index("ix_sequence_value_path", "sequence_value", ["sequence", "path", "value"])
    op.add_column("instance", sa.Column("acquisition_number", sa.Integer(), nullable=True))
    for column in ("slice_thickness", "slice_location", "image_position_patient"):
        op.add_column("instance", sa.Column(column, sa.Text(), nullable=True))
    op.add_column("instance", sa.Column("image_orientation_patient", sa.Text(), nullable=True))
    for column in (
        "patient_mother_birth_name",
        "patient_mother_birth_name_ci",
        "issuer_of_patient_id_qualifiers_sequence",
    ):
        op.add_column("patient", sa.Column(column, sa.Text(), nullable=True))
    for table, column in PATTERN_INDEXES:
        name = f"ix_{table}_{column}"
        op.drop_index(name, table_name=table)
        op.create_index(name, table, [column], postgresql_ops={column: "text_pattern_ops"})
    _normalise_times()
    _fill_sequence_values(sequence_value)


def _normalise_times() -> None:
    """Times are compared as ``HHMMSS.FFFFFF`` strings: ACR-NEMA ``HH:MM:SS`` and short
    ``HHMM`` values already stored are rewritten to that form."""
    connection = op.get_bind()
    for table_name, name in TIME_COLUMNS:
        table = sa.table(table_name, sa.column("pk"), sa.column(name))
        column = table.c[name]
        odd = sa.or_(column.like("%:%"), sa.func.length(column) < 6)
        rows = connection.execute(sa.select(table.c.pk, column).where(odd)).all()
        for pk, value in rows:
            connection.execute(
                table.update().where(table.c.pk == pk).values({name: normalized_time(value)})
            )


def _fill_sequence_values(sequence_value: sa.Table) -> None:
    """Index the items of the sequences already stored as DICOM JSON."""
    connection = op.get_bind()
    for table_name, keyword, name in SEQUENCE_COLUMNS:
        table = sa.table(table_name, sa.column("pk"), sa.column(name))
        stored = connection.execute(
            sa.select(table.c.pk, table.c[name]).where(table.c[name].is_not(None))
        )
        for owner_pk, text in stored.all():
            rows = [
                {
                    "level": table_name,
                    "owner_pk": owner_pk,
                    "sequence": keyword,
                    "item": number,
                    "path": path,
                    "value": value,
                    "value_ci": fold(value),
                }
                for number, item in enumerate(json.loads(text))
                for path, value in item_values(Dataset.from_json(item))
            ]
            if rows:
                connection.execute(sequence_value.insert(), rows)


def downgrade() -> None:
    for table, column in PATTERN_INDEXES:
        name = f"ix_{table}_{column}"
        op.drop_index(name, table_name=table)
        op.create_index(name, table, [column])
    for column in (
        "issuer_of_patient_id_qualifiers_sequence",
        "patient_mother_birth_name_ci",
        "patient_mother_birth_name",
    ):
        op.drop_column("patient", column)
    for column in (
        "image_orientation_patient",
        "image_position_patient",
        "slice_location",
        "slice_thickness",
        "acquisition_number",
    ):
        op.drop_column("instance", column)
    op.drop_index("ix_sequence_value_path", table_name="sequence_value")
    op.drop_index("ix_sequence_value_owner", table_name="sequence_value")
    op.drop_table("sequence_value")
