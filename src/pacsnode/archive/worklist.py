"""Modality worklist items: scheduled procedure steps waiting for a modality.

An item is kept as its DICOM data set. Every value in it, top-level or inside the
Scheduled Procedure Step Sequence, is also a row of ``sequence_value`` (top-level
ones under the sequence ``""``), so that a worklist query runs through the same SQL
matching as Query/Retrieve, whichever of the many worklist keys it uses.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydicom import Dataset, config
from pydicom.datadict import dictionary_VR
from pydicom.uid import generate_uid
from pydicom.valuerep import validate_value

from pacsnode.archive.attributes import fold, item_values
from pacsnode.archive.authorities import Issuers
from pacsnode.archive.database import Database, aware, now
from pacsnode.archive.matching import item_condition
from pacsnode.archive.schema import sequence_value, worklist_item

SCHEDULED = "SCHEDULED"
FINISHED = ("COMPLETED", "DISCONTINUED")
SPS = "ScheduledProcedureStepSequence"
REQUEST_FIELDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "RequestedProcedureID",
    "RequestedProcedureDescription",
    "ReferringPhysicianName",
)
"""The attributes of an item a person types, on top of the data set."""
STEP_FIELDS = (
    "Modality",
    "ScheduledStationAETitle",
    "ScheduledProcedureStepStartDate",
    "ScheduledProcedureStepStartTime",
    "ScheduledProcedureStepID",
    "ScheduledProcedureStepDescription",
    "ScheduledPerformingPhysicianName",
)
"""Those of its (first) Scheduled Procedure Step."""
_EXPECTED = {
    "DA": "a date (YYYYMMDD)",
    "TM": "a time (HHMM or HHMMSS)",
    "AE": "an AE title (1 to 16 characters)",
    "CS": "a code (up to 16 capital letters, digits, spaces or _)",
    "SH": "at most 16 characters",
    "LO": "at most 64 characters",
    "PN": "a person name (FAMILY^GIVEN, at most 64 characters)",
}


class WorklistError(ValueError):
    """An item that cannot be a worklist entry, or one that does not exist."""


@dataclass(frozen=True)
class WorklistItem:
    pk: int
    status: str
    dataset: Dataset
    order_number: str | None
    created_at: datetime
    updated_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.pk,
            "status": self.status,
            "order_number": self.order_number,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "dataset": self.dataset.to_json_dict(),
        }


def _item(row: Any) -> WorklistItem:
    return WorklistItem(
        row.pk,
        row.status,
        Dataset.from_json(json.loads(row.dataset)),
        row.order_number,
        aware(row.created_at),
        aware(row.updated_at),
    )


def _json(dataset: Dataset) -> str:
    return json.dumps(dataset.to_json_dict())


def _values(dataset: Dataset, owner_pk: int) -> list[dict[str, Any]]:
    """The rows that matching reads: top-level values, then each sequence's items."""
    rows = []
    flat = Dataset()
    for element in dataset:
        if element.VR == "SQ":
            for number, item in enumerate(element.value or []):
                rows += [
                    _value(owner_pk, element.keyword, number, path, value)
                    for path, value in item_values(item)
                ]
        else:
            flat.add(element)
    rows += [_value(owner_pk, "", 0, path, value) for path, value in item_values(flat)]
    return rows


def _value(owner_pk: int, sequence: str, item: int, path: str, value: str) -> dict[str, Any]:
    return {
        "level": worklist_item.name,
        "owner_pk": owner_pk,
        "sequence": sequence,
        "item": item,
        "path": path,
        "value": value,
        "value_ci": fold(value),
    }


def prepared(dataset: Dataset) -> Dataset:
    """An item as the worklist keeps it: with a Scheduled Procedure Step, a Study
    Instance UID for the modality to use, and a step status."""
    steps = dataset.get(SPS)
    if not steps:
        raise WorklistError("a worklist item needs a Scheduled Procedure Step Sequence")
    if not dataset.get("StudyInstanceUID"):
        dataset.StudyInstanceUID = generate_uid()
    for step in steps:
        if not step.get("ScheduledProcedureStepStatus"):
            step.ScheduledProcedureStepStatus = SCHEDULED
    return dataset


