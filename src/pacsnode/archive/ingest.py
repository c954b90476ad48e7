"""Ingest: the one path by which an object enters the archive.

C-STORE, ``pacsnode import`` and (later) STOW-RS all hand a file to :func:`ingest`.
The data set bytes are kept exactly as received (private elements, odd UIDs and all);
they are parsed only to index them and to refuse what cannot be understood. The
answer is a DICOM status, because every door reports it to someone: a C-STORE
response, an import summary, a STOW-RS failure reason.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
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
from sqlalchemy.exc import DBAPIError

from pacsnode.archive.attributes import Level, column_values, sequence_values, text_value
from pacsnode.archive.encoding import Encoding, meta_syntax, split_meta
from pacsnode.archive.index import Index, LevelRows
from pacsnode.archive.rejection import (
    REJECTION_CODES,
    RejectionError,
    Rejections,
    referenced,
    rejection_code,
)
from pacsnode.archive.schema import LEVEL_TABLES
from pacsnode.archive.storage import Storage, file_meta
from pacsnode.archive.uids import syntax_of_encoding
from pacsnode.config import DuplicatePolicy

log = logging.getLogger(__name__)

SUCCESS = 0x0000
PROCESSING_FAILURE = 0x0110
DUPLICATE_REFUSED = 0x0111
OUT_OF_RESOURCES = 0xA700
DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000
REJECTED_WARNING = 0xB006  # "element discarded": what synedra answers for a rejected copy

_DEFER_SIZE = 64 * 1024
_HEAD = 64 * 1024
"""Bytes read to find the File Meta, which is never longer in a file we keep."""
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
        return self.status == SUCCESS


@dataclass(frozen=True)
class Prepared:
    """A received file already in our storage format: our File Meta, then the data set."""

    sop_class_uid: str
    sop_instance_uid: str
    size: int
    checksum: str

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
    size = received.path.stat().st_size
    try:
        with received.path.open("rb") as fp:
            head = memoryview(fp.read(_HEAD))
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
    # A file data set reads its deferred values (a long text) from the file when asked.
    dataset = FileDataset(
        str(received.path), body, None, FileMetaDataset(), encoding.implicit, encoding.little
    )
    return _checked(received, dataset, offset, str(syntax).rstrip("\0").strip(), end, size)


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
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
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
    return _checked(received, dataset, offset, syntax, end, size)


def _checked(
    received: Received, dataset: Dataset, offset: int, syntax: str, end: int, size: int
) -> _Parsed:
    if not _UID_TEXT.fullmatch(syntax):
        raise IngestError(CANNOT_UNDERSTAND, "transfer syntax is not a valid UID")
    if syntax != DeflatedExplicitVRLittleEndian:
        _check_encoding(received.path, offset, syntax)
        _check_complete(dataset, end, size)
    if len(dataset) == 0:
        raise IngestError(CANNOT_UNDERSTAND, "data set is empty or truncated")
    return _Parsed(dataset, offset, syntax)


def _check_encoding(path: Path, offset: int, syntax: str) -> None:
    """Refuse an implicit VR data set sent under an explicit VR transfer syntax.

    pydicom reads such a data set by guessing, but DCMTK and most viewers cannot read
    it back, so keeping it would hand every later reader a broken object.
    """
    uid = UID(syntax)
    if not uid.is_transfer_syntax or uid.is_implicit_VR:
        return  # a private syntax, or implicit VR: nothing to check on the first element
    with path.open("rb") as fp:
        fp.seek(offset)
        first = fp.read(6)
    if len(first) == 6 and first[4:6].decode("latin-1") not in _VRS:
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
            value = dataset.get(keyword)
        except Exception as exc:  # a malformed element raises on first access
            raise IngestError(CANNOT_UNDERSTAND, f"{keyword} unreadable") from exc
        if not value:
            raise IngestError(CANNOT_UNDERSTAND, f"{keyword} is missing")
        uid = str(value).rstrip("\0").strip()  # as the index will hold it
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
    expected_instance = received.expected_sop_instance
    if expected_instance and uids["SOPInstanceUID"] != expected_instance:
        # Files whose meta and data set disagree are common (old anonymisers); the
        # data set is what gets indexed and returned, so it is what counts.
        log.warning(
            "request names SOP Instance %s, data set holds %s; keeping the latter",
            expected_instance,
            uids["SOPInstanceUID"],
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


def _level_rows(dataset: Dataset) -> LevelRows:
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
        except DBAPIError as exc:  # before anything was placed in storage
            log.error("index unavailable while receiving %s: %s", received.path.name, exc)
            return IngestResult(OUT_OF_RESOURCES, Outcome.FAILED, "index unavailable")
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
        self._check_not_rejected(uids["SOPInstanceUID"])
        note = _rejection_note(parsed.dataset, uids["SOPClassUID"])
        rows = _level_rows(parsed.dataset)
        placement = self._place_file(received, parsed, uids)
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
                before_commit=placement.wait,
            )
        except BaseException as exc:
            self._discard(placement)
            if isinstance(exc, DBAPIError):
                log.error("index unavailable while storing %s: %s", uids["SOPInstanceUID"], exc)
                raise IngestError(OUT_OF_RESOURCES, "index unavailable") from exc
            if isinstance(exc, OSError):
                raise resource_error(exc) from exc
            raise
        if added.outcome in ("kept", "refused"):
            self._discard(placement)
        if added.obsolete_file:
            self.storage.delete(added.obsolete_file)
        if added.outcome == "refused":
            raise IngestError(DUPLICATE_REFUSED, "Duplicate SOP Instance", Outcome.REFUSED)
        if note is not None:
            self.rejections.apply(uids["SOPInstanceUID"], *note)
        outcome = {
            "added": Outcome.STORED,
            "replaced": Outcome.REPLACED,
            "kept": Outcome.DUPLICATE,
        }[added.outcome]
        return IngestResult(SUCCESS, outcome, "", uids["SOPInstanceUID"])

    def _check_not_rejected(self, sop_instance_uid: str) -> None:
        """A copy of an instance rejected as wrong is not stored again."""
        code = self.rejections.refused_code(sop_instance_uid)
        if code is not None:
            comment = f"rejected by IOCM note: {code} {REJECTION_CODES[code]}"
            log.info("%s not stored: %s", sop_instance_uid, comment)
            raise IngestError(self.rejected_status, comment[:64], Outcome.REFUSED)

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
            adopting = self.storage.adopt_in_background(received.path, relative)
            return Placement(relative, prepared.size, prepared.checksum, adopting.result)
        header = file_meta(
            uids["SOPClassUID"], uids["SOPInstanceUID"], parsed.transfer_syntax, received.source_ae
        )
        try:
            with received.path.open("rb") as source:
                source.seek(parsed.offset)
                stored = self.storage.write(relative, header, source)
        except OSError as exc:
            raise resource_error(exc) from exc
        return Placement(relative, stored.size, stored.checksum, lambda: None)

    def _discard(self, placement: Placement) -> None:
        """Remove a placed file, after its placing has finished (or failed)."""
        with contextlib.suppress(OSError):
            placement.wait()
        self.storage.delete(placement.relative_path)


def resource_error(exc: OSError) -> IngestError:
    reason = "disk full" if exc.errno == errno.ENOSPC else os.strerror(exc.errno or 0)
    log.error("cannot write to storage: %s", exc)
    return IngestError(OUT_OF_RESOURCES, f"out of resources: {reason}"[:64])
