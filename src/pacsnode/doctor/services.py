"""Query/Retrieve and workflow steps: C-FIND per model and level, relational queries,
C-MOVE to our AE title, C-GET, storage commitment, worklist and MPPS.

Every C-FIND is cancelled after its first match: one is enough to know a level works
and to walk down to an instance, and a universal query on a large archive must not
stream it all. That instance (a sample) is what the C-MOVE, C-GET and commitment ask
for; it goes to our listener, which keeps nothing. Nothing is created on the node:
MPPS is only negotiated, since an N-CREATE would record a procedure step there.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from pydicom import Dataset
from pydicom.uid import generate_uid

from pacsnode import status
from pacsnode.dimse import codec
from pacsnode.dimse.catalog import MPPS_SOP_CLASS, STORAGE_COMMITMENT, STORAGE_COMMITMENT_INSTANCE
from pacsnode.dimse.commitment import REQUEST_COMMIT, SYNTAXES, CommitmentReport
from pacsnode.dimse.nservices import answer_event_report, n_action
from pacsnode.dimse.query_scu import (
    MODELS,
    Model,
    MoveResult,
    QueryFailed,
    cancel,
    find_identifier,
    find_on,
    get,
    identifier,
    move,
    query_association,
)
from pacsnode.dimse.scu import Peer, connect, open_association
from pacsnode.dimse.storage import SpoolFile
from pacsnode.doctor.listener import Arrival, Listener
from pacsnode.doctor.report import Finding, Outcome
from pacsnode.net import commands
from pacsnode.net.association import Aborted, Association, Message
from pacsnode.net.requestor import AssociationFailed, Proposal

QR = "query/retrieve"
WORKFLOW = "workflow"
MODEL_NAMES = {"patient": "Patient Root", "study": "Study Root", "psonly": "Patient/Study Only"}
UNIQUE = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}
RELATIONAL = b"\x01"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


@dataclass(frozen=True)
class Sample:
    """An instance the node holds, found by C-FIND."""

    keys: dict[str, str]
    """Its unique keys down to the instance: what a C-MOVE or C-GET identifier names."""
    sop_class: str
    """Empty when the node does not return SOP Class UID (DCMTK's dcmqrscp)."""

    @property
    def sop_instance(self) -> str:
        return self.keys["SOPInstanceUID"]


@dataclass(frozen=True)
class Negotiated:
    """What the node accepted of the services we use, in one association."""

    accepted: frozenset[str]
    relational: frozenset[str]


def lost(section: str, check: str, what: str, exc: Exception, calling_ae: str) -> Finding:
    """A service that cost the association; an abort is how some nodes (Orthanc) turn
    away a calling AE title they do not know or allow."""
    hint = ""
    if isinstance(exc, Aborted):
        hint = (
            f"the remote aborted the association at our {what}: some nodes do so for a "
            f"calling AE title they do not know or allow; check that it knows {calling_ae} "
            f"and allows it {what}"
        )
    return Finding(section, check, Outcome.FAILED, f"{what}: {exc}", hint)


def _qr_models() -> dict[str, Model]:
    return {name: m for name, m in MODELS.items() if m.move is not None and m.get is not None}


def negotiate(peer: Peer) -> Negotiated:
    """Propose every Query/Retrieve and workflow class at once, asking for relational
    queries; raises :class:`AssociationFailed` without an association."""
    classes = [uid for m in _qr_models().values() for uid in (m.find, m.move, m.get) if uid]
    classes += [MODELS["mwl"].find, MPPS_SOP_CLASS, STORAGE_COMMITMENT]
    asked = replace(peer, extended={uid: RELATIONAL for uid in classes[:9]})
    association = open_association(asked, [Proposal(uid, SYNTAXES) for uid in classes])
    try:
        accepted = frozenset(c.abstract_syntax for c in association.contexts.values())
        extended = association.accept.user.extended
        relational = frozenset(uid for uid, info in extended.items() if info[:1] == RELATIONAL)
    finally:
        association.release()
    return Negotiated(accepted, relational)


def _first(association: Association, sop_class: str, query: Dataset) -> Dataset | None:
    """The first match, the query then cancelled (its remaining answers drained)."""
    found = None
    for match in find_identifier(association, sop_class, query):
        if found is None:
            found = match
            cancel(association, sop_class)
    return found


def walk(peer: Peer, name: str, negotiated: Negotiated) -> tuple[Finding, Sample | None]:
    """C-FIND each level of a model, under the first entity found above it (a made-up
    one when there is none, so that the level is still asked)."""
    model = _qr_models()[name]
    check = f"find {name}"
    title = MODEL_NAMES[name]
    if model.find not in negotiated.accepted:
        return Finding(QR, check, Outcome.NOT_OFFERED, f"{title} C-FIND not offered"), None
    levels: dict[str, dict[str, str | int]] = {}
    parents: dict[str, str] = {}
    sop_class = ""
    try:
        with query_association(peer, name) as association:
            for level in model.levels:
                unique = UNIQUE[level]
                returned = {unique: "", **({"SOPClassUID": ""} if level == "IMAGE" else {})}
                try:
                    found = _first(
                        association, model.find, identifier(level, {**parents, **returned})
                    )
                except QueryFailed as exc:
                    levels[level] = {"status": f"{exc.status:04X}", "comment": exc.comment}
                    found = None
                else:
                    levels[level] = {"status": "0000", "matches": int(found is not None)}
                value = str(found.get(unique, "") or "") if found is not None else ""
                parents[unique] = value or generate_uid()
                if level == "IMAGE" and found is not None:
                    sop_class = str(found.get("SOPClassUID", "") or "")
    except (AssociationFailed, ConnectionError) as exc:
        return lost(QR, check, f"{title} C-FIND", exc, peer.calling_ae), None
    sample = None
    if "IMAGE" in levels and all(level.get("matches") for level in levels.values()):
        sample = Sample(
            {UNIQUE[level]: parents[UNIQUE[level]] for level in model.levels}, sop_class
        )
    return _walk_finding(check, title, levels, peer.calling_ae), sample


def _level_text(level: str, answer: dict[str, str | int]) -> str:
    if answer["status"] != "0000":
        return f"{level} {status.describe(int(str(answer['status']), 16))}"
    return f"{level} {'found' if answer['matches'] else 'nothing'}"


def _walk_finding(
    check: str, title: str, levels: dict[str, dict[str, str | int]], calling_ae: str
) -> Finding:
    failed = [level for level, answer in levels.items() if answer["status"] != "0000"]
    shown = ", ".join(_level_text(level, answer) for level, answer in levels.items())
    data: dict[str, object] = {"levels": levels}
    if not failed:
        return Finding(QR, check, Outcome.OK, f"{title}: {shown}", data=data)
    codes = {str(levels[level]["status"]) for level in failed}
    if codes == {f"{status.NOT_AUTHORIZED:04X}"}:
        hint = f"the remote does not allow C-FIND to {calling_ae}: allow it there"
    else:
        hint = f"the remote does not answer C-FIND at {', '.join(failed)} in {title}"
    outcome = Outcome.FAILED if len(failed) == len(levels) else Outcome.WARNING
    return Finding(QR, check, outcome, f"{title}: {shown}", hint, data)


def relational_finding(negotiated: Negotiated) -> Finding:
    models = {
        MODEL_NAMES[name]: model.find in negotiated.relational
        for name, model in _qr_models().items()
        if model.find in negotiated.accepted
    }
    data = {"models": models}
    if not models:
        return Finding(QR, "relational", Outcome.SKIPPED, "no C-FIND model offered")
    if all(models.values()):
        return Finding(QR, "relational", Outcome.OK, "relational queries granted", data=data)
    refused = ", ".join(name for name, granted in models.items() if not granted)
    return Finding(
        QR,
        "relational",
        Outcome.WARNING,
        f"relational queries not granted for {refused}",
        "it answers hierarchical queries only: a query below the top level must name the "
        "unique key of each level above",
        data,
    )


def _retrieve_model(negotiated: Negotiated, operation: str) -> str | None:
    for name in ("study", "patient"):
        uid = getattr(_qr_models()[name], operation)
        if uid in negotiated.accepted:
            return name
    return None


def _target(sample: Sample | None, model: str) -> tuple[str, dict[str, str]]:
    """The level and keys to retrieve in a model: the sample, else a study that does
    not exist (which still shows whether the node takes our AE title)."""
    keys = dict(sample.keys) if sample is not None else {"StudyInstanceUID": str(generate_uid())}
    if model == "study":
        keys.pop("PatientID", None)
    elif "PatientID" not in keys:
        keys["PatientID"] = str(generate_uid())  # a made-up patient for a made-up study
    return ("IMAGE" if sample is not None else "STUDY"), keys


@dataclass(frozen=True)
class Whereabouts:
    """Where we listen for the node's associations, as it should have it for us."""

    listener: Listener | None
    address: str
    port: int
    why_not: str = ""
    """Why we could not listen (the port taken by our running server)."""

    def __str__(self) -> str:
        return f"{self.address}:{self.port}"


def move_finding(
    peer: Peer, negotiated: Negotiated, sample: Sample | None, us: Whereabouts
) -> Finding:
    name = _retrieve_model(negotiated, "move")
    if name is None:
        return Finding(QR, "move", Outcome.NOT_OFFERED, "C-MOVE not offered")
    level, keys = _target(sample, name)
    try:
        result = move(peer, name, level, keys, peer.calling_ae)
    except (AssociationFailed, ConnectionError) as exc:
        return lost(QR, "move", "C-MOVE", exc, peer.calling_ae)
    arrived = us.listener.wait_for(result.completed, 5.0) if us.listener else []
    mine = [a for a in arrived if sample is not None and a.sop_instance_uid == sample.sop_instance]
    return _move_verdict(result, sample, us, mine, peer.calling_ae)


def _move_verdict(
    result: MoveResult, sample: Sample | None, us: Whereabouts, arrived: list[Arrival], ae: str
) -> Finding:
    data = {
        "status": f"{result.status:04X}",
        "completed": result.completed,
        "failed": result.failed,
        "received": len(arrived),
        "listening": str(us) if us.listener else us.why_not,
    }
    summary = f"C-MOVE to {ae}: {status.describe(result.status)}, {result.completed} completed"
    if result.status == status.MOVE_DESTINATION_UNKNOWN:
        hint = (
            f"the remote does not know {ae} as a move destination: add {ae} there, "
            f"host {us.address}, port {us.port}"
        )
        return Finding(QR, "move", Outcome.FAILED, summary, hint, data)
    if result.status == status.NOT_AUTHORIZED:
        hint = f"the remote does not allow C-MOVE to {ae}: allow it there"
        return Finding(QR, "move", Outcome.FAILED, summary, hint, data)
    if arrived:
        return Finding(
            QR, "move", Outcome.OK, f"{summary}; it arrived where we listen ({us})", data=data
        )
    if sample is None:
        if status.category(result.status) is status.Category.SUCCESS:
            hint = (
                f"it accepts {ae} as a destination, but holds nothing to send, so whether it "
                f"reaches {us} was not tested"
            )
            return Finding(QR, "move", Outcome.WARNING, summary, hint, data)
        return Finding(QR, "move", Outcome.FAILED, summary, result.comment, data)
    if us.listener is None:
        hint = f"{us.why_not}: whether it reached us is not known"
        outcome = Outcome.WARNING if result.completed else Outcome.FAILED
        return Finding(QR, "move", outcome, summary, hint, data)
    if result.completed:
        hint = (
            f"the remote knows {ae} but sends C-MOVE results to another address: it reported "
            f"{result.completed} sent, yet nothing arrived where we listen ({us}); correct the "
            f"host and port it has for {ae}"
        )
        return Finding(QR, "move", Outcome.FAILED, summary, hint, data)
    hint = (
        f"the remote knows {ae} but could not deliver to the address it has for it: "
        f"{ae} listens on {us}; check the host and port it has for {ae}"
    )
    return Finding(QR, "move", Outcome.FAILED, summary, hint, data)


def get_finding(peer: Peer, negotiated: Negotiated, sample: Sample | None) -> Finding:
    name = _retrieve_model(negotiated, "get")
    if name is None:
        return Finding(QR, "get", Outcome.NOT_OFFERED, "C-GET not offered")
    level, keys = _target(sample, name)
    received: list[str] = []

    def keep(spooled: SpoolFile) -> int:
        received.append(spooled.sop_instance)
        return status.SUCCESS

    classes = [sample.sop_class] if sample is not None and sample.sop_class else []
    with tempfile.TemporaryDirectory(prefix="pacsnode-doctor-") as spool:
        try:
            result = get(peer, name, level, keys, keep, Path(spool), sop_classes=classes)
        except (AssociationFailed, ConnectionError) as exc:
            return lost(QR, "get", "C-GET", exc, peer.calling_ae)
    data = {
        "status": f"{result.status:04X}",
        "completed": result.completed,
        "received": len(received),
    }
    summary = f"C-GET: {status.describe(result.status)}, {len(received)} received"
    if received:
        return Finding(QR, "get", Outcome.OK, summary, data=data)
    if result.status == status.NOT_AUTHORIZED:
        hint = f"the remote does not allow C-GET to {peer.calling_ae}: allow it there"
        return Finding(QR, "get", Outcome.FAILED, summary, hint, data)
    if sample is None and status.category(result.status) is status.Category.SUCCESS:
        hint = "it answers C-GET, but holds nothing to send, so no instance was retrieved"
        return Finding(QR, "get", Outcome.WARNING, summary, hint, data)
    return Finding(QR, "get", Outcome.FAILED, summary, result.comment, data)


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
    """Ask it to commit the sample (or an instance it cannot hold: the report then lists
    a failure, which shows the way reports come just as well)."""
    if STORAGE_COMMITMENT not in negotiated.accepted:
        return Finding(WORKFLOW, "commit", Outcome.NOT_OFFERED, "storage commitment not offered")
    known = sample is not None and sample.sop_class
    reference = Dataset()
    reference.ReferencedSOPClassUID = sample.sop_class if sample and known else SECONDARY_CAPTURE
    reference.ReferencedSOPInstanceUID = sample.sop_instance if sample and known else generate_uid()
    information = Dataset()
    information.TransactionUID = generate_uid()
    information.ReferencedSOPSequence = [reference]
    proposal = Proposal(STORAGE_COMMITMENT, SYNTAXES, scu=True, scp=True)
    try:
        association = connect(peer, [proposal])
        try:
            context = association.context_for(STORAGE_COMMITMENT)
            assert context is not None
            answer = n_action(
                association,
                context,
                STORAGE_COMMITMENT,
                STORAGE_COMMITMENT_INSTANCE,
                REQUEST_COMMIT,
                information,
            )
            if answer.status != status.SUCCESS:
                return _commit_refused(answer.status, peer.calling_ae)
            report, way = _await_report(association, us, timeout)
        finally:
            association.release()
    except (AssociationFailed, ConnectionError) as exc:
        return lost(WORKFLOW, "commit", "storage commitment", exc, peer.calling_ae)
    if report is None and us.listener is not None:
        report, way = us.listener.report(1.0), "new"
    if report is None:
        where = f"where we listen ({us})" if us.listener else us.why_not
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
                info = codec.decode(message.data or b"", message.context.transfer_syntax)
                return CommitmentReport(int(message.command.get("EventTypeID", 0)), info), "same"
        if us.listener is not None:
            report = us.listener.report(0.1)
            if report is not None:
                return report, "new"
        else:
            time.sleep(0.1)
    return None, ""
