"""The Query/Retrieve steps: C-FIND per model and level, relational queries, C-MOVE to
our AE title and C-GET.

Every C-FIND is cancelled after its first match: one is enough to know a level works
and to walk down to an instance, and a universal query on a large archive must not
stream it all. That instance (a sample) is what the C-MOVE, C-GET and commitment ask
for; it comes to our listener, which keeps nothing.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from pydicom import Dataset
from pydicom.uid import generate_uid

from pacsnode import status
from pacsnode.dimse.query_scu import (
    MoveResult,
    QueryFailed,
    cancel,
    find_identifier,
    get,
    identifier,
    move,
    query_association,
)
from pacsnode.dimse.scu import Peer
from pacsnode.dimse.storage import SpoolFile
from pacsnode.doctor.listener import Arrival
from pacsnode.doctor.report import Finding, Outcome
from pacsnode.doctor.services import Negotiated, Sample, Whereabouts, lost, qr_models
from pacsnode.net.association import Association
from pacsnode.net.requestor import AssociationFailed

QR = "query/retrieve"
ARRIVAL_WAIT = 1.0
"""Seconds to wait for what a C-MOVE reported sent: it was noted before the node got
our answer, so it is there already unless it went elsewhere."""
MODEL_NAMES = {"patient": "Patient Root", "study": "Study Root", "psonly": "Patient/Study Only"}
UNIQUE = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}


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
    model = qr_models()[name]
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
        for name, model in qr_models().items()
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
        uid = getattr(qr_models()[name], operation)
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
    arrived = us.listener.wait_for(result.completed, ARRIVAL_WAIT) if us.listener else []
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
