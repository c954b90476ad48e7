"""The C-MOVE and C-GET doors: send the selected instances, decoded only if needed.

pynetdicom runs the C-STORE sub-operations, counts them and sends the pending and
final responses (the final one only after the sub-association is released). Our
part: look the destination up in the remote AE table only, select the instances,
propose for each SOP class its stored syntaxes and an uncompressed fallback, and hand
each instance over in a syntax the receiver accepted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydicom import Dataset, dcmread
from pydicom.uid import UID
from pynetdicom import build_context, evt
from pynetdicom.association import Association
from pynetdicom.events import Event
from pynetdicom.presentation import PresentationContext

from pacsnode.archive.attributes import text_value
from pacsnode.archive.core import Archive
from pacsnode.archive.matching import QueryError, retrieve_selection, search
from pacsnode.archive.uids import UNCOMPRESSED_TRANSFER_SYNTAXES, VERIFICATION_SOP_CLASS
from pacsnode.dimse.qr_model import IDENTIFIER_DOES_NOT_MATCH, STUDY_ROOT, failure, query_level
from pacsnode.dimse.scu import accepted_syntaxes, store_contexts

log = logging.getLogger("pacsnode.retrieve")


CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


@dataclass(frozen=True)
class Selected:
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    path: str


class RetrieveSCP:
    def __init__(self, archive: Archive) -> None:
        self.archive = archive

    def _select(self, event: Event) -> list[Selected]:
        """The instances a retrieve identifier names (raises QueryError if malformed)."""
        model = str(event.request.AffectedSOPClassUID)
        identifier = event.identifier
        level = query_level(identifier, model)
        keys = {
            e.keyword: text_value(e.value).strip()
            for e in identifier
            if e.keyword and not e.is_empty and e.VR != "SQ"
        }
        statement = retrieve_selection(level, keys, patient_root=model not in STUDY_ROOT)
        with self.archive.database.reader.connect() as connection:
            return [
                Selected(
                    row["instance.sop_class_uid"],
                    row["instance.sop_instance_uid"],
                    row["instance.transfer_syntax_uid"],
                    str(self.archive.storage.absolute(row["instance.file_path"])),
                )
                for row in search(connection, statement)
            ]

    def handle_move(self, event: Event) -> Iterator[Any]:
        destination = str(event.move_destination).strip()
        remote = self.archive.settings.remote(destination)
        if remote is None:
            log.warning("C-MOVE to unknown destination %r refused", destination)
            yield None, None  # pynetdicom answers A801 without connecting anywhere
            return
        try:
            selected = self._select(event)
        except QueryError as exc:
            # pynetdicom can only fail a C-MOVE after associating with the destination;
            # offer what any Storage SCP accepts so that the failure reaches the peer.
            probe = [build_context(VERIFICATION_SOP_CLASS), build_context(CT_IMAGE_STORAGE)]
            yield remote.host, remote.port, {"contexts": probe}
            yield 1
            yield failure(IDENTIFIER_DOES_NOT_MATCH, str(exc)), None
            return
        sub_association: list[Association] = []

        def established(sub_event: Event) -> None:
            sub_association.append(sub_event.assoc)

        options = {
            "contexts": _contexts(selected),
            "evt_handlers": [(evt.EVT_ESTABLISHED, established)],
        }
        yield remote.host, remote.port, options
        yield len(selected)
        log.info("C-MOVE of %d instances to %s", len(selected), destination)
        for item in selected:
            if event.is_cancelled:
                yield 0xFE00, None
                return
            accepted = (
                accepted_syntaxes(sub_association[0], item.sop_class_uid)
                if sub_association
                else set()
            )
            yield 0xFF00, _dataset_for(item, accepted)

    def handle_get(self, event: Event) -> Iterator[Any]:
        try:
            selected = self._select(event)
        except QueryError as exc:
            yield 1
            yield failure(IDENTIFIER_DOES_NOT_MATCH, str(exc)), None
            return
        yield len(selected)
        for item in selected:
            if event.is_cancelled:
                yield 0xFE00, None
                return
            yield 0xFF00, _dataset_for(item, accepted_syntaxes(event.assoc, item.sop_class_uid))


def _contexts(selected: list[Selected]) -> list[PresentationContext]:
    """Stored syntaxes and an uncompressed fallback per SOP class, at most 128.

    A selection needing more contexts than an association allows has its last SOP
    classes dropped; their instances fail as sub-operations.
    """
    wanted: dict[str, set[str]] = {}
    for item in selected:
        wanted.setdefault(item.sop_class_uid, set()).add(item.transfer_syntax_uid)
    return store_contexts(wanted)[:128]


def _dataset_for(item: Selected, accepted: set[str]) -> Dataset:
    """The stored instance, decompressed when the receiver does not take its syntax.

    Never recompressed, so never made lossy; Lossy Image Compression stays as stored.
    """
    dataset = dcmread(item.path)
    stored = UID(item.transfer_syntax_uid)
    if stored in accepted or not stored.is_compressed:
        return dataset
    if not set(UNCOMPRESSED_TRANSFER_SYNTAXES) & accepted:
        return dataset  # nothing we can convert to: the sub-operation fails
    try:
        dataset.decompress(generate_instance_uid=False)
    except Exception as exc:  # no codec for this syntax
        log.warning("cannot decompress %s for the receiver: %s", item.sop_instance_uid, exc)
    return dataset
