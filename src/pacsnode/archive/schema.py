"""The index schema: patient, study, series and instance, one table a level, and the
workflow tables beside them (the outbound job queue).

Matching columns come from :mod:`pacsnode.archive.attributes`; the rest are the
counters that C-FIND returns without counting rows, and where each instance's file is.
Changes to this module need an Alembic revision (``make migration``).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from pacsnode.archive.attributes import ATTRIBUTES, BY_KEYWORD, Attribute, Kind, Level

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)

_TYPES: dict[Kind, sa.types.TypeEngine[Any]] = {
    Kind.TEXT: sa.Text(),
    Kind.NAME: sa.Text(),
    Kind.DATE: sa.String(8),
    Kind.TIME: sa.String(16),
    Kind.DATETIME: sa.String(26),
    Kind.INT: sa.Integer(),
    Kind.UID: sa.String(64),
    Kind.SEQUENCE: sa.Text(),
}

# Columns that queries at scale filter on: an index each.
_INDEXED = {"patient_birth_date", "study_date", "sop_class_uid"}
# Columns matched with wildcards too. PostgreSQL uses a B-tree for a LIKE prefix only
# under the C collation, or with text_pattern_ops, which serves equality as well.
_PATTERN_INDEXED = {
    "patient_id",
    "patient_name_ci",
    "accession_number_ci",
    "referring_physician_name_ci",
    "study_id",
    "modality_ci",
}


def _attribute_columns(level: Level, skip: set[str]) -> list[sa.Column[Any]]:
    columns: list[sa.Column[Any]] = []
    for attr in ATTRIBUTES[level]:
        if attr.keyword in skip:
            continue
        columns.append(_column(attr.column, _TYPES[attr.kind]))
        if attr.has_folded_copy:
            columns.append(_column(attr.folded_column, _TYPES[attr.kind]))
    return columns


def _column(name: str, type_: sa.types.TypeEngine[Any]) -> sa.Column[Any]:
    return sa.Column(name, type_, index=name in _INDEXED)


def _uid(attr: Attribute) -> sa.Column[str]:
    return sa.Column(attr.column, sa.String(64), nullable=False, unique=True)


def _counter(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.Integer, nullable=False, server_default="0")


def _timestamps() -> list[sa.Column[Any]]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


def _edited() -> sa.Column[bool]:
    """Set once the index holds values of this patient or study that some of its files
    do not (an update, a merge, a resolved issuer): what goes out is then rewritten
    from the index (archive/outgoing.py), and only then."""
    return sa.Column("edited", sa.Boolean, nullable=False, server_default=sa.false())


def _parent(table: str) -> sa.Column[int]:
    return sa.Column(
        f"{table}_pk", sa.Integer, sa.ForeignKey(f"{table}.pk"), nullable=False, index=True
    )


patient = sa.Table(
    "patient",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    # Patient identity is Patient ID plus its issuer; both are '' rather than NULL so
    # that the unique constraint holds (NULLs never collide).
    sa.Column("patient_id", sa.Text, nullable=False),
    sa.Column("issuer_of_patient_id", sa.Text, nullable=False),
    *_attribute_columns(Level.PATIENT, skip={"PatientID", "IssuerOfPatientID"}),
    _edited(),
    _counter("num_studies"),
    _counter("num_series"),
    _counter("num_instances"),
    *_timestamps(),
    sa.UniqueConstraint("patient_id", "issuer_of_patient_id", name="uq_patient_identity"),
)

study = sa.Table(
    "study",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    _parent("patient"),
    _uid(BY_KEYWORD["StudyInstanceUID"]),
    *_attribute_columns(Level.STUDY, skip={"StudyInstanceUID"}),
    sa.Column("modalities_in_study", sa.Text),
    sa.Column("specific_character_set", sa.Text),
    _edited(),
    _counter("num_series"),
    _counter("num_instances"),
    *_timestamps(),
    # When the study was last announced as complete (instance availability, routing).
    sa.Column("notified_at", sa.DateTime(timezone=True)),
)

series = sa.Table(
    "series",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    _parent("study"),
    _uid(BY_KEYWORD["SeriesInstanceUID"]),
    *_attribute_columns(Level.SERIES, skip={"SeriesInstanceUID"}),
    _counter("num_instances"),
    *_timestamps(),
)

instance = sa.Table(
    "instance",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    _parent("series"),
    _uid(BY_KEYWORD["SOPInstanceUID"]),
    *_attribute_columns(Level.IMAGE, skip={"SOPInstanceUID"}),
    sa.Column("transfer_syntax_uid", sa.String(64), nullable=False),
    sa.Column("file_path", sa.Text, nullable=False),
    sa.Column("file_size", sa.BigInteger, nullable=False),
    sa.Column("checksum", sa.String(64), nullable=False),
    sa.Column("source_ae", sa.String(16)),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    # Set while an IOCM rejection note hides the instance (the note's concept code).
    sa.Column("rejection", sa.String(16)),
    # The dashboard's ingest rate counts the instances received since a moment.
    sa.Index("ix_instance_received_at", "received_at"),
)

sequence_value = sa.Table(
    "sequence_value",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    # The owner is a row of the table named by level; no foreign key, as it may be any
    # of four tables. Index code deletes these rows with their owner.
    sa.Column("level", sa.String(16), nullable=False),
    sa.Column("owner_pk", sa.Integer, nullable=False),
    sa.Column("sequence", sa.String(64), nullable=False),
    sa.Column("item", sa.Integer, nullable=False),
    sa.Column("path", sa.String(256), nullable=False),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("value_ci", sa.Text, nullable=False),
    sa.Index("ix_sequence_value_owner", "level", "owner_pk"),
    sa.Index("ix_sequence_value_path", "sequence", "path", "value"),
)

for _table in (patient, study, series, instance):
    for _name in sorted(_PATTERN_INDEXED & set(_table.c.keys())):
        sa.Index(
            f"ix_{_table.name}_{_name}",
            _table.c[_name],
            postgresql_ops={_name: "text_pattern_ops"},
        )

job = sa.Table(
    "job",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    # Jobs sharing a key run one after the other (an MPPS N-SET after its N-CREATE).
    sa.Column("queue_key", sa.String(200)),
    # What a long job reports as it goes and when it ends (a retrieve's counts), JSON.
    sa.Column("result", sa.Text),
    # The process running the job ("node:pid"), and until when: a lease its workers
    # renew; once it lapses (the process died), any worker may take the job over.
    sa.Column("claimed_by", sa.String(128)),
    sa.Column("lease_until", sa.DateTime(timezone=True)),
    # Set by enqueue_once: no two pending jobs share it, whichever node queued them.
    sa.Column("once_key", sa.String(200)),
    *_timestamps(),
    sa.Index("ix_job_due", "status", "next_run_at"),
    sa.Index("ix_job_queue_key", "queue_key"),
    sa.Index(
        "uq_job_pending_once_key",
        "once_key",
        unique=True,
        sqlite_where=sa.text("status = 'pending'"),
        postgresql_where=sa.text("status = 'pending'"),
    ),
)

mpps = sa.Table(
    "mpps",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column("sop_instance_uid", sa.String(64), nullable=False, unique=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("study_instance_uid", sa.String(64), index=True),
    sa.Column("calling_ae", sa.String(16)),
    sa.Column("dataset", sa.Text, nullable=False),
    *_timestamps(),
)

worklist_item = sa.Table(
    "worklist_item",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    # The item is its data set; every value in it is also a sequence_value row, which
    # is what worklist queries match on.
    # The placer order number of the HL7 order that made the item, to cancel it by.
    sa.Column("order_number", sa.Text, index=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("dataset", sa.Text, nullable=False),
    *_timestamps(),
)

rejected_instance = sa.Table(
    "rejected_instance",
    metadata,
    sa.Column("pk", sa.Integer, primary_key=True),
    sa.Column("sop_instance_uid", sa.String(64), nullable=False, unique=True),
    sa.Column("sop_class_uid", sa.String(64), nullable=False),
    sa.Column("code", sa.String(16), nullable=False),
    sa.Column("note_sop_instance_uid", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# Each instance's DICOM JSON (PS3.18 F.2) without its bulk data, so that WADO-RS
# metadata is read from here rather than parsed from every file of a study.
instance_metadata = sa.Table(
    "instance_metadata",
    metadata,
    sa.Column(
        "instance_pk",
        sa.Integer,
        sa.ForeignKey("instance.pk", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("document", sa.Text, nullable=False),
)

# Remote AEs added or changed at run time; they override the config file's entries of
# the same AE title. Tuple fields are JSON lists.
remote_ae = sa.Table(
    "remote_ae",
    metadata,
    sa.Column("ae_title", sa.String(16), primary_key=True),
    sa.Column("host", sa.Text, nullable=False),
    sa.Column("port", sa.Integer, nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("duplicate_policy", sa.String(16)),
    sa.Column("commitment_report", sa.String(16), nullable=False),
    sa.Column("pending_responses", sa.Boolean, nullable=False),
    sa.Column("offers", sa.Text, nullable=False, server_default="[]"),
    sa.Column("allowed", sa.Text, nullable=False, server_default="[]"),
    sa.Column("transfer_syntaxes", sa.Text, nullable=False, server_default="[]"),
    sa.Column("move_destination_only", sa.Boolean, nullable=False),
    sa.Column("fallback_authority", sa.Integer),
    *_timestamps(),
)

# Assigning authorities added or changed at run time, over the config file's
# [[authority]] entries of the same id (see archive/authorities.py).
authority = sa.Table(
    "authority",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("issuer", sa.Text, nullable=False),
    sa.Column("universal_entity_id", sa.Text, nullable=False, server_default=""),
    sa.Column("universal_entity_id_type", sa.String(16), nullable=False, server_default=""),
    *_timestamps(),
)

# Users of the HTTP door (see archive/users.py). Not "user": PostgreSQL reserves that
# word, and an unquoted SELECT from it answers with the session's own user.
http_user = sa.Table(
    "http_user",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# API tokens: only the SHA-256 of each secret is kept.
api_token = sa.Table(
    "api_token",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "user_name",
        sa.String(64),
        sa.ForeignKey("http_user.name", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("label", sa.Text, nullable=False, server_default=""),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True)),
    sa.Column("last_used_at", sa.DateTime(timezone=True)),
)

# Routing rules added at run time (REST API), shared by every node: the rule as its
# config table, JSON.
route_rule = sa.Table(
    "route_rule",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("rule", sa.Text, nullable=False),
    *_timestamps(),
)

# The nodes serving this index, each writing a heartbeat while it runs (/api/cluster).
cluster_node = sa.Table(
    "cluster_node",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("version", sa.String(32), nullable=False),
    sa.Column("host", sa.Text, nullable=False),
    sa.Column("dicom_port", sa.Integer, nullable=False),
    sa.Column("http_port", sa.Integer, nullable=False),
    sa.Column("associations", sa.Integer, nullable=False, server_default="0"),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("stopped_at", sa.DateTime(timezone=True)),
)

LEVEL_TABLES: dict[Level, sa.Table] = {
    Level.PATIENT: patient,
    Level.STUDY: study,
    Level.SERIES: series,
    Level.IMAGE: instance,
}
