"""The Query/Retrieve and Modality Worklist SCU: C-FIND, C-MOVE and C-GET toward any node.

What ``pacsnode find/move/get`` and "retrieve into the archive" are built on. Keys are
given as keywords and strings, as an administrator types them (``PatientName=DOE*``;
an empty value asks for the attribute to be returned), and become an identifier
encoded in the element's own VR. Failures are told apart the way scripts need them:
:class:`~pacsnode.dimse.scu.AssociationFailed` when there is no usable association,
:class:`QueryFailed` for a C-FIND failure status, and a :class:`MoveResult` whose
``status`` and counts say how a retrieve went.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom import Dataset
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.tag import BaseTag, Tag
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from pacsnode import status
from pacsnode.archive.uids import COMMON_STORAGE_SOP_CLASSES
from pacsnode.dimse import codec
from pacsnode.dimse.catalog import MODALITY_WORKLIST_FIND
from pacsnode.dimse.qr_model import (
    PATIENT_ROOT_FIND,
    PATIENT_ROOT_GET,
    PATIENT_ROOT_MOVE,
    PATIENT_STUDY_ONLY_FIND,
    PATIENT_STUDY_ONLY_GET,
    PATIENT_STUDY_ONLY_MOVE,
    STUDY_ROOT_FIND,
    STUDY_ROOT_GET,
    STUDY_ROOT_MOVE,
)
from pacsnode.dimse.scu import AssociationFailed, Peer, connect, request
from pacsnode.dimse.storage import Discard, SpoolFile
from pacsnode.net import commands
from pacsnode.net.association import Association, Context, Message, Sink
from pacsnode.net.requestor import MAX_CONTEXTS, Proposal

log = logging.getLogger("pacsnode.scu")


@dataclass(frozen=True)
class Model:
    """An information model: its C-FIND, C-MOVE and C-GET SOP classes and levels."""

    find: str
    move: str | None
    get: str | None
    levels: tuple[str, ...]


MODELS: dict[str, Model] = {
    "patient": Model(
        PATIENT_ROOT_FIND,
        PATIENT_ROOT_MOVE,
        PATIENT_ROOT_GET,
        ("PATIENT", "STUDY", "SERIES", "IMAGE"),
    ),
    "study": Model(STUDY_ROOT_FIND, STUDY_ROOT_MOVE, STUDY_ROOT_GET, ("STUDY", "SERIES", "IMAGE")),
    "psonly": Model(
        PATIENT_STUDY_ONLY_FIND,
        PATIENT_STUDY_ONLY_MOVE,
        PATIENT_STUDY_ONLY_GET,
        ("PATIENT", "STUDY"),
    ),
    "mwl": Model(MODALITY_WORKLIST_FIND, None, None, ()),
}
"""By the names the command line uses: ``patient``, ``study``, ``psonly``, ``mwl``."""

SYNTAXES = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
KEPT_COMPRESSED_SYNTAXES = (
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.5",  # RLE Lossless
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.51",  # JPEG Extended
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless
)
"""Compressed syntaxes a C-GET proposes per SOP class, most common first."""
_NUMERIC_VRS = {"US", "UL", "SS", "SL", "FL", "FD", "UV", "SV"}

Keys = Mapping[str, str]
Sequences = Mapping[str, Keys]


class QueryFailed(Exception):
    """The peer answered a C-FIND with a failure status."""

    def __init__(self, status: int, comment: str = "") -> None:
        self.status = status
        self.comment = comment
        super().__init__(f"status 0x{status:04X}" + (f": {comment}" if comment else ""))


@dataclass(frozen=True)
class MoveResult:
    """How a C-MOVE or C-GET went, from its final response (or the latest pending one).

    Also handed to the ``progress`` callback after each pending response, with
    ``remaining`` set and ``status`` the pending status.
    """

    status: int
    completed: int = 0
    failed: int = 0
    warning: int = 0
    remaining: int | None = None
    failed_sop_instance_uids: list[str] = field(default_factory=list)
    comment: str = ""

    @property
    def ok(self) -> bool:
        """Success, and no sub-operation failed."""
        return self.status == 0x0000 and self.failed == 0


Progress = Callable[[MoveResult], None]
StoreHandler = Callable[[SpoolFile], int]
"""Given each instance a C-GET brings, as a complete Part 10 file being received into
the spool directory, returns the status to answer with; the file is deleted after."""


def model_of(name: str) -> Model:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}: one of {', '.join(MODELS)}") from None


def tag_of(key: str) -> BaseTag:
    """A keyword (``PatientName``) or a tag (``0010,0010``, ``(0010,0010)``, ``00100010``)."""
    tag = tag_for_keyword(key)
    if tag is not None:
        return Tag(tag)
    digits = key.strip("()").replace(",", "")
    try:
        if len(digits) == 8:
            return Tag(int(digits, 16))
    except ValueError:
        pass
    raise ValueError(f"{key!r} is neither a DICOM keyword nor a tag")


def _element(key: str, value: str) -> DataElement:
    tag = tag_of(key)
    vr = dictionary_VR(tag).split(" or ")[0]
    if vr == "SQ":
        return DataElement(tag, vr, [])
    converted: Any = value
    if vr in _NUMERIC_VRS:
        number = float if vr in {"FL", "FD"} else int
        parts = [number(part) for part in value.split("\\") if part]
        converted = parts[0] if len(parts) == 1 else (parts or None)
    return DataElement(tag, vr, converted)


def identifier(level: str | None, keys: Keys, sequences: Sequences | None = None) -> Dataset:
    """The C-FIND/C-MOVE/C-GET identifier: the level, the keys, and sequence items.

    ``sequences`` maps a sequence keyword to the keys of its one item
    (``{"ScheduledProcedureStepSequence": {"Modality": "MR"}}``).
    """
    dataset = Dataset()
    if level:
        dataset.QueryRetrieveLevel = level
    for key, value in keys.items():
        dataset.add(_element(key, value))
    for key, item_keys in (sequences or {}).items():
        item = Dataset()
        for item_key, value in item_keys.items():
            item.add(_element(item_key, value))
        dataset.add(DataElement(tag_of(key), "SQ", [item]))
    if not _ascii(dataset):
        dataset.SpecificCharacterSet = "ISO_IR 192"
    return dataset


def _ascii(dataset: Dataset) -> bool:
    """Whether the default repertoire will do; otherwise the identifier says UTF-8."""
    return all(str(element.value).isascii() for element in dataset.iterall() if element.VR != "SQ")


def _associate(peer: Peer, proposals: list[Proposal], required: str) -> Association:
    """An association on which ``required`` (a SOP class) was accepted."""
    association = connect(peer, proposals)
    if association.context_for(required) is None:
        association.release()
        raise AssociationFailed(f"{peer} does not accept {required}")
    return association


@contextmanager
def query_association(peer: Peer, model: str) -> Iterator[Association]:
    """One association for many C-FINDs (a tree walk), released afterwards."""
    sop_class = model_of(model).find
    association = _associate(peer, [Proposal(sop_class, SYNTAXES)], sop_class)
    try:
        yield association
    finally:
        association.release()


def find_on(
    association: Association,
    model: str,
    level: str | None,
    keys: Keys,
    sequences: Sequences | None = None,
) -> Iterator[Dataset]:
    """C-FIND on an open association; yields each match as it arrives."""
    query = identifier(None if model == "mwl" else level, keys, sequences)
    yield from find_identifier(association, model_of(model).find, query)


def find_identifier(association: Association, sop_class: str, query: Dataset) -> Iterator[Dataset]:
    """C-FIND an identifier as it is; yields the matches, raises :class:`QueryFailed`."""
    context = association.context_for(sop_class)
    if context is None:
        raise AssociationFailed(f"no presentation context for {sop_class}")
    command = {"CommandField": commands.C_FIND_RQ, "AffectedSOPClassUID": sop_class, "Priority": 0}
    for response in request(
        association, context.id, command, codec.encode(query, context.transfer_syntax)
    ):
        code = int(response.command.get("Status", -1))
        if status.category(code) is status.Category.PENDING:
            if response.data:
                yield codec.decode(response.data, context.transfer_syntax)
        elif code not in (status.SUCCESS, status.CANCEL):
            raise QueryFailed(code, str(response.command.get("ErrorComment", "")))


def cancel(association: Association, sop_class: str) -> None:
    """C-CANCEL the C-FIND or C-MOVE in progress on this association: our last request."""
    context = association.context_for(sop_class)
    if context is not None:
        command = {
            "CommandField": commands.C_CANCEL_RQ,
            "MessageIDBeingRespondedTo": association.last_message_id,
        }
        association.send(context.id, command)


def find(
    peer: Peer,
    model: str,
    level: str | None,
    keys: Keys,
    sequences: Sequences | None = None,
) -> Iterator[Dataset]:
    """C-FIND on its own association; yields the matches, raises :class:`QueryFailed`.

    ``model`` is one of :data:`MODELS`; ``level`` is ignored for ``mwl``, which has none.
    """
    with query_association(peer, model) as association:
        yield from find_on(association, model, level, keys, sequences)


def _int(dataset: Dataset, keyword: str) -> int | None:
    value = dataset.get(keyword)
    return None if value is None or value == "" else int(value)


def _result(response: Message, syntax: str, previous: MoveResult) -> MoveResult:
    """The counts of one C-MOVE/C-GET response; absent counts keep their last value."""
    command = response.command
    failed_uids = previous.failed_sop_instance_uids
    if response.data:
        found = codec.decode(response.data, syntax)
        listed = found.get("FailedSOPInstanceUIDList")
        if listed is not None:
            values = listed if isinstance(listed, list) else [listed]
            failed_uids = [str(uid) for uid in values if uid]

    def count(keyword: str, last: int) -> int:
        value = command.get(keyword)
        return last if value is None else int(value)

    code = int(command.get("Status", -1))
    pending = status.category(code) is status.Category.PENDING
    return MoveResult(
        status=code,
        completed=count("NumberOfCompletedSuboperations", previous.completed),
        failed=count("NumberOfFailedSuboperations", previous.failed),
        warning=count("NumberOfWarningSuboperations", previous.warning),
        remaining=command.get("NumberOfRemainingSuboperations") if pending else None,
        failed_sop_instance_uids=failed_uids,
        comment=str(command.get("ErrorComment", "")),
    )


def _follow(responses: Iterator[Message], syntax: str, progress: Progress | None) -> MoveResult:
    result = MoveResult(status=-1)
    for response in responses:
        result = _result(response, syntax, result)
        if status.category(result.status) is status.Category.PENDING:
            if progress is not None:
                progress(result)
        else:
            return result
    raise AssociationFailed("no final response")


def move(
    peer: Peer,
    model: str,
    level: str,
    keys: Keys,
    destination_ae: str,
    progress: Progress | None = None,
) -> MoveResult:
    """C-MOVE what ``keys`` select to ``destination_ae``; the peer must know that AE.

    Failure statuses (``A801`` unknown destination, ``B000`` some failed, ...) come back
    in the result rather than raised: the counts matter as much as the status.
    """
    sop_class = model_of(model).move
    if sop_class is None:
        raise ValueError(f"the {model} model has no C-MOVE")
    association = _associate(peer, [Proposal(sop_class, SYNTAXES)], sop_class)
    try:
        return move_on(association, sop_class, identifier(level, keys), destination_ae, progress)
    finally:
        association.release()


def move_on(
    association: Association,
    sop_class: str,
    query: Dataset,
    destination_ae: str,
    progress: Progress | None = None,
    on_response: Callable[[Message], None] | None = None,
) -> MoveResult:
    """C-MOVE an identifier on an open association; ``on_response`` sees each response
    as it came (C-MOVE spanning relays them)."""
    context = association.context_for(sop_class)
    if context is None:
        raise AssociationFailed(f"no presentation context for {sop_class}")
    command = {
        "CommandField": commands.C_MOVE_RQ,
        "AffectedSOPClassUID": sop_class,
        "Priority": 0,
        "MoveDestination": destination_ae,
    }
    data = codec.encode(query, context.transfer_syntax)
    responses = request(association, context.id, command, data)
    if on_response is not None:
        responses = _tapped(responses, on_response)
    return _follow(responses, context.transfer_syntax, progress)


def _tapped(responses: Iterator[Message], tap: Callable[[Message], None]) -> Iterator[Message]:
    for response in responses:
        tap(response)
        yield response


class _Receiver:
    """The C-STORE side of a C-GET: each instance spooled, then handed to ``store``."""

    def __init__(self, association_ae: str, spool: Path, store: StoreHandler) -> None:
        self.source_ae = association_ae
        self.spool = spool
        self.store = store

    def sink_for(self, command: dict[str, Any], context: Context) -> Sink | None:
        if command.get("CommandField") != commands.C_STORE_RQ:
            return None
        try:
            return SpoolFile(
                self.spool,
                str(command.get("AffectedSOPClassUID", "")),
                str(command.get("AffectedSOPInstanceUID", "")),
                context.transfer_syntax,
                self.source_ae,
            )
        except OSError:
            log.exception("cannot spool a retrieved instance")
            return Discard()

    def __call__(self, association: Association, message: Message) -> None:
        command = message.command
        if message.field != commands.C_STORE_RQ:
            return
        code = status.OUT_OF_RESOURCES
        sink = message.sink
        if isinstance(sink, SpoolFile):
            try:
                code = status.OUT_OF_RESOURCES if sink.error else self.store(sink)
            except Exception:
                log.exception("cannot keep a retrieved instance")
            finally:
                sink.abandon()
        response = {
            "CommandField": commands.C_STORE_RSP,
            "MessageIDBeingRespondedTo": command.get("MessageID", 0),
            "AffectedSOPClassUID": command.get("AffectedSOPClassUID", ""),
            "AffectedSOPInstanceUID": command.get("AffectedSOPInstanceUID", ""),
            "Status": code,
        }
        association.send(message.context.id, response)


def get(
    peer: Peer,
    model: str,
    level: str,
    keys: Keys,
    store: StoreHandler,
    spool: Path,
    progress: Progress | None = None,
    sop_classes: Sequence[str] = (),
) -> MoveResult:
    """C-GET what ``keys`` select; each instance arrives on this association, is
    spooled into ``spool`` and handed to ``store``.

    With the ``sop_classes`` the selection holds (an IMAGE-level C-FIND tells them),
    each is proposed in the SCP role once per common compressed syntax besides the
    uncompressed ones, so that the peer can send what it keeps as it keeps it. Without
    them, the 120 most common storage classes are proposed uncompressed only (there
    is no room for more within 128 contexts), and the peer decompresses.
    """
    sop_class = model_of(model).get
    if sop_class is None:
        raise ValueError(f"the {model} model has no C-GET")
    proposals = [Proposal(sop_class, SYNTAXES), *_storage_proposals(sop_classes)]
    association = _associate(peer, proposals, sop_class)
    receiver = _Receiver(peer.ae_title, spool, store)
    context = association.context_for(sop_class)
    assert context is not None
    command = {"CommandField": commands.C_GET_RQ, "AffectedSOPClassUID": sop_class, "Priority": 0}
    data = codec.encode(identifier(level, keys), context.transfer_syntax)
    try:
        message_id = association.next_message_id()
        association.send(context.id, {**command, "MessageID": message_id}, data)
        responses = association.responses(
            message_id, lambda message: receiver(association, message), receiver.sink_for
        )
        return _follow(_until_final(responses), context.transfer_syntax, progress)
    finally:
        association.release()


def _until_final(responses: Iterator[Message]) -> Iterator[Message]:
    for response in responses:
        yield response
        if status.category(int(response.command.get("Status", 0))) is not status.Category.PENDING:
            return


def _storage_proposals(sop_classes: Sequence[str]) -> list[Proposal]:
    room = MAX_CONTEXTS - 1
    if not sop_classes:
        common = COMMON_STORAGE_SOP_CLASSES[:room]
        return [Proposal(uid, SYNTAXES, scu=False, scp=True) for uid in common]
    classes = list(dict.fromkeys(sop_classes))
    per_class = max(1, room // len(classes))
    syntax_sets = [SYNTAXES, *((ts,) for ts in KEPT_COMPRESSED_SYNTAXES)][:per_class]
    proposals = [
        Proposal(uid, syntaxes, scu=False, scp=True) for uid in classes for syntaxes in syntax_sets
    ]
    return proposals[:room]


__all__ = [
    "MODELS",
    "AssociationFailed",
    "MoveResult",
    "Peer",
    "QueryFailed",
    "find",
    "find_on",
    "get",
    "identifier",
    "move",
    "query_association",
]
