"""Patients, studies, series and instances as the REST API lists them: keyword JSON
(``{"PatientName": "DOE^JOHN"}``, not tags), filtered by the same matching engine as
C-FIND and QIDO-RS (wildcards, ranges, UID lists, any level's keys), paged.

Each entity carries the attributes the index keeps at its level, its counters, and
the identifiers of what it belongs to (a study its patient's main attributes, a series
its study, an instance its series and study). What is hidden (rejected, deleted) is
not found, as by every other door.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from pacsnode.archive.attributes import ATTRIBUTES, BY_KEYWORD, Kind, Level
from pacsnode.archive.database import Database, aware
from pacsnode.archive.matching import (
    COMPUTED,
    LEVEL_TABLES,
    Query,
    build,
    row_value,
    search,
)
from pacsnode.errors import FieldError
from pacsnode.validation import did_you_mean

RESOURCES: dict[str, Level] = {
    "patients": Level.PATIENT,
    "studies": Level.STUDY,
    "series": Level.SERIES,
    "instances": Level.IMAGE,
}
"""The REST collections, by the level they list."""
MAX_LIMIT = 1000
PATIENT_KEYS = ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex")
_PARENTS: dict[Level, tuple[str, ...]] = {
    Level.PATIENT: (),
    Level.STUDY: PATIENT_KEYS,
    Level.SERIES: ("PatientID", "StudyInstanceUID"),
    Level.IMAGE: ("PatientID", "StudyInstanceUID", "SeriesInstanceUID"),
}
_CHILDREN = {Level.PATIENT: Level.STUDY, Level.STUDY: Level.SERIES, Level.SERIES: Level.IMAGE}
UNIQUE = {
    Level.PATIENT: "PatientID",
    Level.STUDY: "StudyInstanceUID",
    Level.SERIES: "SeriesInstanceUID",
    Level.IMAGE: "SOPInstanceUID",
}
FILTERABLE = sorted(
    [k for k, a in BY_KEYWORD.items() if a.kind is not Kind.SEQUENCE] + ["ModalitiesInStudy"]
)


class FilterError(FieldError):
    """A filter or paging parameter that cannot be used; ``field`` names it."""


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    total: int
    limit: int
    offset: int

    def as_json(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "total": self.total,
            "limit": self.limit,
            "offset": self.offset,
        }


def keywords_of(level: Level) -> list[str]:
    """What an entity of ``level`` shows: its parents' identifiers, its own attributes
    (sequences left out), its counters."""
    own = [a.keyword for a in ATTRIBUTES[level] if a.kind is not Kind.SEQUENCE]
    counters = [k for k, (at, _column) in COMPUTED.items() if at is level]
    return list(dict.fromkeys([*_PARENTS[level], *own, *counters]))


def filters_from(params: Mapping[str, str]) -> dict[str, str]:
    """Query parameters as matching keys; an unknown one is refused with the closest."""
    keys = {}
    for name, value in params.items():
        if name not in FILTERABLE:
            raise FilterError(f"unknown filter {name!r}{did_you_mean(name, FILTERABLE)}", name)
        attribute = BY_KEYWORD.get(name)
        keys[name] = value.replace(",", "\\") if attribute and attribute.kind is Kind.UID else value
    return keys


def paging(params: Mapping[str, str], default: int = 100) -> tuple[int, int]:
    """``limit`` (1 to :data:`MAX_LIMIT`) and ``offset`` from query parameters."""
    numbers = {"limit": default, "offset": 0}
    for name in numbers:
        text = params.get(name)
        if text is None:
            continue
        if not text.isdigit():
            raise FilterError(f"{name} must be a non-negative integer, not {text!r}", name)
        numbers[name] = int(text)
    if not 1 <= numbers["limit"] <= MAX_LIMIT:
        raise FilterError(f"limit must be from 1 to {MAX_LIMIT}", "limit")
    return numbers["limit"], numbers["offset"]


def sort_columns(level: Level, order: str) -> list[sa.ColumnElement[Any]]:
    """The ORDER BY for ``order``: a keyword the level shows, ``-`` first for descending
    (empty values last either way); an unknown one is refused with the closest."""
    keyword = order.removeprefix("-")
    shown = [k for k in keywords_of(level) if k in COMPUTED or k in BY_KEYWORD]
    if keyword not in shown:
        raise FilterError(f"cannot sort by {keyword!r}{did_you_mean(keyword, shown)}", "order")
    if keyword in COMPUTED:
        at, name = COMPUTED[keyword]
        column: sa.ColumnElement[Any] = LEVEL_TABLES[at].c[name]
    else:
        attribute = BY_KEYWORD[keyword]
        column = LEVEL_TABLES[attribute.level].c[attribute.column]
    direction = column.desc() if order.startswith("-") else column.asc()
    return [column.is_(None), direction]


def _value(row: Any, keyword: str) -> Any:
    """A stored value as JSON: numbers as numbers, multiple values as a list."""
    value = row_value(row, keyword)
    if isinstance(value, str) and "\\" in value:
        return value.split("\\")
    return value


def _stored(row: Any) -> dict[str, Any]:
    """What the archive knows of an instance's copy, beside its attributes."""
    received = row.get("instance.received_at")
    return {
        "transfer_syntax_uid": row.get("instance.transfer_syntax_uid"),
        "bytes": row.get("instance.file_size"),
        "received_at": aware(received).isoformat() if received else None,
        "source_ae": row.get("instance.source_ae"),
    }


