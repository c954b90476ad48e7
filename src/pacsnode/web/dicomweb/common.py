"""What every DICOMweb resource shares: errors as PS3.18 words them, the base URL, and
finding what a path names."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from pacsnode.archive.core import Archive
from pacsnode.archive.retrieve import Located, Sight, locate

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
    """The DICOMweb root as the client reached it, for Retrieve URLs and BulkDataURIs
    (a remote AE's root under ``/dicom-web/aets/{ae_title}``, so that what it finds
    there is retrieved there)."""
    title = request.path_params.get("ae_title")
    root = f"/dicom-web/aets/{title}" if title else "/dicom-web"
    if public_url:
        return public_url.rstrip("/") + root
    url = request.base_url
    server = request.scope.get("server")
    if url.port is None and server and server[1] not in (80, 443):
        # Some clients (dicomweb-client among them) send Host without the port; the
        # URLs we hand back must still reach the port the request came in on.
        url = url.replace(port=server[1])
    return str(url).rstrip("/") + root


def sight(archive: Archive, request: Request) -> Sight:
    """What the request may see: everything visible under ``/dicom-web``; under
    ``/dicom-web/aets/{ae_title}`` what that remote AE sees by DIMSE (its ``visible``
    criteria, and hidden instances with ``show_deleted``); 404 for an unknown AE."""
    title = request.path_params.get("ae_title")
    if title is None:
        return Sight()
    remote = archive.remotes.get(title)
    if remote is None:
        raise DicomWebError(404, f"no remote AE {title!r}")
    insensitive = archive.settings.case_insensitive_matching
    return Sight(remote.visible, remote.show_deleted, insensitive)


def located(
    archive: Archive,
    study: str,
    series: str | None = None,
    instance: str | None = None,
    seen: Sight | None = None,
) -> list[Located]:
    """The instances a resource path names, as ``seen`` sees them; 404 when none."""
    found = locate(archive, study, series, instance, seen)
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
