"""Attribute matching (PS3.4 C.2.2.2) translated into SQL over the index.

This is the one matching engine: the C-FIND door uses it now, QIDO-RS will use it
too, so that both answer the same query identically. Matching runs in the database
and rows stream back as they are read; nothing is filtered in Python.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pacsnode.archive.attributes import BY_KEYWORD, Attribute, Kind, Level, fold
from pacsnode.archive.schema import LEVEL_TABLES, instance, patient, series, study

LEVEL_ORDER = (Level.PATIENT, Level.STUDY, Level.SERIES, Level.IMAGE)

# Attributes computed from the index rather than stored as received.
COMPUTED: dict[str, tuple[Level, str]] = {
    "NumberOfPatientRelatedStudies": (Level.PATIENT, "num_studies"),
    "NumberOfPatientRelatedSeries": (Level.PATIENT, "num_series"),
    "NumberOfPatientRelatedInstances": (Level.PATIENT, "num_instances"),
    "NumberOfStudyRelatedSeries": (Level.STUDY, "num_series"),
    "NumberOfStudyRelatedInstances": (Level.STUDY, "num_instances"),
    "NumberOfSeriesRelatedInstances": (Level.SERIES, "num_instances"),
    "ModalitiesInStudy": (Level.STUDY, "modalities_in_study"),
}

UNIQUE_KEYS = {
    Level.PATIENT: "PatientID",
    Level.STUDY: "StudyInstanceUID",
    Level.SERIES: "SeriesInstanceUID",
    Level.IMAGE: "SOPInstanceUID",
}


class QueryError(ValueError):
    """The identifier does not fit the information model (C-FIND ``A900``)."""


@dataclass(frozen=True)
class Query:
    level: Level
    keys: dict[str, str]
    """Keyword to query value as the request encodes it; '' asks only for a return."""
    patient_root: bool = True
    """Patient Root (and Patient/Study Only) put PATIENT above STUDY; Study Root does not."""
    case_insensitive: bool = True
    """PN and the other keys the conformance statements list match regardless of case."""


def _column(attr: Attribute) -> sa.ColumnElement[Any]:
    return LEVEL_TABLES[attr.level].c[attr.column]


_ESCAPE = "!"


def _like_pattern(value: str) -> str:
    """A DICOM wildcard value as a LIKE pattern (escaped with ``!``)."""
    for special in (_ESCAPE, "%", "_"):
        value = value.replace(special, _ESCAPE + special)
    return value.replace("*", "%").replace("?", "_")


def _text_condition(column: sa.ColumnElement[Any], value: str) -> Any:
    if "*" in value or "?" in value:
        if value.strip("*") == "":
            return sa.true()
        return column.like(_like_pattern(value), escape=_ESCAPE)
    return column == value


def _range_condition(column: sa.ColumnElement[Any], value: str, kind: Kind) -> Any:
    clean = value.replace(".", "") if kind is Kind.DATE else value
    if "-" not in clean:
        return column == clean
    low, high = (part.strip() for part in clean.split("-", 1))
    conditions = []
    if low:
        conditions.append(column >= low)
    if high:
        # A time or date-time range includes everything up to the end of its last unit.
        conditions.append(column <= high + ("\uffff" if kind is not Kind.DATE else ""))
    return sa.and_(*conditions) if conditions else sa.true()


def condition(attr: Attribute, value: str, case_insensitive: bool) -> Any:
    """The SQL condition for one matching key."""
    column = _column(attr)
    if attr.kind is Kind.UID:
        uids = [uid.strip() for uid in value.split("\\") if uid.strip()]
        return column.in_(uids) if len(uids) > 1 else column == uids[0]
    if attr.kind in (Kind.DATE, Kind.TIME, Kind.DATETIME):
        return _range_condition(column, value, attr.kind)
    if attr.kind is Kind.INT:
        try:
            return column == int(value)
        except ValueError:
            return sa.false()
    if case_insensitive and attr.has_folded_copy:
        folded = LEVEL_TABLES[attr.level].c[attr.folded_column]
        return _text_condition(folded, fold(value) or "")
    return _text_condition(column, value)


def _modalities_condition(value: str) -> Any:
    """Modalities in Study matches when any requested modality is among the study's."""
    wanted = [m.strip().upper() for m in value.split("\\") if m.strip()]
    joined = sa.literal("\\") + sa.func.coalesce(study.c.modalities_in_study, "") + "\\"
    column = sa.func.upper(joined)
    return sa.or_(*(column.like(f"%\\{_like_pattern(m)}\\%", escape=_ESCAPE) for m in wanted))


