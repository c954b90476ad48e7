"""Storage Commitment Push Model: the SCP door, its reports, and the SCU side.

The N-ACTION is answered at once; the commitment itself is then checked and reported
by N-EVENT-REPORT, on the requester's association while it is open, otherwise on a
new one to the requester's configured address through the job queue (a report must
reach a modality even after it went away for a while). Which of the two a requester
gets is its ``commitment_report`` setting.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import build_context, build_role, evt
from pynetdicom.dimse_primitives import N_ACTION
from pynetdicom.dsutils import decode
from pynetdicom.presentation import PresentationContext
from pynetdicom.service_class_n import StorageCommitmentServiceClass

from pacsnode.archive.commitment import Commitment, Reference, commit
from pacsnode.archive.core import Archive
from pacsnode.config import RemoteAE
from pacsnode.dimse import services
from pacsnode.dimse.scu import AssociationFailed, Peer, new_ae, open_association
from pacsnode.jobs.workers import Workers

log = logging.getLogger("pacsnode.commitment")

STORAGE_COMMITMENT = "1.2.840.10008.1.20.1"
STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
REPORT_JOB = "commitment-report"
REQUEST_COMMIT = 1
ALL_COMMITTED, FAILURES_EXIST = 1, 2
SUCCESS, NO_SUCH_ACTION, MISSING_ATTRIBUTE, INVALID_ATTRIBUTE_VALUE = 0, 0x0123, 0x0120, 0x0106
PROCESSING_FAILURE = 0x0110


class InvalidRequest(ValueError):
    def __init__(self, status: int, comment: str) -> None:
        super().__init__(comment)
        self.status = status


def references(action_information: Dataset) -> tuple[str, list[Reference]]:
    """The Transaction UID and the referenced instances of an N-ACTION request."""
    transaction = str(action_information.get("TransactionUID", "")).strip()
    if not transaction:
        raise InvalidRequest(MISSING_ATTRIBUTE, "Transaction UID is missing")
    items = action_information.get("ReferencedSOPSequence")
    if not items:
        raise InvalidRequest(MISSING_ATTRIBUTE, "Referenced SOP Sequence is missing")
    found = []
    for item in items:
        sop_class = str(item.get("ReferencedSOPClassUID", "")).strip()
        sop_instance = str(item.get("ReferencedSOPInstanceUID", "")).strip()
        if not (sop_class and sop_instance):
            raise InvalidRequest(INVALID_ATTRIBUTE_VALUE, "a reference lacks a UID")
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


def _report_contexts() -> list[PresentationContext]:
    """We send the report as the SCP of the SOP class, so we ask for that role."""
    return [build_context(STORAGE_COMMITMENT, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])]


def send_report(payload: dict[str, Any]) -> None:
    """The job that delivers a report on a new association; raises to be retried."""
    peer = Peer(payload["host"], payload["port"], payload["remote_ae"], payload["calling_ae"])
    info = Dataset.from_json(payload["event_information"])
    ae = new_ae(peer.calling_ae)
    role = build_role(STORAGE_COMMITMENT, scp_role=True)
    assoc = open_association(ae, peer, _report_contexts(), ext_neg=[role])
    if not assoc.is_established:
        raise AssociationFailed(f"{peer.ae_title}@{peer.host}:{peer.port} did not associate")
    try:
        status, _reply = assoc.send_n_event_report(
            info, payload["event_type"], STORAGE_COMMITMENT, STORAGE_COMMITMENT_INSTANCE
        )
    finally:
        assoc.release()
    if not status or int(status.get("Status", -1)) != SUCCESS:
        raise AssociationFailed(f"{peer.ae_title} answered the report with {status}")


class CommitmentSCP:
    def __init__(self, archive: Archive, workers: Workers) -> None:
        self.archive = archive
        self.workers = workers
        workers.register(REPORT_JOB, send_report)

    def handle_report(self, event: evt.Event) -> tuple[int, None]:
        """A remote archive's report on what we asked it to commit, on a new association."""
        info = event.event_information
        committed = len(info.get("ReferencedSOPSequence") or [])
        failed = len(info.get("FailedSOPSequence") or [])
        log.info(
            "storage commitment report %s from %s: %d committed, %d failed",
            info.get("TransactionUID", "?"),
            event.assoc.requestor.ae_title,
            committed,
            failed,
        )
        return SUCCESS, None

    def install(self) -> None:
        scp = self

        class CommitmentService(StorageCommitmentServiceClass):
            def SCP(self, req: Any, context: PresentationContext) -> None:
                if isinstance(req, N_ACTION):
                    scp.n_action(self, req, context)
                else:
                    super().SCP(req, context)

        services.override([STORAGE_COMMITMENT], CommitmentService)

    def n_action(
        self, service: StorageCommitmentServiceClass, req: N_ACTION, context: PresentationContext
    ) -> None:
        assoc = service.assoc
        requester = assoc.requestor.ae_title
        response = N_ACTION()
        response.MessageIDBeingRespondedTo = req.MessageID
        response.AffectedSOPClassUID = req.RequestedSOPClassUID
        response.AffectedSOPInstanceUID = req.RequestedSOPInstanceUID
        response.ActionTypeID = req.ActionTypeID
        try:
            if req.ActionTypeID != REQUEST_COMMIT:
                raise InvalidRequest(NO_SUCH_ACTION, f"action type {req.ActionTypeID}")
            syntax = context.transfer_syntax[0]
            information = decode(
                req.ActionInformation,  # type: ignore[arg-type]
                syntax.is_implicit_VR,
                syntax.is_little_endian,
                syntax.is_deflated,
            )
            transaction, referenced = references(information)
        except InvalidRequest as exc:
            log.warning("storage commitment request from %s refused: %s", requester, exc)
            response.Status = exc.status
            response.ErrorComment = str(exc)[:64]  # type: ignore[assignment]
            service.dimse.send_msg(response, int(context.context_id or 0))
            return
        except Exception as exc:  # does not decode
            log.warning("storage commitment request from %s unreadable: %s", requester, exc)
            response.Status = PROCESSING_FAILURE
            service.dimse.send_msg(response, int(context.context_id or 0))
            return
        response.Status = SUCCESS
        service.dimse.send_msg(response, int(context.context_id or 0))
        result = commit(self.archive.index, self.archive.storage, referenced)
        our_ae = assoc.acceptor.ae_title
        event_type, info = report(transaction, result, our_ae)
        log.info(
            "storage commitment %s from %s: %d committed, %d failed",
            transaction,
            requester,
            len(result.committed),
            len(result.failed),
        )
        self._deliver(service, requester, our_ae, event_type, info)

    def _deliver(
        self,
        service: StorageCommitmentServiceClass,
        requester: str,
        our_ae: str,
        event_type: int,
        info: Dataset,
    ) -> None:
        remote = self.archive.remotes.get(requester)
        mode = remote.commitment_report if remote is not None else "same"
        if mode != "new" and service.assoc.is_established:
            try:
                status, _reply = service.assoc.send_n_event_report(
                    info, event_type, STORAGE_COMMITMENT, STORAGE_COMMITMENT_INSTANCE
                )
                if status and int(status.get("Status", -1)) == SUCCESS:
                    return
                log.warning("report on the same association not accepted: %s", status)
            except (RuntimeError, ValueError) as exc:
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
) -> CommitmentReport:
    """Ask a remote archive to commit instances and wait for its report.

    The report may come on our association or, with ``listen_port``, on a new one
    that the remote opens to us there.
    """
    received: list[CommitmentReport] = []
    arrived = threading.Event()

    def on_report(event: evt.Event) -> tuple[int, None]:
        received.append(CommitmentReport(int(event.event_type or 0), event.event_information))
        arrived.set()
        return SUCCESS, None

    handlers: list[Any] = [(evt.EVT_N_EVENT_REPORT, on_report)]
    ae = new_ae(peer.calling_ae)
    listener = None
    if listen_port is not None:
        ae.add_supported_context(STORAGE_COMMITMENT, scu_role=True, scp_role=True)
        listener = ae.start_server(("0.0.0.0", listen_port), block=False, evt_handlers=handlers)
    try:
        contexts = [build_context(STORAGE_COMMITMENT)]
        assoc = open_association(ae, peer, contexts, evt_handlers=handlers)
        if not assoc.is_established:
            raise AssociationFailed(f"{peer.ae_title}@{peer.host}:{peer.port} did not associate")
        information = Dataset()
        information.TransactionUID = generate_uid()
        information.ReferencedSOPSequence = [_item(ref) for ref in referenced]
        status, _reply = assoc.send_n_action(
            information, REQUEST_COMMIT, STORAGE_COMMITMENT, STORAGE_COMMITMENT_INSTANCE
        )
        if not status or int(status.get("Status", -1)) != SUCCESS:
            assoc.release()
            raise AssociationFailed(f"{peer.ae_title} refused the request: {status}")
        # A report on this association arrives while it is open; one on a new
        # association may come after we release, so the listener waits longer.
        arrived.wait(timeout if listener is None else min(timeout, 5.0))
        assoc.release()
        if not arrived.wait(timeout):
            raise TimeoutError(f"no storage commitment report within {timeout:.0f} s")
        return received[0]
    finally:
        if listener is not None:
            listener.shutdown()