class Browser:
    def __init__(self, database: Database, case_insensitive: bool = True) -> None:
        self.database = database
        self.case_insensitive = case_insensitive

    def _statement(self, level: Level, keys: dict[str, str]) -> sa.Select[Any]:
        query = Query(
            level,
            keys,
            patient_root=level is Level.PATIENT,
            case_insensitive=self.case_insensitive,
            relational=True,
        )
        return build(query)

    def page(
        self, level: Level, keys: dict[str, str], limit: int, offset: int, order: str = ""
    ) -> Page:
        """One page of the entities matching every key, and how many match: oldest
        first, or by ``order`` (a keyword the level shows, ``-`` first for descending)."""
        statement = self._statement(level, keys)
        if order:
            statement = statement.order_by(None).order_by(
                *sort_columns(level, order), LEVEL_TABLES[level].c.pk
            )
        counted = sa.select(sa.func.count()).select_from(statement.order_by(None).subquery())
        keywords = keywords_of(level)
        with self.database.reader.connect() as connection:
            total = int(connection.execute(counted).scalar_one())
            rows = search(connection, statement.limit(limit).offset(offset))
            items = [self._item(row, level, keywords) for row in rows]
        return Page(items, total, limit, offset)

    def _item(self, row: Any, level: Level, keywords: list[str]) -> dict[str, Any]:
        item = {keyword: _value(row, keyword) for keyword in keywords}
        if level is Level.IMAGE:
            item["stored"] = _stored(row)
        return item

    def entity(self, level: Level, uid: str, issuer: str | None = None) -> list[dict[str, Any]]:
        """The visible entities with this identifier (a Patient ID may have several
        issuers), each with the identifiers of what it holds."""
        keys = {UNIQUE[level]: uid}
        if issuer is not None:
            keys["IssuerOfPatientID"] = issuer
        found = self.page(level, keys, MAX_LIMIT, 0).items
        child = _CHILDREN.get(level)
        if child is None:
            return found
        for item in found:
            below = {UNIQUE[level]: uid}
            if level is Level.PATIENT:
                below["IssuerOfPatientID"] = item["IssuerOfPatientID"] or ""
            statement = self._statement(child, below)
            with self.database.reader.connect() as connection:
                rows = search(connection, statement)
                item[_CHILD_LISTS[child]] = [row_value(row, UNIQUE[child]) for row in rows]
        return found


_CHILD_LISTS = {Level.STUDY: "studies", Level.SERIES: "series", Level.IMAGE: "instances"}
