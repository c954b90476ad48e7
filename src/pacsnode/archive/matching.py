"""Attribute matching (PS3.4 C.2.2.2) translated into SQL over the index.

This is the one matching engine: the C-FIND door uses it now, QIDO-RS will use it
too, so that both answer the same query identically. Matching runs in the database
and rows stream back as they are read; nothing is filtered in Python.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache, lru_cache
from typing import Any

import sqlalchemy as sa
from pydicom.datadict import dictionary_VR, tag_for_keyword
from sqlalchemy.engine import Connection

from pacsnode.archive.attributes import (
    BY_KEYWORD,
    DATE_TIME_PAIRS,
    Attribute,
    Kind,
    Level,
    fold,
    kind_of_vr,
    normalized_date,
)
from pacsnode.archive.schema import (
    LEVEL_TABLES,
    instance,
    patient,
    sequence_value,
    series,
    study,
)

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
    relational: bool = False
    """Keys of any level match (extended negotiation byte 1). Hierarchical queries must
    name one entity at each level above theirs, and keys below it are not matched."""
    combined_datetime: bool = False
    """Date and time keys of a pair match as one date-time range (negotiation byte 2)."""
    sequences: dict[str, dict[str, str]] = field(default_factory=dict)
    """Sequence keyword to the (path, value) keys of its one query item, as
    :func:`~pacsnode.archive.attributes.item_values` flattens it."""
    visible: tuple[tuple[str, str], ...] = ()
    """Criteria every study must also meet to be seen at all (the calling AE's
    ``visible`` setting); empty shows everything. See :func:`visible_studies`."""
    deleted: bool = False
    """Hidden instances are found too: soft deleted, rejected by IOCM notes, and the
    notes (the calling AE's ``show_deleted``); counts then include them."""
    returned: frozenset[str] | None = None
    """The keywords whose values the caller reads from the rows (:func:`row_value`),
    besides each level's key; ``None`` reads every column. A C-FIND asks for a few of
    some 150, and each column costs in every statement and every row."""


def _column(attr: Attribute) -> sa.ColumnElement[Any]:
    return LEVEL_TABLES[attr.level].c[attr.column]


_ESCAPE = "!"
_END = "\uffff"  # sorts after any character a DICOM time or date-time may hold


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


def _normalized(value: str, kind: Kind) -> str:
    if kind is Kind.DATE:
        return normalized_date(value)
    if kind is Kind.TIME:  # not padded like stored times: "1800" reaches to 18:00:59
        return value.replace(":", "").strip()
    return value.strip()


def _bounds(value: str, kind: Kind) -> tuple[str, str]:
    """Low and high ends of a single value or range; '' is an open end.

    A time or date-time is a prefix of everything it names: ``1015`` reaches up to
    10:15:59.999999, so the high end gets a suffix that sorts after any digit.
    """
    low, _, high = value.partition("-") if "-" in value else (value, "", value)
    low, high = _normalized(low, kind), _normalized(high, kind)
    if high and kind is not Kind.DATE:
        high += _END
    return low, high


def _range_condition(column: sa.ColumnElement[Any], low: str, high: str) -> Any:
    if low and low == high:
        return column == low
    conditions = []
    if low:
        conditions.append(column >= low)
    if high:
        conditions.append(column <= high)
    return sa.and_(*conditions) if conditions else sa.true()


def value_condition(
    column: sa.ColumnElement[Any], folded: sa.ColumnElement[Any] | None, kind: Kind, value: str
) -> Any:
    """One key's condition on a column; ``folded`` is its upper-cased copy, if matched so."""
    if kind is Kind.UID:
        uids = [uid.strip() for uid in value.split("\\") if uid.strip()]
        return column.in_(uids) if len(uids) > 1 else column == uids[0]
    if kind in (Kind.DATE, Kind.TIME, Kind.DATETIME):
        return _range_condition(column, *_bounds(value, kind))
    if kind is Kind.INT:
        try:
            return column == int(value)
        except ValueError:
            return sa.false()
    target, wanted = (column, value) if folded is None else (folded, fold(value) or "")
    if kind is Kind.NAME and "=" not in wanted and not wanted.endswith("*"):
        # A name without '=' matches the alphabetic group of a stored name whose
        # ideographic and phonetic groups follow it ("Yamada^Tarou=山田^太郎=…"); a
        # trailing '*' reaches them already.
        return sa.or_(_text_condition(target, wanted), _text_condition(target, wanted + "=*"))
    return _text_condition(target, wanted)


def value_matches(kind: Kind, wanted: str, actual: str) -> bool | None:
    """One stored value against a matching key outside the index (a routing rule's
    condition on a file's attribute), as :func:`value_condition` matches in SQL: a UID
    is one of a list, a date or time within a range, an integer equal. None for text,
    which the caller matches with its wildcards."""
    if kind is Kind.UID:
        return actual.strip() in {uid.strip() for uid in wanted.split("\\") if uid.strip()}
    if kind in (Kind.DATE, Kind.TIME, Kind.DATETIME):
        low, high = _bounds(wanted, kind)
        value = _normalized(actual, kind)
        return bool(value) and (not low or value >= low) and (not high or value <= high)
    if kind is Kind.INT:
        try:
            return int(actual) == int(wanted)
        except ValueError:
            return False
    return None


def condition(attr: Attribute, value: str, case_insensitive: bool) -> Any:
    """The SQL condition for one matching key."""
    table = LEVEL_TABLES[attr.level]
    folded = table.c[attr.folded_column] if case_insensitive and attr.has_folded_copy else None
    return value_condition(_column(attr), folded, attr.kind, value)


def _datetime_condition(date: Attribute, time: Attribute, date_value: str, time_value: str) -> Any:
    """Combined date-time matching: ``20060705-20060707`` with ``1000-1800`` runs from
    10:00 on the 5th to 18:00 on the 7th, not 10:00 to 18:00 on each day."""
    date_low, date_high = _bounds(date_value, Kind.DATE)
    time_low, time_high = _bounds(time_value, Kind.TIME)
    combined = sa.func.coalesce(_column(date), "") + sa.func.coalesce(_column(time), "")
    low = date_low + time_low if date_low else ""
    high = date_high + (time_high or _END) if date_high else ""
    return _range_condition(combined, low, high)


def _modalities_condition(value: str, deleted: bool = False) -> Any:
    """Modalities in Study matches when any requested modality is among the study's
    (those of its hidden series too, for a query that sees them)."""
    wanted = [m.strip().upper() for m in value.split("\\") if m.strip()]
    if deleted:
        patterns = [_like_pattern(m) for m in wanted]
        modality = sa.func.upper(series.c.modality)
        return (
            sa.exists()
            .where(
                series.c.study_pk == study.c.pk,
                sa.or_(*(modality.like(pattern, escape=_ESCAPE) for pattern in patterns)),
            )
            .correlate(study)
        )
    joined = sa.literal("\\") + sa.func.coalesce(study.c.modalities_in_study, "") + "\\"
    column = sa.func.upper(joined)
    return sa.or_(*(column.like(f"%\\{_like_pattern(m)}\\%", escape=_ESCAPE) for m in wanted))


def item_condition(
    owner: sa.Table, sequence: str, item: dict[str, str], case_insensitive: bool
) -> Any:
    """Sequence matching: some item of the owner's stored sequence matches every key of
    the query item. Each key is one row of ``sequence_value``; all must share an item.

    The worklist keeps its top-level attributes the same way, as sequence ``""``.
    """
    rows: list[Any] = []
    conditions: list[Any] = []
    for path, value in item.items():
        row = sequence_value.alias()
        keyword = path.rsplit(".", 1)[-1]
        kind = kind_of_vr(_dictionary_vr(keyword))
        listed = BY_KEYWORD.get(keyword)
        folds = case_insensitive and (
            kind is Kind.NAME or (listed is not None and listed.fold_case)
        )
        conditions += [
            row.c.path == path,
            value_condition(row.c.value, row.c.value_ci if folds else None, kind, value),
        ]
        if rows:
            first = rows[0]
            conditions += [
                row.c.level == first.c.level,
                row.c.owner_pk == first.c.owner_pk,
                row.c.sequence == first.c.sequence,
                row.c.item == first.c.item,
            ]
        else:
            conditions += [
                row.c.level == owner.name,
                row.c.owner_pk == owner.c.pk,
                row.c.sequence == sequence,
            ]
        rows.append(row)
    return sa.exists(sa.select(sa.literal(1)).select_from(*rows).where(*conditions))


def _dictionary_vr(keyword: str) -> str:
    tag = tag_for_keyword(keyword)
    return dictionary_VR(tag) if tag is not None else "UN"


def _conditions(query: Query) -> dict[Level, list[Any]]:
    """Every matching key's condition, grouped by the level whose table it reads."""
    grouped: dict[Level, list[Any]] = {level: [] for level in LEVEL_ORDER}
    keys = {k: v for k, v in query.keys.items() if v}
    if query.combined_datetime:
        for date_keyword, time_keyword in DATE_TIME_PAIRS.items():
            if date_keyword in keys and time_keyword in keys:
                date, time = BY_KEYWORD[date_keyword], BY_KEYWORD[time_keyword]
                grouped[date.level].append(
                    _datetime_condition(date, time, keys.pop(date_keyword), keys.pop(time_keyword))
                )
    for keyword, value in keys.items():
        if keyword == "ModalitiesInStudy":
            grouped[Level.STUDY].append(_modalities_condition(value, query.deleted))
            continue
        attr = BY_KEYWORD.get(keyword)
        if attr is not None and attr.kind is not Kind.SEQUENCE:
            grouped[attr.level].append(condition(attr, value, query.case_insensitive))
    for keyword, item in query.sequences.items():
        attr = BY_KEYWORD.get(keyword)
        if attr is not None and attr.kind is Kind.SEQUENCE and item:
            owner = LEVEL_TABLES[attr.level]
            grouped[attr.level].append(item_condition(owner, keyword, item, query.case_insensitive))
    return grouped


VISIBILITY_LEVELS = (Level.PATIENT, Level.STUDY, Level.SERIES)
"""Levels whose attributes may restrict what an AE sees: a study is a patient's, and
what its series hold (Institution Name, Station Name) describes the whole study."""


def visibility_problem(keyword: str) -> str | None:
    """Why a keyword cannot restrict visibility, or None if it can."""
    attr = BY_KEYWORD.get(keyword)
    if attr is None:
        return f"{keyword} is not an attribute the index keeps"
    if attr.kind is Kind.SEQUENCE or attr.level not in VISIBILITY_LEVELS:
        return f"{keyword} is not matched at patient, study or series level"
    return None


def visible_studies(
    criteria: Mapping[str, str], case_insensitive: bool, deleted: bool = False
) -> sa.Select[Any]:
    """The pks of the studies meeting every criterion: patient and study keys on the
    study itself, series keys on some (visible, unless ``deleted``) series of it.
    Uncorrelated, so one subquery serves every query level and the retrieve selection
    alike."""
    grouped: dict[Level, list[Any]] = {level: [] for level in VISIBILITY_LEVELS}
    for keyword, value in criteria.items():
        attr = BY_KEYWORD[keyword]
        grouped[attr.level].append(condition(attr, value, case_insensitive))
    statement = (
        sa.select(study.c.pk)
        .select_from(study.join(patient, study.c.patient_pk == patient.c.pk))
        .where(*grouped[Level.PATIENT], *grouped[Level.STUDY])
    )
    if grouped[Level.SERIES]:
        shown = [] if deleted else [series.c.num_instances > 0]
        matching_series = sa.select(series.c.study_pk).where(*shown, *grouped[Level.SERIES])
        statement = statement.where(study.c.pk.in_(matching_series))
    return statement


def _visibility(query: Query, tables: list[sa.Table]) -> list[Any]:
    """The query's visibility restriction on whichever of patient or study it reads."""
    if not query.visible:
        return []
    studies = visible_studies(dict(query.visible), query.case_insensitive, query.deleted)
    if study in tables:
        return [study.c.pk.in_(studies)]
    if patient in tables:
        shown = [] if query.deleted else [study.c.num_instances > 0]
        owners = sa.select(study.c.patient_pk).where(*shown, study.c.pk.in_(studies))
        return [patient.c.pk.in_(owners)]
    return []


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


_PARENT_KEYS = {
    "study": study.c.patient_pk,
    "series": series.c.study_pk,
    "instance": instance.c.series_pk,
}


def _below(query: Query, grouped: dict[Level, list[Any]]) -> Any | None:
    """Relational keys below the query level: some entity beneath each match has them."""
    position = LEVEL_ORDER.index(query.level)
    lower = [level for level in LEVEL_ORDER[position + 1 :]]
    deepest = max((i for i, level in enumerate(lower) if grouped[level]), default=-1)
    if deepest < 0:
        return None
    chain = [LEVEL_TABLES[level] for level in lower[: deepest + 1]]
    source: sa.FromClause = chain[0]
    for parent, child in itertools.pairwise(chain):
        source = source.join(child, _PARENT_KEYS[child.name] == parent.c.pk)
    owner = LEVEL_TABLES[query.level]
    conditions = [cond for level in lower for cond in grouped[level]]
    conditions += _visible(chain, query.deleted) + _visibility(query, chain)
    inner = sa.select(sa.literal(1)).select_from(source)
    return sa.exists(inner.where(_PARENT_KEYS[chain[0].name] == owner.c.pk, *conditions))


_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
_TIME = re.compile(r"[0-9]{2}(:?[0-9]{2}(:?[0-9]{2}(\.[0-9]{1,6})?)?)?")
_DATETIME = re.compile(r"([0-9]{4,14})(\.[0-9]{1,6})?([+-][0-9]{4})?")
_INT = re.compile(r"[+-]?[0-9]+")


def _date(text: str) -> bool:
    digits = normalized_date(text)
    try:
        datetime.strptime(digits, "%Y%m%d")
    except ValueError:
        return False
    return len(digits) == 8 and digits.isascii() and digits.isdigit()


def _time(text: str) -> bool:
    return bool(_TIME.fullmatch(text.strip()))


def _datetime(text: str) -> bool:
    """YYYY[MM[DD[HH[MM[SS[.F]]]]]][&ZZXX]; a missing month or day counts as the first."""
    match = _DATETIME.fullmatch(text.strip())
    if not match or len(match.group(1)) % 2:
        return False
    return _date(match.group(1)[:8].ljust(8, "1"))


def _single_or_range(text: str, single: Callable[[str], bool]) -> bool:
    """A single value or a range ``low-high`` with at most one open end. Date-times may
    hold a '-' in their UTC offset, so each '-' is tried as the range's."""
    if single(text):
        return True
    for at, char in enumerate(text):
        low, high = text[:at], text[at + 1 :]
        if char == "-" and (low or high) and all(not end or single(end) for end in (low, high)):
            return True
    return False


def _uid_list(text: str) -> bool:
    """UIDs separated by '\\' (or ',', as QIDO-RS writes a list), none of them empty."""
    uids = [uid.strip() for uid in re.split(r"[\\,]", text)]
    return all(len(uid) <= 64 and _UID.fullmatch(uid) for uid in uids)


_CHECKS: dict[Kind, tuple[Callable[[str], bool], str]] = {
    Kind.UID: (_uid_list, "a UID or a list of UIDs"),
    Kind.DATE: (lambda text: _single_or_range(text, _date), "a date or date range (YYYYMMDD)"),
    Kind.TIME: (lambda text: _single_or_range(text, _time), "a time or time range (HHMMSS)"),
    Kind.DATETIME: (lambda text: _single_or_range(text, _datetime), "a date-time or range"),
    Kind.INT: (lambda text: bool(_INT.fullmatch(text.strip())), "an integer"),
}


def key_kind(keyword: str) -> Kind:
    """How a key is matched: from the index's attribute list, else from its VR."""
    attr = BY_KEYWORD.get(keyword)
    if attr is not None:
        return attr.kind
    if keyword in COMPUTED:
        return Kind.TEXT if keyword == "ModalitiesInStudy" else Kind.INT
    return kind_of_vr(_dictionary_vr(keyword))


def check_value(keyword: str, value: str) -> None:
    """Refuse a matching key whose value its VR cannot hold (PS3.18 answers it 400): a
    date that is no date, a malformed UID list, a wildcard where none applies. An
    empty value (universal matching) and text values pass. C-FIND does not call it:
    it stays lenient with what old modalities send."""
    if not value:
        return
    check = _CHECKS.get(key_kind(keyword))
    if check is not None and not check[0](value):
        raise QueryError(f"{keyword} must be {check[1]}, not {value!r}")


def _visible(tables: list[sa.Table], deleted: bool = False) -> list[Any]:
    """Rejected instances are hidden, and so is whatever has nothing else to show.

    A query that sees hidden instances needs no condition: a row of any level has
    instance rows below it (index removes parents left empty)."""
    return list(_hidden(tuple(table.name for table in tables), deleted))


@cache
def _hidden(names: tuple[str, ...], deleted: bool) -> tuple[Any, ...]:
    """:func:`_visible`'s conditions, made once per set of tables."""
    if deleted:
        return ()
    return tuple(
        _TABLES[name].c.rejection.is_(None)
        if name == instance.name
        else _TABLES[name].c.num_instances > 0
        for name in names
    )


def build(query: Query) -> sa.Select[Any]:
    """The SELECT for a query: its level's rows with their parents' columns."""
    levels = _levels(query)
    if not query.relational:
        _check_hierarchy(query, levels)
    tables = [LEVEL_TABLES[level] for level in levels]
    if not query.patient_root and Level.PATIENT not in levels:
        tables.insert(0, patient)  # Study Root returns patient attributes at STUDY level
    statement = _shown(tuple(table.name for table in tables), query.deleted, query.returned)
    grouped = _conditions(query)
    for level in LEVEL_ORDER[: LEVEL_ORDER.index(query.level) + 1]:
        statement = statement.where(*grouped[level])
    statement = statement.where(*_visible(tables, query.deleted), *_visibility(query, tables))
    if query.relational and (below := _below(query, grouped)) is not None:
        statement = statement.where(below)
    return statement.order_by(LEVEL_TABLES[query.level].c.pk)


def _instances_below(table: sa.Table) -> sa.Select[Any]:
    """``SELECT count(*)`` of every instance row under a row of ``table``."""
    statement = sa.select(sa.func.count(instance.c.pk))
    if table is series:
        return statement.where(instance.c.series_pk == series.c.pk)
    statement = statement.join(series, series.c.pk == instance.c.series_pk)
    if table is study:
        return statement.where(series.c.study_pk == study.c.pk)
    statement = statement.join(study, study.c.pk == series.c.study_pk)
    return statement.where(study.c.patient_pk == patient.c.pk)


def _series_below(table: sa.Table) -> sa.Select[Any]:
    statement = sa.select(sa.func.count(series.c.pk))
    if table is study:
        return statement.where(series.c.study_pk == study.c.pk)
    statement = statement.join(study, study.c.pk == series.c.study_pk)
    return statement.where(study.c.patient_pk == patient.c.pk)


def _all_modalities() -> sa.Select[Any]:
    """The modalities of every series of a study, hidden ones included."""
    pairs = sa.select(series.c.study_pk, series.c.modality).distinct().subquery()
    return sa.select(sa.func.aggregate_strings(pairs.c.modality, "\\")).where(
        pairs.c.study_pk == study.c.pk
    )


_TABLES = {table.name: table for table in LEVEL_TABLES.values()}


@lru_cache(maxsize=512)
def _shown(
    names: tuple[str, ...], deleted: bool, returned: frozenset[str] | None
) -> sa.Select[Any]:
    """The labelled columns and the joins of a query over these tables: the same for
    every query of a kind, so made once (a C-FIND spent a third of its time here)."""
    tables = [_TABLES[name] for name in names]
    source: sa.FromClause = tables[0]
    for parent, child in itertools.pairwise(tables):
        source = source.join(child, _PARENT_KEYS[child.name] == parent.c.pk)
    wanted = None if returned is None else _returned_columns(returned)
    columns = [
        _shown_column(table, c, deleted).label(f"{table.name}.{c.name}")
        for table in tables
        for c in table.c
        if wanted is None or c.name == "pk" or (table.name, c.name) in wanted
    ]
    return sa.select(*columns).select_from(source)


def _returned_columns(keywords: frozenset[str]) -> set[tuple[str, str]]:
    """The (table, column) pairs :func:`row_value` reads for these keywords."""
    pairs = set()
    for keyword in keywords:
        if keyword in COMPUTED:
            level, column = COMPUTED[keyword]
            pairs.add((LEVEL_TABLES[level].name, column))
        elif (attr := BY_KEYWORD.get(keyword)) is not None:
            pairs.add((LEVEL_TABLES[attr.level].name, attr.column))
    return pairs


def _shown_column(table: sa.Table, column: sa.Column[Any], deleted: bool) -> Any:
    """A column as a query returns it: the counters (of visible rows) as they are, or,
    for a query that sees hidden instances, counted over every row. Each count is
    correlated to its own row only, whatever else the query joins."""
    counted = {
        "num_instances": _instances_below,
        "num_series": _series_below,
        "num_studies": lambda _t: sa.select(sa.func.count(study.c.pk)).where(
            study.c.patient_pk == patient.c.pk
        ),
        "modalities_in_study": lambda _t: _all_modalities(),
    }.get(column.name)
    if not deleted or table is instance or counted is None:
        return column
    return counted(table).correlate(table).scalar_subquery()


def row_value(row: sa.RowMapping, keyword: str) -> Any:
    """What a :func:`build` row holds for a keyword: the stored value (a sequence as its
    DICOM JSON text), a computed count, or ``None`` when the index does not keep it."""
    label = _label(keyword)
    return None if label is None else row.get(label)


@cache
def _label(keyword: str) -> str | None:
    """The label of a keyword's column in :func:`build` rows, if the index keeps it."""
    if keyword in COMPUTED:
        level, column = COMPUTED[keyword]
        return f"{LEVEL_TABLES[level].name}.{column}"
    attr = BY_KEYWORD.get(keyword)
    return None if attr is None else f"{LEVEL_TABLES[attr.level].name}.{attr.column}"


def search(connection: Connection, statement: sa.Select[Any]) -> Iterator[sa.RowMapping]:
    """Rows of a :func:`build` statement, streamed from the database."""
    result = connection.execution_options(stream_results=True).execute(statement)
    yield from result.mappings()


def retrieve_selection(
    level: Level,
    keys: dict[str, str],
    patient_root: bool,
    visible: tuple[tuple[str, str], ...] = (),
    case_insensitive: bool = True,
    deleted: bool = False,
    issuer: str | None = None,
) -> sa.Select[Any]:
    """Every instance below the entities that a C-MOVE or C-GET identifier names.

    The identifier must carry the unique key of its level; the unique keys of the
    other levels, when given, narrow the selection further. ``visible`` leaves out
    the studies the requestor may not see, exactly as its C-FIND does; ``deleted``
    takes hidden instances too. ``issuer`` is the Issuer of Patient ID the issuer
    heuristic resolved for its Patient ID.
    """
    unique = {UNIQUE_KEYS[lv] for lv in LEVEL_ORDER}
    if not keys.get(UNIQUE_KEYS[level]):
        raise QueryError(f"{UNIQUE_KEYS[level]} is required at the {level} level")
    wanted = {k: v for k, v in keys.items() if k in unique and v}
    if issuer is not None and "PatientID" in wanted:
        wanted["IssuerOfPatientID"] = issuer
    query = Query(
        Level.IMAGE,
        wanted,
        patient_root=patient_root,
        case_insensitive=case_insensitive,
        relational=True,
        visible=visible,
        deleted=deleted,
    )
    return build(query)
