"""Ingest: the one path by which an object enters the archive.

C-STORE, STOW-RS and ``pacsnode import`` all hand a file to :func:`ingest`.
The data set bytes are kept exactly as received (private elements, odd UIDs and all);
they are parsed only to index them and to refuse what cannot be understood. Only
coercion configured for the sender changes them (archive/coercion.py): then the
coerced data set is stored, the values it replaced in its Original Attributes
Sequence, so that every reader of the file (WADO, media, metadata) sees one object;
the answer is then ``B000`` (Coercion of Data Elements, PS3.4 B.2.3). The issuers the
heuristic resolves (archive/authorities.py) go to the index only, as digest-002 §8.3
asks; the file keeps the sender's. The answer is a DICOM status, because every door
reports it to someone: a C-STORE response, an import summary, a STOW-RS failure
reason. The failure statuses are CDRServer's (the archive CDRClient was written for),
which PS3.4 allows:

* ``A900``: a UID that identifies the object is missing, or the data set is not the
  SOP class or instance the request names;
* ``C000``: a data set that cannot be read, or an index that refused the update;
* ``A700``: out of disk (or quota), or an index out of reach;
* ``A701``: any other error writing the file (a read-only or failing disk).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import secrets
import struct
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO, cast

from pydicom import Dataset, dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.filereader import _read_file_meta_info, read_dataset, read_preamble
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian
from pydicom.valuerep import VR
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from pacsnode import audit
from pacsnode.archive.attributes import (
    BY_KEYWORD,
    Level,
    attribute_value,
    column_values,
    sequence_values,
    text_value,
)
from pacsnode.archive.authorities import resolve_received
from pacsnode.archive.coercion import CharacterSetError, ReceiveCoercion, rewrite
from pacsnode.archive.database import unavailable
from pacsnode.archive.encoding import Encoding, EncodingError, meta_syntax, split_meta
from pacsnode.archive.index import Index, LevelRows, PatientChange
from pacsnode.archive.modification import Modification
from pacsnode.archive.rejection import (
    REFUSED_WHEN_SENT_AGAIN,
    REJECTION_CODES,
    RejectionError,
    Rejections,
    referenced,
    rejection_code,
)
from pacsnode.archive.schema import LEVEL_TABLES
from pacsnode.archive.storage import Storage, file_meta
from pacsnode.archive.uids import syntax_of_encoding
from pacsnode.config import Authority, DuplicatePolicy

log = logging.getLogger(__name__)

SUCCESS = 0x0000
PROCESSING_FAILURE = 0x0110
DUPLICATE_REFUSED = 0x0111
OUT_OF_RESOURCES = 0xA700
CANNOT_WRITE_FILE = 0xA701  # CDRServer's FILESAVE_ERROR, in PS3.4's A7xx "out of resources"
DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000
REJECTED_WARNING = 0xB006  # "element discarded": what synedra answers for a rejected copy
COERCED = 0xB000  # "coercion of data elements": stored, with values the configuration set

_DEFER_SIZE = 64 * 1024
_HEAD = 64 * 1024
"""Bytes read to find the File Meta, which is never longer in a file we keep."""
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
_INDEX_ERRORS = (DBAPIError, PoolTimeout)
_REQUIRED_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
_UID_TEXT = re.compile(r"[!-\[\]-~]{1,64}")
"""Printable ASCII without backslash: looser than PS3.5's digits and dots, for old data,
but all that DIMSE messages and File Meta can carry."""


_VRS = frozenset(vr.value for vr in VR)


class Outcome(StrEnum):
    STORED = "stored"
    REPLACED = "replaced"
    DUPLICATE = "duplicate"  # kept the copy we had
    REFUSED = "refused"
    FAILED = "failed"


@dataclass(frozen=True)
class IngestResult:
    status: int
    outcome: Outcome
    comment: str = ""
    sop_instance_uid: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the object is in the archive: stored as sent, or coerced."""
        return self.status in (SUCCESS, COERCED)


