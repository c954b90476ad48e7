"""Calling other nodes: whom and how (:class:`Peer`, :class:`Dialer`), C-ECHO and C-STORE.

Every association this node opens starts in :meth:`Dialer.associate`, so that a
remote AE with ``tls = true`` always gets TLS and every call uses our AE title,
implementation UID, PDU size and timeouts. Files go out as their stored bytes
whenever the peer accepts their transfer syntax (mapped, never copied); otherwise
they are converted by :mod:`pacsnode.archive.transcoding` to an uncompressed
syntax, which every Storage SCP must accept, never recompressed.
"""

from __future__ import annotations

import mmap
import ssl
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from pacsnode import status
from pacsnode.archive.encoding import split_meta
from pacsnode.archive.modification import Modification
from pacsnode.archive.outgoing import Outgoing
from pacsnode.archive.storage import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from pacsnode.archive.transcoding import convert, writable
from pacsnode.archive.uids import (
    UNCOMPRESSED_TRANSFER_SYNTAXES,
    VERIFICATION_SOP_CLASS,
    syntax_of_encoding,
)
from pacsnode.config import RemoteAE, Settings
from pacsnode.dimse.tls import OutboundTls, RemoteLookup
from pacsnode.net import commands
from pacsnode.net.association import Association, Message
from pacsnode.net.requestor import (
    MAX_CONTEXTS,
    AssociationFailed,
    Endpoint,
    LocalAE,
    Proposal,
    associate,
)
from pacsnode.net.transport import Buffer

__all__ = ["MAX_CONTEXTS", "AssociationFailed"]

CONVERTED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
"""What a file the peer does not take as stored is converted to, in this order."""


@dataclass(frozen=True)
class Peer:
    """A node to call, and how we present ourselves to it."""

    host: str
    port: int
    ae_title: str = "ANY-SCP"
    calling_ae: str = "PACSNODE"
    tls: ssl.SSLContext | None = None
    max_pdu: int = 1_048_576
    acse_timeout: float = 30.0
    network_timeout: float = 60.0
    dimse_timeout: float = 60.0
    extended: dict[str, bytes] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


class Dialer:
    """Makes peers from remote AEs or addresses with this node's identity and TLS."""

    def __init__(self, settings: Settings, remote: RemoteLookup | None = None) -> None:
        self.settings = settings
        configured = {entry.ae_title: entry for entry in settings.remote_ae}
        self.remote = remote or configured.get
        self.tls = OutboundTls(settings, self.remote)

    def to(self, host: str, port: int, ae_title: str, calling_ae: str | None = None) -> Peer:
        """A peer at an address; TLS when it is a configured remote AE with ``tls``."""
        settings = self.settings
        return Peer(
            host,
            port,
            ae_title,
            calling_ae or settings.ae_title,
            self.tls.context_for(ae_title, host, port),
            settings.max_pdu_size,
            settings.acse_timeout,
            settings.network_timeout,
            settings.dimse_timeout,
        )

    def peer(self, remote: RemoteAE, calling_ae: str | None = None) -> Peer:
        return self.to(remote.host, remote.port, remote.ae_title, calling_ae)

    def named(self, ae_title: str, calling_ae: str | None = None) -> Peer | None:
        """The peer of a configured remote AE, by its title."""
        remote = self.remote(ae_title)
        return None if remote is None else self.peer(remote, calling_ae)


def open_association(peer: Peer, proposals: Sequence[Proposal]) -> Association:
    """An association with ``peer`` whatever it accepted, even none of the contexts:
    for finding out what a node accepts. Raises :class:`AssociationFailed` without one."""
    local = LocalAE(
        peer.calling_ae,
        IMPLEMENTATION_CLASS_UID,
        IMPLEMENTATION_VERSION_NAME,
        peer.max_pdu,
        peer.acse_timeout,
        peer.network_timeout,
        peer.dimse_timeout,
    )
    endpoint = Endpoint(peer.host, peer.port, peer.ae_title, peer.tls, dict(peer.extended))
    return associate(local, endpoint, proposals)


def connect(peer: Peer, proposals: Sequence[Proposal]) -> Association:
    """An association with ``peer``; raises :class:`AssociationFailed` without one."""
    association = open_association(peer, proposals)
    if not association.contexts:
        association.abort()
        raise AssociationFailed(f"{peer} accepted none of the presentation contexts proposed")
    return association


def request(
    association: Association,
    context_id: int,
    command: dict[str, object],
    data: bytes | Sequence[Buffer] | None = None,
    on_request: Callable[[Message], None] | None = None,
) -> Iterator[Message]:
    """Send a request and yield its responses up to the final one (not pending)."""
    message_id = association.next_message_id()
    association.send(context_id, {**command, "MessageID": message_id}, data)
    return _answers(association, message_id, on_request)


def _answers(
    association: Association,
    message_id: int,
    on_request: Callable[[Message], None] | None = None,
) -> Iterator[Message]:
    for response in association.responses(message_id, on_request):
        yield response
        if status.category(int(response.command.get("Status", 0))) is not status.Category.PENDING:
            return


