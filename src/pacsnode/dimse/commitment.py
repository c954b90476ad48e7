"""Storage Commitment Push Model: the SCP door, its reports, and the SCU side.

The N-ACTION is answered at once; the commitment itself is then checked and reported
by N-EVENT-REPORT, on the requester's association while it is open, otherwise on a
new one to the requester's configured address through the job queue (a report must
reach a modality even after it went away for a while). Which of the two a requester
gets is its ``commitment_report`` setting.
"""

from __future__ import annotations

import logging
import queue
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from pacsnode import status
from pacsnode.archive.commitment import Commitment, Reference, commit
from pacsnode.archive.core import Archive
from pacsnode.config import RemoteAE, Settings
from pacsnode.dimse import codec
from pacsnode.dimse.access import OpenAccess
from pacsnode.dimse.catalog import STORAGE_COMMITMENT, STORAGE_COMMITMENT_INSTANCE
from pacsnode.dimse.requests import Request
from pacsnode.dimse.scu import AssociationFailed, Dialer, Peer, connect, final, request
from pacsnode.dimse.server import IDENTITY, DimseServer
from pacsnode.jobs.workers import Workers
from pacsnode.net import commands
from pacsnode.net.association import Association, Message
from pacsnode.net.requestor import Proposal

log = logging.getLogger("pacsnode.commitment")

REPORT_JOB = "commitment-report"
REQUEST_COMMIT = 1
ALL_COMMITTED, FAILURES_EXIST = 1, 2
SYNTAXES = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)


class InvalidRequest(ValueError):
    def __init__(self, code: int, comment: str) -> None:
        super().__init__(comment)
        self.status = code


def references(action_information: Dataset) -> tuple[str, list[Reference]]:
    """The Transaction UID and the referenced instances of an N-ACTION request."""
    transaction = str(action_information.get("TransactionUID", "")).strip()
    if not transaction:
        raise InvalidRequest(status.MISSING_ATTRIBUTE, "Transaction UID is missing")
    items = action_information.get("ReferencedSOPSequence")
    if not items:
        raise InvalidRequest(status.MISSING_ATTRIBUTE, "Referenced SOP Sequence is missing")
    found = []
    for item in items:
        sop_class = str(item.get("ReferencedSOPClassUID", "")).strip()
        sop_instance = str(item.get("ReferencedSOPInstanceUID", "")).strip()
        if not (sop_class and sop_instance):
            raise InvalidRequest(status.INVALID_ATTRIBUTE_VALUE, "a reference lacks a UID")
        found.append(Reference(sop_class, sop_instance))
    return transaction, found


def _item(reference: Reference, retrieve_ae: str | None = None) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = reference.sop_class_uid
    item.ReferencedSOPInstanceUID = reference.sop_instance_uid
    if retrieve_ae:
        item.RetrieveAETitle = retrieve_ae
    return item


def report(transaction_uid: str, commitment: Commitment, our_ae: str) -> tuple[int, Dataset]:
    """The N-EVENT-REPORT event type and Event Information (PS3.4 J.3.3)."""
    info = Dataset()
    info.TransactionUID = transaction_uid
    info.RetrieveAETitle = our_ae
    if commitment.committed:
        info.ReferencedSOPSequence = [_item(ref, our_ae) for ref in commitment.committed]
    if not commitment.failed:
        return ALL_COMMITTED, info
    failed = []
    for reference, reason in commitment.failed:
        item = _item(reference)
        item.FailureReason = reason
        failed.append(item)
    info.FailedSOPSequence = failed
    return FAILURES_EXIST, info


def send_event_report(
    association: Association, event_type: int, info: Dataset, context_id: int | None = None
) -> int:
    """Send an N-EVENT-REPORT of a commitment result; returns the peer's status."""
    if context_id is None:
        context = next(
            (c for c in association.contexts.values() if c.abstract_syntax == STORAGE_COMMITMENT),
            None,
        )
        if context is None:
            raise AssociationFailed("no storage commitment context for the report")
        context_id = context.id
    syntax = association.contexts[context_id].transfer_syntax
    command = {
        "CommandField": commands.N_EVENT_REPORT_RQ,
        "AffectedSOPClassUID": STORAGE_COMMITMENT,
        "AffectedSOPInstanceUID": STORAGE_COMMITMENT_INSTANCE,
        "EventTypeID": event_type,
    }
    answer = final(request(association, context_id, command, codec.encode(info, syntax)))
    return int(answer.command.get("Status", -1))


