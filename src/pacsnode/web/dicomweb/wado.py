"""WADO-RS (PS3.18 §10.4): instances, metadata, frames and bulk data of what is stored.

Instances go out as their stored bytes when the client takes any syntax
(``transfer-syntax=*``) or the stored one; otherwise they are converted without loss
(:mod:`pacsnode.archive.transcoding`), and 406 answers a syntax that would need lossy
compression. Without a ``transfer-syntax`` parameter the answer is Explicit VR
Little Endian, as PS3.18 §8.7.3.5.2 says. Metadata comes from the documents the
index keeps (:mod:`pacsnode.archive.metadata`), not from the files.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from pacsnode import audit
from pacsnode.archive.core import Archive
from pacsnode.archive.frames import FRAME_MEDIA_TYPES, FrameError, decoded_frames, stored_frames
from pacsnode.archive.metadata import BASE, bulk_value
from pacsnode.archive.outgoing import Outgoing
from pacsnode.archive.retrieve import Located
from pacsnode.archive.transcoding import can_transcode, transcode, writable
from pacsnode.media.dicomdir import as_stored
from pacsnode.media.zipped import zip_stream
from pacsnode.web.audit_api import actor as audit_actor
from pacsnode.web.dicomweb.accept import MediaRange, accepted
from pacsnode.web.dicomweb.common import (
    DICOM_JSON,
    DicomWebError,
    base_url,
    frame_numbers,
    located,
    log,
    sight,
)
from pacsnode.web.dicomweb.dicom_xml import native_model
from pacsnode.web.multipart import Part, content_type, new_boundary, stream

ANY_SYNTAX = "*"
OCTET_STREAM = "application/octet-stream"

_INSTANCES = "/studies/{study}/series/{series}/instances/{instance}"


@dataclass(frozen=True)
class Offer:
    """What the server answers with, chosen from what the client accepts."""

    media_type: str
    """``application/dicom``, ``application/zip``, or a frame's media type."""
    transfer_syntax: str


def _path_uids(request: Request) -> tuple[str, str | None, str | None]:
    params = request.path_params
    return params["study"], params.get("series"), params.get("instance")


def _found(archive: Archive, request: Request) -> list[Located]:
    """The instances the path names, as the requester sees them."""
    return located(archive, *_path_uids(request), sight(archive, request))


class Wado:
    def __init__(self, archive: Archive) -> None:
        self.archive = archive

    def routes(self) -> list[BaseRoute]:
        get = ["GET"]
        routes: list[BaseRoute] = []
        for path in ("/studies/{study}", "/studies/{study}/series/{series}", _INSTANCES):
            routes += [
                Route(path, self.instances, methods=get),
                Route(f"{path}/metadata", self.metadata, methods=get),
            ]
        return [
            *routes,
            Route(f"{_INSTANCES}/frames/{{frames}}", self.frames, methods=get),
            Route(f"{_INSTANCES}/bulkdata/{{tag_path:path}}", self.bulkdata, methods=get),
        ]

    def instances(self, request: Request) -> Response:
        """Retrieve DICOM instances (WADO-RS), as multipart/related or ZIP."""
        offer = _instance_offer(accepted(request))
        found = _found(self.archive, request)
        audit.instances_accessed(audit_actor(request), [i.sop_instance_uid for i in found])
        # Under /dicom-web/aets/{ae_title}, that AE's send rules apply (archive/coercion.py).
        destination = request.path_params.get("ae_title")
        if offer.media_type == "application/zip":
            return StreamingResponse(
                zip_stream(self._fileset(found, destination)),
                media_type="application/zip",
                headers={
                    "Content-Disposition": f'attachment; filename="{found[0].sop_instance_uid}.zip"'
                },
            )
        target = offer.transfer_syntax
        refused = [
            i
            for i in found
            if target != ANY_SYNTAX and not can_transcode(i.transfer_syntax_uid, target)
        ]
        if refused:
            raise DicomWebError(406, f"cannot convert {refused[0].transfer_syntax_uid} to {target}")
        boundary = new_boundary()
        return StreamingResponse(
            stream(_dicom_parts(found, target, self.archive.outgoing, destination), boundary),
            media_type=content_type("application/dicom", boundary),
        )

    def _fileset(
        self, found: list[Located], destination: str | None
    ) -> list[tuple[str, Path | bytes]]:
        """The ZIP's content: a DICOMDIR (PS3.18 lets a ZIP retrieve carry one) and the
        stored files under their File IDs, unchanged whatever their syntax."""
        work = Path(tempfile.mkdtemp(prefix="zip-", dir=self.archive.storage.tmp))
        try:
            files = as_stored(found, work, self.archive.outgoing, destination)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if left_out := len(found) - max(len(files) - 1, 0):
            log.error("WADO-RS ZIP left out %d unreadable instances", left_out)
        return files

    def metadata(self, request: Request) -> Response:
        """Retrieve metadata (WADO-RS), bulk data as BulkDataURIs."""
        as_xml = _metadata_as_xml(accepted(request))
        found = _found(self.archive, request)
        documents = self.archive.metadata.documents(found)
        base = base_url(request, self.archive.settings.public_url)
        text = "[" + ",".join(documents) + "]"
        text = text.replace(BASE, base)
        if not as_xml:
            return Response(text.encode(), media_type=DICOM_JSON)
        boundary = new_boundary()
        parts = [Part("application/dicom+xml", native_model(item)) for item in json.loads(text)]
        return Response(
            b"".join(stream(parts, boundary)),
            media_type=content_type("application/dicom+xml", boundary),
        )

    def frames(self, request: Request) -> Response:
        """Retrieve frames (WADO-RS), as stored or decompressed."""
        numbers = frame_numbers(request.path_params["frames"])
        [item] = _found(self.archive, request)
        audit.instances_accessed(audit_actor(request), [item.sop_instance_uid])
        return self._pixel_parts(request, item, numbers)

    def bulkdata(self, request: Request) -> Response:
        """Retrieve a bulk data value (WADO-RS)."""
        [item] = _found(self.archive, request)
        tag_path = request.path_params["tag_path"].strip("/").upper()
        if tag_path == "7FE00010":
            frames = item.number_of_frames or 1
            return self._pixel_parts(request, item, list(range(1, frames + 1)))
        element = bulk_value(dcmread(item.path, force=True), tag_path)
        if element is None or not isinstance(element.value, bytes):
            raise DicomWebError(404, f"no bulk data at {tag_path}")
        _bulk_offer(accepted(request), {})
        boundary = new_boundary()
        body = b"".join(stream([Part(OCTET_STREAM, element.value)], boundary))
        return Response(body, media_type=content_type(OCTET_STREAM, boundary))

    def _pixel_parts(self, request: Request, item: Located, numbers: list[int]) -> Response:
        stored = item.transfer_syntax_uid
        offer = _bulk_offer(accepted(request), {stored: FRAME_MEDIA_TYPES.get(stored)})
        keep = offer.transfer_syntax in (ANY_SYNTAX, stored)
        try:
            frames = list(
                stored_frames(item.path, numbers)
                if keep
                else decoded_frames(item.path, stored, numbers)
            )
        except FrameError as exc:
            raise DicomWebError(404, str(exc)) from exc
        media = offer.media_type
        if keep and stored in FRAME_MEDIA_TYPES:
            media = FRAME_MEDIA_TYPES[stored]
        syntax = stored if keep else ExplicitVRLittleEndian
        part_type = f"{media}; transfer-syntax={syntax}"
        boundary = new_boundary()
        body = b"".join(stream([Part(part_type, frame) for frame in frames], boundary))
        return Response(body, media_type=content_type(offer.media_type, boundary))


