"""Deleting a patient, study, series or instance: the one function every door calls
(``DELETE /api/studies/{uid}``, ``pacsnode delete``, the web UI).

* **Soft** (the default): the visible instances are hidden under the
  :data:`~pacsnode.archive.index.SOFT_DELETED` code, as IOCM rejection hides them, so
  that no query, retrieve, metadata or job sees them; counters drop as if they were
  gone. Rows and files stay, so the deletion can be undone by clearing the code, and
  an instance sent again is stored anew. Instances an IOCM note rejected keep their
  own code.
* **Hard**: every instance of the entity, hidden or not, leaves the index with its
  file; series, studies and patients left empty go too, and the counters of those
  that remain stay exact. Files are removed after the index has committed, so a crash
  leaves at worst an unreferenced file, never a row without its file.

Both are audited as DICOM Study Deleted before anything changes (the audit message
names the studies, which the index must still hold).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from pacsnode import audit
from pacsnode.archive.attributes import Level
from pacsnode.archive.index import SOFT_DELETED, Index
from pacsnode.archive.schema import instance, patient, series, study
from pacsnode.archive.storage import Storage

log = logging.getLogger("pacsnode.deletion")

LEVELS: dict[str, Level] = {
    "patient": Level.PATIENT,
    "study": Level.STUDY,
    "series": Level.SERIES,
    "instance": Level.IMAGE,
}
"""The words the doors use for what is deleted."""


class NothingToDelete(LookupError):
    """No such entity, or (soft) nothing of it is visible any more."""


class AmbiguousPatient(ValueError):
    """A Patient ID that several issuers use, deleted without naming the issuer."""


@dataclass(frozen=True)
class Target:
    """What to delete: a level and its identifier (for a patient, the Patient ID and,
    when several issuers use that ID, the issuer)."""

    level: str
    uid: str
    issuer: str | None = None

    def describe(self) -> str:
        issuer = f" (issuer {self.issuer})" if self.issuer else ""
        return f"{self.level} {self.uid}{issuer}"


@dataclass(frozen=True)
class Selection:
    """The instances a deletion reaches, and what they belong to."""

    target: Target
    hard: bool
    instances: list[tuple[int, str]] = field(default_factory=list)
    """(pk, SOP Instance UID) of each instance to hide or remove."""
    studies: dict[str, str] = field(default_factory=dict)
    """Study Instance UID to a line describing it (date, patient, description)."""
    series: int = 0
    size: int = 0
    """Bytes on disk of the instances."""


@dataclass(frozen=True)
class Deleted:
    """What a deletion did, as the doors report it."""

    target: Target
    hard: bool
    instances: int
    series: int
    studies: tuple[str, ...]
    size: int

    def as_json(self) -> dict[str, Any]:
        return {
            "level": self.target.level,
            "id": self.target.uid,
            "hard": self.hard,
            "instances": self.instances,
            "series": self.series,
            "studies": list(self.studies),
            "bytes": self.size,
        }


def _instances_of(target: Target, patient_pk: int | None) -> sa.Select[Any]:
    statement = (
        sa.select(
            instance.c.pk,
            instance.c.sop_instance_uid,
            instance.c.file_size,
            series.c.pk.label("series_pk"),
            study.c.study_instance_uid,
            study.c.study_date,
            study.c.study_description,
            patient.c.patient_name,
            patient.c.patient_id,
        )
        .join(series, series.c.pk == instance.c.series_pk)
        .join(study, study.c.pk == series.c.study_pk)
        .join(patient, patient.c.pk == study.c.patient_pk)
        .order_by(instance.c.pk)
    )
    column = {
        "study": study.c.study_instance_uid,
        "series": series.c.series_instance_uid,
        "instance": instance.c.sop_instance_uid,
    }.get(target.level)
    if column is None:
        return statement.where(patient.c.pk == patient_pk)
    return statement.where(column == target.uid)


def _study_line(row: Any) -> str:
    parts = [row.study_date or "", row.patient_name or "", f"({row.patient_id})"]
    parts.append(row.study_description or "")
    return " ".join(part for part in parts if part)


class Deletion:
    def __init__(self, index: Index, storage: Storage) -> None:
        self.index = index
        self.database = index.database
        self.storage = storage

    def select(self, target: Target, hard: bool = False) -> Selection:
        """What deleting ``target`` would reach; :class:`NothingToDelete` when nothing.

        Soft deletion reaches the visible instances, hard deletion all of them (a soft
        deleted study can be deleted hard afterwards, files and all).
        """
        if target.level not in LEVELS:
            raise ValueError(f"cannot delete a {target.level}: one of {', '.join(LEVELS)}")
        with self.database.reader.connect() as connection:
            patient_pk = self._patient(connection, target) if target.level == "patient" else None
            statement = _instances_of(target, patient_pk)
            if not hard:
                statement = statement.where(instance.c.rejection.is_(None))
            rows = connection.execute(statement).all()
        if not rows:
            state = "" if hard else "visible "
            raise NothingToDelete(f"no {state}{target.describe()} in the archive")
        return Selection(
            target,
            hard,
            [(row.pk, row.sop_instance_uid) for row in rows],
            {row.study_instance_uid: _study_line(row) for row in rows},
            len({row.series_pk for row in rows}),
            sum(row.file_size for row in rows),
        )

    @staticmethod
    def _patient(connection: sa.Connection, target: Target) -> int | None:
        query = sa.select(patient.c.pk, patient.c.issuer_of_patient_id).where(
            patient.c.patient_id == target.uid
        )
        if target.issuer is not None:
            query = query.where(patient.c.issuer_of_patient_id == target.issuer)
        found = connection.execute(query).all()
        if len(found) > 1:
            issuers = ", ".join(repr(row.issuer_of_patient_id) for row in found)
            raise AmbiguousPatient(
                f"patient ID {target.uid} is used with the issuers {issuers}: name the issuer"
            )
        return found[0].pk if found else None

    def delete(self, target: Target, hard: bool, user: audit.Actor) -> Deleted:
        """Delete ``target`` softly or hard, audited as ``user``'s doing."""
        return self.apply(self.select(target, hard), user)

    def apply(self, selection: Selection, user: audit.Actor) -> Deleted:
        """Carry out a deletion chosen by :meth:`select` (after a confirmation)."""
        how = "hard" if selection.hard else "soft"
        uids = [uid for _pk, uid in selection.instances]
        pks = [pk for pk, _uid in selection.instances]
        audit.studies_deleted(
            user, uids, f"{how} delete of {selection.target.describe()}: {len(uids)} instances"
        )
        if selection.hard:
            files = self.index.remove(pks)
            for path in files:
                self.storage.delete(path)
        else:
            self.index.hide(pks, SOFT_DELETED)
        log.info(
            "%s deleted (%s) by %s: %d instances in %d series of %d studies",
            selection.target.describe(),
            how,
            user.user_id,
            len(pks),
            selection.series,
            len(selection.studies),
        )
        return Deleted(
            selection.target,
            selection.hard,
            len(pks),
            selection.series,
            tuple(selection.studies),
            selection.size,
        )
