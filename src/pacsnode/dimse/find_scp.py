"""The C-FIND door: Patient Root, Study Root and Patient/Study Only queries.

The identifier becomes a :class:`~pacsnode.archive.matching.Query`; matches stream
from the index one pending response at a time, and C-CANCEL is honoured between them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydicom import Dataset
from pydicom.dataelem import DataElement
from pydicom.sequence import Sequence
from sqlalchemy.exc import DBAPIError

from pacsnode import status
from pacsnode.archive.attributes import BY_KEYWORD, Kind, Level
from pacsnode.archive.core import Archive
from pacsnode.archive.matching import COMPUTED, Query, QueryError, row_value
from pacsnode.dimse import flat
from pacsnode.dimse.find import Answer, FindRequest
from pacsnode.dimse.flat import Encoded
from pacsnode.dimse.identifiers import (
    NOT_KEYS,
    query_keys,
    requested_items,
    returned_vr,
    set_returned,
)
from pacsnode.dimse.qr_model import STUDY_ROOT_FIND, combined_datetime, query_level, relational

log = logging.getLogger("pacsnode.find")


_ANSWERED_BY_US = {"RetrieveAETitle", "InstanceAvailability"}


class FindSCP:
    def __init__(self, archive: Archive) -> None:
        self.archive = archive

    def handle_find(self, event: FindRequest) -> Iterator[Answer]:
        model = event.model
        try:
            identifier = list(event.identifier)  # iterated here once, used three times
            query = self._query(identifier, event, model)
            matches = self.archive.find(query, requestor=event.calling_ae)
        except QueryError as exc:
            log.warning("C-FIND from %s refused: %s", event.calling_ae, exc)
            yield Answer(status.DOES_NOT_MATCH_SOP_CLASS, comment=str(exc))
            return
        except Exception as exc:  # an identifier that does not decode
            log.warning("C-FIND identifier unreadable: %s", exc)
            yield Answer(status.UNABLE_TO_PROCESS, comment=f"identifier unreadable: {exc}")
            return
        requested = [
            _Requested(element, element.keyword, returned_vr(element))
            for element in identifier
            if element.keyword not in NOT_KEYS
        ]
        unsupported = [str(r.element.tag) for r in requested if not _supported(r.keyword)]
        if unsupported:
            log.info("C-FIND keys not supported, returned empty: %s", ", ".join(unsupported))
        pending = status.PENDING_WARNING if unsupported else status.PENDING
        count = 0
        try:
            for row in matches:
                if event.cancelled():
                    yield Answer(status.CANCEL)
                    return
                count += 1
                yield Answer(pending, self._response(row, requested, query.level, event.syntax))
        except DBAPIError as exc:
            log.error("C-FIND failed, index unavailable: %s", exc)
            yield Answer(status.OUT_OF_RESOURCES, comment="index unavailable")
            return
        log.debug(  # the association's line counts its C-FINDs
            "C-FIND %s level %s from %s: %d matches", model, query.level, event.calling_ae, count
        )
        yield Answer(status.SUCCESS)

    def _query(self, identifier: list[DataElement], event: FindRequest, model: str) -> Query:
        keys, sequences = query_keys(identifier)
        return Query(
            level=query_level(event.identifier, model),
            keys=keys,
            patient_root=model != STUDY_ROOT_FIND,
            case_insensitive=self.archive.settings.case_insensitive_matching,
            relational=relational(event.association, model),
            combined_datetime=combined_datetime(event.association, model),
            sequences=sequences,
            visible=self.archive.remotes.visible_to(event.calling_ae),
            deleted=self.archive.remotes.sees_deleted(event.calling_ae),
            returned=frozenset(keys),
        )

    def _response(
        self, row: Any, requested: list[_Requested], level: Level, syntax: str
    ) -> Dataset | Encoded:
        """One answer: written directly when it is flat, else through pydicom."""
        settings = self.archive.settings
        values = {r.keyword: _value(row, r.keyword, settings.ae_title) for r in requested}
        values["RetrieveAETitle"] = settings.ae_title  # in every answer (PS3.4 C.4.1.1.3.2)
        elements = [
            (0x00080005, "CS", settings.response_character_set),
            (0x00080052, "CS", level.value),
            (0x00080054, "AE", settings.ae_title),
            *((int(r.element.tag), r.vr, values[r.keyword]) for r in requested),
        ]
        unique = list({tag: (tag, vr, value) for tag, vr, value in elements}.values())
        if flat.encodable(unique, syntax):
            return Encoded(flat.encode(unique, syntax, settings.response_character_set), values)
        response = Dataset()
        response.SpecificCharacterSet = settings.response_character_set
        response.QueryRetrieveLevel = level.value
        for r in requested:
            value = values[r.keyword]
            if isinstance(value, Sequence) and r.vr == "SQ" and r.element.value:
                value = requested_items(value, r.element.value[0])
            set_returned(response, r.element, value)
        response.RetrieveAETitle = settings.ae_title
        return response


@dataclass(frozen=True)
class _Requested:
    """A key of the identifier, with its keyword and answer VR looked up once."""

    element: DataElement
    keyword: str
    vr: str


def _supported(keyword: str) -> bool:
    """Whether a key is matched and returned; others are returned empty with ``FF01``."""
    return keyword in BY_KEYWORD or keyword in COMPUTED or keyword in _ANSWERED_BY_US


def _value(row: Any, keyword: str, our_ae: str) -> Any:
    if keyword == "RetrieveAETitle":
        return our_ae
    if keyword == "InstanceAvailability":
        return "ONLINE"
    value = row_value(row, keyword)
    attr = BY_KEYWORD.get(keyword)
    if value is not None and attr is not None and attr.kind is Kind.SEQUENCE:
        return Sequence([Dataset.from_json(item) for item in json.loads(value)])
    return value
