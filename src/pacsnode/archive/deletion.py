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
names the studies, which the index must still hold), and a patient left with nothing
visible as Patient Record, action D.

* **Restore** (undelete) shows softly deleted instances again: audited as DICOM
  Instances Accessed, action C, and Patient Record, action C, for a patient that
  comes back.

Whoever subscribes (IOCM outbound) is told which instances a deletion withdrew from
view, by study, with the rejection code the deletion gives (113039 Data Retention
Policy Expired unless another is chosen), so that other archives hide them too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from pacsnode import audit
from pacsnode.archive.attributes import BY_KEYWORD, Level
from pacsnode.archive.index import SOFT_DELETED, Index
from pacsnode.archive.rejection import (
    NOTE_ATTRIBUTES,
    REJECTION_CODES,
    RETENTION_EXPIRED,
    Withdrawal,
)
from pacsnode.archive.schema import LEVEL_TABLES, instance, patient, series, study
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


class NothingToRestore(LookupError):
    """No such entity, or nothing of it is softly deleted."""


def check_reason(code: str) -> str:
    """A rejection code a deletion may give; ValueError naming the valid ones."""
    if code not in REJECTION_CODES:
        codes = ", ".join(f"{c} ({m})" for c, m in REJECTION_CODES.items())
        raise ValueError(f"reason {code!r} is not a rejection code: one of {codes}")
    return code


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
    withdrawn: list[Withdrawal] = field(default_factory=list)
    """The instances among them still visible, by study: what IOCM destinations hold."""
    patients: dict[int, tuple[str, str]] = field(default_factory=dict)
    """Patient pk to (Patient ID, Patient's Name) of each patient reached."""


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


_NOTE_COLUMNS = [
    LEVEL_TABLES[BY_KEYWORD[keyword].level].c[BY_KEYWORD[keyword].column].label(keyword)
    for keyword in NOTE_ATTRIBUTES
]