@dataclass(frozen=True)
class Prepared:
    """A received file already in our storage format: our File Meta, then the data set."""

    sop_class_uid: str
    sop_instance_uid: str
    size: int
    checksum: str
    synced: Future[None] | None = None
    """The fsync begun as its last byte came in, which placing it waits for instead of
    syncing again: a second fsync of a clean file still costs the disk a cache flush."""

    def matches(self, uids: dict[str, str]) -> bool:
        """Whether its File Meta agrees with the data set (senders sometimes differ)."""
        return (
            self.sop_class_uid == uids["SOPClassUID"]
            and self.sop_instance_uid == uids["SOPInstanceUID"]
        )


@dataclass(frozen=True)
class Placement:
    """A file on its way into storage."""

    relative_path: str
    size: int
    checksum: str
    wait: Callable[[], object]
    """Returns once the file is durable in place; raises OSError if it could not be."""


@dataclass(frozen=True)
class Received:
    """A data set waiting in a file, with what the sender said about it."""

    path: Path
    source_ae: str | None = None
    transfer_syntax: str | None = None
    """From the presentation context; read from the file when ``None``."""
    expected_sop_class: str | None = None
    expected_sop_instance: str | None = None
    duplicate_policy: DuplicatePolicy = "keep"
    prepared: Prepared | None = None
    coercion: ReceiveCoercion | None = None
    """What the configuration changes in what this sender sends, if anything."""
    authority: Authority | None = None
    """The issuers the index records for it (the issuer heuristic), if on."""


class IngestError(Exception):
    def __init__(self, status: int, comment: str, outcome: Outcome = Outcome.FAILED) -> None:
        super().__init__(comment)
        self.status = status
        self.comment = comment
        self.outcome = outcome


@dataclass(frozen=True)
class _Parsed:
    dataset: Dataset
    offset: int
    transfer_syntax: str


def _parse(received: Received) -> _Parsed:
    """Find where the data set starts, its transfer syntax, and its attributes.

    The whole data set is walked so that a truncated one is refused, but values over
    64 KiB (pixel data above all) are skipped, not read: memory stays flat for a 1 GB
    multi-frame object. The File Meta is read by hand: pydicom's reader validates it
    element by element, a millisecond per object.
    """
    with received.path.open("rb") as fp:  # an OSError here is the caller's to answer
        size = os.fstat(fp.fileno()).st_size
        try:
            head = memoryview(fp.read(_HEAD))
            if not _dicom_head(head):
                raise IngestError(CANNOT_UNDERSTAND, "not a DICOM file")
            meta, offset = split_meta(head)
            syntax = received.transfer_syntax or meta_syntax(meta)
            if not syntax or syntax == DeflatedExplicitVRLittleEndian or offset >= len(head):
                return _parse_with_pydicom(received, size)
            encoding = Encoding.of(syntax)
            fp.seek(offset)
            body = read_dataset(
                cast(BinaryIO, fp), encoding.implicit, encoding.little, defer_size=_DEFER_SIZE
            )
            end = fp.tell()
        except _PARSE_ERRORS as exc:
            raise _unparsable(exc) from exc
    syntax = str(syntax).rstrip("\0").strip()
    _check_encoding(head[offset : offset + 6], syntax)
    # A file data set reads its deferred values (a long text) from the file when asked.
    dataset = FileDataset(
        str(received.path), body, None, FileMetaDataset(), encoding.implicit, encoding.little
    )
    return _checked(received, dataset, offset, syntax, end, size)


_PARSE_ERRORS = (
    InvalidDicomError,
    BytesLengthException,
    NotImplementedError,  # an unknown VR
    struct.error,
    EOFError,
    ValueError,
    KeyError,
    TypeError,
    OSError,
)


def _unparsable(exc: Exception) -> Exception:
    if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
        return exc
    return IngestError(CANNOT_UNDERSTAND, f"data set does not parse: {exc}"[:64])