class ReportSender:
    """The job that delivers a report on a new association; raises to be retried."""

    def __init__(self, dialer: Dialer) -> None:
        self.dialer = dialer

    def __call__(self, payload: dict[str, Any]) -> None:
        peer = self.dialer.to(
            payload["host"], payload["port"], payload["remote_ae"], payload["calling_ae"]
        )
        info = Dataset.from_json(payload["event_information"])
        # We send the report as the SCP of the SOP class, so we ask for that role.
        proposal = Proposal(STORAGE_COMMITMENT, SYNTAXES, scu=False, scp=True)
        association = connect(peer, [proposal])
        try:
            code = send_event_report(association, payload["event_type"], info)
        finally:
            association.release()
        if code != status.SUCCESS:
            raise AssociationFailed(f"{peer.ae_title} answered the report with {code:04X}")


class CommitmentService:
    def __init__(self, archive: Archive, workers: Workers, dialer: Dialer) -> None:
        self.archive = archive
        self.workers = workers
        workers.register(REPORT_JOB, ReportSender(dialer))

    def handle_report(self, request: Request) -> None:
        """A remote archive's report on what we asked it to commit, on a new association."""
        try:
            info = request.dataset()
        except codec.DecodeError:
            request.respond(status.PROCESSING_FAILURE, "event information does not decode")
            return
        log.info(
            "storage commitment report %s from %s: %d committed, %d failed",
            info.get("TransactionUID", "?"),
            request.session.calling_ae,
            len(info.get("ReferencedSOPSequence") or []),
            len(info.get("FailedSOPSequence") or []),
        )
        request.respond(status.SUCCESS)

    def handle_action(self, request: Request) -> None:
        requester = request.session.calling_ae
        try:
            if request.command.get("ActionTypeID") != REQUEST_COMMIT:
                action = request.command.get("ActionTypeID")
                raise InvalidRequest(status.NO_SUCH_ACTION, f"action type {action}")
            transaction, referenced = references(request.dataset())
        except InvalidRequest as exc:
            log.warning("storage commitment request from %s refused: %s", requester, exc)
            request.respond(exc.status, str(exc))
            return
        except codec.DecodeError as exc:
            log.warning("storage commitment request from %s unreadable: %s", requester, exc)
            request.respond(status.PROCESSING_FAILURE)
            return
        request.respond(status.SUCCESS)
        result = commit(self.archive.index, self.archive.storage, referenced)
        our_ae = request.association.called_ae
        event_type, info = report(transaction, result, our_ae)
        log.info(
            "storage commitment %s from %s: %d committed, %d failed",
            transaction,
            requester,
            len(result.committed),
            len(result.failed),
        )
        self._deliver(request, our_ae, event_type, info)

    def _deliver(self, request: Request, our_ae: str, event_type: int, info: Dataset) -> None:
        requester = request.session.calling_ae
        remote = self.archive.remotes.get(requester)
        mode = remote.commitment_report if remote is not None else "same"
        if mode != "new" and request.association.established:
            try:
                code = send_event_report(request.association, event_type, info, request.context.id)
                if code == status.SUCCESS:
                    return
                log.warning("report on the same association not accepted: %04X", code)
            except ConnectionError as exc:
                log.warning("report on the same association failed: %s", exc)
            if mode == "same":
                return
        if remote is None:
            log.error("cannot report commitment to unknown AE %s on a new association", requester)
            return
        self._queue_report(remote, our_ae, event_type, info)

    def _queue_report(self, remote: RemoteAE, our_ae: str, event_type: int, info: Dataset) -> None:
        payload = {
            "remote_ae": remote.ae_title,
            "host": remote.host,
            "port": remote.port,
            "calling_ae": our_ae,
            "event_type": event_type,
            "event_information": info.to_json_dict(),
        }
        self.workers.enqueue(
            REPORT_JOB, payload, f"commitment report {info.TransactionUID} to {remote.ae_title}"
        )


@dataclass
class CommitmentReport:
    event_type: int
    information: Dataset