def _instance_offer(ranges: list[MediaRange]) -> Offer:
    for media in ranges:
        if media.matches("application/zip") and media.media_type != "*/*":
            return Offer("application/zip", ANY_SYNTAX)
        dicom = media.media_type in ("application/dicom", "*/*") or (
            media.media_type == "multipart/related"
            and media.part_type in ("application/dicom", None)
        )
        if dicom:
            return Offer("application/dicom", media.transfer_syntax or ExplicitVRLittleEndian)
    raise DicomWebError(406, "instances are sent as multipart/related application/dicom or ZIP")


def _bulk_offer(ranges: list[MediaRange], compressed: dict[str, str | None]) -> Offer:
    """Frames and bulk data: octet-stream (native), or the stored compressed type."""
    stored_types = {media: syntax for syntax, media in compressed.items() if media}
    for media in ranges:
        part = media.part_type if media.media_type == "multipart/related" else media.media_type
        if part in (None, "*/*", OCTET_STREAM):
            return Offer(OCTET_STREAM, media.transfer_syntax or ExplicitVRLittleEndian)
        if part in stored_types:
            return Offer(part, stored_types[part])
    raise DicomWebError(406, "this bulk data is available as application/octet-stream only")


def _metadata_as_xml(ranges: list[MediaRange]) -> bool:
    for media in ranges:
        if media.media_type in (DICOM_JSON, "application/json", "*/*", "application/*"):
            return False
        if "application/dicom+xml" in (media.media_type, media.part_type):
            return True
    raise DicomWebError(406, "metadata is application/dicom+json or application/dicom+xml")


def _dicom_parts(
    found: list[Located], target: str, outgoing: Outgoing, destination: str | None
) -> Iterator[Part]:
    """Each instance as a part, converted only when the client needs another syntax or
    the outgoing step toward ``destination`` changes it.

    Once streaming has started the status is sent; an instance that fails to convert
    is left out and logged rather than cutting the response short.
    """
    for item in found:
        stored = item.transfer_syntax_uid
        try:
            modification = outgoing.modification(
                item.path, item.sop_instance_uid, item.edited, destination
            )
            syntax = stored if target == ANY_SYNTAX else target
            if modification and not writable(syntax):
                syntax = ExplicitVRLittleEndian
            untouched = syntax == stored and not modification
            converted = None if untouched else transcode(item.path, stored, syntax, modification)
        except Exception as exc:  # a file unreadable, a syntax it cannot be given in
            log.error("WADO-RS left out %s: %s", item.sop_instance_uid, exc)
            continue
        content = item.path if converted is None else converted
        yield Part(f"application/dicom; transfer-syntax={syntax}", content)