def _parse_with_pydicom(received: Received, size: int) -> _Parsed:
    """Without File Meta naming the syntax (pydicom tells it from the bytes), or deflated."""
    try:
        with received.path.open("rb") as fp:
            read_preamble(fp, True)
            meta = _read_file_meta_info(fp)
            offset = fp.tell()
            fp.seek(0)
            dataset = dcmread(fp, force=True, defer_size=_DEFER_SIZE)
            end = fp.tell()
    except _PARSE_ERRORS as exc:
        raise _unparsable(exc) from exc
    syntax = received.transfer_syntax or meta.get("TransferSyntaxUID")
    syntax = str(syntax).rstrip("\0").strip() if syntax else syntax_of_encoding(dataset)
    if _UID_TEXT.fullmatch(syntax) and syntax != DeflatedExplicitVRLittleEndian:
        with received.path.open("rb") as fp:
            fp.seek(offset)
            _check_encoding(fp.read(6), syntax)
    return _checked(received, dataset, offset, syntax, end, size)


def _checked(
    received: Received, dataset: Dataset, offset: int, syntax: str, end: int, size: int
) -> _Parsed:
    if not _UID_TEXT.fullmatch(syntax):
        raise IngestError(CANNOT_UNDERSTAND, "transfer syntax is not a valid UID")
    if syntax != DeflatedExplicitVRLittleEndian:
        _check_complete(dataset, end, size)
    if len(dataset) == 0:
        raise IngestError(CANNOT_UNDERSTAND, "data set is empty or truncated")
    return _Parsed(dataset, offset, syntax)


def looks_like_dicom(path: Path) -> bool:
    """Whether a file can be DICOM: a Part 10 file (``DICM`` after the preamble), or a
    bare data set starting in group 0002 or 0008, as old media hold them. A README, a
    viewer's executable or an image of another format cannot. A file that cannot be
    read counts as DICOM here: ingest then says why it cannot be read.
    """
    try:
        with path.open("rb") as fp:
            head = fp.read(132)
    except OSError:
        return True
    return _dicom_head(head)


def _dicom_head(head: bytes | memoryview) -> bool:
    if head[128:132] == b"DICM":
        return True
    return len(head) >= 8 and struct.unpack("<H", head[:2])[0] in (0x0002, 0x0008)


def _check_encoding(first: bytes | memoryview, syntax: str) -> None:
    """Refuse an implicit VR data set sent under an explicit VR transfer syntax, from
    the first six bytes of the data set.

    pydicom reads such a data set by guessing, but DCMTK and most viewers cannot read
    it back, so keeping it would hand every later reader a broken object.
    """
    uid = UID(syntax)
    if not uid.is_transfer_syntax or uid.is_implicit_VR:
        return  # a private syntax, or implicit VR: nothing to check on the first element
    if len(first) == 6 and bytes(first[4:6]).decode("latin-1") not in _VRS:
        raise IngestError(CANNOT_UNDERSTAND, "data set is not in explicit VR as negotiated")


def _check_complete(dataset: Dataset, end: int, size: int) -> None:
    if end > size:
        raise IngestError(CANNOT_UNDERSTAND, "data set is truncated")
    for raw in dataset._dict.values():
        if (
            isinstance(raw, RawDataElement)
            and raw.value is not None
            and raw.length != 0xFFFFFFFF
            and len(raw.value) < raw.length
        ):
            raise IngestError(CANNOT_UNDERSTAND, f"element {raw.tag} is truncated")


def _required_uids(dataset: Dataset) -> dict[str, str]:
    uids: dict[str, str] = {}
    for keyword in _REQUIRED_UIDS:
        try:
            attr = BY_KEYWORD[keyword]
            value = attribute_value(dataset, attr) if attr.tag in dataset else None
        except Exception as exc:  # a malformed element raises on first access
            raise IngestError(CANNOT_UNDERSTAND, f"{keyword} unreadable") from exc
        uid = str(value or "").rstrip("\0").strip()  # as the index will hold it
        if not uid:
            raise IngestError(DATASET_DOES_NOT_MATCH_SOP_CLASS, f"{keyword} is missing")
        if not _UID_TEXT.fullmatch(uid):
            raise IngestError(CANNOT_UNDERSTAND, f"{keyword} is not a valid UID")
        uids[keyword] = uid
    return uids