def with_fields(fields: Mapping[str, str], dataset: Dataset | None = None) -> Dataset:
    """An item (a copy of ``dataset``, or a new one) with these attributes set, each
    where it belongs: the patient and request on top, the step in its Scheduled
    Procedure Step. An empty value removes the attribute. Dates and times may be typed
    as 2026-11-24 and 10:30; any value its VR cannot hold is refused, naming both."""
    item = Dataset() if dataset is None else copy.deepcopy(dataset)
    steps = list(item.get(SPS) or [Dataset()])
    for keyword, typed in fields.items():
        if keyword not in REQUEST_FIELDS + STEP_FIELDS:
            raise WorklistError(f"{keyword} is not an attribute the worklist form sets")
        target = steps[0] if keyword in STEP_FIELDS else item
        value = _checked(keyword, typed)
        if value:
            setattr(target, keyword, value)
        elif keyword in target:
            delattr(target, keyword)
    setattr(item, SPS, steps)
    return item


def _checked(keyword: str, typed: str) -> str:
    vr = dictionary_VR(keyword)
    value = typed.strip()
    if vr == "DA":
        value = value.replace("-", "")
    elif vr == "TM":
        value = value.replace(":", "")
    elif vr == "CS":
        value = value.upper()
    if not value:
        return ""
    try:
        validate_value(vr, value, config.RAISE)
    except ValueError:
        raise WorklistError(f"{keyword} {typed!r}: must be {_EXPECTED.get(vr, vr)}") from None
    if keyword == "PatientSex" and value not in ("M", "F", "O"):
        raise WorklistError(f"PatientSex {typed!r}: must be M, F or O")
    return value


def fields_of(dataset: Dataset) -> dict[str, str]:
    """The values :func:`with_fields` sets, as a form shows them."""
    step = (dataset.get(SPS) or [Dataset()])[0]
    values = {keyword: dataset.get(keyword, "") for keyword in REQUEST_FIELDS}
    values |= {keyword: step.get(keyword, "") for keyword in STEP_FIELDS}
    return {keyword: str(value or "") for keyword, value in values.items()}


def _drop_specific_character_set(dataset: Dataset) -> Dataset:
    """Kept as Unicode text; the C-FIND answer says how it is encoded."""
    if "SpecificCharacterSet" in dataset:
        del dataset.SpecificCharacterSet
    return dataset


