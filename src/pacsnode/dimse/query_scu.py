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
from typing import Any

from pydicom import Dataset
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.tag import BaseTag, Tag
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import StoragePresentationContexts, build_context, build_role, evt
from pynetdicom.association import Association
from pynetdicom.events import Event
from pynetdicom.presentation import PresentationContext

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
from pacsnode.dimse.scu import AssociationFailed, Peer, new_ae, open_association
from pacsnode.dimse.worklist_scp import MODALITY_WORKLIST_FIND

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

SYNTAXES: list[str] = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
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
_MAX_CONTEXTS = 128
PENDING = (0xFF00, 0xFF01)
CANCELLED = 0xFE00
OUT_OF_RESOURCES = 0xA700
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
StoreHandler = Callable[[Event], int]
"""Given each received C-STORE as pynetdicom's event (``event.dataset``,
``event.file_meta``, ``event.encoded_dataset()``, ``event.context``), returns the status
to answer with."""


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


def _associate(
    peer: Peer,
    contexts: list[PresentationContext],
    required: str,
    **options: Any,
) -> Association:
    """An association on which ``required`` (a SOP class) was accepted."""
    ae = new_ae(peer.calling_ae)
    assoc = open_association(ae, peer, contexts, **options)
    where = f"{peer.ae_title}@{peer.host}:{peer.port}"
    if not assoc.is_established:
        reason = "rejected" if assoc.is_rejected else "aborted or unreachable"
        raise AssociationFailed(f"association with {where} {reason}")
    if not any(cx.abstract_syntax == required for cx in assoc.accepted_contexts):
        assoc.release()
        raise AssociationFailed(f"{where} does not accept {required}")
    return assoc


@contextmanager
def query_association(peer: Peer, model: str) -> Iterator[Association]:
    """One association for many C-FINDs (a tree walk), released afterwards."""
    sop_class = model_of(model).find
    assoc = _associate(peer, [build_context(sop_class, SYNTAXES)], sop_class)
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


def find_on(
    assoc: Association,
    model: str,
    level: str | None,
    keys: Keys,
    sequences: Sequences | None = None,
) -> Iterator[Dataset]:
    """C-FIND on an open association; yields each match as it arrives."""
    query = identifier(None if model == "mwl" else level, keys, sequences)
    for status, found in assoc.send_c_find(query, model_of(model).find):
        if not status or "Status" not in status:
            raise AssociationFailed("no C-FIND response: association lost or timed out")
        code = int(status.Status)
        if code in PENDING:
            if found is not None:
                yield found
        elif code not in (0x0000, CANCELLED):
            raise QueryFailed(code, str(status.get("ErrorComment", "")))


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
    with query_association(peer, model) as assoc:
        yield from find_on(assoc, model, level, keys, sequences)


def _int(dataset: Dataset, keyword: str) -> int | None:
    value = dataset.get(keyword)
    return None if value is None or value == "" else int(value)


def _result(status: Dataset, found: Dataset | None, previous: MoveResult) -> MoveResult:
    """The counts of one C-MOVE/C-GET response; absent counts keep their last value."""
    failed_uids = previous.failed_sop_instance_uids
    if found is not None and "FailedSOPInstanceUIDList" in found:
        listed = found.FailedSOPInstanceUIDList
        failed_uids = [str(uid) for uid in (listed if isinstance(listed, list) else [listed])]
        failed_uids = [uid for uid in failed_uids if uid]

    def count(keyword: str, last: int) -> int:
        value = _int(status, keyword)
        return last if value is None else value

    code = int(status.Status)
    return MoveResult(
        status=code,
        completed=count("NumberOfCompletedSuboperations", previous.completed),
        failed=count("NumberOfFailedSuboperations", previous.failed),
        warning=count("NumberOfWarningSuboperations", previous.warning),
        remaining=_int(status, "NumberOfRemainingSuboperations") if code in PENDING else None,
        failed_sop_instance_uids=failed_uids,
        comment=str(status.get("ErrorComment", "")),
    )


def _follow(
    responses: Iterator[tuple[Dataset, Dataset | None]], progress: Progress | None
) -> MoveResult:
    result = MoveResult(status=-1)
    for status, found in responses:
        if not status or "Status" not in status:
            raise AssociationFailed("no response: association lost or timed out")
        result = _result(status, found, result)
        if result.status in PENDING:
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
    assoc = _associate(peer, [build_context(sop_class, SYNTAXES)], sop_class)
    try:
        responses = assoc.send_c_move(identifier(level, keys), destination_ae, sop_class)
        return _follow(responses, progress)
    finally:
        if assoc.is_established:
            assoc.release()


def _storage_handler(store: StoreHandler) -> Callable[[Event], int]:
    """A C-STORE handler that answers ``A700`` when the caller's ``store`` raises."""

    def handle(event: Event) -> int:
        try:
            return store(event)
        except Exception:
            log.exception("cannot keep a retrieved instance")
            return OUT_OF_RESOURCES

    return handle


def get(
    peer: Peer,
    model: str,
    level: str,
    keys: Keys,
    store: StoreHandler,
    progress: Progress | None = None,
    sop_classes: Sequence[str] = (),
) -> MoveResult:
    """C-GET what ``keys`` select; each instance arrives on this association at ``store``.

    With the ``sop_classes`` the selection holds (an IMAGE-level C-FIND tells them),
    each is proposed in the SCP role once per common compressed syntax besides the
    uncompressed ones, so that the peer can send what it keeps as it keeps it. Without
    them, the 120 most common storage classes are proposed uncompressed only (there
    is no room for more within 128 contexts), and the peer decompresses.
    """
    sop_class = model_of(model).get
    if sop_class is None:
        raise ValueError(f"the {model} model has no C-GET")
    storage = _storage_contexts(sop_classes)
    roles = [build_role(str(cx.abstract_syntax), scp_role=True) for cx in storage]
    assoc = _associate(
        peer,
        [build_context(sop_class, SYNTAXES), *storage],
        sop_class,
        ext_neg=roles,
        evt_handlers=[(evt.EVT_C_STORE, _storage_handler(store))],
    )
    try:
        return _follow(assoc.send_c_get(identifier(level, keys), sop_class), progress)
    finally:
        if assoc.is_established:
            assoc.release()


def _storage_contexts(sop_classes: Sequence[str]) -> list[PresentationContext]:
    if not sop_classes:
        return [_fresh_context(cx) for cx in StoragePresentationContexts]
    classes = list(dict.fromkeys(sop_classes))
    per_class = max(1, (_MAX_CONTEXTS - 1) // len(classes))
    syntax_sets = [SYNTAXES, *([ts] for ts in KEPT_COMPRESSED_SYNTAXES)][:per_class]
    contexts = [build_context(uid, list(syntaxes)) for uid in classes for syntaxes in syntax_sets]
    return contexts[: _MAX_CONTEXTS - 1]


def _fresh_context(context: PresentationContext) -> PresentationContext:
    """A fresh copy of one of pynetdicom's shared default contexts, safe to propose."""
    return build_context(str(context.abstract_syntax), [str(ts) for ts in context.transfer_syntax])


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
