"""STOW-RS (PS3.18 §10.5): storing instances sent over HTTP.

The request body is streamed into files in the archive's receive directory, one per
multipart part, so that a multi-gigabyte upload never sits in memory. Nothing is
ingested before the body has arrived whole: a request refused as a whole (400, 413)
leaves nothing stored. Each instance then goes through the same ingest as a C-STORE,
and the DICOM status that ingest answers is what the response reports per instance.

Two bodies are understood:

* ``type="application/dicom"``: each part is a Part 10 file, ingested as it is, so its
  data set bytes are kept exactly as sent.
* ``type="application/dicom+json"``: the metadata parts hold an array of data sets
  whose bulk data (BulkDataURI) is in the other parts, named by ``Content-Location``,
  or inline (InlineBinary). Each data set becomes a Part 10 file first: Explicit VR
  Little Endian, or the syntax of its compressed pixel data (a media type such as
  ``image/jpeg`` or a ``transfer-syntax`` parameter, one part per frame). Top-level
  bulk data is copied from its part in chunks, never loaded whole.

An instance outside the study named in the URL is not stored and fails with 0xC409:
PS3.18 Table I.2-2 has no code of its own for it, C409 lies in its "Error: cannot
understand" range, and it is what dcm4chee-arc answers.
"""

from __future__ import annotations

import json
import logging
import shutil
import struct
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from pydicom import Dataset, dcmread
from pydicom.charset import default_encoding
from pydicom.filebase import DicomFileLike
from pydicom.filewriter import write_dataset
from pydicom.tag import BaseTag, Tag
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from python_multipart.multipart import MultipartParser
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pacsnode import audit
from pacsnode.archive.core import Archive
from pacsnode.archive.ingest import (
    CANNOT_UNDERSTAND,
    SUCCESS,
    Outcome,
    Received,
    storage_failure,
)
from pacsnode.archive.receiving import Origin
from pacsnode.archive.storage import file_meta
from pacsnode.web.audit_api import actor as audit_actor
from pacsnode.web.dicomweb.accept import MediaRange, accepted, parse_media_range
from pacsnode.web.dicomweb.common import DICOM_JSON, DicomWebError, base_url
from pacsnode.web.dicomweb.dicom_xml import native_model

log = logging.getLogger("pacsnode.stow")

DICOM = "application/dicom"
DICOM_XML = "application/dicom+xml"
DIFFERENT_STUDY = 0xC409

_FEED = 1 << 20
"""Body bytes handed to the parser at a time: one thread hop per MiB, not per chunk."""
_COPY = 1 << 20
_PIXEL_DATA = Tag(0x7FE0, 0x0010)
_STREAMED_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
"""Binary VRs with a 4-byte length: the ones whose bulk data can be large."""
_NUMBER_FORMATS = {"FL": "f", "FD": "d", "SL": "l", "SS": "h", "UL": "L", "US": "H"}
_NUMBER_FORMATS |= {"SV": "q", "UV": "Q"}
_NATIVE_SYNTAXES = frozenset({ExplicitVRLittleEndian, ImplicitVRLittleEndian})
_COMPRESSED_DEFAULTS = {
    # PS3.18 Table 8.7.3-5: the syntax a compressed bulk data media type implies.
    "image/jpeg": "1.2.840.10008.1.2.4.70",
    "image/dicom-rle": "1.2.840.10008.1.2.5",
    "image/jls": "1.2.840.10008.1.2.4.80",
    "image/jp2": "1.2.840.10008.1.2.4.90",
    "image/jpx": "1.2.840.10008.1.2.4.92",
    "video/mpeg": "1.2.840.10008.1.2.4.100",
    "video/mp4": "1.2.840.10008.1.2.4.102",
}
_UID_TAGS = {
    "sop_class": Tag(0x0008, 0x0016),
    "sop_instance": Tag(0x0008, 0x0018),
    "study": Tag(0x0020, 0x000D),
    "series": Tag(0x0020, 0x000E),
}


@dataclass(frozen=True)
class Part:
    """One body part, spooled to its own file."""

    media: MediaRange
    location: str | None
    path: Path


@dataclass(frozen=True)
class Uids:
    """What identifies an instance, as far as it could be read (failures report it)."""

    sop_class: str | None = None
    sop_instance: str | None = None
    study: str | None = None
    series: str | None = None