class Worklist:
    def __init__(
        self,
        database: Database,
        hide_finished: bool = True,
        on_scheduled: Callable[[Dataset], None] | None = None,
        issuers: Issuers | None = None,
    ) -> None:
        self.database = database
        self.hide_finished = hide_finished
        self.on_scheduled = on_scheduled
        """Told of every item scheduled once it is stored (prefetch listens here)."""
        self.issuers = issuers
        """With the issuer heuristic on, items get the default issuers they lack."""

    def _prepared(self, dataset: Dataset) -> Dataset:
        dataset = _drop_specific_character_set(prepared(dataset))
        if self.issuers is not None:
            self.issuers.amend_item(dataset)
        return dataset

    def add(self, dataset: Dataset, order_number: str | None = None) -> WorklistItem:
        dataset = self._prepared(dataset)
        with self.database.writer.begin() as connection:
            pk = self._insert(connection, dataset, order_number)
        return self._scheduled(pk)

    def schedule_order(self, order_number: str, dataset: Dataset) -> WorklistItem:
        """The item of an order, replacing what an earlier message of it scheduled."""
        dataset = self._prepared(dataset)
        with self.database.writer.begin() as connection:
            self._delete_order(connection, order_number)
            pk = self._insert(connection, dataset, order_number)
        return self._scheduled(pk)

    def _scheduled(self, pk: int) -> WorklistItem:
        item = self.get(pk)
        if self.on_scheduled is not None:
            self.on_scheduled(item.dataset)
        return item

    def _insert(self, connection: sa.Connection, dataset: Dataset, order_number: str | None) -> int:
        moment = now()
        pk = connection.execute(
            sa.insert(worklist_item).returning(worklist_item.c.pk),
            {
                "dataset": _json(dataset),
                "order_number": order_number,
                "status": SCHEDULED,
                "created_at": moment,
                "updated_at": moment,
            },
        ).scalar_one()
        connection.execute(sa.insert(sequence_value), _values(dataset, pk))
        return int(pk)

    def replace(self, pk: int, dataset: Dataset) -> WorklistItem:
        dataset = self._prepared(dataset)
        with self.database.writer.begin() as connection:
            changed = connection.execute(
                sa.update(worklist_item)
                .where(worklist_item.c.pk == pk)
                .values(dataset=_json(dataset), updated_at=now())
            )
            if not changed.rowcount:
                raise WorklistError(f"no worklist item {pk}")
            self._forget_values(connection, pk)
            connection.execute(sa.insert(sequence_value), _values(dataset, pk))
        return self.get(pk)

    def delete(self, pk: int) -> None:
        with self.database.writer.begin() as connection:
            deleted = connection.execute(sa.delete(worklist_item).where(worklist_item.c.pk == pk))
            if not deleted.rowcount:
                raise WorklistError(f"no worklist item {pk}")
            self._forget_values(connection, pk)

    def delete_order(self, order_number: str) -> int:
        """Remove the items an HL7 order made; returns how many there were."""
        with self.database.writer.begin() as connection:
            return self._delete_order(connection, order_number)

    def _delete_order(self, connection: sa.Connection, order_number: str) -> int:
        pks = list(
            connection.execute(
                sa.select(worklist_item.c.pk).where(worklist_item.c.order_number == order_number)
            ).scalars()
        )
        for pk in pks:
            connection.execute(sa.delete(worklist_item).where(worklist_item.c.pk == pk))
            self._forget_values(connection, pk)
        return len(pks)

    @staticmethod
    def _forget_values(connection: sa.Connection, pk: int) -> None:
        connection.execute(
            sa.delete(sequence_value).where(
                sequence_value.c.level == worklist_item.name, sequence_value.c.owner_pk == pk
            )
        )

    def get(self, pk: int) -> WorklistItem:
        with self.database.reader.connect() as connection:
            row = connection.execute(
                sa.select(worklist_item).where(worklist_item.c.pk == pk)
            ).first()
        if row is None:
            raise WorklistError(f"no worklist item {pk}")
        return _item(row)

    def items(self, limit: int = 1000) -> list[WorklistItem]:
        query = sa.select(worklist_item).order_by(worklist_item.c.pk).limit(limit)
        with self.database.reader.connect() as connection:
            return [_item(row) for row in connection.execute(query)]

    def matching(
        self,
        keys: dict[str, str],
        sequences: dict[str, dict[str, str]],
        case_insensitive: bool = True,
    ) -> sa.Select[Any]:
        """The items a worklist query matches, oldest first."""
        wanted = {keyword: value for keyword, value in keys.items() if value}
        statement = sa.select(worklist_item).order_by(worklist_item.c.pk)
        statement = statement.where(*self._conditions(wanted, sequences, case_insensitive))
        if self.hide_finished:
            statement = statement.where(worklist_item.c.status.not_in(FINISHED))
        return statement

    def search(self, statement: sa.Select[Any]) -> list[WorklistItem]:
        with self.database.reader.connect() as connection:
            return [_item(row) for row in connection.execute(statement)]

    def follow(self, step_attributes: Dataset, status: str) -> int:
        """Give the items a performed procedure step worked on that step's status.

        An item is the step's when it has the step's Study Instance UID and Scheduled
        Procedure Step ID, or, lacking a study, the same Accession Number and step ID.
        """
        changed = 0
        for scheduled in step_attributes.get("ScheduledStepAttributesSequence") or []:
            keys = {}
            for keyword in ("StudyInstanceUID", "AccessionNumber"):
                if scheduled.get(keyword):
                    keys[keyword] = str(scheduled.get(keyword))
                    break
            if not keys:
                continue
            sps_id = str(scheduled.get("ScheduledProcedureStepID") or "")
            sequences = {SPS: {"ScheduledProcedureStepID": sps_id}} if sps_id else {}
            statement = sa.select(worklist_item.c.pk).where(
                *self._conditions(keys, sequences, case_insensitive=False)
            )
            with self.database.writer.begin() as connection:
                pks = list(connection.execute(statement).scalars())
                if pks:
                    connection.execute(
                        sa.update(worklist_item)
                        .where(worklist_item.c.pk.in_(pks))
                        .values(status=status, updated_at=now())
                    )
            changed += len(pks)
        return changed

    @staticmethod
    def _conditions(
        keys: dict[str, str], sequences: dict[str, dict[str, str]], case_insensitive: bool
    ) -> list[Any]:
        """Each top-level key matches on its own; each sequence key within one item."""
        conditions = [
            item_condition(worklist_item, "", {keyword: value}, case_insensitive)
            for keyword, value in keys.items()
        ]
        conditions += [
            item_condition(worklist_item, keyword, item, case_insensitive)
            for keyword, item in sequences.items()
            if item
        ]
        return conditions
