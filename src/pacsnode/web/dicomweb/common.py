"""What every DICOMweb resource shares: errors as PS3.18 words them, the base URL, and
finding what a path names."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from pacsnode.archive.core import Archive
from pacsnode.archive.retrieve import Located, locate

log = logging.getLogger("pacsnode.dicomweb")

DICOM_JSON = "application/dicom+json"


class DicomWebError(Exception):
    """An error answer: the HTTP status and a message saying what was wrong."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DicomWebError)
    log.info("%s %s: %d %s", request.method, request.url.path, exc.status, exc.message)
    return PlainTextResponse(exc.message, status_code=exc.status)


def base_url(request: Request, public_url: str) -> str:
    """The DICOMweb root as the client reached it, for Retrieve URLs and BulkDataURIs."""
    if public_url:
        return public_url.rstrip("/") + "/dicom-web"
    url = request.base_url
    server = request.scope.get("server")
    if url.port is None and server and server[1] not in (80, 443):
        # Some clients (dicomweb-client among them) send Host without the port; the
        # URLs we hand back must still reach the port the request came in on.
        url = url.replace(port=server[1])
    return str(url).rstrip("/") + "/dicom-web"


def located(
    archive: Archive, study: str, series: str | None = None, instance: str | None = None
) -> list[Located]:
    """The instances a resource path names; 404 when there are none."""
    found = locate(archive, study, series, instance)
    if not found:
        what = "instance" if instance else "series" if series else "study"
        raise DicomWebError(404, f"{what} not found")
    return found


def frame_numbers(text: str) -> list[int]:
    """A ``/frames/{list}`` path segment as frame numbers; 400 unless all are from 1."""
    try:
        numbers = [int(piece) for piece in text.split(",")]
    except ValueError:
        numbers = []
    if not numbers or min(numbers) < 1:
        raise DicomWebError(
            400, f"frames must be a comma-separated list of numbers from 1: {text!r}"
        )
    return numbers
