"""The Print SCU: Basic Grayscale Print Management Meta SOP Class toward a DICOM printer.

The flow is the one of PS3.4 H and of the conformance statement: Printer N-GET (is the
printer usable at all), Film Session N-CREATE, then per film a Film Box N-CREATE (whose
response names the image boxes), one Image Box N-SET per image, Film Box N-ACTION
(print, Action Type ID 1) and N-DELETE, and finally the session N-DELETE.

Printers take 8-bit MONOCHROME2 pixels with no transform left to apply, so every image
goes through the same grayscale pipeline as the rendered web resources (Modality LUT,
the image's window, MONOCHROME1 inversion). Any status other than Success or Warning
aborts the association, as the conformance statement promises.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from pydicom import Dataset
from pydicom.tag import Tag
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dimse_messages import N_CREATE_RSP
from pynetdicom.dimse_primitives import N_EVENT_REPORT
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import PrinterInstance

from pacsnode.archive.rendering import RenderOptions, render
from pacsnode.dimse.scu import AssociationFailed, Peer, new_ae

log = logging.getLogger(__name__)

META = UID("1.2.840.10008.5.1.1.9")
"""Basic Grayscale Print Management Meta SOP Class: the one context every request uses."""
FILM_SESSION = UID("1.2.840.10008.5.1.1.1")
FILM_BOX = UID("1.2.840.10008.5.1.1.2")
GRAYSCALE_IMAGE_BOX = UID("1.2.840.10008.5.1.1.4")
PRINTER = UID("1.2.840.10008.5.1.1.16")
PRINT_ACTION = 1
"""Action Type ID of the Film Box (and Film Session) N-ACTION that prints."""
N_SET_TIMEOUT = 240
OTHER_TIMEOUT = 60
"""Seconds to wait for responses (conformance statement: N-SET 240 s, others 60 s)."""


class PrintFailed(Exception):
    """The printer answered a request with a failure, or did not answer at all."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class FilmSettings:
    """What the film session and the film boxes ask of the printer."""

    layout: str = "STANDARD\\1,1"
    film_size: str = "14INX17IN"
    orientation: str = "PORTRAIT"
    magnification: str = "REPLICATE"
    copies: int = 1
    priority: str = "MED"
    medium_type: str = "BLUE FILM"
    film_destination: str = "PROCESSOR"


@dataclass
class PrintResult:
    printer_status: str
    printer_status_info: str
    film_session: str
    film_boxes: list[str] = field(default_factory=list)
    images_printed: int = 0
    warnings: list[int] = field(default_factory=list)
    """Warning statuses (0xB6xx, 0x0107, ...) the printer answered with."""
    events: list[int] = field(default_factory=list)
    """Event Type IDs of the N-EVENT-REPORTs the printer sent during the association."""


def positions(layout: str) -> int:
    """How many images one film of this Image Display Format holds (PS3.3 C.13.8):
    ``STANDARD\\C,R`` has C x R, ``ROW\\a,b,..`` and ``COL\\a,b,..`` the sum."""
    kind, _, numbers = layout.partition("\\")
    try:
        counts = [int(number) for number in numbers.split(",")]
    except ValueError as exc:
        raise ValueError(f"image display format {layout!r} is not understood") from exc
    if kind == "STANDARD" and len(counts) == 2:
        return counts[0] * counts[1]
    if kind in ("ROW", "COL") and counts:
        return sum(counts)
    raise ValueError(f"image display format {layout!r} is not understood")


def print_pixels(image: Dataset) -> np.ndarray:
    """The image as the printer wants it: 8-bit MONOCHROME2, windowed (the first frame).

    The web rendering pipeline does exactly this; PNG is lossless, so decoding its output
    gives back the very levels it computed. Color images are printed as their luminance.
    """
    png = render(image, None, RenderOptions(media_type="image/png"))
    picture = Image.open(io.BytesIO(png)).convert("L")
    return np.asarray(picture, dtype=np.uint8)