def final(responses: Iterable[Message]) -> Message:
    last = None
    for last in responses:  # noqa: B007 - the last one is the answer
        pass
    if last is None:
        raise AssociationFailed("no response")
    return last


@dataclass(frozen=True)
class OutgoingFile:
    path: Path
    sop_class: str
    sop_instance: str
    transfer_syntax: str
    has_meta: bool
    """Only a file with complete File Meta can be sent byte for byte."""
    edited: bool = False
    """An archive instance whose patient or study the index holds otherwise than its
    file (see archive/outgoing.py)."""


@dataclass(frozen=True)
class StoreOutcome:
    path: Path
    status: int | None
    """``None`` when no response came (association lost) or the file was unreadable."""
    comment: str = ""


def echo(peer: Peer) -> int:
    """Send a C-ECHO; returns the status (``0x0000`` on success)."""
    proposal = Proposal(VERIFICATION_SOP_CLASS, tuple(UNCOMPRESSED_TRANSFER_SYNTAXES))
    association = connect(peer, [proposal])
    try:
        context = next(iter(association.contexts.values()))
        command = {
            "CommandField": commands.C_ECHO_RQ,
            "AffectedSOPClassUID": VERIFICATION_SOP_CLASS,
        }
        answer = final(request(association, context.id, command))
    finally:
        association.release()
    return int(answer.command.get("Status", -1))


def describe(path: Path) -> OutgoingFile | None:
    """Read just enough of a file to choose a presentation context for it; None for a
    file that is not DICOM or is too broken to send."""
    try:
        return _describe(path)
    except Exception:  # on a corrupt file pydicom raises nearly anything, also lazily
        return None


def _describe(path: Path) -> OutgoingFile | None:
    ds = dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID", "SOPInstanceUID"])
    meta = ds.file_meta
    sop_class = meta.get("MediaStorageSOPClassUID") or ds.get("SOPClassUID")
    sop_instance = meta.get("MediaStorageSOPInstanceUID") or ds.get("SOPInstanceUID")
    if not (sop_class and sop_instance):
        return None
    syntax = meta.get("TransferSyntaxUID") or syntax_of_encoding(ds)
    keywords = ("MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID", "TransferSyntaxUID")
    has_meta = all(meta.get(keyword) for keyword in keywords)
    return OutgoingFile(path, str(sop_class), str(sop_instance), str(syntax), has_meta)


def store_contexts(wanted: dict[str, set[str]], scp: bool = False) -> list[Proposal]:
    """Per SOP class: a context for each syntax wanted, alone, then one offering the
    uncompressed syntaxes we can convert to (digest-000_004 B7 item 34).

    Alone, because an acceptor picks one syntax per context by its own preference:
    offered together with Explicit VR Little Endian, an object stored in Implicit VR
    (or JPEG) would be converted whenever the peer prefers another syntax, although
    it accepts the stored one. ``scp`` asks for the SCP role (to receive, for C-GET).
    """
    proposals = []
    for sop_class, syntaxes in wanted.items():
        for syntax in sorted(syntaxes):
            proposals.append(Proposal(sop_class, (syntax,), scu=not scp, scp=scp))
        proposals.append(Proposal(sop_class, CONVERTED, scu=not scp, scp=scp))
    return proposals


def accepted_syntaxes(association: Association, sop_class: str) -> set[str]:
    """The transfer syntaxes in which we may send ``sop_class`` on this association."""
    return {
        context.transfer_syntax
        for context in association.contexts.values()
        if context.abstract_syntax == sop_class and association.may_invoke(context)
    }


def proposals_for(files: Iterable[OutgoingFile]) -> list[Proposal]:
    wanted: dict[str, set[str]] = {}
    for item in files:
        wanted.setdefault(item.sop_class, set()).add(item.transfer_syntax)
    return store_contexts(wanted)


def _batches(files: list[OutgoingFile]) -> Iterator[list[OutgoingFile]]:
    """Split so that no association needs more than 128 presentation contexts."""
    batch: list[OutgoingFile] = []
    for item in files:
        if len(proposals_for([*batch, item])) > MAX_CONTEXTS:
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def store(
    peer: Peer, files: Iterable[OutgoingFile], progress: Callable[[StoreOutcome], None]
) -> None:
    """Send files over as few associations as the 128-context limit allows."""
    for batch in _batches(list(files)):
        association = connect(peer, proposals_for(batch))
        try:
            for outcome in send_each(association, batch):
                progress(outcome)
        finally:
            association.release()


Edits = Callable[[OutgoingFile], Modification | None]
"""The outgoing step toward one destination (archive/outgoing.py): what to change in
an object, asked as each is prepared, so that a file it cannot read fails alone."""


def edits_toward(outgoing: Outgoing, destination: str | None) -> Edits:
    """The outgoing step for what goes to ``destination`` (an AE title)."""
    return lambda item: outgoing.modification(
        item.path, item.sop_instance, item.edited, destination
    )


