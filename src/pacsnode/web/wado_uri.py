"""WADO-URI (PS3.18 §9): ``GET /wado?requestType=WADO&studyUID=…&seriesUID=…&objectUID=…``,
the single-URL retrieve that viewers, reports and IHE XDS-I links still use.

``contentType`` is a comma-separated list, best first; the first type the object can
be given in wins. Without it (or with ``*/*``) an image with one frame, or a frame
named by ``frameNumber``, comes as image/jpeg, and anything else as application/dicom
(PS3.18 §9.4, §9.5). Pictures are made by :mod:`pacsnode.archive.rendering` from
``rows``, ``columns``, ``region``, ``windowCenter``/``windowWidth``, ``frameNumber``
(the first frame without it) and ``imageQuality``.

application/dicom comes in ``transferSyntax``, by default Explicit VR Little Endian;
an object that cannot be decompressed (a lossy one whose codec is missing) then comes
as stored, which PS3.18 §8.7.3.4 allows. ``transferSyntax=*`` also asks for the
stored syntax. ``anonymize=yes`` is refused with 400 rather than ignored: WADO-URI does
not de-identify here (the de-identified export does), and ignoring it would hand out
what the client wanted removed.
``annotation``, ``charset``, ``presentationUID`` and ``presentationSeriesUID`` are
ignored: nothing is burned in and presentation states are not applied.
"""

from __future__ import annotations

from pydicom import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Route

from pacsnode import audit
from pacsnode.archive.core import Archive
from pacsnode.archive.modification import Modification
from pacsnode.archive.rendering import (
    MEDIA_TYPES,
    InvalidOption,
    NoSuchFrame,
    NotRenderable,
    Region,
    RenderOptions,
    frame_count,
    open_image,
    render,
)
from pacsnode.archive.retrieve import Located
from pacsnode.archive.transcoding import TranscodeError, modified, transcode
from pacsnode.web.audit_api import actor as audit_actor
from pacsnode.web.dicomweb.accept import MediaRange, parse_media_range
from pacsnode.web.dicomweb.common import DicomWebError, located

DICOM = "application/dicom"


class WadoUri:
    def __init__(self, archive: Archive) -> None:
        self.archive = archive

    def routes(self) -> list[BaseRoute]:
        return [Route("/wado", self.wado)]

    def wado(self, request: Request) -> Response:
        """Retrieve an object, or a picture of it (WADO-URI)."""
        params = request.query_params
        if params.get("requestType") != "WADO":
            raise DicomWebError(400, "requestType must be WADO")
        study, series, instance = (
            _required(params, name) for name in ("studyUID", "seriesUID", "objectUID")
        )
        if params.get("anonymize", "").lower() == "yes":
            raise DicomWebError(
                400, "anonymize: WADO-URI does not de-identify; use POST /api/studies/{uid}/export"
            )
        item = located(self.archive, study, series, instance)[0]
        audit.instances_accessed(audit_actor(request), [item.sop_instance_uid])
        dataset = open_image(item.path, item.transfer_syntax_uid)
        for media in _content_types(params.get("contentType")):
            offered = _offered(media, dataset, params)
            if offered == DICOM:
                modification = self.archive.outgoing.modification(
                    item.path, item.sop_instance_uid, item.edited, None
                )
                return _dicom(item, params.get("transferSyntax"), modification)
            if offered is not None:
                try:
                    return _picture(dataset, offered, params)
                except NotRenderable:
                    continue
        raise DicomWebError(406, f"the object cannot be given as {params.get('contentType')}")


def _required(params: QueryParams, name: str) -> str:
    value = params.get(name, "").strip()
    if not value:
        raise DicomWebError(400, f"{name} is required")
    return value


def _content_types(text: str | None) -> list[MediaRange]:
    if not text:
        return [MediaRange("*/*")]
    return [parse_media_range(item) for item in text.split(",") if item.strip()]


def _offered(media: MediaRange, dataset: Dataset, params: QueryParams) -> str | None:
    """What one ``contentType`` item asks the object to come as; ``*/*`` (or none)
    stands for PS3.18's default."""
    if media.media_type == "*/*":
        return "image/jpeg" if _is_picture(dataset, params) else DICOM
    return next((offer for offer in (DICOM, *MEDIA_TYPES) if media.matches(offer)), None)


