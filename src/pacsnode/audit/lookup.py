"""Which studies and patients a set of instances belongs to: what an audit message
names. One query per event (in chunks for long lists), never one per instance."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from pacsnode.archive.database import Database
from pacsnode.archive.schema import instance, patient, series, study
from pacsnode.audit.messages import Study

_CHUNK = 500


def describe(database: Database, sop_instance_uids: Iterable[str]) -> list[Study]:
    """The studies holding these instances, with counts per SOP class; instances the
    index does not hold are left out."""
    uids = sorted(set(sop_instance_uids))
    studies: dict[str, Study] = {}
    count = sa.func.count(instance.c.pk)
    query = (
        sa.select(
            study.c.study_instance_uid,
            study.c.accession_number,
            patient.c.patient_id,
            patient.c.patient_name,
            instance.c.sop_class_uid,
            count.label("instances"),
        )
        .join(series, series.c.pk == instance.c.series_pk)
        .join(study, study.c.pk == series.c.study_pk)
        .join(patient, patient.c.pk == study.c.patient_pk)
        .group_by(
            study.c.study_instance_uid,
            study.c.accession_number,
            patient.c.patient_id,
            patient.c.patient_name,
            instance.c.sop_class_uid,
        )
    )
    with database.reader.connect() as connection:
        for start in range(0, len(uids), _CHUNK):
            chunk = uids[start : start + _CHUNK]
            for row in connection.execute(query.where(instance.c.sop_instance_uid.in_(chunk))):
                found = studies.setdefault(
                    row.study_instance_uid,
                    Study(
                        row.study_instance_uid,
                        row.patient_id or "",
                        row.patient_name or "",
                        row.accession_number or "",
                    ),
                )
                classes = found.sop_classes
                classes[row.sop_class_uid] = classes.get(row.sop_class_uid, 0) + row.instances
    return list(studies.values())


def instance_counts(database: Database, study_uids: Iterable[str]) -> dict[str, int]:
    """How many instances each study holds in the index, hidden (rejected) ones too."""
    uids = sorted(set(study_uids))
    query = (
        sa.select(study.c.study_instance_uid, sa.func.count(instance.c.pk))
        .join(series, series.c.study_pk == study.c.pk)
        .join(instance, instance.c.series_pk == series.c.pk)
        .group_by(study.c.study_instance_uid)
    )
    counts: dict[str, int] = {}
    with database.reader.connect() as connection:
        for start in range(0, len(uids), _CHUNK):
            chunk = uids[start : start + _CHUNK]
            rows = connection.execute(query.where(study.c.study_instance_uid.in_(chunk)))
            counts.update({uid: int(count) for uid, count in rows})
    return counts
