"""The Modality Worklist door: C-FIND on the Modality Worklist Information Model."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from pydicom import Dataset
from pydicom.sequence import Sequence
from sqlalchemy.exc import DBAPIError

from pacsnode import status
from pacsnode.archive.authorities import Issuers, NoMatch
from pacsnode.archive.worklist import Worklist, WorklistItem
from pacsnode.config import Settings
from pacsnode.dimse.find import Answer, FindRequest
from pacsnode.dimse.identifiers import NOT_KEYS, query_keys, requested_items, set_returned

log = logging.getLogger("pacsnode.worklist")


class WorklistSCP:
    def __init__(self, settings: Settings, worklist: Worklist, issuers: Issuers) -> None:
        self.settings = settings
        self.worklist = worklist
        self.issuers = issuers

    def handle_find(self, event: FindRequest) -> Iterator[Answer]:
        requestor = event.calling_ae
        try:
            identifier = event.identifier
            keys, sequences = self.issuers.worklist_keys(*query_keys(identifier), requestor)
            statement = self.worklist.matching(
                keys, sequences, self.settings.case_insensitive_matching
            )
        except NoMatch as exc:
            log.info("worklist query from %s matches nothing: %s", requestor, exc)
            yield Answer(status.SUCCESS)
            return
        except Exception as exc:  # an identifier that does not decode
            log.warning("worklist query from %s unreadable: %s", requestor, exc)
            yield Answer(status.UNABLE_TO_PROCESS, comment=f"identifier unreadable: {exc}")
            return
        try:
            items = self.worklist.search(statement)
        except DBAPIError as exc:
            log.error("worklist query failed, index unavailable: %s", exc)
            yield Answer(status.OUT_OF_RESOURCES, comment="index unavailable")
            return
        for item in items:
            if event.cancelled():
                yield Answer(status.CANCEL)
                return
            yield Answer(status.PENDING, self._response(item, identifier))
        # the association's log line counts its C-FINDs, worklist queries included
        log.debug("worklist query from %s: %d items", requestor, len(items))
        yield Answer(status.SUCCESS)

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