def _is_picture(dataset: Dataset, params: QueryParams) -> bool:
    """What PS3.18 gives as image/jpeg by default: an image of one frame, or one frame
    of a multi-frame image; everything else comes as application/dicom."""
    if "PixelData" not in dataset:
        return False
    try:
        return "frameNumber" in params or frame_count(dataset) == 1
    except NotRenderable:
        return False


def _dicom(item: Located, syntax: str | None, modification: Modification | None) -> Response:
    """The object in ``syntax``, with what the outgoing step changes in it."""
    stored = item.transfer_syntax_uid
    if syntax in (stored, "*"):
        if not modification:
            return FileResponse(item.path, media_type=DICOM)
        return Response(modified(item.path, stored, modification), media_type=DICOM)
    if syntax is None:
        try:
            converted = transcode(item.path, stored, ExplicitVRLittleEndian, modification)
        except TranscodeError:
            if not modification:
                return FileResponse(item.path, media_type=DICOM)
            converted = modified(item.path, stored, modification)
        return Response(converted, media_type=DICOM)
    if not UID(syntax).is_valid:
        raise DicomWebError(400, f"transferSyntax: {syntax!r} is not a UID")
    try:
        return Response(transcode(item.path, stored, syntax, modification), media_type=DICOM)
    except TranscodeError as exc:
        raise DicomWebError(406, f"transferSyntax: {exc}") from exc


def _picture(dataset: Dataset, media_type: str, params: QueryParams) -> Response:
    frame = _number(params, "frameNumber", 1, None)
    try:
        options = RenderOptions(
            media_type=media_type,
            window=_window(params),
            viewport=_viewport(params),
            region=_region(dataset, params.get("region")),
            quality=_number(params, "imageQuality", 1, 100) or RenderOptions.quality,
        )
        return Response(render(dataset, frame, options), media_type=media_type)
    except InvalidOption as exc:  # sizes, region and quality are checked as parsed
        named = "windowWidth" if exc.parameter == "window" else exc.parameter
        raise DicomWebError(400, f"{named}: {exc}") from exc
    except NoSuchFrame as exc:
        raise DicomWebError(400, f"frameNumber: {exc}") from exc


def _number(params: QueryParams, name: str, low: int, high: int | None) -> int | None:
    text = params.get(name)
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if value < low or (high is not None and value > high):
        upper = f" to {high}" if high is not None else " or more"
        raise DicomWebError(400, f"{name} must be a whole number from {low}{upper}")
    return value


def _window(params: QueryParams) -> tuple[float, float, str] | None:
    center, width = params.get("windowCenter"), params.get("windowWidth")
    if center is None and width is None:
        return None
    if center is None or width is None:
        raise DicomWebError(400, "windowCenter and windowWidth come together")
    try:
        return float(center), float(width), "linear"
    except ValueError:
        raise DicomWebError(400, "windowCenter and windowWidth must be numbers") from None


def _viewport(params: QueryParams) -> tuple[int | None, int | None] | None:
    """``rows`` and ``columns`` are maxima: the picture keeps its aspect ratio."""
    rows, columns = _number(params, "rows", 1, None), _number(params, "columns", 1, None)
    return None if rows is None and columns is None else (columns, rows)


def _region(dataset: Dataset, text: str | None) -> Region | None:
    """``region=left,top,right,bottom`` as fractions of the image, 0.0 to 1.0."""
    if text is None:
        return None
    try:
        left, top, right, bottom = (float(item) for item in text.split(","))
    except ValueError:
        raise DicomWebError(400, "region must be four numbers: left,top,right,bottom") from None
    if not (0 <= left < right <= 1 and 0 <= top < bottom <= 1):
        raise DicomWebError(400, "region must lie within 0.0 to 1.0, left < right, top < bottom")
    columns, rows = int(dataset.get("Columns") or 0), int(dataset.get("Rows") or 0)
    x, y = round(left * columns), round(top * rows)
    return Region(x, y, max(1, round(right * columns) - x), max(1, round(bottom * rows) - y))
