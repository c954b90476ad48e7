"""Modality Performed Procedure Steps: what a modality reports it did.

A step is created IN PROGRESS and then set, any number of times, until it is
COMPLETED or DISCONTINUED; after that it is final (PS3.4 F.7.2). Each step is kept as
the data set that the N-CREATE and N-SETs built up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydicom import Dataset

from pacsnode.archive.database import Database, aware, now
from pacsnode.archive.schema import mpps

IN_PROGRESS, COMPLETED, DISCONTINUED = "IN PROGRESS", "COMPLETED", "DISCONTINUED"
FINAL = {COMPLETED, DISCONTINUED}

PROCESSING_FAILURE = 0x0110
DUPLICATE_INSTANCE = 0x0111
NO_SUCH_INSTANCE = 0x0112
INVALID_ATTRIBUTE_VALUE = 0x0106
MISSING_ATTRIBUTE = 0x0120


class MppsError(Exception):
    def __init__(self, status: int, comment: str) -> None:
        super().__init__(comment)
        self.status = status


@dataclass(frozen=True)
class Step:
    sop_instance_uid: str
    status: str
    study_instance_uid: str | None
    calling_ae: str | None
    dataset: Dataset
    created_at: datetime
    updated_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "sop_instance_uid": self.sop_instance_uid,
            "status": self.status,
            "study_instance_uid": self.study_instance_uid,
            "calling_ae": self.calling_ae,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "dataset": self.dataset.to_json_dict(),
        }


def _study_uid(dataset: Dataset) -> str | None:
    for item in dataset.get("ScheduledStepAttributesSequence") or []:
        if item.get("StudyInstanceUID"):
            return str(item.StudyInstanceUID)
    return None


def _step(row: Any) -> Step:
    values = dict(row._mapping)
    for key in ("created_at", "updated_at"):
        values[key] = aware(values[key])
    return Step(
        values["sop_instance_uid"],
        values["status"],
        values["study_instance_uid"],
        values["calling_ae"],
        Dataset.from_json(json.loads(values["dataset"])),
        values["created_at"],
        values["updated_at"],
    )


def _status_of(dataset: Dataset) -> str:
    return str(dataset.get("PerformedProcedureStepStatus", "")).strip().upper()


class MppsStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    def create(self, uid: str, dataset: Dataset, calling_ae: str) -> Step:
        """N-CREATE: a new step, which must start IN PROGRESS."""
        status = _status_of(dataset)
        if not status:
            raise MppsError(MISSING_ATTRIBUTE, "Performed Procedure Step Status is missing")
        if status != IN_PROGRESS:
            raise MppsError(INVALID_ATTRIBUTE_VALUE, f"a new step cannot be {status}")
        if "ScheduledStepAttributesSequence" not in dataset:
            raise MppsError(MISSING_ATTRIBUTE, "Scheduled Step Attributes Sequence is missing")
        moment = now()
        row = {
            "sop_instance_uid": uid,
            "status": status,
            "study_instance_uid": _study_uid(dataset),
            "calling_ae": calling_ae,
            "dataset": json.dumps(dataset.to_json_dict()),
            "created_at": moment,
            "updated_at": moment,
        }
        with self.database.writer.begin() as connection:
            exists = connection.execute(
                sa.select(mpps.c.pk).where(mpps.c.sop_instance_uid == uid)
            ).first()
            if exists is not None:
                raise MppsError(DUPLICATE_INSTANCE, f"step {uid} exists")
            connection.execute(sa.insert(mpps), row)
        return self.get(uid)

    def update(self, uid: str, modifications: Dataset) -> Step:
        """N-SET: change a step that is still IN PROGRESS."""
        new_status = _status_of(modifications)
        if new_status and new_status not in {IN_PROGRESS, *FINAL}:
            raise MppsError(INVALID_ATTRIBUTE_VALUE, f"status {new_status} is not valid")
        with self.database.writer.begin() as connection:
            row = connection.execute(
                sa.select(mpps).where(mpps.c.sop_instance_uid == uid).with_for_update()
            ).first()
            if row is None:
                raise MppsError(NO_SUCH_INSTANCE, f"no step {uid}")
            step = _step(row)
            if step.status in FINAL:
                raise MppsError(PROCESSING_FAILURE, f"Performed Procedure Step is {step.status}")
            dataset = step.dataset
            for element in modifications:
                dataset[element.tag] = element
            connection.execute(
                sa.update(mpps)
                .where(mpps.c.sop_instance_uid == uid)
                .values(
                    status=_status_of(dataset),
                    study_instance_uid=_study_uid(dataset),
                    dataset=json.dumps(dataset.to_json_dict()),
                    updated_at=now(),
                )
            )
        return self.get(uid)

    def get(self, uid: str) -> Step:
        with self.database.reader.connect() as connection:
            row = connection.execute(sa.select(mpps).where(mpps.c.sop_instance_uid == uid)).first()
        if row is None:
            raise MppsError(NO_SUCH_INSTANCE, f"no step {uid}")
        return _step(row)

    def list(self, status: str | None = None, limit: int = 100) -> list[Step]:
        query = sa.select(mpps).order_by(mpps.c.pk.desc()).limit(limit)
        if status:
            query = query.where(mpps.c.status == status.upper())
        with self.database.reader.connect() as connection:
            return [_step(row) for row in connection.execute(query)]
