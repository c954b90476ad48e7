"""Which stored files make up a study, a series or an instance.

The web doors (WADO-RS, WADO-URI, rendered images, ZIP downloads) name what they
want by UIDs; this is where those UIDs become files, with the same visibility rules
as every query: rejected instances are not handed out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from pacsnode.archive.matching import visible_studies
from pacsnode.archive.schema import instance, patient, series, study
from pacsnode.archive.storage import Storage

if TYPE_CHECKING:
    from pacsnode.archive.core import Archive


@dataclass(frozen=True)
class Sight:
    """What a requester sees: studies meeting its ``visible`` criteria (all when
    empty), and with ``deleted`` hidden instances too (its ``show_deleted``)."""

    visible: tuple[tuple[str, str], ...] = ()
    deleted: bool = False
    case_insensitive: bool = True


@dataclass(frozen=True)
class Selected:
    """One stored instance a C-MOVE or C-GET sends."""

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    edited: bool = False
    """The index holds other values for its patient or study (see archive/outgoing.py)."""


@dataclass(frozen=True)
class Located:
    """One stored instance, as the retrieve doors need it."""

    pk: int
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    path: Path
    size: int
    number_of_frames: int | None
    edited: bool = False
    """The index holds other values for its patient or study (see archive/outgoing.py)."""


def visible_instances(deleted: bool = False) -> sa.Select[tuple[object, ...]]:
    """Every visible instance (with ``deleted``, hidden ones too), with what
    :class:`Located` needs."""
    statement = sa.select(
        instance.c.pk,
        study.c.study_instance_uid,
        series.c.series_instance_uid,
        instance.c.sop_instance_uid,
        instance.c.sop_class_uid,
        instance.c.transfer_syntax_uid,
        instance.c.file_path,
        instance.c.file_size,
        instance.c.number_of_frames,
        sa.or_(patient.c.edited, study.c.edited).label("edited"),
    ).select_from(
        study.join(series, series.c.study_pk == study.c.pk)
        .join(instance, instance.c.series_pk == series.c.pk)
        .join(patient, patient.c.pk == study.c.patient_pk)
    )
    return statement if deleted else statement.where(instance.c.rejection.is_(None))


def selection(
    study_uid: str,
    series_uid: str | None = None,
    sop_instance_uid: str | None = None,
    sight: Sight | None = None,
) -> sa.Select[tuple[object, ...]]:
    """The visible instances under the named entity, in series and instance order, as
    ``sight`` sees them (the requesting AE's ``visible`` and ``show_deleted``)."""
    sight = sight or Sight()
    statement = visible_instances(sight.deleted).where(study.c.study_instance_uid == study_uid)
    if sight.visible:
        shown = visible_studies(dict(sight.visible), sight.case_insensitive, sight.deleted)
        statement = statement.where(study.c.pk.in_(shown))
    if series_uid is not None:
        statement = statement.where(series.c.series_instance_uid == series_uid)
    if sop_instance_uid is not None:
        statement = statement.where(instance.c.sop_instance_uid == sop_instance_uid)
    return statement.order_by(
        series.c.series_number, series.c.pk, instance.c.instance_number, instance.c.pk
    )


def locate(
    archive: Archive,
    study_uid: str,
    series_uid: str | None = None,
    sop_instance_uid: str | None = None,
    sight: Sight | None = None,
) -> list[Located]:
    """The stored instances under a study, series or instance; empty if there are none."""
    statement = selection(study_uid, series_uid, sop_instance_uid, sight)
    with archive.database.reader.connect() as connection:
        rows = connection.execute(statement).all()
    return [located_row(row, archive.storage) for row in rows]


def located_row(row: Any, storage: Storage) -> Located:
    """A row of :func:`visible_instances` as a :class:`Located`."""
    return Located(
        pk=row.pk,
        study_instance_uid=row.study_instance_uid,
        series_instance_uid=row.series_instance_uid,
        sop_instance_uid=row.sop_instance_uid,
        sop_class_uid=row.sop_class_uid,
        transfer_syntax_uid=row.transfer_syntax_uid,
        path=storage.absolute(row.file_path),
        size=row.file_size,
        number_of_frames=row.number_of_frames,
        edited=bool(row.edited),
    )