def image_box_dataset(image: Dataset, position: int) -> Dataset:
    """The Image Box N-SET attributes: the box's Image Position (1-based, as the film
    box response listed it) and one Basic Grayscale Image Sequence item."""
    pixels = print_pixels(image)
    item = Dataset()
    item.SamplesPerPixel = 1
    item.PhotometricInterpretation = "MONOCHROME2"
    item.Rows, item.Columns = pixels.shape
    item.PixelAspectRatio = list(image.get("PixelAspectRatio") or [1, 1])
    item.BitsAllocated = 8
    item.BitsStored = 8
    item.HighBit = 7
    item.PixelRepresentation = 0
    item.PixelData = pixels.tobytes()
    box = Dataset()
    box.ImageBoxPosition = position
    box.BasicGrayscaleImageSequence = [item]
    return box


def print_images(
    peer: Peer,
    images: list[Dataset],
    layout: str = "STANDARD\\1,1",
    film_size: str = "14INX17IN",
    orientation: str = "PORTRAIT",
    magnification: str = "REPLICATE",
    copies: int = 1,
) -> PrintResult:
    """Print the images, as many films of ``layout`` as they need, in one film session."""
    settings = FilmSettings(layout, film_size, orientation, magnification, copies)
    return print_films(peer, images, settings)


def print_films(peer: Peer, images: list[Dataset], settings: FilmSettings) -> PrintResult:
    if not images:
        raise ValueError("nothing to print")
    per_film = positions(settings.layout)
    events: list[int] = []
    created: list[str] = []
    assoc = _associate(peer, events, created)
    try:
        result = _session(assoc, images, settings, per_film, created)
    except BaseException:
        assoc.abort()  # a failure status, or no response: the conformance says abort
        raise
    result.events = events
    assoc.release()
    return result


def _associate(peer: Peer, events: list[int], created: list[str]) -> Association:
    """An association offering the meta SOP class, with N-EVENT-REPORTs recorded and
    the Affected SOP Instance UID of each N-CREATE response kept in ``created``:
    pynetdicom's ``send_n_create`` does not hand it back, and the printer chooses it."""

    def on_message(event: evt.Event) -> None:
        if isinstance(event.message, N_CREATE_RSP):
            command = event.message.command_set
            created.append(str(command.get("AffectedSOPInstanceUID") or ""))

    def on_event(event: evt.Event) -> int:
        request = event.request
        if not isinstance(request, N_EVENT_REPORT):
            return 0x0000
        events.append(int(request.EventTypeID or 0))
        log.info(
            "printer event %s on %s %s",
            request.EventTypeID,
            request.AffectedSOPClassUID,
            request.AffectedSOPInstanceUID,
        )
        return 0x0000

    ae = new_ae(peer.calling_ae)
    context = build_context(META, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    assoc = ae.associate(
        peer.host,
        peer.port,
        contexts=[context],
        ae_title=peer.ae_title,
        evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_event), (evt.EVT_DIMSE_RECV, on_message)],
    )
    if not assoc.is_established:
        reason = "rejected" if assoc.is_rejected else "aborted or unreachable"
        raise AssociationFailed(
            f"association with {peer.ae_title}@{peer.host}:{peer.port} {reason}"
        )
    if not assoc.accepted_contexts:
        assoc.abort()
        raise AssociationFailed(f"{peer.ae_title} does not accept grayscale printing")
    return assoc


def _session(
    assoc: Association,
    images: list[Dataset],
    settings: FilmSettings,
    per_film: int,
    created: list[str],
) -> PrintResult:
    warnings: list[int] = []
    printer, info = _printer_status(assoc, warnings)
    if printer == "FAILURE":
        raise PrintFailed(f"the printer reports FAILURE ({info})")
    status, _ = assoc.send_n_create(_session_dataset(settings), FILM_SESSION, None, meta_uid=META)
    _check(status, "Film Session N-CREATE", warnings)
    session = _created(created)
    result = PrintResult(printer, info, session, warnings=warnings)
    for start in range(0, len(images), per_film):
        batch = images[start : start + per_film]
        film = _print_film(assoc, session, batch, settings, warnings, created)
        result.film_boxes.append(film)
        result.images_printed += min(per_film, len(images) - start)
    _check(assoc.send_n_delete(FILM_SESSION, session, meta_uid=META), "N-DELETE", warnings)
    return result


