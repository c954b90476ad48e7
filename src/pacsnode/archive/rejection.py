"""IOCM rejection notes: Key Object Selection documents that withdraw instances.

A note titled with one of the DCM rejection codes hides the instances it references
from every door (the note too), as long as each reference names the SOP class the
instance was stored under. The rejections are remembered by SOP Instance UID, so that
a copy sent again later is refused for the codes that say the data was wrong, and so
that an administrator can list, restore or, once retention expired, purge them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydicom import Dataset
from pydicom.uid import UID

from pacsnode import audit
from pacsnode.archive.database import aware, now
from pacsnode.archive.index import Index
from pacsnode.archive.schema import instance, rejected_instance
from pacsnode.archive.storage import Storage

log = logging.getLogger("pacsnode.rejection")

KEY_OBJECT_SELECTION = "1.2.840.10008.5.1.4.1.1.88.59"
REJECTION_CODES = {
    "113001": "Rejected for Quality Reasons",
    "113037": "Rejected for Patient Safety Reasons",
    "113038": "Incorrect Modality Worklist Entry",
    "113039": "Data Retention Policy Expired",
}
REFUSED_WHEN_SENT_AGAIN = {"113001", "113037", "113038"}
RETENTION_EXPIRED = "113039"


class RejectionError(ValueError):
    """A rejection note that cannot be acted on (no usable references)."""


@dataclass(frozen=True)
class Rejected:
    sop_instance_uid: str
    sop_class_uid: str
    code: str
    note_sop_instance_uid: str
    created_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "sop_instance_uid": self.sop_instance_uid,
            "sop_class_uid": self.sop_class_uid,
            "code": self.code,
            "meaning": REJECTION_CODES.get(self.code, ""),
            "note_sop_instance_uid": self.note_sop_instance_uid,
            "created_at": self.created_at.isoformat(),
        }


def rejection_code(dataset: Dataset, sop_class_uid: str) -> str | None:
    """The rejection code if this data set is a rejection note, else None."""
    if sop_class_uid != KEY_OBJECT_SELECTION:
        return None
    for title in dataset.get("ConceptNameCodeSequence") or []:
        code = str(title.get("CodeValue", "")).strip()
        if (
            str(title.get("CodingSchemeDesignator", "")).strip() == "DCM"
            and code in REJECTION_CODES
        ):
            return code
    return None


def referenced(note: Dataset) -> list[tuple[str, str]]:
    """(SOP Class UID, SOP Instance UID) of every instance a note rejects."""
    found = []
    for study in note.get("CurrentRequestedProcedureEvidenceSequence") or []:
        for series in study.get("ReferencedSeriesSequence") or []:
            for item in series.get("ReferencedSOPSequence") or []:
                sop_class = str(item.get("ReferencedSOPClassUID", "")).strip()
                sop_instance = str(item.get("ReferencedSOPInstanceUID", "")).strip()
                if not (sop_class and sop_instance):
                    raise RejectionError("a reference of the rejection note lacks a UID")
                found.append((sop_class, sop_instance))
    if not found:
        raise RejectionError("the rejection note references no instance")
    return found


class Rejections:
    def __init__(self, index: Index, storage: Storage) -> None:
        self.index = index
        self.database = index.database
        self.storage = storage

    def apply(self, note_uid: str, code: str, references: list[tuple[str, str]]) -> int:
        """Hide what the note references, and the note; returns how many were hidden.

        A reference naming another SOP class than the stored instance's is logged and
        left alone; one to an instance not (yet) stored is remembered all the same.
        """
        hidden = 0
        with self.database.writer.begin() as connection:
            for sop_class, sop_instance in references:
                stored = connection.execute(
                    sa.select(instance.c.pk, instance.c.sop_class_uid).where(
                        instance.c.sop_instance_uid == sop_instance
                    )
                ).first()
                if stored is not None and stored.sop_class_uid != sop_class:
                    log.warning(
                        "rejection note %s names %s as %s, stored as %s: left alone",
                        note_uid,
                        sop_instance,
                        UID(sop_class).name,
                        UID(stored.sop_class_uid).name,
                    )
                    continue
                self._remember(connection, sop_instance, sop_class, code, note_uid)
                if stored is not None and self.index.set_hidden(connection, stored.pk, code):
                    hidden += 1
            note_pk = connection.execute(
                sa.select(instance.c.pk).where(instance.c.sop_instance_uid == note_uid)
            ).scalar_one()
            self.index.set_hidden(connection, note_pk, code)
        log.info("rejection note %s (%s) hides %d instances", note_uid, code, hidden)
        return hidden

    @staticmethod
    def _remember(
        connection: sa.Connection, sop_instance: str, sop_class: str, code: str, note: str
    ) -> None:
        connection.execute(
            sa.delete(rejected_instance).where(rejected_instance.c.sop_instance_uid == sop_instance)
        )
        connection.execute(
            sa.insert(rejected_instance),
            {
                "sop_instance_uid": sop_instance,
                "sop_class_uid": sop_class,
                "code": code,
                "note_sop_instance_uid": note,
                "created_at": now(),
            },
        )

    def is_note(self, sop_instance_uid: str) -> bool:
        """Whether this instance is a rejection note that rejected something here."""
        query = sa.select(rejected_instance.c.pk).where(
            rejected_instance.c.note_sop_instance_uid == sop_instance_uid
        )
        with self.database.reader.connect() as connection:
            return connection.execute(query.limit(1)).first() is not None

    def listed(self, code: str | None = None) -> list[Rejected]:
        query = sa.select(rejected_instance).order_by(rejected_instance.c.pk)
        if code:
            query = query.where(rejected_instance.c.code == code)
        with self.database.reader.connect() as connection:
            rows = connection.execute(query).all()
        return [
            Rejected(
                row.sop_instance_uid,
                row.sop_class_uid,
                row.code,
                row.note_sop_instance_uid,
                aware(row.created_at),
            )
            for row in rows
        ]

    def restore(self, sop_instance_uid: str) -> bool:
        """Withdraw a rejection: the instance is visible and may be sent again."""
        with self.database.writer.begin() as connection:
            deleted = connection.execute(
                sa.delete(rejected_instance).where(
                    rejected_instance.c.sop_instance_uid == sop_instance_uid
                )
            )
            pk = connection.execute(  # hidden by a note, not deleted by a user
                sa.select(instance.c.pk).where(
                    instance.c.sop_instance_uid == sop_instance_uid,
                    instance.c.rejection.in_(REJECTION_CODES),
                )
            ).scalar()
            if pk is not None:
                self.index.set_hidden(connection, pk, None)
        return bool(deleted.rowcount) or pk is not None

    def purge(self, user: audit.Actor | None = None) -> int:
        """Delete, files and all, the instances whose retention expired (113039);
        ``user`` is who asked, for the audit trail (``None``: pacsnode itself)."""
        with self.database.reader.connect() as connection:
            uids = list(
                connection.execute(
                    sa.select(instance.c.sop_instance_uid).where(
                        instance.c.rejection == RETENTION_EXPIRED
                    )
                ).scalars()
            )
        audit.instances_deleted(user, uids)  # before: the index forgets them
        for uid in uids:
            path = self.index.delete(uid)
            if path:
                self.storage.delete(path)
        return len(uids)


NOTE_ATTRIBUTES = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyID",
    "ReferringPhysicianName",
)
"""What a rejection note repeats of the patient and study whose instances it rejects."""
_REQUIRED = {"PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate"}
_REQUIRED |= {"StudyTime", "AccessionNumber", "StudyID", "ReferringPhysicianName"}
NOTE_SERIES_NUMBER = 9999


@dataclass(frozen=True)
class Withdrawal:
    """Instances of one study that left the archive's doors, as the rejection note sent
    to IOCM destinations names them (read before they leave the index)."""

    code: str
    study: dict[str, str]
    """Keyword to value of each of :data:`NOTE_ATTRIBUTES` the index holds."""
    series: dict[str, list[tuple[str, str]]]
    """Series Instance UID to the (SOP Class UID, SOP Instance UID) of its instances."""

    @property
    def study_uid(self) -> str:
        return self.study["StudyInstanceUID"]

    @property
    def count(self) -> int:
        return sum(len(items) for items in self.series.values())

    def as_json(self) -> dict[str, Any]:
        series = {uid: [list(item) for item in items] for uid, items in self.series.items()}
        return {"code": self.code, "study": self.study, "series": series}

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> Withdrawal:
        series = {uid: [(c, i) for c, i in items] for uid, items in values["series"].items()}
        return cls(values["code"], dict(values["study"]), series)


def _code(value: str, meaning: str, scheme: str = "DCM") -> Dataset:
    code = Dataset()
    code.CodeValue = value
    code.CodingSchemeDesignator = scheme
    code.CodeMeaning = meaning
    return code


def _content_item(sop_class: str, sop_instance: str) -> Dataset:
    reference = Dataset()
    reference.ReferencedSOPClassUID = sop_class
    reference.ReferencedSOPInstanceUID = sop_instance
    item = Dataset()
    item.RelationshipType = "CONTAINS"
    item.ValueType = "IMAGE" if "Image" in UID(sop_class).name else "COMPOSITE"
    item.ReferencedSOPSequence = [reference]
    return item


def rejection_note(
    withdrawal: Withdrawal, note_uid: str, series_uid: str, created: datetime
) -> Dataset:
    """The IOCM rejection note (Key Object Selection Document, PS3.3 A.35.4, with the
    Rejected Instances title of IHE IOCM) for what ``withdrawal`` names."""
    note = Dataset()
    note.SpecificCharacterSet = "ISO_IR 192"
    note.SOPClassUID = KEY_OBJECT_SELECTION
    note.SOPInstanceUID = note_uid
    for keyword in NOTE_ATTRIBUTES:
        value = withdrawal.study.get(keyword) or ""
        if value or keyword in _REQUIRED or keyword == "StudyInstanceUID":
            setattr(note, keyword, value)
    note.Modality = "KO"
    note.SeriesInstanceUID = series_uid
    note.SeriesNumber = NOTE_SERIES_NUMBER
    note.ReferencedPerformedProcedureStepSequence = []
    note.Manufacturer = "pacsnode"
    note.InstanceNumber = 1
    note.ContentDate = created.strftime("%Y%m%d")
    note.ContentTime = created.strftime("%H%M%S")
    evidence = Dataset()
    evidence.StudyInstanceUID = withdrawal.study_uid
    evidence.ReferencedSeriesSequence = []
    for series_uid_, items in withdrawal.series.items():
        entry = Dataset()
        entry.SeriesInstanceUID = series_uid_
        entry.ReferencedSOPSequence = []
        for sop_class, sop_instance in items:
            reference = Dataset()
            reference.ReferencedSOPClassUID = sop_class
            reference.ReferencedSOPInstanceUID = sop_instance
            entry.ReferencedSOPSequence.append(reference)
        evidence.ReferencedSeriesSequence.append(entry)
    note.CurrentRequestedProcedureEvidenceSequence = [evidence]
    note.ValueType = "CONTAINER"
    note.ConceptNameCodeSequence = [_code(withdrawal.code, REJECTION_CODES[withdrawal.code])]
    note.ContinuityOfContent = "SEPARATE"
    template = Dataset()
    template.MappingResource = "DCMR"
    template.TemplateIdentifier = "2010"
    note.ContentTemplateSequence = [template]
    note.ContentSequence = [
        _content_item(sop_class, sop_instance)
        for items in withdrawal.series.values()
        for sop_class, sop_instance in items
    ]
    return note
