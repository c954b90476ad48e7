"""The C-MOVE and C-GET doors: send the selected instances, decoded only if needed.

pynetdicom's own C-MOVE service must open the sub-association before it may answer
anything but ``A801``, and hands every instance over as a decoded data set. Ours
answers a bad identifier (``A900``, ``C000``) and an unknown destination (``A801``)
without connecting anywhere, sends each file as its stored bytes when the receiver
accepts its syntax (decompressed otherwise, never made lossy), and sends the final
response only after every C-STORE has finished and the sub-association is released.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

from pydicom import Dataset
from pynetdicom import _config
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_GET, C_MOVE
from pynetdicom.presentation import PresentationContext
from pynetdicom.service_class import QueryRetrieveServiceClass, ServiceClass
from sqlalchemy.exc import DBAPIError

from pacsnode import audit
from pacsnode.archive.attributes import text_value
from pacsnode.archive.core import Archive
from pacsnode.archive.matching import QueryError, retrieve_selection, search
from pacsnode.dimse import services, spanning
from pacsnode.dimse.qr_model import (
    GET_SOP_CLASSES,
    IDENTIFIER_DOES_NOT_MATCH,
    MOVE_SOP_CLASSES,
    STUDY_ROOT,
    query_level,
)
from pacsnode.dimse.retrieve_channel import RetrieveChannel
from pacsnode.dimse.scu import (
    MAX_CONTEXTS,
    AssociationFailed,
    OutgoingFile,
    Peer,
    associate,
    send_one,
    store_contexts,
)

log = logging.getLogger("pacsnode.retrieve")

SUCCESS, PENDING, CANCELLED, SUB_OPERATIONS_FAILED = 0x0000, 0xFF00, 0xFE00, 0xB000
MOVE_DESTINATION_UNKNOWN = 0xA801
UNABLE_TO_CALCULATE_MATCHES = 0xA701
UNABLE_TO_PERFORM_SUB_OPERATIONS = 0xA702
UNABLE_TO_PROCESS = 0xC000
_WARNINGS = {0xB000, 0xB006, 0xB007}

Retrieve = C_MOVE | C_GET


@dataclass
class _Tally:
    """Sub-operation counts as the C-MOVE and C-GET responses report them."""

    remaining: int
    completed: int = 0
    failed: int = 0
    warning: int = 0
    failed_uids: list[str] = field(default_factory=list)

    def count(self, sop_instance_uid: str, status: int | None) -> None:
        self.remaining -= 1
        if status == SUCCESS:
            self.completed += 1
        elif status in _WARNINGS:
            self.warning += 1
        else:
            self.failed += 1
            self.failed_uids.append(sop_instance_uid)

    def final_status(self) -> int:
        if self.failed and not (self.completed or self.warning):
            return UNABLE_TO_PERFORM_SUB_OPERATIONS
        return SUB_OPERATIONS_FAILED if self.failed or self.warning else SUCCESS


class _Responder(RetrieveChannel):
    """Sends the responses of one C-MOVE or C-GET on the requestor's association."""

    def send(
        self,
        status: int,
        tally: _Tally | None = None,
        comment: str = "",
        final: bool = True,
    ) -> None:
        response = C_MOVE() if isinstance(self.request, C_MOVE) else C_GET()
        response.MessageIDBeingRespondedTo = self.request.MessageID
        response.AffectedSOPClassUID = self.request.AffectedSOPClassUID
        response.Status = status
        if comment:
            response.ErrorComment = comment[:64]  # type: ignore[assignment]
        if tally is not None:
            if not final or status == CANCELLED:
                response.NumberOfRemainingSuboperations = tally.remaining
            response.NumberOfCompletedSuboperations = tally.completed
            response.NumberOfFailedSuboperations = tally.failed
            response.NumberOfWarningSuboperations = tally.warning
            if final and status not in (SUCCESS, PENDING):
                failed = Dataset()
                failed.FailedSOPInstanceUIDList = tally.failed_uids
                response.Identifier = BytesIO(self.encode(failed))
        self.send_response(response)