@dataclass(frozen=True)
class Result:
    uids: Uids
    status: int
    comment: str
    outcome: Outcome = Outcome.FAILED

    @property
    def warning(self) -> bool:
        return 0xB000 <= self.status <= 0xBFFF

    @property
    def referenced(self) -> bool:
        """Reported in Referenced SOP Sequence: stored, or answered with a warning."""
        return self.status == SUCCESS or self.warning

    @property
    def retrievable(self) -> bool:
        return self.outcome in (Outcome.STORED, Outcome.REPLACED, Outcome.DUPLICATE)


class UnusableInstance(Exception):
    """A data set in the request that cannot become a Part 10 file (C000)."""


class Spool:
    """The multipart parser's callbacks: each part's body goes into its own file."""

    def __init__(self, directory: Path, boundary: str, default_type: str) -> None:
        self.directory = directory
        self.default_type = default_type
        self.parts: list[Part] = []
        self.complete = False
        self._headers: dict[str, str] = {}
        self._name = bytearray()
        self._value = bytearray()
        self._file: BinaryIO | None = None
        try:
            self._parser = MultipartParser(
                boundary,
                {
                    "on_part_begin": self._headers.clear,
                    "on_header_field": self._on_name,
                    "on_header_value": self._on_value,
                    "on_header_end": self._on_header_end,
                    "on_headers_finished": self._on_headers_finished,
                    "on_part_data": self._on_data,
                    "on_part_end": self._on_part_end,
                    "on_end": self._on_end,
                },
            )
        except ValueError as exc:  # a boundary too long for the parser
            raise DicomWebError(400, f"unusable multipart boundary: {exc}") from exc

    def feed(self, data: bytes) -> None:
        try:
            self._parser.write(data)
        except ValueError as exc:  # MultipartParseError, or a part's unreadable Content-Type
            raise DicomWebError(400, f"request body is not valid multipart: {exc}") from exc
        except OSError as exc:  # the receive directory is full or gone
            log.error("cannot spool a STOW-RS request: %s", exc)
            raise DicomWebError(503, f"cannot receive the request: {exc.strerror}") from exc

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _on_name(self, data: bytes, start: int, end: int) -> None:
        self._name += data[start:end]

    def _on_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _on_header_end(self) -> None:
        name = self._name.decode("latin-1").strip().lower()
        self._headers[name] = self._value.decode("latin-1").strip()
        self._name.clear()
        self._value.clear()

    def _on_headers_finished(self) -> None:
        path = self.directory / f"part{len(self.parts):06d}"
        self._file = path.open("wb")

    def _on_data(self, data: bytes, start: int, end: int) -> None:
        assert self._file is not None
        self._file.write(data[start:end])

    def _on_part_end(self) -> None:
        assert self._file is not None
        path = Path(self._file.name)
        self.close()
        media = parse_media_range(self._headers.get("content-type") or self.default_type)
        self.parts.append(Part(media, self._headers.get("content-location"), path))

    def _on_end(self) -> None:
        self.complete = True