def payload(
    association: Association,
    item: OutgoingFile,
    lossy_ratio: int | None = None,
    target: str = "",
    edits: Edits | None = None,
) -> tuple[int, list[Buffer]]:
    """The context to send on and the data set: the stored bytes if the peer takes
    their syntax and nothing is to change, else converted (to ``target`` if given,
    else uncompressed) with the outgoing step's changes."""
    modification = edits(item) if edits is not None else None
    accepted = accepted_syntaxes(association, item.sop_class)
    choices = [target] if target else [item.transfer_syntax, *CONVERTED]
    if modification:  # a modified data set is written in Little Endian, not deflated
        choices = [ts for ts in choices if writable(ts)] + list(CONVERTED)
    syntax = next((ts for ts in choices if ts in accepted), None)
    if syntax is None:
        raise ValueError(f"the peer accepts neither {item.transfer_syntax} nor uncompressed")
    context = association.context_for(item.sop_class, [syntax])
    assert context is not None  # the syntax was among those accepted
    if syntax == item.transfer_syntax and item.has_meta and not modification:
        return context.id, [_stored_data_set(item.path)]
    _meta, body = convert(item.path, item.transfer_syntax, syntax, lossy_ratio, modification)
    return context.id, list(body)


def _stored_data_set(path: Path) -> memoryview:
    """The data set of a stored file, mapped: the kernel sends it from the page cache."""
    with path.open("rb") as handle:
        mapped = memoryview(mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ))
    _meta, offset = split_meta(mapped)
    return mapped[offset:]


def send_one(
    association: Association,
    item: OutgoingFile,
    originator_ae: str | None = None,
    originator_message_id: int | None = None,
    lossy_ratio: int | None = None,
    target: str = "",
    edits: Edits | None = None,
) -> StoreOutcome:
    """C-STORE one file; the originator names the C-MOVE this is a sub-operation of."""
    sending = Sending(originator_ae, originator_message_id, lossy_ratio, target, edits)
    return next(send_each(association, [item], sending))


@dataclass(frozen=True)
class Sending:
    """How files go out: for a C-MOVE, the originator its sub-operations name; for a
    route, the target syntax and lossy ratio; for archive instances, what the outgoing
    step changes in them."""

    originator_ae: str | None = None
    originator_message_id: int | None = None
    lossy_ratio: int | None = None
    target: str = ""
    edits: Edits | None = None


@dataclass(frozen=True)
class _Ready:
    """A C-STORE request ready to go: its context, command and mapped or converted data."""

    item: OutgoingFile
    context_id: int
    command: dict[str, object]
    data: list[Buffer]


def send_each(
    association: Association, items: Iterable[OutgoingFile], sending: Sending = Sending()
) -> Iterator[StoreOutcome]:
    """C-STORE ``items`` in turn on one association, yielding each outcome.

    The next file is mapped (or converted) while the peer stores the current one, so
    its request leaves the moment the answer arrives: a peer that polls its socket
    never waits on us between two sub-operations.
    """
    pending = iter(items)
    upcoming = _ready(association, next(pending, None), sending)
    while upcoming is not None:
        current = upcoming
        if isinstance(current, StoreOutcome):
            upcoming = _ready(association, next(pending, None), sending)
            yield current
            continue
        message_id = association.next_message_id()
        try:
            association.send(
                current.context_id, {**current.command, "MessageID": message_id}, current.data
            )
        except ConnectionError as exc:
            upcoming = _ready(association, next(pending, None), sending)
            yield StoreOutcome(current.item.path, None, f"not sent: {exc}")
            continue
        upcoming = _ready(association, next(pending, None), sending)
        try:
            answer = final(_answers(association, message_id))
        except ConnectionError as exc:  # lost, aborted, or silent past the timeout
            yield StoreOutcome(current.item.path, None, f"not sent: {exc}")
            continue
        code = int(answer.command.get("Status", -1))
        yield StoreOutcome(current.item.path, code, str(answer.command.get("ErrorComment", "")))


def _ready(
    association: Association, item: OutgoingFile | None, sending: Sending
) -> _Ready | StoreOutcome | None:
    """The request for ``item``, or the outcome of a file that cannot be sent."""
    if item is None:
        return None
    if not association.established:
        return StoreOutcome(item.path, None, "not sent: the association is lost")
    if not accepted_syntaxes(association, item.sop_class):
        return StoreOutcome(item.path, None, "SOP class not accepted by the peer")
    try:
        context_id, data = payload(
            association, item, sending.lossy_ratio, sending.target, sending.edits
        )
    except Exception as exc:  # a codec that is missing or fails, an unreadable file
        return StoreOutcome(item.path, None, f"cannot convert for the peer: {exc}")
    command: dict[str, object] = {
        "CommandField": commands.C_STORE_RQ,
        "AffectedSOPClassUID": item.sop_class,
        "AffectedSOPInstanceUID": item.sop_instance,
        "Priority": commands.MEDIUM,
    }
    if sending.originator_ae:
        command["MoveOriginatorApplicationEntityTitle"] = sending.originator_ae
        command["MoveOriginatorMessageID"] = sending.originator_message_id or 0
    return _Ready(item, context_id, command, data)


def with_calling_ae(peer: Peer, calling_ae: str) -> Peer:
    return replace(peer, calling_ae=calling_ae)