def request_commitment(
    peer: Peer,
    referenced: list[Reference],
    timeout: float = 60.0,
    listen_port: int | None = None,
    settings: Settings | None = None,
) -> CommitmentReport:
    """Ask a remote archive to commit instances and wait for its report.

    The report may come on our association or, with ``listen_port``, on a new one
    that the remote opens to us there.
    """
    with _listener(listen_port, peer, settings) as on_new:
        association = connect(peer, [Proposal(STORAGE_COMMITMENT, SYNTAXES, scu=True, scp=True)])
        try:
            # A report on this association arrives while it is open; one on a new
            # association may come after we release, so the listener waits longer.
            wait = timeout if on_new is None else min(timeout, 5.0)
            found = commit_on(association, referenced, wait)
        finally:
            association.release()
        if found is None and on_new is not None:
            found = on_new(timeout)
        if found is None:
            raise TimeoutError(f"no storage commitment report within {timeout:.0f} s")
        return found


def commit_on(
    association: Association, referenced: list[Reference], timeout: float
) -> CommitmentReport | None:
    """Ask for commitment on an open association (which may have carried the C-STOREs)
    and wait there for the report; None when it does not come on this association."""
    context = association.context_for(STORAGE_COMMITMENT)
    if context is None:
        raise AssociationFailed(f"{association.called_ae} does not accept storage commitment")
    information = Dataset()
    information.TransactionUID = generate_uid()
    information.ReferencedSOPSequence = [_item(ref) for ref in referenced]
    command = {
        "CommandField": commands.N_ACTION_RQ,
        "RequestedSOPClassUID": STORAGE_COMMITMENT,
        "RequestedSOPInstanceUID": STORAGE_COMMITMENT_INSTANCE,
        "ActionTypeID": REQUEST_COMMIT,
    }
    data = codec.encode(information, context.transfer_syntax)
    answer = final(request(association, context.id, command, data))
    code = int(answer.command.get("Status", -1))
    if code != status.SUCCESS:
        raise AssociationFailed(f"{association.called_ae} refused the request: {code:04X}")
    return _report_on(association, timeout)


def _report_on(association: Association, timeout: float) -> CommitmentReport | None:
    """Wait on our association for the N-EVENT-REPORT and answer it."""
    try:
        message = association.receive(timeout=timeout)
    except (TimeoutError, ConnectionError):
        return None
    if not isinstance(message, Message) or message.field != commands.N_EVENT_REPORT_RQ:
        return None
    return _answered(association, message)


def _answered(association: Association, message: Message) -> CommitmentReport:
    info = codec.decode(message.data or b"", message.context.transfer_syntax)
    response = {
        "CommandField": commands.N_EVENT_REPORT_RSP,
        "MessageIDBeingRespondedTo": message.command.get("MessageID", 0),
        "AffectedSOPClassUID": STORAGE_COMMITMENT,
        "AffectedSOPInstanceUID": STORAGE_COMMITMENT_INSTANCE,
        "EventTypeID": message.command.get("EventTypeID", 0),
        "Status": status.SUCCESS,
    }
    association.send(message.context.id, response)
    return CommitmentReport(int(message.command.get("EventTypeID", 0)), info)


@contextmanager
def _listener(
    port: int | None, peer: Peer, settings: Settings | None
) -> Iterator[Callable[[float], CommitmentReport | None] | None]:
    """A port where the remote may open a new association for its report."""
    if port is None:
        yield None
        return
    listener = ReportListener(port, settings or Settings(ae_title=peer.calling_ae))
    try:
        yield listener.wait
    finally:
        listener.close()


class ReportListener:
    """A DIMSE server of our own for one report, on a port the remote calls."""

    def __init__(self, port: int, settings: Settings) -> None:
        self._reports: queue.Queue[CommitmentReport] = queue.Queue()
        self.server = DimseServer(settings, OpenAccess(), IDENTITY)
        self.server.handlers[commands.N_EVENT_REPORT_RQ] = self._report
        sock = socket.create_server(("0.0.0.0", port), reuse_port=False)
        self.server.listen(sock)

    def _report(self, request: Request) -> None:
        message = request.message
        self._reports.put(_answered(request.association, message))

    def wait(self, timeout: float) -> CommitmentReport | None:
        try:
            return self._reports.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self.server.stop()