class RetrieveSCP:
    def __init__(self, archive: Archive) -> None:
        self.archive = archive

    def _select(self, responder: _Responder, assoc: Association) -> list[OutgoingFile] | None:
        """The instances a retrieve identifier names; None once a failure was sent."""
        model = str(responder.request.AffectedSOPClassUID)
        try:
            identifier = responder.identifier()
            level = query_level(identifier, model)
        except QueryError as exc:
            responder.send(IDENTIFIER_DOES_NOT_MATCH, comment=str(exc))
            return None
        except Exception as exc:  # an identifier that does not decode
            log.warning("retrieve identifier unreadable: %s", exc)
            responder.send(UNABLE_TO_PROCESS, comment=f"identifier unreadable: {exc}")
            return None
        keys = {
            e.keyword: text_value(e.value).strip()
            for e in identifier
            if e.keyword and not e.is_empty and e.VR != "SQ"
        }
        try:
            statement = retrieve_selection(
                level,
                keys,
                patient_root=model not in STUDY_ROOT,
                visible=self.archive.remotes.visible_to(assoc.requestor.ae_title),
                case_insensitive=self.archive.settings.case_insensitive_matching,
            )
        except QueryError as exc:
            log.warning("retrieve from %s refused: %s", assoc.requestor.ae_title, exc)
            responder.send(IDENTIFIER_DOES_NOT_MATCH, comment=str(exc))
            return None
        try:
            with self.archive.database.reader.connect() as connection:
                return [
                    OutgoingFile(
                        self.archive.storage.absolute(row["instance.file_path"]),
                        row["instance.sop_class_uid"],
                        row["instance.sop_instance_uid"],
                        row["instance.transfer_syntax_uid"],
                        has_meta=True,
                    )
                    for row in search(connection, statement)
                ]
        except DBAPIError as exc:
            log.error("retrieve failed, index unavailable: %s", exc)
            responder.send(UNABLE_TO_CALCULATE_MATCHES, comment="index unavailable")
            return None

    def move(self, service: ServiceClass, request: C_MOVE, context: PresentationContext) -> None:
        target = spanning.move_target(self.archive.settings, self.archive.remotes, service.assoc)
        if target is not None:  # C-MOVE spanning: the called AE title is another archive
            spanning.forward_move(self.archive.settings, target, service, request, context)
            return
        responder = _Responder(service, request, context)
        requestor = service.assoc.requestor.ae_title
        destination = str(request.MoveDestination or "").strip()
        remote = self.archive.remotes.get(destination)
        if remote is None:
            log.warning("C-MOVE from %s to unknown destination %r refused", requestor, destination)
            responder.send(MOVE_DESTINATION_UNKNOWN, comment=f"unknown AE {destination!r}")
            return
        selected = self._select(responder, service.assoc)
        if selected is None:
            return
        if not selected:
            responder.send(SUCCESS, _Tally(0))
            return
        peer = Peer(remote.host, remote.port, remote.ae_title, self.archive.settings.ae_title)
        try:
            sub_association = associate(peer, _contexts(selected))
        except AssociationFailed as exc:
            log.warning("C-MOVE from %s: %s", requestor, exc)
            responder.send(UNABLE_TO_PERFORM_SUB_OPERATIONS, _Tally(len(selected)), str(exc))
            return
        log.info("C-MOVE of %d instances from %s to %s", len(selected), requestor, destination)
        destination_actor = audit.Actor(remote.ae_title, remote.host, dicom=True)
        _audit_begin(destination_actor, selected, audit.requestor_of(service.assoc))
        try:
            tally = self._send_all(responder, sub_association, selected)
        finally:
            if sub_association.is_established:
                sub_association.release()
        _audit(destination_actor, selected, tally, audit.requestor_of(service.assoc))
        responder.send(tally.final_status(), tally)

    def get(self, service: ServiceClass, request: C_GET, context: PresentationContext) -> None:
        responder = _Responder(service, request, context)
        selected = self._select(responder, service.assoc)
        if selected is None:
            return
        log.info("C-GET of %d instances by %s", len(selected), service.assoc.requestor.ae_title)
        _audit_begin(audit.requestor_of(service.assoc), selected)
        tally = self._send_all(responder, service.assoc, selected)
        _audit(audit.requestor_of(service.assoc), selected, tally)
        responder.send(tally.final_status(), tally)

    def _send_all(
        self, responder: _Responder, receiver: Association, selected: list[OutgoingFile]
    ) -> _Tally:
        """C-STORE each instance serially, a pending response after each."""
        tally = _Tally(len(selected))
        requestor = responder.service.assoc.requestor.ae_title
        pending = self._pending_responses(requestor)
        # A C-MOVE's sub-operations name the request they serve; a C-GET's need not.
        is_move = isinstance(responder.request, C_MOVE)
        originator = requestor if is_move else None
        message_id = int(responder.request.MessageID or 0) if is_move else None
        for item in selected:
            if responder.cancelled():
                raise _Cancelled(tally)
            if not receiver.is_established:
                tally.count(item.sop_instance, None)
                continue
            outcome = send_one(receiver, item, originator, message_id)
            if outcome.status != SUCCESS:
                log.warning(
                    "sub-operation for %s: status %s %s",
                    item.sop_instance,
                    "none" if outcome.status is None else f"{outcome.status:04X}",
                    outcome.comment,
                )
            tally.count(item.sop_instance, outcome.status)
            if pending and tally.remaining:
                responder.send(PENDING, tally, final=False)
        return tally

    def _pending_responses(self, calling_ae: str) -> bool:
        remote = self.archive.remotes.get(calling_ae)
        return remote is None or remote.pending_responses


