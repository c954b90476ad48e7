"""WADO-RS rendered and thumbnail resources (PS3.18 §9.5, §9.6): stored images as
JPEG, PNG or GIF pictures a browser or a study list can show.

Query parameters (PS3.18 §8.3.5): ``window=center,width[,function]``,
``viewport=vw,vh[,sx,sy,sw,sh]``, ``quality`` (JPEG only) and ``accept``.
``annotation`` is accepted and ignored: nothing is burned into the pictures. Other
parameters are ignored, as PS3.18 asks.

An instance or a single frame answers one picture; a multi-frame instance shows its
first frame (GIFs are not animated). Several frames answer multipart/related, one part
per frame, and a frame the instance does not have answers 404, as WADO-RS frames do.
A study or series answers multipart/related with one picture per image instance (its
first frame), each part naming its instance in Content-Location; objects without
pixels (SR, KOS, presentation states…) have no picture and are left out, and a study
or series with no picture at all answers 406. A thumbnail is one picture, 128 by 128
unless ``viewport`` says otherwise: the middle frame of an instance, or for a study or
series the middle instance of its first series that renders.

Every handler decodes images, so they are plain functions run on Starlette's thread
pool; multipart parts are rendered one by one as the body is sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from itertools import chain, groupby

from pydicom import Dataset
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from pacsnode.archive.core import Archive
from pacsnode.archive.rendering import (
    MEDIA_TYPES,
    WINDOW_FUNCTIONS,
    InvalidOption,
    NoSuchFrame,
    NotRenderable,
    Region,
    RenderError,
    RenderOptions,
    frame_count,
    open_image,
    render,
    thumbnail,
)
from pacsnode.archive.retrieve import Located
from pacsnode.web.dicomweb.accept import MediaRange, accepted
from pacsnode.web.dicomweb.common import DicomWebError, base_url, frame_numbers, located, log
from pacsnode.web.multipart import Part, content_type, new_boundary, stream

_INSTANCE = "/studies/{study}/series/{series}/instances/{instance}"


class Rendered:
    def __init__(self, archive: Archive) -> None:
        self.archive = archive

    def routes(self) -> list[BaseRoute]:
        resources = [
            "/studies/{study}",
            "/studies/{study}/series/{series}",
            _INSTANCE,
        ]
        return [
            *[Route(f"{path}/rendered", self.rendered) for path in resources],
            Route(f"{_INSTANCE}/frames/{{frames}}/rendered", self.rendered_frames),
            *[Route(f"{path}/thumbnail", self.thumbnails) for path in resources],
            Route(f"{_INSTANCE}/frames/{{frames}}/thumbnail", self.thumbnails),
        ]

    def rendered(self, request: Request) -> Response:
        """Retrieve rendered images (WADO-RS) as JPEG, PNG or GIF."""
        options = _rendering_options(request)
        found = self._located(request)
        if "instance" not in request.path_params:
            return self._multipart(request, found, options)
        with _as_http():
            return _picture(render(_dataset(found[0]), None, options), options)

    def rendered_frames(self, request: Request) -> Response:
        """Retrieve rendered frames (WADO-RS) as JPEG, PNG or GIF.

        Frames are checked and the first is made before answering, so that a wrong
        frame number gets its 404 rather than a cut-off body.
        """
        options = _rendering_options(request)
        frames = frame_numbers(request.path_params["frames"])
        dataset = _dataset(self._located(request)[0])
        with _as_http():
            if max(frames) > (count := frame_count(dataset)):
                raise NoSuchFrame(f"frame {max(frames)} asked for, the instance has {count}")
            first = render(dataset, frames[0], options)
        if len(frames) == 1:
            return _picture(first, options)
        rest = (Part(options.media_type, render(dataset, n, options)) for n in frames[1:])
        return _streamed(chain([Part(options.media_type, first)], rest), options)

    def thumbnails(self, request: Request) -> Response:
        """Retrieve a thumbnail (WADO-RS) as JPEG, PNG or GIF."""
        options = _rendering_options(request)
        found = self._located(request)
        with _as_http():
            if "frames" in request.path_params:
                frame = frame_numbers(request.path_params["frames"])[0]
                return _picture(thumbnail(_dataset(found[0]), options, frame), options)
            return _picture(_representative_thumbnail(found, options), options)

    def _located(self, request: Request) -> list[Located]:
        params = request.path_params
        return located(self.archive, params["study"], params.get("series"), params.get("instance"))

    def _multipart(
        self, request: Request, found: list[Located], options: RenderOptions
    ) -> Response:
        """The first picture is made before answering, so that a study without images
        or with options that fit none of them gets its error status."""
        base = base_url(request, self.archive.settings.public_url)
        errors: list[RenderError] = []
        parts = _pictures(found, options, base, errors)
        first = next(parts, None)
        if first is None:
            options_errors = [exc for exc in errors if isinstance(exc, InvalidOption)]
            if options_errors:
                raise _http_error(options_errors[0])
            raise DicomWebError(406, "nothing here is an image")
        return _streamed(chain([first], parts), options)


def _rendering_options(request: Request) -> RenderOptions:
    """The PS3.18 §8.3.5 query parameters and the negotiated media type; 400 or 406."""
    params = request.query_params
    viewport, region = _viewport(params.get("viewport"))
    try:
        return RenderOptions(
            media_type=_negotiated(request),
            window=_window(params.get("window")),
            viewport=viewport,
            region=region,
            quality=(
                _integer("quality", params["quality"])
                if "quality" in params
                else RenderOptions.quality
            ),
        )
    except InvalidOption as exc:
        raise _http_error(exc) from exc


def _negotiated(request: Request) -> str:
    """The first rendered media type the client accepts; ``multipart/related`` with a
    ``type`` names the parts' type."""
    for media in accepted(request):
        if media.media_type == "multipart/related":
            media = MediaRange(media.part_type or "*/*")
        for offered in MEDIA_TYPES:
            if media.matches(offered):
                return offered
    raise DicomWebError(406, f"rendered pictures are one of {', '.join(MEDIA_TYPES)}")