def _printer_status(assoc: Association, warnings: list[int]) -> tuple[str, str]:
    status, reply = assoc.send_n_get(
        [Tag(0x2110, 0x0010), Tag(0x2110, 0x0020)], PRINTER, PrinterInstance, meta_uid=META
    )
    _check(status, "Printer N-GET", warnings)
    reply = reply or Dataset()
    printer_status = str(reply.get("PrinterStatus") or "")
    info = str(reply.get("PrinterStatusInfo") or "")
    if printer_status != "NORMAL":
        log.warning("printer status %s (%s)", printer_status or "unknown", info)
    return printer_status, info


def _session_dataset(settings: FilmSettings) -> Dataset:
    session = Dataset()
    session.NumberOfCopies = settings.copies
    session.PrintPriority = settings.priority
    session.MediumType = settings.medium_type
    session.FilmDestination = settings.film_destination
    return session


def _film_box_dataset(session: str, settings: FilmSettings) -> Dataset:
    reference = Dataset()
    reference.ReferencedSOPClassUID = FILM_SESSION
    reference.ReferencedSOPInstanceUID = session
    box = Dataset()
    box.ImageDisplayFormat = settings.layout
    box.FilmOrientation = settings.orientation
    box.FilmSizeID = settings.film_size
    box.MagnificationType = settings.magnification
    box.ReferencedFilmSessionSequence = [reference]
    return box


def _print_film(
    assoc: Association,
    session: str,
    images: list[Dataset],
    settings: FilmSettings,
    warnings: list[int],
    created: list[str],
) -> str:
    """One film box: created, filled, printed and deleted; returns its instance UID."""
    status, reply = assoc.send_n_create(
        _film_box_dataset(session, settings), FILM_BOX, None, meta_uid=META
    )
    _check(status, "Film Box N-CREATE", warnings)
    film = _created(created)
    boxes = (reply or Dataset()).get("ReferencedImageBoxSequence") or []
    if not film or len(boxes) < len(images):
        raise PrintFailed(f"the printer created {len(boxes)} image boxes for {len(images)} images")
    for position, (image, box) in enumerate(zip(images, boxes, strict=False), start=1):
        _set_image(
            assoc, box.ReferencedSOPInstanceUID, image_box_dataset(image, position), warnings
        )
    _check(
        assoc.send_n_action(None, PRINT_ACTION, FILM_BOX, film, meta_uid=META)[0],
        "Film Box N-ACTION",
        warnings,
    )
    _check(assoc.send_n_delete(FILM_BOX, film, meta_uid=META), "N-DELETE", warnings)
    return film


def _set_image(assoc: Association, box: str, values: Dataset, warnings: list[int]) -> None:
    assoc.dimse_timeout = N_SET_TIMEOUT
    try:
        status, _ = assoc.send_n_set(values, GRAYSCALE_IMAGE_BOX, box, meta_uid=META)
    finally:
        assoc.dimse_timeout = OTHER_TIMEOUT
    _check(status, "Image Box N-SET", warnings)


def _created(created: list[str]) -> str:
    """The instance the last N-CREATE response named."""
    if not created or not created[-1]:
        raise PrintFailed("the printer did not name the instance it created")
    return created[-1]


def _check(status: Dataset, request: str, warnings: list[int]) -> None:
    """Success passes, a warning is logged and kept, anything else raises."""
    if not status or "Status" not in status:
        raise PrintFailed(f"no response to the {request}")
    code = int(status.Status)
    if code == 0x0000:
        return
    comment = str(status.get("ErrorComment") or "")
    if code in (0x0001, 0x0107, 0x0116) or code & 0xF000 == 0xB000:
        log.warning("%s: warning 0x%04X %s", request, code, comment)
        warnings.append(code)
        return
    raise PrintFailed(f"{request} failed with status 0x{code:04X} {comment}".strip(), code)