class Stow:
    """``POST /studies`` and ``POST /studies/{study}``."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        """Routes what is stored; STOW-RS has no calling AE, so it is empty to rules."""

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/studies", self.store, methods=["POST"]),
            Route("/studies/{study}", self.store, methods=["POST"]),
        ]

    async def store(self, request: Request) -> Response:
        """Store instances (STOW-RS): DICOM parts, or DICOM JSON with bulk data parts."""
        study: str | None = request.path_params.get("study")
        part_type, boundary = _body_type(request)
        limit = self.archive.settings.stow_max_bytes
        _check_length(request, limit)
        spool_dir = self.archive.storage.spool_dir()
        spool_dir.mkdir(exist_ok=True)
        directory = Path(tempfile.mkdtemp(prefix="stow-", dir=spool_dir))
        try:
            spool = Spool(directory, boundary, part_type)
            try:
                await _receive(request, spool, limit)
            finally:
                spool.close()
            if not spool.parts:
                raise DicomWebError(400, "request holds no parts")
            results = await run_in_threadpool(self._store_all, spool.parts, part_type, study)
        finally:
            await run_in_threadpool(shutil.rmtree, directory, True)
        _log(request, results)
        _audit(request, results)
        return _response(
            request, results, base_url(request, self.archive.settings.public_url), study
        )

    def _store_all(self, parts: list[Part], part_type: str, study: str | None) -> list[Result]:
        if part_type == DICOM:
            return [self._store_file(part.path, study) for part in parts]
        metadata = _metadata([part for part in parts if part.media.media_type == DICOM_JSON])
        bulk: dict[str, list[Part]] = {}
        for part in parts:
            if part.media.media_type != DICOM_JSON and part.location:
                bulk.setdefault(part.location, []).append(part)
        directory = parts[0].path.parent
        return [
            self._store_json(item, bulk, directory / f"instance{number:06d}", study)
            for number, item in enumerate(metadata)
        ]

    def _store_json(
        self, item: dict[str, Any], bulk: Mapping[str, list[Part]], path: Path, study: str | None
    ) -> Result:
        try:
            write_part10(item, bulk, path)
        except UnusableInstance as exc:
            return Result(_json_uids(item), CANNOT_UNDERSTAND, str(exc))
        except OSError as exc:
            failed = storage_failure(exc)
            return Result(_json_uids(item), failed.status, failed.comment)
        return self._store_file(path, study)

    def _store_file(self, path: Path, study: str | None) -> Result:
        uids = _peek(path)
        if study is not None and uids.study != study:
            comment = f"Study Instance UID {uids.study or 'unreadable'}, not {study}"
            return Result(uids, DIFFERENT_STUDY, comment)
        origin = Origin("STOW-RS", called_ae=self.archive.settings.ae_title)
        ingested = self.archive.receive(Received(path=path), origin)
        path.unlink(missing_ok=True)  # ingest copied it into storage
        if ingested.sop_instance_uid:
            uids = Uids(uids.sop_class, ingested.sop_instance_uid, uids.study, uids.series)
        return Result(uids, ingested.status, ingested.comment, ingested.outcome)


def _body_type(request: Request) -> tuple[str, str]:
    """The media type of the parts, and the boundary; 415 for what we do not store."""
    try:
        media = parse_media_range(request.headers.get("content-type", ""))
    except ValueError:  # no media type at all
        media = MediaRange("")
    if media.media_type != "multipart/related":
        raise DicomWebError(415, "STOW-RS takes multipart/related bodies")
    part_type = media.part_type or DICOM
    if part_type not in (DICOM, DICOM_JSON):
        raise DicomWebError(415, f"parts of type {part_type} are not supported")
    boundary = media.parameters.get("boundary")
    if not boundary:
        raise DicomWebError(400, "multipart/related without a boundary")
    return part_type, boundary


def _check_length(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared is None:
        return
    try:
        length = int(declared)
    except ValueError as exc:
        raise DicomWebError(400, "invalid Content-Length") from exc
    if length > limit:
        raise DicomWebError(413, f"request of {length} bytes exceeds the {limit} byte limit")


async def _receive(request: Request, spool: Spool, limit: int) -> None:
    """Stream the body through the parser into files, counting what arrives."""
    received = 0
    pending = bytearray()
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise DicomWebError(413, f"request exceeds the {limit} byte limit")
            pending += chunk
            if len(pending) >= _FEED:
                await run_in_threadpool(spool.feed, bytes(pending))
                pending.clear()
    except ClientDisconnect as exc:
        raise DicomWebError(400, "client disconnected before the body was complete") from exc
    if pending:
        await run_in_threadpool(spool.feed, bytes(pending))
    if not spool.complete:
        raise DicomWebError(400, "request body ends before the closing multipart boundary")


def _peek(path: Path) -> Uids:
    """The UIDs of a Part 10 file, for the study check and the response.

    Best effort: ingest is what judges the file, so anything unreadable here just
    leaves the UIDs unknown.
    """
    try:
        dataset = dcmread(
            path, force=True, stop_before_pixels=True, specific_tags=list(_UID_TAGS.values())
        )
        values = {name: dataset.get(tag) for name, tag in _UID_TAGS.items()}
        return Uids(
            **{name: _uid(element.value if element else None) for name, element in values.items()}
        )
    except Exception:  # garbage in a part: pydicom raises all sorts
        return Uids()


def _uid(value: object) -> str | None:
    text = value.strip("\0 ") if isinstance(value, str) else ""
    return text or None


def _metadata(parts: Iterable[Part]) -> list[dict[str, Any]]:
    """The data sets of the DICOM JSON metadata parts, in order; 400 if not JSON."""
    items: list[dict[str, Any]] = []
    for part in parts:
        try:
            value = json.loads(part.path.read_bytes())
        except ValueError as exc:
            raise DicomWebError(400, f"metadata part is not JSON: {exc}") from exc
        value = [value] if isinstance(value, dict) else value
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise DicomWebError(400, "metadata part is not an array of DICOM JSON data sets")
        items.extend(value)
    if not items:
        raise DicomWebError(400, "request holds no DICOM JSON metadata")
    return items


def _json_uids(item: dict[str, Any]) -> Uids:
    def value(tag: BaseTag) -> str | None:
        entry = item.get(f"{tag:08X}")
        values = entry.get("Value") if isinstance(entry, dict) else None
        return _uid(values[0]) if isinstance(values, list) and values else None

    return Uids(**{name: value(tag) for name, tag in _UID_TAGS.items()})


def write_part10(item: dict[str, Any], bulk: Mapping[str, list[Part]], path: Path) -> None:
    """Write a DICOM JSON data set with its bulk data as a Part 10 file at ``path``.

    Top-level binary bulk data is left out of the parsed data set and copied from its
    parts straight into the file, in tag order, so that a 2 GB pixel data element
    costs a buffer of memory, not 2 GB. Nested bulk data (icons and the like) is
    small and goes through pydicom.
    """
    streamed = {
        Tag(key): (entry["vr"], _bulk_parts(bulk, entry["BulkDataURI"]))
        for key, entry in item.items()
        if isinstance(entry, dict) and "BulkDataURI" in entry and entry.get("vr") in _STREAMED_VRS
    }
    parsed = {key: entry for key, entry in item.items() if Tag(key) not in streamed}
    try:
        dataset = Dataset.from_json(parsed, bulk_data_uri_handler=_bulk_value(bulk))
    except UnusableInstance:
        raise
    except Exception as exc:  # pydicom raises many kinds on malformed JSON
        raise UnusableInstance(f"invalid DICOM JSON: {exc}") from exc
    del dataset[0x00020000:0x00030000]  # File Meta in the metadata: ours replaces it
    syntax: str = ExplicitVRLittleEndian
    if _PIXEL_DATA in streamed:
        syntax = _pixel_syntax(streamed[_PIXEL_DATA][1]) or syntax
    uids = _json_uids(item)
    try:
        with path.open("wb") as out:
            out.write(file_meta(uids.sop_class or "", uids.sop_instance or "", syntax, None))
            _write_elements(out, dataset, streamed, encapsulated=syntax != ExplicitVRLittleEndian)
    except Exception as exc:
        # pydicom reports a value its VR cannot encode as an OSError without errno
        if isinstance(exc, UnusableInstance) or (isinstance(exc, OSError) and exc.errno):
            raise
        raise UnusableInstance(f"data set cannot be encoded: {exc}") from exc


def _bulk_parts(bulk: Mapping[str, list[Part]], uri: object) -> list[Part]:
    uri = uri[0] if isinstance(uri, list) and uri else uri
    parts = bulk.get(uri) if isinstance(uri, str) else None
    if not parts:
        raise UnusableInstance(f"no part holds bulk data {uri}")
    return parts


def _bulk_value(bulk: Mapping[str, list[Part]]) -> Any:
    """pydicom's BulkDataURI handler: the bytes of the parts, as a value of the VR."""

    def value(_tag: str, vr: str, uri: str) -> object:
        data = b"".join(part.path.read_bytes() for part in _bulk_parts(bulk, uri))
        number = _NUMBER_FORMATS.get(vr)
        if number is None:
            return data
        count = len(data) // struct.calcsize(number)
        values = list(struct.unpack(f"<{count}{number}", data[: count * struct.calcsize(number)]))
        return values[0] if len(values) == 1 else values

    return value


