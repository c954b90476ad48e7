"""The outgoing step: what the index says, written into every object that goes out.

Stored files keep their received bytes. When the index holds other values for an
instance's patient or study (an update, a merge, a resolved issuer: the ``edited``
flag of the patient or study row), or the configuration coerces what a peer is sent
(``[[coercion]]`` with ``direction = "send"``), the copy that goes out is rewritten:
the index's values replace the file's, the send rules apply on top, and the values
replaced go into Original Attributes Sequence (archive/modification.py). Every door
that hands out an object asks :meth:`Outgoing.modification` and passes the answer to
the conversion (archive/transcoding.py): C-MOVE and C-GET, routing and sends, WADO-RS
(instances and metadata), WADO-URI, media export and ZIP downloads.

An instance with neither goes out exactly as before: no query, no parse, its bytes
streamed as stored. The answer for one that has them costs a query and a read of
its header.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydicom import Dataset, dcmread

from pacsnode.archive.attributes import BY_KEYWORD, Kind, Level, column_values
from pacsnode.archive.coercion import Coercions, View, apply_rule
from pacsnode.archive.database import Database
from pacsnode.archive.modification import Change, Modification, Reason, element_for
from pacsnode.archive.schema import LEVEL_TABLES, instance, patient, series, study
from pacsnode.config import Coercion

log = logging.getLogger("pacsnode.outgoing")

EDITABLE: dict[Level, tuple[str, ...]] = {
    Level.PATIENT: (
        "PatientID",
        "IssuerOfPatientID",
        "IssuerOfPatientIDQualifiersSequence",
        "PatientName",
        "PatientBirthDate",
        "PatientSex",
        "OtherPatientIDs",
    ),
    Level.STUDY: (
        "StudyDescription",
        "AccessionNumber",
        "ReferringPhysicianName",
        "IssuerOfAdmissionIDSequence",
    ),
}
"""The attributes the index may hold otherwise than a file: what updates, merges and
the issuer heuristic change."""
COERCED = frozenset(
    {"IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence", "IssuerOfAdmissionIDSequence"}
)
"""Of those, the ones the configuration decides (reason COERCE; the others CORRECT)."""


def _columns() -> list[sa.ColumnElement[Any]]:
    return [
        LEVEL_TABLES[level].c[BY_KEYWORD[keyword].column].label(keyword)
        for level, keywords in EDITABLE.items()
        for keyword in keywords
    ]


def header(path: Path) -> Dataset:
    """A stored file's data set up to its pixel data, long values left on disk."""
    return dcmread(path, force=True, stop_before_pixels=True, defer_size=4096)


def _comparable(value: Any) -> Any:
    return "" if value is None else value


def _indexed_element(keyword: str, value: Any) -> Any:
    attribute = BY_KEYWORD[keyword]
    if attribute.kind is Kind.SEQUENCE and value:
        return element_for(attribute.tag, [Dataset.from_json(i) for i in json.loads(value)])
    return element_for(attribute.tag, value)


def index_changes(dataset: Dataset, indexed: dict[str, Any]) -> list[Change]:
    """The changes that make a file's data set say what the index says."""
    held = {**column_values(dataset, Level.PATIENT), **column_values(dataset, Level.STUDY)}
    changes = []
    for keywords in EDITABLE.values():
        for keyword in keywords:
            attribute = BY_KEYWORD[keyword]
            wanted = indexed[keyword]
            if _comparable(held[attribute.column]) == _comparable(wanted):
                continue
            original = dataset.get(attribute.tag)
            reason: Reason = "COERCE" if keyword in COERCED else "CORRECT"
            element = _indexed_element(keyword, wanted)
            changes.append(Change(attribute.tag, element, original, reason))
    return changes


class Outgoing:
    def __init__(self, database: Database, coercions: Coercions, ae_title: str) -> None:
        self.database = database
        self.coercions = coercions
        self.ae_title = ae_title

    def modification(
        self, path: Path, sop_instance_uid: str, edited: bool, destination: str | None
    ) -> Modification | None:
        """What to change in the copy of an instance sent to ``destination`` (an AE
        title; None for the HTTP door and media); None sends the stored bytes.

        ``edited`` is the instance's patient's or study's flag, as the door read it
        with the instance. Raises OSError or pydicom's errors for a file that cannot
        be read: the door counts that instance as failed.
        """
        return self._modification(
            path, sop_instance_uid, edited, self.coercions.rules("send", destination)
        )

    def corrections(self, path: Path, sop_instance_uid: str, edited: bool) -> Modification | None:
        """What the index says only, without send rules: for a copy that is rewritten
        further (de-identified) and then sent through :meth:`modification`."""
        return self._modification(path, sop_instance_uid, edited, ())

    def _modification(
        self, path: Path, sop_instance_uid: str, edited: bool, rules: tuple[Coercion, ...]
    ) -> Modification | None:
        if not edited and not rules:
            return None
        dataset = header(path)
        changes: list[Change] = []
        source = ""
        if edited:
            indexed = self._indexed(sop_instance_uid)
            if indexed is not None:
                source = indexed.pop("source_ae") or ""
                changes = index_changes(dataset, indexed)
        view = View(dataset, changes)
        for rule in rules:
            apply_rule(view, rule)
        modification = Modification(dataset, view.changes(), self.ae_title, source)
        if modification:
            log.debug("%s goes out with %s", sop_instance_uid, modification.described())
        return modification or None

    def _indexed(self, sop_instance_uid: str) -> dict[str, Any] | None:
        query = (
            sa.select(*_columns(), instance.c.source_ae)
            .select_from(
                instance.join(series, series.c.pk == instance.c.series_pk)
                .join(study, study.c.pk == series.c.study_pk)
                .join(patient, patient.c.pk == study.c.patient_pk)
            )
            .where(instance.c.sop_instance_uid == sop_instance_uid)
        )
        with self.database.reader.connect() as connection:
            row = connection.execute(query).first()
        return None if row is None else dict(row._mapping)