def _levels(query: Query) -> list[Level]:
    top = Level.PATIENT if query.patient_root else Level.STUDY
    return list(LEVEL_ORDER[LEVEL_ORDER.index(top) : LEVEL_ORDER.index(query.level) + 1])


def _check_hierarchy(query: Query, levels: list[Level]) -> None:
    """Hierarchical queries name one entity at each level above the query level."""
    for level in levels[:-1]:
        if level is Level.PATIENT and not query.patient_root:
            continue
        key = UNIQUE_KEYS[level]
        value = query.keys.get(key, "")
        if not value or "*" in value or "?" in value or "\\" in value:
            raise QueryError(f"{key} must be given as a single value above {query.level}")


def build(query: Query, hierarchical: bool = True) -> sa.Select[Any]:
    """The SELECT for a query; ``hierarchical`` checks the unique keys above its level."""
    levels = _levels(query)
    if hierarchical:
        _check_hierarchy(query, levels)
    tables = [LEVEL_TABLES[level] for level in levels]
    if not query.patient_root and Level.PATIENT not in levels:
        tables.insert(0, patient)  # Study Root returns patient attributes at STUDY level
    source: sa.FromClause = tables[0]
    joins = {
        "study": study.c.patient_pk == patient.c.pk,
        "series": series.c.study_pk == study.c.pk,
        "instance": instance.c.series_pk == series.c.pk,
    }
    for table in tables[1:]:
        source = source.join(table, joins[table.name])
    columns = (c.label(f"{table.name}.{c.name}") for table in tables for c in table.c)
    statement = sa.select(*columns).select_from(source)
    present = {table.name for table in tables}
    for keyword, value in query.keys.items():
        if not value:
            continue
        if keyword == "ModalitiesInStudy" and "study" in present:
            statement = statement.where(_modalities_condition(value))
            continue
        attr = BY_KEYWORD.get(keyword)
        if attr is None or LEVEL_TABLES[attr.level].name not in present:
            continue  # not a key we match on; returned empty
        if attr.kind is Kind.SEQUENCE:
            continue  # sequence matching is not done yet: the item is returned as stored
        statement = statement.where(condition(attr, value, query.case_insensitive))
    order = LEVEL_TABLES[query.level].c.pk
    return statement.order_by(order)


def search(connection: Connection, statement: sa.Select[Any]) -> Iterator[sa.RowMapping]:
    """Rows of a :func:`build` statement, streamed from the database."""
    result = connection.execution_options(stream_results=True).execute(statement)
    yield from result.mappings()


def retrieve_selection(level: Level, keys: dict[str, str], patient_root: bool) -> sa.Select[Any]:
    """Every instance below the entities that a C-MOVE or C-GET identifier names.

    The identifier must carry the unique key of its level; the unique keys of the
    other levels, when given, narrow the selection further.
    """
    unique = {UNIQUE_KEYS[lv] for lv in LEVEL_ORDER}
    if not keys.get(UNIQUE_KEYS[level]):
        raise QueryError(f"{UNIQUE_KEYS[level]} is required at the {level} level")
    wanted = {k: v for k, v in keys.items() if k in unique and v}
    return build(Query(Level.IMAGE, wanted, patient_root=patient_root), hierarchical=False)
