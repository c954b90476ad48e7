"""The Modality Worklist door: C-FIND on the Modality Worklist Information Model."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from pydicom import Dataset
from pydicom.sequence import Sequence
from sqlalchemy.exc import DBAPIError

from pacsnode.archive.worklist import Worklist, WorklistItem
from pacsnode.config import Settings
from pacsnode.dimse.find_service import FindRequest
from pacsnode.dimse.identifiers import NOT_KEYS, query_keys, requested_items, set_returned
from pacsnode.dimse.qr_model import failure

log = logging.getLogger("pacsnode.worklist")

MODALITY_WORKLIST_FIND = "1.2.840.10008.5.1.4.31"
PENDING, SUCCESS, CANCELLED = 0xFF00, 0x0000, 0xFE00
OUT_OF_RESOURCES, UNABLE_TO_PROCESS = 0xA700, 0xC000


class WorklistSCP:
    def __init__(self, settings: Settings, worklist: Worklist) -> None:
        self.settings = settings
        self.worklist = worklist

    def handle_find(self, event: FindRequest) -> Iterator[tuple[int | Dataset, Dataset | None]]:
        requestor = event.assoc.requestor.ae_title
        try:
            identifier = event.identifier
            keys, sequences = query_keys(identifier)
            statement = self.worklist.matching(
                keys, sequences, self.settings.case_insensitive_matching
            )
        except Exception as exc:  # an identifier that does not decode
            log.warning("worklist query from %s unreadable: %s", requestor, exc)
            yield failure(UNABLE_TO_PROCESS, f"identifier unreadable: {exc}"), None
            return
        try:
            items = self.worklist.search(statement)
        except DBAPIError as exc:
            log.error("worklist query failed, index unavailable: %s", exc)
            yield failure(OUT_OF_RESOURCES, "index unavailable"), None
            return
        for item in items:
            if event.is_cancelled:
                yield CANCELLED, None
                return
            yield PENDING, self._response(item, identifier)
        log.info("worklist query from %s: %d items", requestor, len(items))
        yield SUCCESS, None

    def _response(self, item: WorklistItem, identifier: Dataset) -> Dataset:
        response = Dataset()
        response.SpecificCharacterSet = self.settings.response_character_set
        stored = item.dataset
        for element in identifier:
            if element.keyword in NOT_KEYS:
                continue
            value = stored[element.tag].value if element.tag in stored else None
            if isinstance(value, Sequence) and element.VR == "SQ" and element.value:
                value = requested_items(value, element.value[0])
            set_returned(response, element, value)
        return response