class _Cancelled(Exception):
    def __init__(self, tally: _Tally) -> None:
        super().__init__("cancelled")
        self.tally = tally


def _audit_begin(
    destination: audit.Actor, selected: list[OutgoingFile], requestor: audit.Actor | None = None
) -> None:
    """Begin Transferring DICOM Instances, before a C-MOVE or C-GET sends the first."""
    audit.transfer_begun(destination, [item.sop_instance for item in selected], requestor=requestor)


def _audit(
    destination: audit.Actor,
    selected: list[OutgoingFile],
    tally: _Tally,
    requestor: audit.Actor | None = None,
) -> None:
    """DICOM Instances Transferred for what a C-MOVE or C-GET sent."""
    failed = set(tally.failed_uids)
    sent = [item.sop_instance for item in selected if item.sop_instance not in failed]
    audit.instances_sent(destination, sent, requestor=requestor, failed=len(failed))


def _contexts(selected: list[OutgoingFile]) -> list[PresentationContext]:
    """Stored syntaxes and an uncompressed fallback per SOP class, at most 128.

    A selection needing more contexts than an association allows has its last SOP
    classes dropped; their instances fail as sub-operations.
    """
    wanted: dict[str, set[str]] = {}
    for item in selected:
        wanted.setdefault(item.sop_class, set()).add(item.transfer_syntax)
    return store_contexts(wanted)[:MAX_CONTEXTS]


def install(retrieve: RetrieveSCP) -> None:
    """Serve C-MOVE and C-GET with ``retrieve``; C-FIND stays with pynetdicom."""

    class RetrieveService(QueryRetrieveServiceClass):
        def SCP(self, req: Any, context: PresentationContext) -> None:
            handlers: dict[type, Callable[..., None]] = {
                C_MOVE: retrieve.move,
                C_GET: retrieve.get,
            }
            handler = handlers.get(type(req))
            if handler is None:
                super().SCP(req, context)
                return
            try:
                handler(self, req, context)
            except _Cancelled as cancelled:
                _Responder(self, req, context).send(CANCELLED, cancelled.tally)
            except Exception as exc:  # a bug must still end the operation for the peer
                log.exception("%s failed", type(req).__name__)
                _Responder(self, req, context).send(UNABLE_TO_PROCESS, comment=str(exc))

    services.override([*MOVE_SOP_CLASSES, *GET_SOP_CLASSES], RetrieveService)
    _config.STORE_SEND_CHUNKED_DATASET = True  # a stored file goes out as its bytes
