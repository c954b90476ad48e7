"""Writing instances into the index and reading what is there.

Adding an instance is one transaction: find or create its patient, study and series,
insert the instance row and bump the counters that C-FIND returns. It commits before
C-STORE answers success, so what a peer was told is stored is in the index.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ClauseElement

from pacsnode.archive.attributes import PATIENT_ATTRIBUTES, Kind
from pacsnode.archive.database import Database, conflict, now
from pacsnode.archive.prepared import PreparedStatements, cursor_of
from pacsnode.archive.schema import (
    instance,
    patient,
    rejected_instance,
    sequence_value,
    series,
    study,
)
from pacsnode.config import DuplicatePolicy


@dataclass(frozen=True)
class LevelRows:
    """The column values of one instance, split by level as the index keeps them."""

    patient: dict[str, Any]
    study: dict[str, Any]
    series: dict[str, Any]
    instance: dict[str, Any]
    sequences: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Sequence item values for sequence matching, by table name (see sequence_value)."""


@dataclass(frozen=True)
class StoredInstance:
    pk: int
    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    series_instance_uid: str
    file_path: str
    transfer_syntax_uid: str
    checksum: str
    rejection: str | None = None
    """The rejection code of a note that hides it, if any."""


@dataclass(frozen=True)
class ArchiveStats:
    """What the archive shows (hidden instances left out) and what it keeps on disk."""

    patients: int
    studies: int
    series: int
    instances: int
    bytes: int
    """Every stored file, hidden ones included: what the disk holds."""
    hidden: int = 0
    """Instances deleted softly or rejected by IOCM notes, still on disk."""

    def as_json(self) -> dict[str, int]:
        return {
            "patients": self.patients,
            "studies": self.studies,
            "series": self.series,
            "instances": self.instances,
            "hidden_instances": self.hidden,
            "bytes": self.bytes,
        }


AddOutcome = Literal["added", "replaced", "kept", "refused", "rejected"]


@dataclass(frozen=True)
class PatientChange:
    """A patient record that adding an instance created or changed (for the audit)."""

    patient_id: str
    patient_name: str
    created: bool
    changed: dict[str, str] = field(default_factory=dict)
    """Keyword to new value of each attribute an update changed."""


@dataclass(frozen=True)
class Added:
    pk: int
    outcome: AddOutcome
    obsolete_file: str | None = None
    """The file of the copy that was replaced, to delete once the index has committed."""
    patient: PatientChange | None = None
    rejection: str | None = None
    """For ``rejected``: the code of the rejection note that withdrew this instance."""


_PATIENT_COLUMNS = {a.column: a.keyword for a in PATIENT_ATTRIBUTES if a.kind is not Kind.SEQUENCE}


@dataclass(frozen=True)
class _PatientState:
    key: tuple[str, str]
    values: dict[str, Any]


def _patient_state(connection: Connection, instance_pk: int) -> _PatientState:
    """The patient record an instance is filed under, as :func:`_patient_change` compares it."""
    row = (
        connection.execute(
            sa.select(*(patient.c[column] for column in _PATIENT_COLUMNS))
            .join(study, study.c.patient_pk == patient.c.pk)
            .join(series, series.c.study_pk == study.c.pk)
            .join(instance, instance.c.series_pk == series.c.pk)
            .where(instance.c.pk == instance_pk)
        )
        .one()
        ._mapping
    )
    values = dict(row)
    return _PatientState((values["patient_id"], values["issuer_of_patient_id"]), values)


def _patient_change(
    before: _PatientState, after: _PatientState, created: PatientChange | None
) -> PatientChange | None:
    """What a replaced copy did to its patient record: changed values of the same
    patient, or the creation of another one."""
    if before.key != after.key:
        return created
    changed = {
        _PATIENT_COLUMNS[column]: str(value or "")
        for column, value in after.values.items()
        if value != before.values[column]
    }
    if not changed:
        return None
    name = str(after.values["patient_name"] or "")
    return PatientChange(after.key[0], name, created=False, changed=changed)


class _Unchanged(Exception):
    """Leaves the transaction, rolling back, with the answer for the caller."""

    def __init__(self, added: Added) -> None:
        super().__init__(added.outcome)
        self.added = added


