"""The C-FIND door: Patient Root, Study Root and Patient/Study Only queries.

The identifier becomes a :class:`~pacsnode.archive.matching.Query`; matches stream
from the index one pending response at a time, and C-CANCEL is honoured between them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

from pydicom import Dataset
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.sequence import Sequence
from pynetdicom.events import Event

from pacsnode.archive.attributes import BY_KEYWORD, Kind, Level, text_value
from pacsnode.archive.core import Archive
from pacsnode.archive.matching import COMPUTED, Query, QueryError, build, search
from pacsnode.archive.schema import LEVEL_TABLES
from pacsnode.dimse.qr_model import (
    IDENTIFIER_DOES_NOT_MATCH,
    STUDY_ROOT_FIND,
    failure,
    query_level,
    relational,
)

log = logging.getLogger("pacsnode.find")


_NOT_KEYS = {"QueryRetrieveLevel", "SpecificCharacterSet"}

PENDING, SUCCESS, CANCELLED = 0xFF00, 0x0000, 0xFE00
UNABLE_TO_PROCESS = 0xC000


class FindSCP:
    def __init__(self, archive: Archive) -> None:
        self.archive = archive

    def handle_find(self, event: Event) -> Iterator[tuple[int | Dataset, Dataset | None]]:
        model = str(event.request.AffectedSOPClassUID)
        try:
            identifier = event.identifier
            query = _query(identifier, model)
            statement = build(query, hierarchical=not relational(event, model))
        except QueryError as exc:
            log.warning("C-FIND from %s refused: %s", event.assoc.requestor.ae_title, exc)
            yield failure(IDENTIFIER_DOES_NOT_MATCH, str(exc)), None
            return
        except Exception as exc:  # an identifier that does not decode
            log.warning("C-FIND identifier unreadable: %s", exc)
            yield failure(UNABLE_TO_PROCESS, f"identifier unreadable: {exc}"), None
            return
        requested = [element for element in identifier if element.keyword not in _NOT_KEYS]
        matches = 0
        with self.archive.database.reader.connect() as connection:
            for row in search(connection, statement):
                if event.is_cancelled:
                    yield CANCELLED, None
                    return
                matches += 1
                yield PENDING, self._response(row, requested, query.level)
        log.info(
            "C-FIND %s level %s from %s: %d matches",
            model,
            query.level,
            event.assoc.requestor.ae_title,
            matches,
        )
        yield SUCCESS, None

    def _response(self, row: Any, requested: list[DataElement], level: Level) -> Dataset:
        response = Dataset()
        response.SpecificCharacterSet = self.archive.settings.response_character_set
        response.QueryRetrieveLevel = level.value
        for element in requested:
            value = _value(row, element.keyword, self.archive.settings.ae_title)
            _set(response, element, value)
        return response


def _query(identifier: Dataset, model: str) -> Query:
    level = query_level(identifier, model)
    keys: dict[str, str] = {}
    for element in identifier:
        if not element.keyword or element.keyword in _NOT_KEYS:
            continue
        if element.VR == "SQ" or element.is_empty:
            keys[element.keyword] = ""
            continue
        keys[element.keyword] = text_value(element.value).strip()
    return Query(level=level, keys=keys, patient_root=model != STUDY_ROOT_FIND)


def _value(row: Any, keyword: str, our_ae: str) -> Any:
    if keyword == "RetrieveAETitle":
        return our_ae
    if keyword == "InstanceAvailability":
        return "ONLINE"
    if keyword in COMPUTED:
        level, column = COMPUTED[keyword]
        return row.get(f"{LEVEL_TABLES[level].name}.{column}")
    attr = BY_KEYWORD.get(keyword)
    if attr is None:
        return None
    value = row.get(f"{LEVEL_TABLES[attr.level].name}.{attr.column}")
    if value is not None and attr.kind is Kind.SEQUENCE:
        return Sequence([Dataset.from_json(item) for item in json.loads(value)])
    return value


def _set(response: Dataset, element: DataElement, value: Any) -> None:
    """Return every requested key: with its value, or empty, never dropped."""
    vr = element.VR if element.VR not in ("UN", "") else _vr(element.tag)
    if value is None or value == "":
        response.add_new(element.tag, vr, [] if vr == "SQ" else None)
    else:
        response.add_new(element.tag, vr, str(value) if vr in ("IS", "DS") else value)


def _vr(tag: int) -> str:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"
