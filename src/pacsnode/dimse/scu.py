"""The SCU side used by the CLI: C-ECHO and C-STORE toward any node.

Files are sent as their own bytes whenever the peer accepts their transfer syntax
(pynetdicom's chunked send: nothing is decoded, nothing changes). Otherwise they are
converted by :mod:`pacsnode.archive.transcoding` to an uncompressed syntax, which
every Storage SCP must accept, and the converted file is sent the same way.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, _config
from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext, build_context

from pacsnode.archive.storage import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from pacsnode.archive.transcoding import convert
from pacsnode.archive.uids import (
    UNCOMPRESSED_TRANSFER_SYNTAXES,
    VERIFICATION_SOP_CLASS,
    syntax_of_encoding,
)
from pacsnode.dimse import reactor, tls

MAX_CONTEXTS = 128  # PS3.8: presentation context IDs are odd numbers 1..255


class AssociationFailed(Exception):
    """The peer rejected or never answered the association request."""


@dataclass(frozen=True)
class Peer:
    host: str
    port: int
    ae_title: str = "ANY-SCP"
    calling_ae: str = "PACSNODE"


@dataclass(frozen=True)
class OutgoingFile:
    path: Path
    sop_class: str
    sop_instance: str
    transfer_syntax: str
    has_meta: bool
    """Only a file with complete File Meta can be streamed byte for byte."""


@dataclass(frozen=True)
class StoreOutcome:
    path: Path
    status: int | None
    """``None`` when no response came (association lost) or the file was unreadable."""
    comment: str = ""


def new_ae(calling_ae: str) -> AE:
    """An AE for one outbound association, as pacsnode presents itself."""
    reactor.install()
    ae = AE(ae_title=calling_ae)
    ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
    ae.implementation_version_name = IMPLEMENTATION_VERSION_NAME
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    return ae


def open_association(
    ae: AE, peer: Peer, contexts: list[PresentationContext], **options: Any
) -> Association:
    """Every outbound association starts here, so that a TLS remote AE always gets TLS."""
    tls_args = tls.outbound_args(peer.ae_title, peer.host, peer.port)
    return ae.associate(
        peer.host,
        peer.port,
        contexts=contexts,
        ae_title=peer.ae_title,
        tls_args=tls_args,
        **options,
    )


def associate(peer: Peer, contexts: list[PresentationContext]) -> Association:
    assoc = open_association(new_ae(peer.calling_ae), peer, contexts)
    if not assoc.is_established:
        reason = "rejected" if assoc.is_rejected else "aborted or unreachable"
        raise AssociationFailed(
            f"association with {peer.ae_title}@{peer.host}:{peer.port} {reason}"
        )
    return assoc


def echo(peer: Peer) -> int:
    """Send a C-ECHO; returns the status (``0x0000`` on success)."""
    context = build_context(VERIFICATION_SOP_CLASS, list(UNCOMPRESSED_TRANSFER_SYNTAXES))
    assoc = associate(peer, [context])
    try:
        status = assoc.send_c_echo()
    finally:
        assoc.release()
    if not status:
        raise AssociationFailed("no C-ECHO response")
    return int(status.Status)


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
    has_meta = all(
        meta.get(keyword)
        for keyword in (
            "MediaStorageSOPClassUID",
            "MediaStorageSOPInstanceUID",
            "TransferSyntaxUID",
        )
    )
    return OutgoingFile(path, str(sop_class), str(sop_instance), str(syntax), has_meta)


def store_contexts(wanted: dict[str, set[str]]) -> list[PresentationContext]:
    """Per SOP class: a context for each syntax wanted, alone, then one offering the
    uncompressed syntaxes we can convert to (digest-000_004 B7 item 34).

    Alone, because an acceptor picks one syntax per context by its own preference:
    offered together with Explicit VR Little Endian, an object stored in Implicit VR
    (or JPEG) would be converted whenever the peer prefers another syntax, although
    it accepts the stored one.
    """
    contexts = []
    for sop_class, syntaxes in wanted.items():
        for syntax in sorted(syntaxes):
            contexts.append(build_context(sop_class, [syntax]))
        contexts.append(build_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]))
    return contexts


def accepted_syntaxes(assoc: Association, sop_class: str) -> set[str]:
    """The transfer syntaxes the peer accepted for ``sop_class`` on this association."""
    return {
        str(cx.transfer_syntax[0])
        for cx in assoc.accepted_contexts
        if cx.abstract_syntax == sop_class
    }


def _contexts(files: list[OutgoingFile]) -> list[PresentationContext]:
    wanted: dict[str, set[str]] = {}
    for item in files:
        wanted.setdefault(item.sop_class, set()).add(item.transfer_syntax)
    return store_contexts(wanted)


def _batches(files: list[OutgoingFile]) -> Iterator[list[OutgoingFile]]:
    """Split so that no association needs more than 128 presentation contexts."""
    batch: list[OutgoingFile] = []
    for item in files:
        if len(_contexts([*batch, item])) > MAX_CONTEXTS:
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


@contextmanager
def converted_file(
    item: OutgoingFile, target: str, lossy_ratio: int | None = None
) -> Iterator[Path]:
    """The file converted to ``target``, in a temporary file for pynetdicom to send."""
    meta, body = convert(item.path, item.transfer_syntax, target, lossy_ratio)
    with tempfile.NamedTemporaryFile(prefix="pacsnode-", suffix=".dcm") as out:
        out.write(meta)
        out.writelines(body)
        out.flush()
        yield Path(out.name)


@contextmanager
def _payload(assoc: Association, item: OutgoingFile) -> Iterator[Path]:
    """The file as the peer accepts it: its own bytes, or decoded to an uncompressed
    syntax it accepted. Never recompressed, so never made lossy."""
    accepted = accepted_syntaxes(assoc, item.sop_class)
    if item.has_meta and item.transfer_syntax in accepted:
        yield item.path  # sent byte for byte
        return
    targets = [item.transfer_syntax] if item.transfer_syntax in accepted else []
    targets += [ts for ts in (ExplicitVRLittleEndian, ImplicitVRLittleEndian) if ts in accepted]
    if not targets:
        raise ValueError(f"the peer accepts neither {item.transfer_syntax} nor uncompressed")
    with converted_file(item, targets[0]) as path:
        yield path


def store(
    peer: Peer, files: Iterable[OutgoingFile], progress: Callable[[StoreOutcome], None]
) -> None:
    """Send files over as few associations as the 128-context limit allows."""
    _config.STORE_SEND_CHUNKED_DATASET = True
    for batch in _batches(list(files)):
        assoc = associate(peer, _contexts(batch))
        try:
            for item in batch:
                progress(send_one(assoc, item))
        finally:
            if assoc.is_established:
                assoc.release()


def send_one(
    assoc: Association,
    item: OutgoingFile,
    originator_ae: str | None = None,
    originator_message_id: int | None = None,
) -> StoreOutcome:
    """C-STORE one file: its own bytes if the peer takes its syntax, else decoded.

    The originator names the C-MOVE this is a sub-operation of, if any.
    """
    if not accepted_syntaxes(assoc, item.sop_class):
        return StoreOutcome(item.path, None, "SOP class not accepted by the peer")
    try:
        with _payload(assoc, item) as payload:
            try:
                response = assoc.send_c_store(
                    payload, originator_aet=originator_ae, originator_id=originator_message_id
                )
            except (AttributeError, ValueError, OSError) as exc:  # connection lost
                return StoreOutcome(item.path, None, f"not sent: {exc}")
    except Exception as exc:  # a codec that is missing or fails
        return StoreOutcome(item.path, None, f"cannot convert for the peer: {exc}")
    if not response or "Status" not in response:
        return StoreOutcome(item.path, None, "no response")
    return StoreOutcome(item.path, int(response.Status), str(response.get("ErrorComment", "")))
