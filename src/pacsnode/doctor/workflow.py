"""The workflow steps: storage commitment, Modality Worklist and MPPS.

Nothing is created on the node: the commitment asked for is of an instance it holds
(or one it cannot, whose failure shows the way reports come just as well), the
worklist is only queried, and MPPS only negotiated, since an N-CREATE would record a
procedure step there.
"""

from __future__ import annotations

import time

from pydicom import Dataset
from pydicom.uid import generate_uid

from pacsnode import status
from pacsnode.dimse import codec
from pacsnode.dimse.catalog import MPPS_SOP_CLASS, STORAGE_COMMITMENT, STORAGE_COMMITMENT_INSTANCE
from pacsnode.dimse.commitment import REQUEST_COMMIT, SYNTAXES, CommitmentReport
from pacsnode.dimse.nservices import answer_event_report, n_action
from pacsnode.dimse.query_scu import MODELS, QueryFailed, cancel, find_on, query_association
from pacsnode.dimse.scu import Peer, connect
from pacsnode.doctor.report import Finding, Outcome
from pacsnode.doctor.services import Negotiated, Sample, Whereabouts, lost
from pacsnode.net import commands
from pacsnode.net.association import Association, Message
from pacsnode.net.requestor import AssociationFailed, Proposal

WORKFLOW = "workflow"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
SAME_ASSOCIATION_WAIT = 5.0
"""Seconds a report may take on our association before we release it and wait for it
on a new one."""


def worklist_finding(peer: Peer, negotiated: Negotiated) -> Finding:
    if MODELS["mwl"].find not in negotiated.accepted:
        return Finding(WORKFLOW, "mwl", Outcome.NOT_OFFERED, "Modality Worklist not offered")
    keys = {"PatientName": "", "PatientID": "", "AccessionNumber": ""}
    step = {"Modality": "", "ScheduledStationAETitle": "", "ScheduledProcedureStepStartDate": ""}
    found = 0
    try:
        with query_association(peer, "mwl") as association:
            for _item in find_on(
                association, "mwl", None, keys, {"ScheduledProcedureStepSequence": step}
            ):
                if not found:
                    cancel(association, MODELS["mwl"].find)
                found += 1
    except QueryFailed as exc:
        hint = (
            f"the remote does not allow worklist queries from {peer.calling_ae}: allow it there"
            if exc.status == status.NOT_AUTHORIZED
            else ""
        )
        summary = f"worklist C-FIND: {status.describe(exc.status)}"
        return Finding(
            WORKFLOW, "mwl", Outcome.FAILED, summary, hint, {"status": f"{exc.status:04X}"}
        )
    except (AssociationFailed, ConnectionError) as exc:
        return lost(WORKFLOW, "mwl", "worklist C-FIND", exc, peer.calling_ae)
    summary = "worklist answered: " + ("items scheduled" if found else "no item scheduled")
    return Finding(WORKFLOW, "mwl", Outcome.OK, summary, data={"items": bool(found)})


def mpps_finding(negotiated: Negotiated) -> Finding:
    if MPPS_SOP_CLASS not in negotiated.accepted:
        return Finding(WORKFLOW, "mpps", Outcome.NOT_OFFERED, "MPPS not offered")
    return Finding(
        WORKFLOW,
        "mpps",
        Outcome.OK,
        "MPPS offered (negotiated only: an N-CREATE would record a procedure step there)",
    )


def commitment_finding(
    peer: Peer, negotiated: Negotiated, sample: Sample | None, us: Whereabouts, timeout: float
) -> Finding:
    """Ask it to commit the sample, then wait for its report: on our association for a
    few seconds, then, released, on a new one to our listener (some nodes report only
    after the requester has gone)."""
    if STORAGE_COMMITMENT not in negotiated.accepted:
        return Finding(WORKFLOW, "commit", Outcome.NOT_OFFERED, "storage commitment not offered")
    deadline = time.monotonic() + timeout
    proposal = Proposal(STORAGE_COMMITMENT, SYNTAXES, scu=True, scp=True)
    try:
        association = connect(peer, [proposal])
        try:
            context = association.context_for(STORAGE_COMMITMENT)
            assert context is not None  # connect() fails without one
            answer = n_action(
                association,
                context,
                STORAGE_COMMITMENT,
                STORAGE_COMMITMENT_INSTANCE,
                REQUEST_COMMIT,
                _request(sample),
            )
            if answer.status != status.SUCCESS:
                return _commit_refused(answer.status, peer.calling_ae)
            report, way = _await_report(association, us, min(timeout, SAME_ASSOCIATION_WAIT))
        finally:
            association.release()
    except (AssociationFailed, ConnectionError) as exc:
        return lost(WORKFLOW, "commit", "storage commitment", exc, peer.calling_ae)
    if report is None and us.listener is not None:
        report, way = us.listener.report(max(0.0, deadline - time.monotonic())), "new"
    if report is None:
        where = f"where we listen ({us})" if us.listener else f"({us.why_not})"
        hint = (
            f"no report on our association, nor on a new one {where}: check the address "
            f"the remote has for {peer.calling_ae}, and that it sends reports"
        )
        return Finding(WORKFLOW, "commit", Outcome.FAILED, f"no report within {timeout:g} s", hint)
    committed = len(report.information.get("ReferencedSOPSequence") or [])
    failed = len(report.information.get("FailedSOPSequence") or [])
    data = {"association": way, "committed": committed, "failed": failed}
    summary = f"report on the {way} association: {committed} committed, {failed} failed"
    return Finding(WORKFLOW, "commit", Outcome.OK, summary, data=data)


def _request(sample: Sample | None) -> Dataset:
    """The Action Information: the sample, or an instance no node holds when its SOP
    class is not known."""
    reference = Dataset()
    if sample is not None and sample.sop_class:
        reference.ReferencedSOPClassUID = sample.sop_class
        reference.ReferencedSOPInstanceUID = sample.sop_instance
    else:
        reference.ReferencedSOPClassUID = SECONDARY_CAPTURE
        reference.ReferencedSOPInstanceUID = generate_uid()
    information = Dataset()
    information.TransactionUID = generate_uid()
    information.ReferencedSOPSequence = [reference]
    return information


def _commit_refused(code: int, calling_ae: str) -> Finding:
    hint = (
        f"the remote does not allow storage commitment for {calling_ae}"
        if code == status.NOT_AUTHORIZED
        else ""
    )
    return Finding(
        WORKFLOW,
        "commit",
        Outcome.FAILED,
        f"N-ACTION {status.describe(code)}",
        hint,
        {"status": f"{code:04X}"},
    )


def _await_report(
    association: Association, us: Whereabouts, timeout: float
) -> tuple[CommitmentReport | None, str]:
    """The report on our association, or on a new one to our listener, whichever comes
    first; "same" or "new" says which."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if association.transport.readable():
            message = association.receive(timeout=max(0.1, deadline - time.monotonic()))
            if isinstance(message, Message) and message.field == commands.N_EVENT_REPORT_RQ:
                answer_event_report(association, message, status.SUCCESS)
                try:
                    info = codec.decode(message.data or b"", message.context.transfer_syntax)
                except codec.DecodeError:
                    info = Dataset()  # a report came; what it lists cannot be read
                return CommitmentReport(int(message.command.get("EventTypeID", 0)), info), "same"
        if us.listener is not None:
            report = us.listener.report(0.1)
            if report is not None:
                return report, "new"
        else:
            time.sleep(0.1)
    return None, ""