def _check_against_request(received: Received, uids: dict[str, str]) -> None:
    expected_class = received.expected_sop_class
    if expected_class and uids["SOPClassUID"] != expected_class:
        raise IngestError(
            DATASET_DOES_NOT_MATCH_SOP_CLASS,
            f"SOP Class {uids['SOPClassUID']} is not {expected_class}"[:64],
        )
    expected_instance = str(received.expected_sop_instance or "").rstrip("\0").strip()
    if expected_instance and uids["SOPInstanceUID"] != expected_instance:
        log.warning(
            "request names SOP Instance %s, data set holds %s",
            expected_instance,
            uids["SOPInstanceUID"],
        )
        raise IngestError(
            DATASET_DOES_NOT_MATCH_SOP_CLASS, "SOP Instance UID differs from the request's"
        )


def _rejection_note(
    dataset: Dataset, sop_class_uid: str
) -> tuple[str, list[tuple[str, str]]] | None:
    """The code and references of a rejection note; C000 if it references nothing."""
    code = rejection_code(dataset, sop_class_uid)
    if code is None:
        return None
    try:
        return code, referenced(dataset)
    except RejectionError as exc:
        raise IngestError(CANNOT_UNDERSTAND, f"invalid rejection note: {exc}"[:64]) from exc


def _level_rows(dataset: Dataset, authority: Authority | None) -> LevelRows:
    edited = resolve_received(dataset, authority) if authority is not None else (False, False)
    try:
        values = {level: column_values(dataset, level) for level in Level}
        rows = LevelRows(
            values[Level.PATIENT],
            values[Level.STUDY],
            values[Level.SERIES],
            values[Level.IMAGE],
            sequences={
                LEVEL_TABLES[level].name: sequence_values(dataset, level) for level in Level
            },
        )
    except Exception as exc:  # a value that does not decode in its VR
        raise IngestError(CANNOT_UNDERSTAND, f"attribute unreadable: {exc}"[:64]) from exc
    rows.patient["patient_id"] = rows.patient["patient_id"] or ""
    rows.patient["issuer_of_patient_id"] = rows.patient["issuer_of_patient_id"] or ""
    for row, differs in zip((rows.patient, rows.study), edited, strict=True):
        if differs:  # the index holds what the file does not: see archive/outgoing.py
            row["edited"] = True
    return rows