def _instances_of(target: Target, patient_pk: int | None) -> sa.Select[Any]:
    statement = (
        sa.select(
            instance.c.pk,
            instance.c.sop_instance_uid,
            instance.c.sop_class_uid,
            instance.c.file_size,
            instance.c.rejection,
            series.c.pk.label("series_pk"),
            series.c.series_instance_uid,
            patient.c.pk.label("patient_pk"),
            study.c.study_description,
            *_NOTE_COLUMNS,
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
    parts = [row.StudyDate or "", row.PatientName or "", f"({row.PatientID})"]
    parts.append(row.study_description or "")
    return " ".join(part for part in parts if part)


def _withdrawals(rows: list[Any], code: str) -> list[Withdrawal]:
    """The visible instances among ``rows``, by study, as rejection notes name them."""
    by_study: dict[str, Withdrawal] = {}
    for row in rows:
        if row.rejection is not None:
            continue  # hidden already: withdrawn from view, and from IOCM peers, before
        uid = row.StudyInstanceUID
        if uid not in by_study:
            values = {k: str(row._mapping[k]) for k in NOTE_ATTRIBUTES if row._mapping[k]}
            by_study[uid] = Withdrawal(code, values, {})
        items = by_study[uid].series.setdefault(row.series_instance_uid, [])
        items.append((row.sop_class_uid, row.sop_instance_uid))
    return list(by_study.values())


Subscriber = Callable[[list[Withdrawal]], None]


class Deletion:
    def __init__(self, index: Index, storage: Storage) -> None:
        self.index = index
        self.database = index.database
        self.storage = storage
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        """Be told which visible instances each deletion withdrew (IOCM outbound)."""
        self._subscribers.append(subscriber)

    def select(
        self, target: Target, hard: bool = False, reason: str = RETENTION_EXPIRED
    ) -> Selection:
        """What deleting ``target`` would reach; :class:`NothingToDelete` when nothing.

        Soft deletion reaches the visible instances, hard deletion all of them (a soft
        deleted study can be deleted hard afterwards, files and all). ``reason`` is the
        rejection code IOCM destinations are told.
        """
        check_reason(reason)
        if target.level not in LEVELS:
            raise ValueError(f"cannot delete a {target.level}: one of {', '.join(LEVELS)}")
        with self.database.reader.connect() as connection:
            patient_pk = self._patient(connection, target) if target.level == "patient" else None
            statement = _instances_of(target, patient_pk)
            if not hard:
                statement = statement.where(instance.c.rejection.is_(None))
            rows = list(connection.execute(statement).all())
        if not rows:
            state = "" if hard else "visible "
            raise NothingToDelete(f"no {state}{target.describe()} in the archive")
        return Selection(
            target,
            hard,
            [(row.pk, row.sop_instance_uid) for row in rows],
            {row.StudyInstanceUID: _study_line(row) for row in rows},
            len({row.series_pk for row in rows}),
            sum(row.file_size for row in rows),
            _withdrawals(rows, reason),
            {row.patient_pk: (row.PatientID, row.PatientName or "") for row in rows},
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

    def delete(
        self,
        target: Target,
        hard: bool,
        user: audit.Actor | None,
        reason: str = RETENTION_EXPIRED,
    ) -> Deleted:
        """Delete ``target`` softly or hard, audited as ``user``'s doing (``None``:
        pacsnode itself, as retention)."""
        return self.apply(self.select(target, hard, reason), user)

    def apply(self, selection: Selection, user: audit.Actor | None) -> Deleted:
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
        gone = self._vanished(selection.patients)
        if gone:
            audit.patients_deleted(user, gone, selection.hard)
        log.info(
            "%s deleted (%s) by %s: %d instances in %d series of %d studies",
            selection.target.describe(),
            how,
            user.user_id if user is not None else "retention",
            len(pks),
            selection.series,
            len(selection.studies),
        )
        self._tell(selection.withdrawn)
        return Deleted(
            selection.target,
            selection.hard,
            len(pks),
            selection.series,
            tuple(selection.studies),
            selection.size,
        )

    def _vanished(self, patients: dict[int, tuple[str, str]]) -> list[tuple[str, str]]:
        """Which of these patients have nothing visible left (or no record at all)."""
        with self.database.reader.connect() as connection:
            shown = set(
                connection.execute(
                    sa.select(patient.c.pk).where(
                        patient.c.pk.in_(list(patients)), patient.c.num_instances > 0
                    )
                ).scalars()
            )
        return [who for pk, who in patients.items() if pk not in shown]

    def _tell(self, withdrawn: list[Withdrawal]) -> None:
        if not withdrawn:
            return
        for subscriber in self._subscribers:
            try:
                subscriber(withdrawn)
            except Exception:  # telling others never undoes the deletion
                log.exception("after deleting %d studies' instances", len(withdrawn))

    def restore(self, target: Target, user: audit.Actor) -> Restored:
        """Show again what a soft deletion hid under ``target`` (instances an IOCM note
        rejected stay rejected: ``pacsnode rejected restore`` withdraws a rejection).
        :class:`NothingToRestore` when nothing of it is softly deleted."""
        if target.level not in LEVELS:
            raise ValueError(f"cannot restore a {target.level}: one of {', '.join(LEVELS)}")
        with self.database.reader.connect() as connection:
            patient_pk = self._patient(connection, target) if target.level == "patient" else None
            statement = _instances_of(target, patient_pk).where(
                instance.c.rejection == SOFT_DELETED
            )
            rows = connection.execute(statement).all()
        if not rows:
            raise NothingToRestore(f"no deleted {target.describe()} in the archive")
        patients = {row.patient_pk: (row.PatientID, row.PatientName or "") for row in rows}
        hidden_before = self._vanished(patients)
        self.index.hide([row.pk for row in rows], None)
        audit.instances_restored(user, [row.sop_instance_uid for row in rows])
        if hidden_before:
            audit.patients_restored(user, hidden_before)
        log.info("%s restored by %s: %d instances", target.describe(), user.user_id, len(rows))
        return Restored(
            target,
            len(rows),
            len({row.series_pk for row in rows}),
            tuple(dict.fromkeys(row.StudyInstanceUID for row in rows)),
        )


@dataclass(frozen=True)
class Restored:
    """What a restore showed again, as the doors report it."""

    target: Target
    instances: int
    series: int
    studies: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "level": self.target.level,
            "id": self.target.uid,
            "instances": self.instances,
            "series": self.series,
            "studies": list(self.studies),
        }