def _window(text: str | None) -> tuple[float, float, str] | None:
    if text is None:
        return None
    items = text.split(",")
    function = items[2].strip().lower().replace("-", "_") if len(items) == 3 else "linear"
    try:
        center, width = float(items[0]), float(items[1])
    except (IndexError, ValueError):
        raise DicomWebError(400, "window must be center,width[,function]") from None
    if len(items) > 3 or function not in WINDOW_FUNCTIONS:
        raise DicomWebError(400, "window function must be linear, linear-exact or sigmoid")
    return center, width, function


def _viewport(text: str | None) -> tuple[tuple[int, int] | None, Region | None]:
    """``vw,vh`` scales the whole image; ``vw,vh,sx,sy,sw,sh`` (any of the last four
    may be empty) scales a source region of it."""
    if text is None:
        return None, None
    items = text.split(",")
    if len(items) not in (2, 6) or not items[0] or not items[1]:
        raise DicomWebError(400, "viewport must be vw,vh or vw,vh,sx,sy,sw,sh")
    width, height = (_integer("viewport", item) for item in items[:2])
    if len(items) == 2:
        return (width, height), None
    x, y, region_width, region_height = (
        _integer("viewport", item) if item.strip() else None for item in items[2:]
    )
    return (width, height), Region(x, y, region_width, region_height)


def _integer(parameter: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise DicomWebError(400, f"{parameter} must be a whole number, not {text!r}") from None


def _http_error(exc: RenderError) -> DicomWebError:
    if isinstance(exc, InvalidOption):
        return DicomWebError(400, f"{exc.parameter}: {exc}")
    if isinstance(exc, NoSuchFrame):
        return DicomWebError(404, str(exc))
    return DicomWebError(406, f"cannot render this object: {exc}")


@contextmanager
def _as_http() -> Iterator[None]:
    try:
        yield
    except RenderError as exc:
        raise _http_error(exc) from exc


def _dataset(item: Located) -> Dataset:
    return open_image(item.path, item.transfer_syntax_uid)


def _representative_thumbnail(found: list[Located], options: RenderOptions) -> bytes:
    for item in _representatives(found):
        try:
            return thumbnail(_dataset(item), options)
        except NotRenderable:
            continue
    raise NotRenderable("nothing here is an image")


def _representatives(found: list[Located]) -> Iterator[Located]:
    """The middle instance of each series in turn: the first that is an image is the
    study's or series' thumbnail."""
    for _, members in groupby(found, key=lambda item: item.series_instance_uid):
        series = list(members)
        yield series[len(series) // 2]


def _pictures(
    found: list[Located],
    options: RenderOptions,
    base: str,
    errors: list[RenderError],
) -> Iterator[Part]:
    """One part per instance that renders; the others are left out, and why is kept
    in ``errors`` for the caller to answer if none renders."""
    for item in found:
        try:
            body = render(_dataset(item), None, options)
        except RenderError as exc:
            log.debug("%s not rendered: %s", item.sop_instance_uid, exc)
            errors.append(exc)
            continue
        location = (
            f"{base}/studies/{item.study_instance_uid}/series/{item.series_instance_uid}"
            f"/instances/{item.sop_instance_uid}/rendered"
        )
        yield Part(options.media_type, body, {"Content-Location": location})


def _picture(body: bytes, options: RenderOptions) -> Response:
    return Response(body, media_type=options.media_type)


def _streamed(parts: Iterator[Part], options: RenderOptions) -> StreamingResponse:
    boundary = new_boundary()
    return StreamingResponse(
        stream(parts, boundary), media_type=content_type(options.media_type, boundary)
    )