@cache
def _insert_or_skip(dialect: str, table: sa.Table, key: tuple[str, ...]) -> Any:
    """``INSERT … ON CONFLICT DO NOTHING RETURNING pk``, built once per table.

    Values are bound at execution, so SQLAlchemy compiles the statement once instead
    of coercing every column value on every instance.
    """
    insert = (postgresql if dialect == "postgresql" else sqlite).insert(table)
    return insert.on_conflict_do_nothing(index_elements=list(key)).returning(table.c.pk)


def _get_or_create(
    connection: Connection, table: sa.Table, key: dict[str, Any], values: dict[str, Any]
) -> tuple[int, bool]:
    """Return the row's primary key and whether this call created it.

    ``ON CONFLICT DO NOTHING`` makes two associations that create the same study at
    once both succeed on PostgreSQL, where they do not wait on one lock as on SQLite.
    """
    where = sa.and_(*(table.c[name] == value for name, value in key.items()))
    pk = connection.execute(sa.select(table.c.pk).where(where)).scalar()
    if pk is not None:
        return pk, False
    moment = now()
    statement = _insert_or_skip(connection.dialect.name, table, tuple(key))
    pk = connection.execute(
        statement, {**values, **key, "created_at": moment, "updated_at": moment}
    ).scalar()
    if pk is not None:
        return pk, True
    return connection.execute(sa.select(table.c.pk).where(where)).scalar_one(), False


LEVELS = {table.name: table for table in (patient, study, series)}


def _counter_update(table: sa.Table, *counters: str) -> sa.Update:
    changes: dict[str, Any] = {name: table.c[name] + sa.bindparam(name) for name in counters}
    changes["updated_at"] = sa.bindparam("now")
    return sa.update(table).where(table.c.pk == sa.bindparam("target")).values(**changes)


_COUNTERS = {
    "series": ("num_instances",),
    "study": ("num_instances", "num_series"),
    "patient": ("num_instances", "num_series", "num_studies"),
}
_COUNTER_UPDATES = {name: _counter_update(LEVELS[name], *c) for name, c in _COUNTERS.items()}


def _bump_params(table: sa.Table, pk: int, increments: dict[str, int]) -> dict[str, Any]:
    params: dict[str, Any] = dict.fromkeys(_COUNTERS[table.name], 0)
    params.update(increments, target=pk, now=now())
    return params


def _bump(connection: Connection, table: sa.Table, pk: int, **increments: int) -> None:
    connection.execute(_COUNTER_UPDATES[table.name], _bump_params(table, pk, increments))


def _add_sequence_values(
    connection: Connection, rows: LevelRows, table: sa.Table, owner_pk: int
) -> None:
    values = rows.sequences.get(table.name)
    if values:
        owned = [{**value, "level": table.name, "owner_pk": owner_pk} for value in values]
        connection.execute(sa.insert(sequence_value), owned)


def _delete_sequence_values(connection: Connection, table: sa.Table, owner_pk: int) -> None:
    connection.execute(
        sa.delete(sequence_value).where(
            sequence_value.c.level == table.name, sequence_value.c.owner_pk == owner_pk
        )
    )


_CHILDREN = {"series": (instance, "series_pk"), "study": (series, "study_pk")}
_CHILDREN["patient"] = (study, "patient_pk")


def _is_empty(connection: Connection, table: sa.Table, pk: int) -> bool:
    """No rows below it, hidden ones included (the counters count visible ones only)."""
    child, parent_key = _CHILDREN[table.name]
    exists = sa.select(child.c.pk).where(child.c[parent_key] == pk).limit(1)
    return connection.execute(exists).first() is None


def _counter(connection: Connection, table: sa.Table, pk: int) -> int:
    value = connection.execute(sa.select(table.c.num_instances).where(table.c.pk == pk))
    return int(value.scalar_one())


def _still_hidden(connection: Connection, table: sa.Table, pk: int) -> bool:
    """Whether a parent has no visible instance, read under a row lock: of two writers
    adding the first visible instance, only one may count the parent as appearing.

    A parent a concurrent writer removed meanwhile reads as hidden; inserting below it
    then breaks its foreign key, and the transaction is run again.

    The lock is ``FOR NO KEY UPDATE``: a writer that inserted a child row (a new series
    of the study) holds a key-share lock on the parent through the foreign key, which
    a plain ``FOR UPDATE`` would wait for, and two writers adding series to one study
    on different nodes would deadlock.
    """
    count = connection.execute(
        sa.select(table.c.num_instances).where(table.c.pk == pk).with_for_update(key_share=True)
    ).scalar()
    return not count