def _pixel_syntax(parts: list[Part]) -> str | None:
    """The transfer syntax of compressed pixel data; ``None`` when it is native."""
    media = parts[0].media
    if media.transfer_syntax:
        return None if media.transfer_syntax in _NATIVE_SYNTAXES else media.transfer_syntax
    if media.media_type == "application/octet-stream":
        return None
    syntax = _COMPRESSED_DEFAULTS.get(media.media_type)
    if syntax is None:
        raise UnusableInstance(f"pixel data of type {media.media_type} not understood")
    return syntax


def _write_elements(
    out: BinaryIO,
    dataset: Dataset,
    streamed: Mapping[BaseTag, tuple[str, list[Part]]],
    encapsulated: bool,
) -> None:
    """Write the data set's elements and the streamed ones, merged in tag order."""
    fp = DicomFileLike(out)
    fp.is_little_endian, fp.is_implicit_VR = True, False
    charset = dataset.get("SpecificCharacterSet", default_encoding)
    batch = Dataset()
    for tag in sorted({*dataset.keys(), *streamed}):
        if tag not in streamed:
            batch.add(dataset[tag])
            continue
        if len(batch):
            write_dataset(fp, batch, charset)
            batch = Dataset()
        vr, parts = streamed[tag]
        if encapsulated and tag == _PIXEL_DATA:
            _write_fragments(out, tag, parts)
        else:
            _write_native(out, tag, vr, parts)
    if len(batch):
        write_dataset(fp, batch, charset)