class Ingest:
    def __init__(
        self, storage: Storage, index: Index, rejected_status: int = REJECTED_WARNING
    ) -> None:
        self.storage = storage
        self.index = index
        self.rejections = Rejections(index, storage)
        self.rejected_status = rejected_status
        """How a copy of a rejected instance is answered: B006, or a failure."""

    def __call__(self, received: Received) -> IngestResult:
        try:
            return self._ingest(received)
        except IngestError as exc:
            return IngestResult(exc.status, exc.outcome, exc.comment)
        except _INDEX_ERRORS as exc:  # before anything was placed in storage
            error = _index_error(exc, received.path.name)
            return IngestResult(error.status, error.outcome, error.comment)
        except Exception as exc:  # a bug must cost one object, never the association
            log.exception("ingest of %s failed", received.path)
            return IngestResult(
                PROCESSING_FAILURE, Outcome.FAILED, f"processing failure: {exc}"[:64]
            )

    def _ingest(self, received: Received) -> IngestResult:
        try:
            parsed = _parse(received)
        except OSError as exc:
            raise resource_error(exc) from exc
        uids = _required_uids(parsed.dataset)
        _check_against_request(received, uids)
        coerced = self._coerce(received, parsed, uids)
        if coerced is not None:
            try:
                return self._store(coerced.received, _parse(coerced.received), uids, coerced)
            finally:
                coerced.received.path.unlink(missing_ok=True)
        return self._store(received, parsed, uids, None)

    def _store(
        self, received: Received, parsed: _Parsed, uids: dict[str, str], coerced: _Coerced | None
    ) -> IngestResult:
        # The file is synced into place while its rows are read, and durable before
        # the index transaction starts: no lock is held while the disk works.
        placement = self._place_file(received, parsed, uids)
        try:
            note = _rejection_note(parsed.dataset, uids["SOPClassUID"])
            rows = _level_rows(parsed.dataset, received.authority)
            placement.wait()
        except BaseException as exc:
            self._discard(placement)
            if isinstance(exc, OSError):
                raise resource_error(exc) from exc
            raise
        rows.instance.update(
            transfer_syntax_uid=parsed.transfer_syntax,
            file_path=placement.relative_path,
            file_size=placement.size,
            checksum=placement.checksum,
            source_ae=(received.source_ae or "").strip() or None,
        )
        charset = parsed.dataset.get("SpecificCharacterSet")
        try:
            added = self.index.add(
                rows,
                text_value(charset) if charset else None,
                received.duplicate_policy,
                REFUSED_WHEN_SENT_AGAIN,
            )
        except BaseException as exc:
            self._discard(placement)
            if isinstance(exc, _INDEX_ERRORS):
                raise _index_error(exc, uids["SOPInstanceUID"]) from exc
            raise
        if added.outcome not in ("added", "replaced"):
            self._discard(placement)
        if added.obsolete_file:
            self.storage.delete(added.obsolete_file)
        if added.outcome == "refused":
            raise IngestError(DUPLICATE_REFUSED, "Duplicate SOP Instance", Outcome.REFUSED)
        if added.outcome == "rejected":
            code = str(added.rejection)
            comment = f"rejected by IOCM note: {code} {REJECTION_CODES[code]}"
            log.info("%s not stored: %s", uids["SOPInstanceUID"], comment)
            raise IngestError(self.rejected_status, comment[:64], Outcome.REFUSED)
        if note is not None:
            self.rejections.apply(uids["SOPInstanceUID"], *note)
        if added.patient is not None:
            _audit_patient(added.patient, received.source_ae)
        outcome = {
            "added": Outcome.STORED,
            "replaced": Outcome.REPLACED,
            "kept": Outcome.DUPLICATE,
        }[added.outcome]
        if coerced is None or added.outcome == "kept":
            return IngestResult(SUCCESS, outcome, "", uids["SOPInstanceUID"])
        changed = coerced.modification.described()
        _audit_coerced(received.source_ae, uids["SOPInstanceUID"], changed)
        comment = f"coerced: {', '.join(changed)}"[:64]
        return IngestResult(COERCED, outcome, comment, uids["SOPInstanceUID"])

    def _coerce(self, received: Received, parsed: _Parsed, uids: dict[str, str]) -> _Coerced | None:
        """The data set as the sender's coercion leaves it, in a file of its own; None
        when nothing changes. C000 for a character set refused."""
        if received.coercion is None:
            return None
        try:
            changes = received.coercion.changes(parsed.dataset)
        except CharacterSetError as exc:
            log.warning("%s refused: %s", uids["SOPInstanceUID"], exc)
            raise IngestError(CANNOT_UNDERSTAND, str(exc)[:64]) from exc
        source = (received.source_ae or "").strip()
        modification = Modification(parsed.dataset, changes, received.coercion.system, source)
        if not modification:
            return None
        path = self.storage.tmp / f"coerced-{secrets.token_hex(8)}.dcm"
        uid, sop_class = uids["SOPInstanceUID"], uids["SOPClassUID"]
        try:
            syntax = rewrite(
                received.path,
                parsed.offset,
                parsed.transfer_syntax,
                modification,
                path,
                lambda syntax: file_meta(sop_class, uid, syntax, source),
            )
        except EncodingError as exc:
            path.unlink(missing_ok=True)
            raise IngestError(CANNOT_UNDERSTAND, f"cannot coerce: {exc}"[:64]) from exc
        except OSError as exc:
            path.unlink(missing_ok=True)
            raise resource_error(exc) from exc
        log.info("%s coerced: %s", uids["SOPInstanceUID"], modification.described())
        coerced = replace(received, path=path, transfer_syntax=syntax, prepared=None)
        return _Coerced(coerced, modification)

    def _place_file(self, received: Received, parsed: _Parsed, uids: dict[str, str]) -> Placement:
        """Start putting the file in storage; the index commits only once it is there.

        A receiver-prepared file is fsynced and renamed in the background while the
        index rows are written; anything else is copied with our header first. A
        duplicate is written too and dropped once the index has decided: checking
        first would cost every instance a query to save work on the rare duplicate.
        """
        relative = self.storage.new_relative_path(uids["StudyInstanceUID"], uids["SOPInstanceUID"])
        prepared = received.prepared
        if prepared is not None and prepared.matches(uids):
            adopting = self.storage.put_file(received.path, relative, prepared.synced)
            return Placement(relative, prepared.size, prepared.checksum, adopting.result)
        header = file_meta(
            uids["SOPClassUID"], uids["SOPInstanceUID"], parsed.transfer_syntax, received.source_ae
        )
        try:
            with received.path.open("rb") as source:
                source.seek(parsed.offset)
                stored = self.storage.put(relative, header, source)
        except OSError as exc:
            raise resource_error(exc) from exc
        return Placement(relative, stored.size, stored.checksum, lambda: None)

    def _discard(self, placement: Placement) -> None:
        """Remove a placed file, after its placing has finished (or failed)."""
        with contextlib.suppress(OSError):
            placement.wait()
        self.storage.delete(placement.relative_path)


