"""Patient and study records corrected after their objects arrived: demographics and
study attributes updated, two patients merged. The one core the REST API, the CLI and
HL7 ADT (A08, A31, A40) call.

Only the index changes; stored files keep their received bytes. The rows changed are
marked ``edited``, so that what goes out of their instances says what the index says
(archive/outgoing.py); C-FIND, QIDO-RS and the REST API read the index and show the
change at once, and the WADO-RS metadata documents concerned are dropped, to be made
again with it. A patient change is audited as Patient Record (110110) with the new
values (a merge also as the deletion of the record merged away), a study change as
DICOM Instances Accessed, U, with the new values.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pacsnode import audit
from pacsnode.archive.attributes import BY_KEYWORD, fold, normalized_date
from pacsnode.archive.authorities import Issuers
from pacsnode.archive.database import now
from pacsnode.archive.index import Index
from pacsnode.archive.schema import instance, instance_metadata, patient, sequence_value, series
from pacsnode.archive.schema import study as study_table
from pacsnode.audit.messages import Study
from pacsnode.errors import FieldError

log = logging.getLogger("pacsnode.patients")

PATIENT_FIELDS = ("PatientName", "PatientBirthDate", "PatientSex", "OtherPatientIDs")
STUDY_FIELDS = ("StudyDescription", "AccessionNumber", "ReferringPhysicianName")
_LIMITS = {
    "PatientName": 64,  # per component group
    "ReferringPhysicianName": 64,
    "OtherPatientIDs": 64,  # per value
    "StudyDescription": 64,
    "AccessionNumber": 16,
}
_SEXES = ("", "M", "F", "O")


class RecordError(FieldError):
    """A change that cannot be made as asked; ``field`` names the value to correct."""


class RecordNotFound(LookupError):
    """No such patient or study in the archive."""


class AmbiguousPatient(ValueError):
    """A Patient ID that several issuers use, named without its issuer."""


@dataclass(frozen=True)
class PatientKey:
    """A patient as the doors name it: its Patient ID and, when several issuers use
    that ID, the issuer (None: whichever one uses it)."""

    patient_id: str
    issuer: str | None = None

    def __str__(self) -> str:
        return self.patient_id + (f" (issuer {self.issuer})" if self.issuer else "")


@dataclass(frozen=True)
class Updated:
    """What an update or merge did, as the doors report it."""

    target: str
    changed: dict[str, str] = field(default_factory=dict)
    """Keyword to new value of each attribute that changed."""
    studies: int = 0
    """Studies concerned."""

    def as_json(self) -> dict[str, Any]:
        return {"target": self.target, "changed": self.changed, "studies": self.studies}


def checked(values: dict[str, Any], allowed: tuple[str, ...]) -> dict[str, str]:
    """The changes asked for, checked against their VRs; '' (or null) empties one."""
    changes: dict[str, str] = {}
    for keyword, value in values.items():
        if keyword not in allowed:
            raise RecordError(
                f"{keyword} cannot be changed here; use {', '.join(allowed)}", keyword
            )
        text = "" if value is None else value
        if not isinstance(text, str):
            raise RecordError(f"{keyword} must be a string", keyword)
        changes[keyword] = _checked_value(keyword, text.strip())
    if not changes:
        raise RecordError(f"nothing to change; give one of {', '.join(allowed)}")
    return changes


def _checked_value(keyword: str, text: str) -> str:
    if keyword == "PatientBirthDate":
        date = normalized_date(text)
        if date and not (re.fullmatch(r"\d{8}", date) and _is_date(date)):
            raise RecordError(f"{keyword} must be a date YYYYMMDD, not {text!r}", keyword)
        return date
    if keyword == "PatientSex":
        if text.upper() not in _SEXES:
            raise RecordError(f"{keyword} must be M, F, O or empty, not {text!r}", keyword)
        return text.upper()
    limit = _LIMITS[keyword]
    pieces = text.split("\\") if keyword == "OtherPatientIDs" else text.split("=")
    if keyword != "OtherPatientIDs" and "\\" in text:
        raise RecordError(f"{keyword} takes one value (no '\\')", keyword)
    if any(len(piece) > limit for piece in pieces) or not text.isprintable():
        raise RecordError(f"{keyword}: at most {limit} printable characters a value", keyword)
    return text


def _is_date(text: str) -> bool:
    try:
        datetime.strptime(text, "%Y%m%d")
    except ValueError:
        return False
    return True


def _column_values(changes: dict[str, str]) -> dict[str, Any]:
    """Index column values of the changes: empty as NULL, folded copies too."""
    values: dict[str, Any] = {}
    for keyword, text in changes.items():
        attribute = BY_KEYWORD[keyword]
        values[attribute.column] = text or None
        if attribute.has_folded_copy:
            values[attribute.folded_column] = fold(text or None)
    return values


def _changed(row: Any, changes: dict[str, str]) -> dict[str, str]:
    return {
        keyword: text
        for keyword, text in changes.items()
        if (getattr(row, BY_KEYWORD[keyword].column) or "") != text
    }


def _forget_documents(connection: Connection, studies: sa.Select[Any]) -> None:
    """Drop the metadata documents of the instances of these studies."""
    instances = (
        sa.select(instance.c.pk)
        .join(series, series.c.pk == instance.c.series_pk)
        .where(series.c.study_pk.in_(studies))
    )
    connection.execute(
        sa.delete(instance_metadata).where(instance_metadata.c.instance_pk.in_(instances))
    )


class PatientRecords:
    def __init__(self, index: Index, issuers: Issuers) -> None:
        self.index = index
        self.issuers = issuers

    def key(self, patient_id: str, issuer: str | None) -> PatientKey:
        """A patient named by a door; without an issuer, with the heuristic on, the
        default authority's (the issuer every object of this site gets)."""
        if issuer is None and self.issuers.enabled:
            issuer = self.issuers.default().issuer
        return PatientKey(patient_id.strip(), issuer)

    def update_patient(
        self, key: PatientKey, values: dict[str, Any], user: audit.Actor | None
    ) -> Updated:
        changes = checked(values, PATIENT_FIELDS)
        with self.index.writing() as connection:
            row = self._patient(connection, key)
            changed = _changed(row, changes)
            if changed:
                connection.execute(
                    sa.update(patient)
                    .where(patient.c.pk == row.pk)
                    .values(**_column_values(changed), edited=True, updated_at=now())
                )
                owned = sa.select(study_table.c.pk).where(study_table.c.patient_pk == row.pk)
                _forget_documents(connection, owned)
            studies = row.num_studies
        name = changed.get("PatientName", row.patient_name or "")
        if changed:
            log.info("patient %s updated: %s", key, changed)
            audit.patient_record(user, row.patient_id, name, created=False, changed=changed)
        return Updated(f"patient {row.patient_id}", changed, studies)

    def update_study(self, uid: str, values: dict[str, Any], user: audit.Actor | None) -> Updated:
        changes = checked(values, STUDY_FIELDS)
        with self.index.writing() as connection:
            row = connection.execute(
                sa.select(study_table, patient.c.patient_id, patient.c.patient_name)
                .join(patient, patient.c.pk == study_table.c.patient_pk)
                .where(study_table.c.study_instance_uid == uid.strip())
            ).first()
            if row is None:
                raise RecordNotFound(f"no study {uid} in the archive")
            changed = _changed(row, changes)
            if changed:
                connection.execute(
                    sa.update(study_table)
                    .where(study_table.c.pk == row.pk)
                    .values(**_column_values(changed), edited=True, updated_at=now())
                )
                _forget_documents(connection, sa.select(sa.literal(row.pk)))
        if changed:
            log.info("study %s updated: %s", uid, changed)
            accession = changed.get("AccessionNumber", row.accession_number or "")
            edited = Study(uid, row.patient_id, row.patient_name or "", accession)
            audit.instances_updated(user, changed, studies=[edited])
        return Updated(f"study {uid}", changed, 1)

    def merge(self, source: PatientKey, target: PatientKey, user: audit.Actor | None) -> Updated:
        """Move the studies of ``source`` to ``target`` and drop ``source``; a target
        the archive does not hold yet is ``source`` under its new identity."""
        with self.index.writing() as connection:
            old = self._patient(connection, source)
            found = self._patients(connection, target)
            if len(found) > 1:
                raise AmbiguousPatient(f"patient ID {target.patient_id} has several issuers")
            new = found[0] if found else None
            if new is not None and new.pk == old.pk:
                raise RecordError("a patient cannot be merged into itself", "PatientID")
            owned = sa.select(study_table.c.pk).where(study_table.c.patient_pk == old.pk)
            _forget_documents(connection, owned)
            if new is None:
                issuer = old.issuer_of_patient_id if target.issuer is None else target.issuer
                self._rename(connection, old.pk, target.patient_id, issuer)
            else:
                self._move(connection, old, new)
        name = (new.patient_name if new is not None else old.patient_name) or ""
        changed = {
            "PatientID (merged)": old.patient_id,
            "IssuerOfPatientID (merged)": old.issuer_of_patient_id,
        }
        log.info("patient %s merged into %s: %d studies", source, target, old.num_studies)
        audit.patient_record(user, target.patient_id, name, created=False, changed=changed)
        audit.patients_deleted(user, [(old.patient_id, old.patient_name or "")], hard=False)
        return Updated(f"patient {target.patient_id}", changed, old.num_studies)

    @staticmethod
    def _rename(connection: Connection, pk: int, patient_id: str, issuer: str) -> None:
        connection.execute(
            sa.update(patient)
            .where(patient.c.pk == pk)
            .values(
                patient_id=patient_id, issuer_of_patient_id=issuer, edited=True, updated_at=now()
            )
        )

    @staticmethod
    def _move(connection: Connection, old: Any, new: Any) -> None:
        connection.execute(
            sa.update(study_table)
            .where(study_table.c.patient_pk == old.pk)
            .values(patient_pk=new.pk, updated_at=now())
        )
        connection.execute(
            sa.update(patient)
            .where(patient.c.pk == new.pk)
            .values(
                num_studies=patient.c.num_studies + old.num_studies,
                num_series=patient.c.num_series + old.num_series,
                num_instances=patient.c.num_instances + old.num_instances,
                edited=True,
                updated_at=now(),
            )
        )
        connection.execute(
            sa.delete(sequence_value).where(
                sequence_value.c.level == patient.name, sequence_value.c.owner_pk == old.pk
            )
        )
        connection.execute(sa.delete(patient).where(patient.c.pk == old.pk))

    @staticmethod
    def _patients(connection: Connection, key: PatientKey) -> list[Any]:
        statement = sa.select(patient).where(patient.c.patient_id == key.patient_id)
        if key.issuer is not None:
            statement = statement.where(patient.c.issuer_of_patient_id == key.issuer)
        return list(connection.execute(statement.with_for_update()).all())

    def _patient(self, connection: Connection, key: PatientKey) -> Any:
        found = self._patients(connection, key)
        if not found:
            raise RecordNotFound(f"no patient {key} in the archive")
        if len(found) > 1:
            issuers = ", ".join(repr(row.issuer_of_patient_id) for row in found)
            raise AmbiguousPatient(
                f"patient ID {key.patient_id} is used with the issuers {issuers}"
            )
        return found[0]