def _write_native(out: BinaryIO, tag: BaseTag, vr: str, parts: list[Part]) -> None:
    size = sum(part.path.stat().st_size for part in parts)
    if size + size % 2 >= 0xFFFFFFFF:
        raise UnusableInstance(f"bulk data of {tag} too long for one element")
    out.write(struct.pack("<HH2sHI", tag.group, tag.element, vr.encode(), 0, size + size % 2))
    for part in parts:
        _copy(part.path, out)
    out.write(b"\0" * (size % 2))


def _write_fragments(out: BinaryIO, tag: BaseTag, parts: list[Part]) -> None:
    """Encapsulated pixel data: an empty offset table, then one fragment per part."""
    out.write(struct.pack("<HH2sHI", tag.group, tag.element, b"OB", 0, 0xFFFFFFFF))
    out.write(struct.pack("<HHI", 0xFFFE, 0xE000, 0))
    for part in parts:
        size = part.path.stat().st_size
        out.write(struct.pack("<HHI", 0xFFFE, 0xE000, size + size % 2))
        _copy(part.path, out)
        out.write(b"\0" * (size % 2))
    out.write(struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))


def _copy(path: Path, out: BinaryIO) -> None:
    with path.open("rb") as source:
        shutil.copyfileobj(source, out, _COPY)


def _log(request: Request, results: list[Result]) -> None:
    client = request.client.host if request.client else "?"
    stored = sum(result.referenced for result in results)
    log.info("STOW-RS from %s: %d stored, %d failed", client, stored, len(results) - stored)
    for result in results:
        if result.status != SUCCESS:
            log.warning(
                "STOW-RS instance %s %s: status 0x%04X %s",
                result.uids.sop_instance or "(unknown)",
                "answered with a warning" if result.warning else "not stored",
                result.status,
                result.comment,
            )


def _audit(request: Request, results: list[Result]) -> None:
    """One audit message per request for what it stored (PS3.15 A.5.3.6)."""
    stored = [r.uids.sop_instance for r in results if r.retrievable and r.uids.sop_instance]
    failed = sum(not result.referenced for result in results)
    audit.instances_stored(audit_actor(request), stored, failed=failed)


def _response(request: Request, results: list[Result], root: str, study: str | None) -> Response:
    """The Store Instances Response Module (PS3.18 Annex I) and its HTTP status."""
    answer = Dataset()
    referenced = [result for result in results if result.referenced]
    failed = [result for result in results if not result.referenced]
    studies = {result.uids.study for result in referenced}
    study = study or (studies.pop() if len(studies) == 1 else None)
    answer.RetrieveURL = f"{root}/studies/{study}" if study else None
    if failed:
        answer.FailedSOPSequence = [_failed_item(result) for result in failed]
    if referenced:
        answer.ReferencedSOPSequence = [_referenced_item(result, root) for result in referenced]
    status = 200
    if not referenced:
        status = 409
    elif failed or any(result.warning for result in referenced):
        status = 202
    if _wants_xml(request):
        return Response(native_model(answer.to_json_dict()), status, media_type=DICOM_XML)
    return Response(json.dumps(answer.to_json_dict()), status, media_type=DICOM_JSON)


def _reference(uids: Uids) -> Dataset:
    """The SOP Instance Reference Macro, with what is known: a part that does not
    parse has no UIDs to report, and inventing some would mislead."""
    item = Dataset()
    if uids.sop_class:
        item.ReferencedSOPClassUID = uids.sop_class
    if uids.sop_instance:
        item.ReferencedSOPInstanceUID = uids.sop_instance
    return item


def _failed_item(result: Result) -> Dataset:
    item = _reference(result.uids)
    item.FailureReason = result.status
    return item


def _referenced_item(result: Result, root: str) -> Dataset:
    item = _reference(result.uids)
    uids = result.uids
    known = uids.study and uids.series and uids.sop_instance and result.retrievable
    url = f"{root}/studies/{uids.study}/series/{uids.series}/instances/{uids.sop_instance}"
    item.RetrieveURL = url if known else None
    if result.warning:
        item.WarningReason = result.status
    return item


def _wants_xml(request: Request) -> bool:
    """XML only when the client prefers it; JSON is the default (PS3.18 §10.5.3)."""
    for media in accepted(request):
        if media.media_type in (DICOM_XML, "application/xml"):
            return True
        if media.matches(DICOM_JSON) or media.media_type == "application/json":
            return False
    return False