@dataclass(frozen=True)
class _Parents:
    """Where a new instance goes, and which of its parents it makes visible."""

    series: int
    study: int
    patient: int
    series_appears: bool
    study_appears: bool
    new_patient: bool = False


_REJECTION_CODE = sa.select(rejected_instance.c.code).where(
    rejected_instance.c.sop_instance_uid == sa.bindparam("uid")
)


def _add_modality(connection: Connection, study_pk: int, modality: str | None) -> None:
    if not modality:
        return
    current = connection.execute(
        sa.select(study.c.modalities_in_study).where(study.c.pk == study_pk)
    ).scalar()
    modalities = set(current.split("\\")) if current else set()
    if modality not in modalities:
        joined = "\\".join(sorted(modalities | {modality}))
        connection.execute(
            sa.update(study).where(study.c.pk == study_pk).values(modalities_in_study=joined)
        )


def _flag_edited(connection: Connection, rows: LevelRows, patient_pk: int, study_pk: int) -> None:
    """Mark a patient or study that already existed as holding values its new file does
    not (a resolved issuer); a new row got the flag with its values."""
    for table, pk, values in ((patient, patient_pk, rows.patient), (study, study_pk, rows.study)):
        if values.get("edited"):
            connection.execute(
                sa.update(table).where(table.c.pk == pk, ~table.c.edited).values(edited=True)
            )


_SERIES_PARENTS = (
    sa.select(
        series.c.pk,
        study.c.pk,
        study.c.patient_pk,
        series.c.num_instances,
        study.c.num_instances,
    )
    .join(study, study.c.pk == series.c.study_pk)
    .where(series.c.series_instance_uid == sa.bindparam("uid"))
)
"""Built once: a statement built per instance cost more to build than to run."""

_ATTEMPTS = 5
SOFT_DELETED = "DELETED"
"""The ``rejection`` code of an instance deleted softly: hidden from every door like a
rejected one, kept on disk, and shown again by clearing the code (an undelete)."""


