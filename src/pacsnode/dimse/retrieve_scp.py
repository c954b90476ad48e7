"""The C-MOVE and C-GET doors: send the selected instances, converted only if needed.

A bad identifier (``A900``, ``C000``) and an unknown destination (``A801``) are
answered without connecting anywhere. Each instance goes out as its stored bytes
when the receiver accepts its syntax (decompressed otherwise, never made lossy), on
the thread of the request: a C-MOVE's on its sub-association, a C-GET's on the
requestor's own association. A pending response follows each sub-operation; the
final one comes after every C-STORE has finished and the sub-association is released.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from pydicom import Dataset
from sqlalchemy.exc import DBAPIError

from pacsnode import audit, status
from pacsnode.archive.attributes import text_value
from pacsnode.archive.core import Archive
from pacsnode.archive.matching import QueryError
from pacsnode.dimse import codec
from pacsnode.dimse.qr_model import STUDY_ROOT, query_level
from pacsnode.dimse.requests import Request
from pacsnode.dimse.scu import (
    MAX_CONTEXTS,
    AssociationFailed,
    Dialer,
    OutgoingFile,
    Sending,
    connect,
    edits_toward,
    proposals_for,
    send_each,
)
from pacsnode.dimse.spanning import MoveSpanning
from pacsnode.net import commands
from pacsnode.net.association import Association

log = logging.getLogger("pacsnode.retrieve")


@dataclass
class Tally:
    """Sub-operation counts as the C-MOVE and C-GET responses report them."""

    remaining: int
    completed: int = 0
    failed: int = 0
    warning: int = 0
    failed_uids: list[str] = field(default_factory=list)

    def count(self, sop_instance_uid: str, code: int | None) -> None:
        self.remaining -= 1
        kind = status.Category.FAILURE if code is None else status.category(code)
        if kind is status.Category.SUCCESS:
            self.completed += 1
        elif kind is status.Category.WARNING:
            self.warning += 1
        else:
            self.failed += 1
            self.failed_uids.append(sop_instance_uid)

    def final_status(self) -> int:
        if self.failed and not (self.completed or self.warning):
            return status.UNABLE_TO_PERFORM_SUB_OPERATIONS
        return (
            status.SUB_OPERATIONS_COMPLETE_WITH_FAILURES
            if self.failed or self.warning
            else status.SUCCESS
        )


def send_progress(
    request: Request, code: int, tally: Tally | None = None, comment: str = ""
) -> None:
    """A C-MOVE or C-GET response with the sub-operation counts (PS3.4 C.4.2.1.5)."""
    fields: dict[str, Any] = {}
    data = None
    final = status.category(code) is not status.Category.PENDING
    if tally is not None:
        if not final or code == status.CANCEL:
            fields["NumberOfRemainingSuboperations"] = tally.remaining
        fields["NumberOfCompletedSuboperations"] = tally.completed
        fields["NumberOfFailedSuboperations"] = tally.failed
        fields["NumberOfWarningSuboperations"] = tally.warning
        if final and code not in (status.SUCCESS, status.CANCEL) and tally.failed_uids:
            failed = Dataset()
            failed.FailedSOPInstanceUIDList = tally.failed_uids
            data = request.encode(failed)
    request.respond(code, comment, data, **fields)


class RetrieveService:
    def __init__(self, archive: Archive, dialer: Dialer, spanning: MoveSpanning) -> None:
        self.archive = archive
        self.dialer = dialer
        self.spanning = spanning

    def move(self, request: Request) -> None:
        if self.spanning.forward(request):
            return
        requestor = request.session.calling_ae
        destination = str(request.command.get("MoveDestination", "")).strip()
        remote = self.archive.remotes.get(destination)
        if remote is None:
            log.warning("C-MOVE from %s to unknown destination %r refused", requestor, destination)
            request.respond(status.MOVE_DESTINATION_UNKNOWN, f"unknown AE {destination!r}")
            return
        selected = self._select(request)
        if selected is None:
            return
        if not selected:
            send_progress(request, status.SUCCESS, Tally(0))
            return
        peer = self.dialer.peer(remote, self.archive.settings.ae_title)
        try:
            sub_association = connect(peer, proposals_for(selected)[:MAX_CONTEXTS])
        except AssociationFailed as exc:
            log.warning("C-MOVE from %s: %s", requestor, exc)
            send_progress(
                request, status.UNABLE_TO_PERFORM_SUB_OPERATIONS, Tally(len(selected)), str(exc)
            )
            return
        log.info("C-MOVE of %d instances from %s to %s", len(selected), requestor, destination)
        destination_actor = audit.Actor(remote.ae_title, remote.host, dicom=True)
        _audit_begin(destination_actor, selected, request.session.actor)
        try:
            tally = self._send_all(
                request, sub_association, selected, remote.ae_title, is_move=True
            )
        finally:
            sub_association.release()
        self._finish(request, selected, tally, destination_actor, request.session.actor)

    def get(self, request: Request) -> None:
        selected = self._select(request)
        if selected is None:
            return
        log.info("C-GET of %d instances by %s", len(selected), request.session.calling_ae)
        _audit_begin(request.session.actor, selected)
        requestor = request.session.calling_ae
        tally = self._send_all(request, request.association, selected, requestor, is_move=False)
        self._finish(request, selected, tally, request.session.actor)

    def _select(self, request: Request) -> list[OutgoingFile] | None:
        """The instances a retrieve identifier names; None once a failure was sent."""
        model = request.sop_class
        try:
            identifier = request.dataset()
            level = query_level(identifier, model)
        except QueryError as exc:
            request.respond(status.DOES_NOT_MATCH_SOP_CLASS, str(exc))
            return None
        except codec.DecodeError as exc:
            log.warning("retrieve identifier unreadable: %s", exc)
            request.respond(status.UNABLE_TO_PROCESS, f"identifier unreadable: {exc}")
            return None
        keys = {
            e.keyword: text_value(e.value).strip()
            for e in identifier
            if e.keyword and not e.is_empty and e.VR != "SQ"
        }
        calling = request.session.calling_ae
        try:
            selected = self.archive.select(
                level,
                keys,
                patient_root=model not in STUDY_ROOT,
                visible=self.archive.remotes.visible_to(calling),
                deleted=self.archive.remotes.sees_deleted(calling),
                requestor=calling,
            )
        except QueryError as exc:
            log.warning("retrieve from %s refused: %s", calling, exc)
            request.respond(status.DOES_NOT_MATCH_SOP_CLASS, str(exc))
            return None
        except DBAPIError as exc:
            log.error("retrieve failed, index unavailable: %s", exc)
            request.respond(status.UNABLE_TO_CALCULATE_MATCHES, "index unavailable")
            return None
        return [
            OutgoingFile(
                item.path,
                item.sop_class_uid,
                item.sop_instance_uid,
                item.transfer_syntax_uid,
                True,
                item.edited,
            )
            for item in selected
        ]

    def _send_all(
        self,
        request: Request,
        receiver: Association,
        selected: list[OutgoingFile],
        destination: str,
        is_move: bool,
    ) -> Tally | None:
        """C-STORE each instance in turn, through the outgoing step, a pending response
        after each; None once a C-CANCEL stopped it (and its response was sent)."""
        tally = Tally(len(selected))
        pending = self._pending_responses(request.session.calling_ae)
        # A C-MOVE's sub-operations name the request they serve; a C-GET's need not.
        originator = request.session.calling_ae if is_move else None
        message_id = request.message_id if is_move else None
        edits = edits_toward(self.archive.outgoing, destination)
        sending = Sending(originator, message_id, edits=edits)
        for item, outcome in zip(selected, send_each(receiver, selected, sending), strict=True):
            if outcome.status != status.SUCCESS:
                log.warning(
                    "sub-operation for %s: status %s %s",
                    item.sop_instance,
                    "none" if outcome.status is None else f"{outcome.status:04X}",
                    outcome.comment,
                )
            tally.count(item.sop_instance, outcome.status)
            if request.cancelled():
                send_progress(request, status.CANCEL, tally)
                return None
            if pending and tally.remaining:
                send_progress(request, status.PENDING, tally)
        return tally

    def _finish(
        self,
        request: Request,
        selected: list[OutgoingFile],
        tally: Tally | None,
        destination: audit.Actor,
        requestor: audit.Actor | None = None,
    ) -> None:
        if tally is None:
            return
        failed = set(tally.failed_uids)
        sent = [item.sop_instance for item in selected if item.sop_instance not in failed]
        audit.instances_sent(destination, sent, requestor=requestor, failed=len(failed))
        send_progress(request, tally.final_status(), tally)

    def _pending_responses(self, calling_ae: str) -> bool:
        remote = self.archive.remotes.get(calling_ae)
        return remote is None or remote.pending_responses


def _audit_begin(
    destination: audit.Actor, selected: list[OutgoingFile], requestor: audit.Actor | None = None
) -> None:
    """Begin Transferring DICOM Instances, before a C-MOVE or C-GET sends the first."""
    audit.transfer_begun(destination, [item.sop_instance for item in selected], requestor=requestor)


def handlers(service: RetrieveService) -> dict[int, object]:
    return {commands.C_MOVE_RQ: service.move, commands.C_GET_RQ: service.get}