@dataclass(frozen=True)
class _Coerced:
    """A received object as its sender's coercion changed it, in a file of its own."""

    received: Received
    modification: Modification


def _audit_coerced(source_ae: str | None, sop_instance_uid: str, changed: dict[str, str]) -> None:
    sender = (source_ae or "").strip()
    who = audit.Actor(sender, requestor=True, dicom=True) if sender else None
    audit.instances_updated(who, changed, instances=[sop_instance_uid])


def _audit_patient(change: PatientChange, source_ae: str | None) -> None:
    """Patient Record: created by the first instance of a patient, updated by a
    replacing copy that brought other demographics."""
    sender = (source_ae or "").strip()
    who = audit.Actor(sender, requestor=True, dicom=True) if sender else None
    audit.patient_record(
        who, change.patient_id, change.patient_name, created=change.created, changed=change.changed
    )


def storage_failure(exc: OSError) -> IngestResult:
    """The answer for a received data set that could not be written to disk, wherever
    that happened (a door's spool file, the copy into storage, the move into place):
    ``A700`` when the disk or quota is full, ``A701`` for any other write error."""
    error = resource_error(exc)
    return IngestResult(error.status, error.outcome, error.comment)


def resource_error(exc: OSError) -> IngestError:
    log.error("cannot write to storage: %s", exc)
    if exc.errno in _DISK_FULL:
        return IngestError(OUT_OF_RESOURCES, "out of resources: disk full")
    reason = exc.strerror or type(exc).__name__
    return IngestError(CANNOT_WRITE_FILE, f"cannot write file: {reason}"[:64])


def _index_error(exc: SQLAlchemyError, what: str) -> IngestError:
    """``A700`` for an index out of reach or out of resources, ``C000`` for an index
    that refused the update; the log has the database's own words."""
    if unavailable(exc):
        log.error("index unavailable while storing %s: %s", what, exc)
        return IngestError(OUT_OF_RESOURCES, "index unavailable")
    log.error("index update failed for %s: %s", what, exc)
    cause = getattr(exc, "orig", None) or exc
    reason = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    return IngestError(CANNOT_UNDERSTAND, f"index update failed: {reason}"[:64])