class Index:
    def __init__(self, database: Database) -> None:
        self.database = database
        self._write_lock = database.write_lock
        self._prepared = PreparedStatements((database.indexer or database.writer).dialect)

    @contextlib.contextmanager
    def writing(self) -> Iterator[Connection]:
        """One write transaction, queued with those of ingest on SQLite."""
        with self._write_lock, self.database.writer.begin() as connection:
            yield connection

    def add(
        self,
        rows: LevelRows,
        charset: str | None,
        on_duplicate: DuplicatePolicy,
        refused_codes: Collection[str] = (),
    ) -> Added:
        """Index one instance in one transaction.

        An instance withdrawn by a rejection note under one of ``refused_codes`` is
        not indexed again (``rejected``). A SOP Instance UID already indexed is
        handled by ``on_duplicate``: ``keep`` and ``refuse`` change nothing,
        ``overwrite`` replaces the row (and refreshes its patient, study and series
        from the new copy); the caller learns which file is no longer referenced. On
        PostgreSQL two writers can race on the same rows; the loser's transaction is
        simply run again.
        """
        for attempt in range(_ATTEMPTS):
            try:
                with self.database.indexing() as connection:
                    uid = rows.instance["sop_instance_uid"]
                    self._refuse_rejected(connection, uid, refused_codes)
                    return self._add(connection, rows, charset, on_duplicate)
            except _Unchanged as unchanged:
                return unchanged.added
            except (sa.exc.IntegrityError, sa.exc.OperationalError) as exc:
                last = attempt == _ATTEMPTS - 1
                if last or self.database.writer.dialect.name == "sqlite" or not conflict(exc):
                    raise
        raise AssertionError("unreachable")

    def _add(
        self,
        connection: Connection,
        rows: LevelRows,
        charset: str | None,
        on_duplicate: DuplicatePolicy,
    ) -> Added:
        uid = rows.instance["sop_instance_uid"]
        statement = _insert_or_skip(connection.dialect.name, instance, ("sop_instance_uid",))
        while True:
            parents = self._parents(connection, rows, charset)
            values = {**rows.instance, "series_pk": parents.series, "received_at": now()}
            inserted = self._run(connection, statement, values, tuple(values)).fetchone()
            instance_pk = None if inserted is None else inserted[0]
            if instance_pk is not None:
                _add_sequence_values(connection, rows, instance, instance_pk)
                break
            existing = connection.execute(
                sa.select(instance.c.pk, instance.c.file_path, instance.c.rejection)
                .where(instance.c.sop_instance_uid == uid)
                .with_for_update()
            ).first()
            if existing is None:
                continue  # a concurrent writer replaced it since our insert: try again
            # A deleted instance sent again is stored anew, as if the old copy were gone.
            if on_duplicate != "overwrite" and existing.rejection != SOFT_DELETED:
                outcome: AddOutcome = "kept" if on_duplicate == "keep" else "refused"
                raise _Unchanged(Added(existing.pk, outcome))  # rolls back any new parents
            before = _patient_state(connection, existing.pk)
            self._remove(connection, existing.pk)
            added = self._add(connection, rows, charset, "keep")
            self._refresh_parents(connection, added.pk, rows)
            changed = _patient_change(before, _patient_state(connection, added.pk), added.patient)
            return Added(added.pk, "replaced", existing.file_path, changed)
        appearing_series = int(parents.series_appears)
        self._count_in(connection, series, parents.series, num_instances=1)
        self._count_in(
            connection, study, parents.study, num_instances=1, num_series=appearing_series
        )
        self._count_in(
            connection,
            patient,
            parents.patient,
            num_instances=1,
            num_series=appearing_series,
            num_studies=int(parents.study_appears),
        )
        if parents.series_appears:
            _add_modality(connection, parents.study, rows.series.get("modality"))
        created = None
        if parents.new_patient:
            name = str(rows.patient.get("patient_name") or "")
            created = PatientChange(rows.patient["patient_id"], name, created=True)
        return Added(int(instance_pk), "added", patient=created)

    def _run(
        self,
        connection: Connection,
        statement: ClauseElement,
        params: dict[str, Any],
        column_keys: tuple[str, ...] = (),
    ) -> Any:
        """Run a statement of the hot path (see :mod:`pacsnode.archive.prepared`);
        returns the DBAPI cursor to fetch from."""
        prepared = self._prepared(statement, column_keys)
        return prepared.run(cursor_of(connection), params)

    def _count_in(
        self, connection: Connection, table: sa.Table, pk: int, **increments: int
    ) -> None:
        """:func:`_bump` on the hot path."""
        self._run(connection, _COUNTER_UPDATES[table.name], _bump_params(table, pk, increments))

    def _refuse_rejected(
        self, connection: Connection, uid: str, refused_codes: Collection[str]
    ) -> None:
        if not refused_codes:
            return
        found = self._run(connection, _REJECTION_CODE, {"uid": uid}).fetchone()
        code = None if found is None else found[0]
        if code in refused_codes:
            raise _Unchanged(Added(0, "rejected", rejection=code))

    @staticmethod
    def _refresh_parents(connection: Connection, instance_pk: int, rows: LevelRows) -> None:
        """Give the parents of a replaced instance the attributes of its new copy."""
        series_pk, study_pk, patient_pk = connection.execute(
            sa.select(series.c.pk, study.c.pk, study.c.patient_pk)
            .join(study, study.c.pk == series.c.study_pk)
            .join(instance, instance.c.series_pk == series.c.pk)
            .where(instance.c.pk == instance_pk)
        ).one()
        identity = {
            "patient_id",
            "issuer_of_patient_id",
            "study_instance_uid",
            "series_instance_uid",
        }
        for table, pk, values in (
            (series, series_pk, rows.series),
            (study, study_pk, rows.study),
            (patient, patient_pk, rows.patient),
        ):
            # An edited row stays edited: the new copy's file need not say what it says.
            changes = {k: v for k, v in values.items() if k not in identity and k != "edited"}
            connection.execute(sa.update(table).where(table.c.pk == pk).values(**changes))
            _delete_sequence_values(connection, table, pk)
            _add_sequence_values(connection, rows, table, pk)

    def _parents(self, connection: Connection, rows: LevelRows, charset: str | None) -> _Parents:
        """Series, study and patient keys, and whether the series or study appears with
        this instance (new, or all its instances hidden until now).

        Almost every instance joins a visible series that exists, which one query finds.
        """
        uid = rows.series["series_instance_uid"]
        found = self._run(connection, _SERIES_PARENTS, {"uid": uid}).fetchone()
        if found is not None:
            series_pk, study_pk, patient_pk, in_series, in_study = found
            _flag_edited(connection, rows, patient_pk, study_pk)
            return _Parents(
                series_pk,
                study_pk,
                patient_pk,
                in_series == 0 and _still_hidden(connection, series, series_pk),
                in_study == 0 and _still_hidden(connection, study, study_pk),
            )
        patient_key = {
            "patient_id": rows.patient["patient_id"],
            "issuer_of_patient_id": rows.patient["issuer_of_patient_id"],
        }
        patient_values = {k: v for k, v in rows.patient.items() if k not in patient_key}
        patient_pk, new_patient = _get_or_create(connection, patient, patient_key, patient_values)
        if new_patient:
            _add_sequence_values(connection, rows, patient, patient_pk)
        study_key = {"study_instance_uid": rows.study["study_instance_uid"]}
        study_values = {k: v for k, v in rows.study.items() if k not in study_key}
        study_values.update(patient_pk=patient_pk, specific_character_set=charset)
        study_pk, new_study = _get_or_create(connection, study, study_key, study_values)
        if not new_study:  # the study keeps the patient it was first stored under
            patient_pk = connection.execute(
                sa.select(study.c.patient_pk).where(study.c.pk == study_pk)
            ).scalar_one()
        if not (new_patient and new_study):
            _flag_edited(connection, rows, patient_pk, study_pk)
        series_key = {"series_instance_uid": rows.series["series_instance_uid"]}
        series_values = {k: v for k, v in rows.series.items() if k not in series_key}
        series_values["study_pk"] = study_pk
        series_pk, new_series = _get_or_create(connection, series, series_key, series_values)
        if new_series:
            _add_sequence_values(connection, rows, series, series_pk)
        return _Parents(
            series_pk,
            study_pk,
            patient_pk,
            new_series or _still_hidden(connection, series, series_pk),
            new_study or _still_hidden(connection, study, study_pk),
            new_patient,
        )

    @staticmethod
    def _owners(connection: Connection, instance_pk: int) -> tuple[int, int, int, str | None]:
        """Series, study and patient keys of an instance, and its rejection code."""
        row = connection.execute(
            sa.select(series.c.pk, study.c.pk, study.c.patient_pk, instance.c.rejection)
            .join(study, study.c.pk == series.c.study_pk)
            .join(instance, instance.c.series_pk == series.c.pk)
            .where(instance.c.pk == instance_pk)
        ).one()
        return row[0], row[1], row[2], row[3]

    def set_hidden(self, connection: Connection, instance_pk: int, code: str | None) -> bool:
        """Hide an instance under a rejection code, or show it again (``None``).

        The counters count visible instances, and visible series and studies (those
        with a visible instance), so that a rejected study drops out of every level.
        Returns whether visibility changed.
        """
        series_pk, study_pk, patient_pk, current = self._owners(connection, instance_pk)
        connection.execute(
            sa.update(instance).where(instance.c.pk == instance_pk).values(rejection=code)
        )
        if (current is None) == (code is None):
            return False
        delta = -1 if code else 1
        flipping = 1 if code else 0  # the count at which a parent appears or vanishes
        series_flips = _counter(connection, series, series_pk) == flipping
        study_flips = _counter(connection, study, study_pk) == flipping
        _bump(connection, series, series_pk, num_instances=delta)
        _bump(
            connection,
            study,
            study_pk,
            num_instances=delta,
            num_series=delta if series_flips else 0,
        )
        _bump(
            connection,
            patient,
            patient_pk,
            num_instances=delta,
            num_series=delta if series_flips else 0,
            num_studies=delta if study_flips else 0,
        )
        if series_flips:
            self._recompute_modalities(connection, study_pk)
        return True

    def _remove(self, connection: Connection, instance_pk: int) -> None:
        """Delete one instance row, and its parents once they have no rows left.

        Hiding it first takes it out of the counters, which count visible rows only;
        a parent left without rows was no longer visible, so nothing else changes.
        """
        self.set_hidden(connection, instance_pk, SOFT_DELETED)
        series_pk, study_pk, patient_pk, _ = self._owners(connection, instance_pk)
        connection.execute(sa.delete(instance).where(instance.c.pk == instance_pk))
        _delete_sequence_values(connection, instance, instance_pk)
        if _is_empty(connection, series, series_pk):
            connection.execute(sa.delete(series).where(series.c.pk == series_pk))
            _delete_sequence_values(connection, series, series_pk)
        if _is_empty(connection, study, study_pk):
            connection.execute(sa.delete(study).where(study.c.pk == study_pk))
        if _is_empty(connection, patient, patient_pk):
            connection.execute(sa.delete(patient).where(patient.c.pk == patient_pk))
            _delete_sequence_values(connection, patient, patient_pk)

    @staticmethod
    def _recompute_modalities(connection: Connection, study_pk: int) -> None:
        modalities = connection.execute(
            sa.select(series.c.modality)
            .where(series.c.study_pk == study_pk, series.c.num_instances > 0)
            .distinct()
        ).scalars()
        joined = "\\".join(sorted(m for m in modalities if m)) or None
        connection.execute(
            sa.update(study).where(study.c.pk == study_pk).values(modalities_in_study=joined)
        )

    def delete(self, sop_instance_uid: str) -> str | None:
        """Take an instance out of the index; returns its file, for the caller to delete."""
        with self._write_lock, self.database.writer.begin() as connection:
            row = connection.execute(
                sa.select(instance.c.pk, instance.c.file_path).where(
                    instance.c.sop_instance_uid == sop_instance_uid
                )
            ).first()
            if row is None:
                return None
            self._remove(connection, row.pk)
            return str(row.file_path)

    def hide(self, instance_pks: list[int], code: str | None) -> None:
        """Hide the instances under ``code`` in one transaction (a soft delete), or show
        them again with ``None`` (a restore)."""
        with self._write_lock, self.database.writer.begin() as connection:
            for pk in instance_pks:
                self.set_hidden(connection, pk, code)

    def remove(self, instance_pks: list[int]) -> list[str]:
        """Take the instances out of the index in one transaction, parents left empty
        too; returns their files, for the caller to delete once this has committed."""
        files = []
        with self._write_lock, self.database.writer.begin() as connection:
            for pk in instance_pks:
                path = connection.execute(
                    sa.select(instance.c.file_path).where(instance.c.pk == pk)
                ).scalar()
                if path is not None:
                    self._remove(connection, pk)
                    files.append(str(path))
        return files

    def find_instance(self, sop_instance_uid: str) -> StoredInstance | None:
        query = (
            sa.select(
                instance.c.pk,
                instance.c.sop_instance_uid,
                instance.c.sop_class_uid,
                study.c.study_instance_uid,
                series.c.series_instance_uid,
                instance.c.file_path,
                instance.c.transfer_syntax_uid,
                instance.c.checksum,
                instance.c.rejection,
            )
            .join(series, series.c.pk == instance.c.series_pk)
            .join(study, study.c.pk == series.c.study_pk)
            .where(instance.c.sop_instance_uid == sop_instance_uid)
        )
        with self.database.reader.connect() as connection:
            row = connection.execute(query).first()
        return None if row is None else StoredInstance(**row._mapping)

    def received_since(self, moment: datetime) -> int:
        """How many instances arrived since ``moment`` (hidden ones too): the ingest rate."""
        query = sa.select(sa.func.count()).where(instance.c.received_at >= moment)
        with self.database.reader.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def held(self) -> dict[tuple[str, str], int]:
        """How many instances the doors show, per SOP class and stored transfer syntax:
        what a peer must accept for the archive to send it everything as stored."""
        query = (
            sa.select(instance.c.sop_class_uid, instance.c.transfer_syntax_uid, sa.func.count())
            .where(instance.c.rejection.is_(None))
            .group_by(instance.c.sop_class_uid, instance.c.transfer_syntax_uid)
        )
        with self.database.reader.connect() as connection:
            return {(cls, syntax): int(n) for cls, syntax, n in connection.execute(query)}

    def stats(self) -> ArchiveStats:
        """Counts of what the doors show, from the counters, and the bytes on disk."""

        def count(table: sa.Table, *where: Any) -> sa.ScalarSelect[int]:
            return sa.select(sa.func.count()).select_from(table).where(*where).scalar_subquery()

        query = sa.select(
            count(patient, patient.c.num_instances > 0),
            count(study, study.c.num_instances > 0),
            count(series, series.c.num_instances > 0),
            count(instance, instance.c.rejection.is_(None)),
            sa.select(sa.func.coalesce(sa.func.sum(instance.c.file_size), 0)).scalar_subquery(),
            count(instance, instance.c.rejection.is_not(None)),
        )
        with self.database.reader.connect() as connection:
            row = connection.execute(query).one()
        return ArchiveStats(*(int(v) for v in row))
