"""The Print SCU: Basic Grayscale and Basic Color Print Management toward a DICOM printer.

The flow is the one of PS3.4 H and of the conformance statement (digest-001 §5.7):
Printer N-GET (is the printer usable at all), Film Session N-CREATE, Presentation LUT
N-CREATE when one is configured, then per film a Film Box N-CREATE (whose response
names the image boxes), one Image Box N-SET per image, Film Box N-ACTION (print, Action
Type ID 1), an N-GET of the Print Job the action names, and the film box N-DELETE;
finally the session and LUT N-DELETE. A printer configured to print per session
(digest-002 §5.14) gets all its films created and filled first, then one Film Session
N-ACTION that prints them all, then the N-DELETEs.

Both meta SOP classes are proposed, with the Presentation LUT and Print Job classes; the
printer's answer and the images decide. A film is printed in colour when the printer
accepted colour and an image is colour (or colour was asked for); grayscale images then
go as RGB with equal samples, which prints the same. A printer that took grayscale only
gets colour images as their luminance; one that took colour only gets every image as
RGB. The Presentation LUT is grayscale only (PS3.4 H.4.9), as digest-001 says.

Image boxes carry pixels with no transform left to apply: the same grayscale pipeline
as the rendered web resources (Modality LUT, the image's window, MONOCHROME1 inversion)
to 8 bits, or to 12 bits (Bits Allocated 16) for a printer configured for them.

Statuses: Success passes, a warning is kept and printing goes on, anything else ends
the print: what was created is N-DELETEd (the session takes its films and image boxes
with it) and the association is aborted, as the conformance statement promises.
N-EVENT-REPORTs of the Printer and Print Job are answered with Success and recorded.

The printer's own state (digest-001 §5.7, Table 55 and its vendor additions): a Printer
Status of FAILURE, or a Printer Status Info that stops the printer's queue, means no
film is sent; WARNING (film low, cover open...) prints and says so in the result's
notes, as does a Printer FAILURE event heard during the session.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from PIL import Image
from pydicom import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi, apply_windowing
from pydicom.tag import Tag
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dimse_messages import N_CREATE_RSP
from pynetdicom.dimse_primitives import N_EVENT_REPORT
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import PrinterInstance

from pacsnode.archive.rendering import RenderOptions, render
from pacsnode.dimse.scu import AssociationFailed, Peer, new_ae, open_association

log = logging.getLogger(__name__)

GRAYSCALE_META = UID("1.2.840.10008.5.1.1.9")
COLOR_META = UID("1.2.840.10008.5.1.1.18")
FILM_SESSION = UID("1.2.840.10008.5.1.1.1")
FILM_BOX = UID("1.2.840.10008.5.1.1.2")
GRAYSCALE_IMAGE_BOX = UID("1.2.840.10008.5.1.1.4")
COLOR_IMAGE_BOX = UID("1.2.840.10008.5.1.1.4.1")
PRINTER = UID("1.2.840.10008.5.1.1.16")
PRINT_JOB = UID("1.2.840.10008.5.1.1.14")
PRESENTATION_LUT = UID("1.2.840.10008.5.1.1.23")
PROPOSED = (GRAYSCALE_META, COLOR_META, PRESENTATION_LUT, PRINT_JOB)
PRESENTATION_LUT_SHAPES = ("IDENTITY", "LIN OD")
"""The shapes a print Presentation LUT may have (PS3.3 C.11.4)."""
BIT_DEPTHS = (8, 12)
PRINT_ACTION = 1
"""Action Type ID of the Film Box (and Film Session) N-ACTION that prints."""
N_SET_TIMEOUT = 240
OTHER_TIMEOUT = 60
"""Seconds to wait for responses (conformance statement: N-SET 240 s, others 60 s)."""
EVENT_SETTLE_TIMEOUT = 10
"""Seconds to wait for an N-EVENT-REPORT to be answered before the next request."""
EVENT_NAMES = {
    PRINTER: {1: "NORMAL", 2: "WARNING", 3: "FAILURE"},
    PRINT_JOB: {1: "PENDING", 2: "PRINTING", 3: "DONE", 4: "FAILURE"},
}
"""PS3.4 H.4.4 and H.4.5 event types (digest-001 calls Print Job's 1 "Normal")."""
QUEUE_STOPPING_INFOS = frozenset(
    {
        "ELEC CONFIG ERR",
        "ELEC SW ERROR",
        "REQ MED NOT AVAI",
        "FATAL ERROR",
        "FATAL",
        "INVALID PAGE DES",
        "INSUFFIC MEMORY",
    }
)
"""Printer Status Infos for which e.soft stops the printer's queue (digest-001 Table 55
and vendor Tables 56-61): whatever the Printer Status says, nothing can print."""


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
    color: bool = False
    """Print in colour even when every image is grayscale (if the printer accepts it)."""
    bits: int = 8
    """Grayscale image box depth: 8, or 12 in 16-bit words."""
    presentation_lut: str = ""
    """Presentation LUT Shape to create and reference from the film boxes; "" for none."""
    illumination: int = 2000
    reflected_ambient_light: int = 10
    """cd/m²; PS3.3 C.13.3 wants both in a film box that references a Presentation LUT."""
    per_session: bool = False
    """Print all films with one Film Session N-ACTION instead of one per Film Box."""


@dataclass(frozen=True)
class PrintEvent:
    """An N-EVENT-REPORT the printer sent."""

    source: str
    """"printer" or "print job"."""
    instance: str
    event_type: int
    name: str
    info: str
    """Printer Status Info or Execution Status Info, when the event carried it."""


@dataclass
class PrintJobStatus:
    """A Print Job a film box N-ACTION named, with what its N-GET said."""

    instance: str
    execution_status: str = ""
    info: str = ""


@dataclass
class PrintResult:
    printer_status: str = ""
    printer_status_info: str = ""
    film_session: str = ""
    color: bool = False
    presentation_lut: str = ""
    """The Presentation LUT instance the films referenced; "" when none."""
    film_boxes: list[str] = field(default_factory=list)
    images_printed: int = 0
    warnings: list[int] = field(default_factory=list)
    """Warning statuses (0xB6xx, 0x0107, ...) the printer answered with."""
    events: list[PrintEvent] = field(default_factory=list)
    print_jobs: list[PrintJobStatus] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """How the print departed from what was asked (colour printed as luminance...)."""

    def as_json(self) -> dict[str, Any]:
        values = asdict(self)
        values["warnings"] = [f"0x{code:04X}" for code in self.warnings]
        return values


class PrintFailed(Exception):
    """The printer answered a request with a failure, or did not answer at all."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.result: PrintResult | None = None
        """What had happened up to the failure (events, warnings, films printed)."""


def positions(layout: str) -> int:
    """How many images one film of this Image Display Format holds (PS3.3 C.13.8):
    ``STANDARD\\C,R`` has C x R, ``ROW\\a,b,..`` and ``COL\\a,b,..`` the sum."""
    kind, _, numbers = layout.partition("\\")
    try:
        counts = [int(number) for number in numbers.split(",")]
    except ValueError as exc:
        raise ValueError(f"image display format {layout!r} is not understood") from exc
    if kind == "STANDARD" and len(counts) == 2 and min(counts) > 0:
        return counts[0] * counts[1]
    if kind in ("ROW", "COL") and counts and min(counts) > 0:
        return sum(counts)
    raise ValueError(f"image display format {layout!r} is not understood")


def display_format(layout: str) -> str:
    """``2,2`` is short for ``STANDARD\\2,2``; a full Image Display Format stays."""
    return layout if "\\" in layout else f"STANDARD\\{layout}"


def is_color(image: Dataset) -> bool:
    return str(image.get("PhotometricInterpretation") or "").upper() not in (
        "",
        "MONOCHROME1",
        "MONOCHROME2",
    )


def print_pixels(image: Dataset, color: bool = False, bits: int = 8) -> np.ndarray:
    """The image (its first frame) as the printer wants it: RGB 8-bit rows x columns x 3
    when ``color``, else windowed MONOCHROME2 levels of ``bits`` bits.

    The 8-bit levels are the web rendering's; PNG is lossless, so decoding its output
    gives back the very levels it computed."""
    if color:
        return _rendered(image, "RGB")
    if bits == 8:
        return _rendered(image, "L")
    if is_color(image):
        luminance = _rendered(image, "L").astype(np.float64)
        return np.rint(luminance * 4095 / 255).astype(np.uint16)
    return _levels_12(image)


def _rendered(image: Dataset, mode: str) -> np.ndarray:
    png = render(image, None, RenderOptions(media_type="image/png"))
    return np.asarray(Image.open(io.BytesIO(png)).convert(mode), dtype=np.uint8)


def _levels_12(image: Dataset) -> np.ndarray:
    """Modality LUT, then the image's first window (else its VOI LUT, else the range
    of its values) onto 0-4095, then MONOCHROME1 inverted: the 8-bit pipeline with
    sixteen times finer steps."""
    frames = image.pixel_array
    frame = frames[0] if int(image.get("NumberOfFrames") or 1) > 1 else frames
    values = np.asarray(apply_modality_lut(frame, image), dtype=np.float64)
    if "WindowCenter" in image and "WindowWidth" in image:
        levels = _windowed_12(values, image)
    elif "VOILUTSequence" in image:
        lut_bits = int(image.VOILUTSequence[0].LUTDescriptor[2])
        levels = apply_voi(values, image).astype(np.float64) * (4095 / (2**lut_bits - 1))
    else:
        low, high = float(values.min()), float(values.max())
        levels = np.zeros(values.shape)
        if high > low:
            levels = (values - low) * (4095 / (high - low))
    if image.PhotometricInterpretation == "MONOCHROME1":
        levels = 4095 - levels
    return np.clip(np.rint(levels), 0, 4095).astype(np.uint16)


def _windowed_12(values: np.ndarray, image: Dataset) -> np.ndarray:
    """pydicom's PS3.3 C.11.2.1.2 windowing with the image's first window, told the
    output is 12 bits unsigned."""
    window = Dataset()
    window.PhotometricInterpretation = "MONOCHROME2"
    window.BitsStored = 12
    window.PixelRepresentation = 0
    window.WindowCenter = _first(image.WindowCenter)
    window.WindowWidth = _first(image.WindowWidth)
    window.VOILUTFunction = str(image.get("VOILUTFunction") or "LINEAR")
    return np.asarray(apply_windowing(values, window), dtype=np.float64)


def _first(value: Any) -> float:
    """The first of a multi-valued element's values, or its one value."""
    return float(value[0] if isinstance(value, Sequence) and not isinstance(value, str) else value)


def image_box_dataset(image: Dataset, position: int, color: bool = False, bits: int = 8) -> Dataset:
    """The Image Box N-SET attributes: the box's Image Position (1-based, as the film
    box response listed it) and one Basic Grayscale or Basic Color Image Sequence item
    (PS3.3 C.13.5: RGB is 8 bits, colour-by-pixel)."""
    pixels = print_pixels(image, color, bits)
    depth = 8 if color else bits
    item = Dataset()
    item.SamplesPerPixel = 3 if color else 1
    item.PhotometricInterpretation = "RGB" if color else "MONOCHROME2"
    if color:
        item.PlanarConfiguration = 0
    item.Rows, item.Columns = pixels.shape[:2]
    item.PixelAspectRatio = list(image.get("PixelAspectRatio") or [1, 1])
    item.BitsAllocated = 8 if depth == 8 else 16
    item.BitsStored = depth
    item.HighBit = depth - 1
    item.PixelRepresentation = 0
    item.PixelData = pixels.astype("<u2" if depth > 8 else np.uint8).tobytes()
    item["PixelData"].VR = "OW" if depth > 8 else "OB"
    box = Dataset()
    box.ImageBoxPosition = position
    if color:
        box.BasicColorImageSequence = [item]
    else:
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
    **options: Any,
) -> PrintResult:
    """Print the images, as many films of ``layout`` as they need, in one film session;
    ``options`` are further :class:`FilmSettings` fields."""
    settings = FilmSettings(layout, film_size, orientation, magnification, copies, **options)
    return print_films(peer, images, settings)


def print_films(peer: Peer, images: list[Dataset], settings: FilmSettings) -> PrintResult:
    if not images:
        raise ValueError("nothing to print")
    if settings.bits not in BIT_DEPTHS:
        raise ValueError(f"printers take 8 or 12 bits, not {settings.bits}")
    if settings.presentation_lut not in ("", *PRESENTATION_LUT_SHAPES):
        raise ValueError(f"Presentation LUT Shape {settings.presentation_lut!r} is not known")
    per_film = positions(settings.layout)
    heard = _Heard()
    assoc = _associate(peer, heard)
    run = _Session(assoc, heard, settings, any(is_color(image) for image in images))
    try:
        run.print(images, per_film)
    except PrintFailed as failure:
        run.delete_what_was_created()
        failure.result = run.result
        assoc.abort()  # a failure status, or no response: the conformance says abort
        raise
    except BaseException:
        assoc.abort()
        raise
    assoc.release()
    return run.result


class _Heard:
    """What the printer says outside the responses to our requests.

    The Affected SOP Instance UID of each N-CREATE response is kept because pynetdicom's
    ``send_n_create`` does not hand it back, and the printer chooses it. N-EVENT-REPORTs
    arrive on a thread of their own, at any time, and are answered with Success.

    That thread, once it has answered, marks the association's own thread as running
    (pynetdicom's ``_serve_request`` resets ``_is_paused``); if that lands after our
    next send_*() has paused the association's thread, the send_*() waits forever for
    a pause that already happened. :meth:`settle` lets those threads end first."""

    def __init__(self) -> None:
        self.created: list[str] = []
        self.events: list[PrintEvent] = []
        self._serving: list[threading.Thread] = []

    def handlers(self) -> list[tuple[evt.EventType, Any]]:
        return [(evt.EVT_N_EVENT_REPORT, self._on_event), (evt.EVT_DIMSE_RECV, self._on_message)]

    def settle(self) -> None:
        """Wait until the N-EVENT-REPORTs received so far have been answered."""
        while self._serving:
            self._serving.pop().join(EVENT_SETTLE_TIMEOUT)

    def last_created(self) -> str:
        if not self.created or not self.created[-1]:
            raise PrintFailed("the printer did not name the instance it created")
        return self.created[-1]

    def _on_message(self, event: evt.Event) -> None:
        if isinstance(event.message, N_CREATE_RSP):
            command = event.message.command_set
            self.created.append(str(command.get("AffectedSOPInstanceUID") or ""))

    def _on_event(self, event: evt.Event) -> tuple[int, None]:
        request = event.request
        if not isinstance(request, N_EVENT_REPORT):
            return 0x0000, None
        self._serving.append(threading.current_thread())
        sop_class = UID(str(request.AffectedSOPClassUID or ""))
        kind = int(request.EventTypeID or 0)
        try:
            information = event.event_information
        except (AttributeError, ValueError):
            information = Dataset()
        info = information.get("PrinterStatusInfo") or information.get("ExecutionStatusInfo")
        heard = PrintEvent(
            "print job" if sop_class == PRINT_JOB else "printer",
            str(request.AffectedSOPInstanceUID or ""),
            kind,
            EVENT_NAMES.get(sop_class, {}).get(kind, "UNKNOWN"),
            str(info or ""),
        )
        self.events.append(heard)
        log.info("%s event %s (%d) %s", heard.source, heard.name, kind, heard.info)
        return 0x0000, None


def _associate(peer: Peer, heard: _Heard) -> Association:
    """An association offering both meta SOP classes, Presentation LUT and Print Job."""
    contexts = [
        build_context(uid, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]) for uid in PROPOSED
    ]
    ae = new_ae(peer.calling_ae)
    assoc = open_association(ae, peer, contexts, evt_handlers=heard.handlers())
    if not assoc.is_established:
        reason = "rejected" if assoc.is_rejected else "aborted or unreachable"
        raise AssociationFailed(
            f"association with {peer.ae_title}@{peer.host}:{peer.port} {reason}"
        )
    accepted = {context.abstract_syntax for context in assoc.accepted_contexts}
    if not accepted & {GRAYSCALE_META, COLOR_META}:
        assoc.abort()
        raise AssociationFailed(f"{peer.ae_title} accepts neither grayscale nor color printing")
    return assoc


class _Session:
    """One film session on one association: what it created and what it met."""

    def __init__(
        self, assoc: Association, heard: _Heard, settings: FilmSettings, color_images: bool
    ) -> None:
        self.assoc = assoc
        self.heard = heard
        self.settings = settings
        accepted = {context.abstract_syntax for context in assoc.accepted_contexts}
        self.result = PrintResult(events=heard.events)
        wants_color = settings.color or color_images
        color = COLOR_META in accepted and (wants_color or GRAYSCALE_META not in accepted)
        self.meta = COLOR_META if color else GRAYSCALE_META
        self.result.color = color
        if wants_color and not color:
            self._note("printed as grayscale (luminance): the printer accepted grayscale only")
        if color and not wants_color:
            self._note("printed as RGB: the printer accepted colour printing only")
        self.lut_shape = settings.presentation_lut if not color else ""
        if self.lut_shape and PRESENTATION_LUT not in accepted:
            self._note(
                f"no Presentation LUT {self.lut_shape}: the printer did not accept the class"
            )
            self.lut_shape = ""
        if settings.presentation_lut and color:
            self._note("no Presentation LUT: it applies to grayscale printing only")
        self.print_job_class = PRINT_JOB in accepted

    def print(self, images: list[Dataset], per_film: int) -> None:
        self._printer_status()
        self.result.film_session = self._create(
            FILM_SESSION, self._session_dataset(), self.meta, "Film Session N-CREATE"
        )
        if self.lut_shape:
            lut = Dataset()
            lut.PresentationLUTShape = self.lut_shape
            self.result.presentation_lut = self._create(
                PRESENTATION_LUT, lut, None, "Presentation LUT N-CREATE"
            )
        batches = [images[start : start + per_film] for start in range(0, len(images), per_film)]
        if self.settings.per_session:
            self._print_session(batches)
        else:
            for batch in batches:
                self._film(batch)
        self._check(
            self.assoc.send_n_delete(FILM_SESSION, self.result.film_session, meta_uid=self.meta),
            "Film Session N-DELETE",
        )
        if self.result.presentation_lut:
            self._check(
                self.assoc.send_n_delete(PRESENTATION_LUT, self.result.presentation_lut),
                "Presentation LUT N-DELETE",
            )
        self._note_printer_failures()

    def delete_what_was_created(self) -> None:
        """After a failure: the session (with its films and image boxes) and the LUT go,
        best effort, their statuses no longer changing the outcome. Not after a missing
        response: pynetdicom has aborted the association then."""
        self.heard.settle()
        self._note_printer_failures()
        if self.result.film_session and self.assoc.is_established:
            self.assoc.send_n_delete(FILM_SESSION, self.result.film_session, meta_uid=self.meta)
        if self.result.presentation_lut and self.assoc.is_established:
            self.assoc.send_n_delete(PRESENTATION_LUT, self.result.presentation_lut)

    def _note(self, text: str) -> None:
        log.info("print: %s", text)
        self.result.notes.append(text)

    def _printer_status(self) -> None:
        """FAILURE, or an info that stops the queue, ends the print before anything is
        created; any other state that is not NORMAL prints, with a note."""
        status, reply = self.assoc.send_n_get(
            [Tag(0x2110, 0x0010), Tag(0x2110, 0x0020)], PRINTER, PrinterInstance, meta_uid=self.meta
        )
        self._check(status, "Printer N-GET")
        reply = reply or Dataset()
        state = self.result.printer_status = str(reply.get("PrinterStatus") or "")
        info = self.result.printer_status_info = str(reply.get("PrinterStatusInfo") or "")
        if state != "NORMAL":
            log.warning("printer status %s (%s)", state or "unknown", info)
        if state == "FAILURE":
            raise PrintFailed(f"the printer reports FAILURE ({info})")
        if info.strip().upper() in QUEUE_STOPPING_INFOS:
            raise PrintFailed(f"the printer reports {state} ({info}): its queue is stopped")
        if state and state != "NORMAL":
            self._note(f"the printer reports {state} ({info})")

    def _create(self, sop_class: UID, values: Dataset, meta: UID | None, request: str) -> str:
        status, _ = self.assoc.send_n_create(values, sop_class, None, meta_uid=meta)
        self._check(status, request)
        return self.heard.last_created()

    def _session_dataset(self) -> Dataset:
        session = Dataset()
        session.NumberOfCopies = self.settings.copies
        session.PrintPriority = self.settings.priority
        session.MediumType = self.settings.medium_type
        session.FilmDestination = self.settings.film_destination
        return session

    def _film_box_dataset(self) -> Dataset:
        settings = self.settings
        reference = Dataset()
        reference.ReferencedSOPClassUID = FILM_SESSION
        reference.ReferencedSOPInstanceUID = self.result.film_session
        box = Dataset()
        box.ImageDisplayFormat = settings.layout
        box.FilmOrientation = settings.orientation
        box.FilmSizeID = settings.film_size
        box.MagnificationType = settings.magnification
        box.ReferencedFilmSessionSequence = [reference]
        if self.result.presentation_lut:
            lut = Dataset()
            lut.ReferencedSOPClassUID = PRESENTATION_LUT
            lut.ReferencedSOPInstanceUID = self.result.presentation_lut
            box.ReferencedPresentationLUTSequence = [lut]
            box.Illumination = settings.illumination
            box.ReflectedAmbientLight = settings.reflected_ambient_light
        return box

    def _film(self, images: list[Dataset]) -> None:
        """One film box: created, filled, printed, its print job asked, deleted."""
        film = self._filled_film(images)
        status, reply = self.assoc.send_n_action(
            None, PRINT_ACTION, FILM_BOX, film, meta_uid=self.meta
        )
        self._check(status, "Film Box N-ACTION")
        self._printed([film], len(images), reply)
        self._check(
            self.assoc.send_n_delete(FILM_BOX, film, meta_uid=self.meta), "Film Box N-DELETE"
        )

    def _print_session(self, batches: list[list[Dataset]]) -> None:
        """Every film box created and filled, then one Film Session N-ACTION prints
        them all (digest-002 §5.14), then the film boxes are deleted."""
        films = [self._filled_film(batch) for batch in batches]
        status, reply = self.assoc.send_n_action(
            None, PRINT_ACTION, FILM_SESSION, self.result.film_session, meta_uid=self.meta
        )
        self._check(status, "Film Session N-ACTION")
        self._printed(films, sum(len(batch) for batch in batches), reply)
        for film in films:
            self._check(
                self.assoc.send_n_delete(FILM_BOX, film, meta_uid=self.meta), "Film Box N-DELETE"
            )

    def _printed(self, films: list[str], images: int, reply: Dataset | None) -> None:
        """Record what an N-ACTION printed, and ask for the print jobs it named."""
        self.result.film_boxes.extend(films)
        self.result.images_printed += images
        for job in (reply or Dataset()).get("ReferencedPrintJobSequence") or []:
            self.result.print_jobs.append(self._print_job(str(job.ReferencedSOPInstanceUID)))

    def _note_printer_failures(self) -> None:
        """A Printer FAILURE event heard during the session goes in the notes."""
        for event in self.heard.events:
            if event.source == "printer" and event.event_type == 3:
                text = f"the printer reported FAILURE ({event.info}) during the session"
                if text not in self.result.notes:
                    self._note(text)

    def _filled_film(self, images: list[Dataset]) -> str:
        """A film box created and its image boxes set; its instance UID."""
        status, reply = self.assoc.send_n_create(
            self._film_box_dataset(), FILM_BOX, None, meta_uid=self.meta
        )
        self._check(status, "Film Box N-CREATE")
        film = self.heard.last_created()
        boxes = (reply or Dataset()).get("ReferencedImageBoxSequence") or []
        if len(boxes) < len(images):
            raise PrintFailed(
                f"the printer created {len(boxes)} image boxes for {len(images)} images"
            )
        for position, (image, box) in enumerate(zip(images, boxes, strict=False), start=1):
            self._set_image(str(box.ReferencedSOPInstanceUID), self._image_box(image, position))
        return film

    def _image_box(self, image: Dataset, position: int) -> Dataset:
        try:
            return image_box_dataset(image, position, self.result.color, self.settings.bits)
        except (ValueError, AttributeError, KeyError, NotImplementedError, RuntimeError) as exc:
            uid = image.get("SOPInstanceUID", "")
            raise PrintFailed(f"image {uid} cannot be printed: {exc}") from exc

    def _set_image(self, box: str, values: Dataset) -> None:
        image_box = COLOR_IMAGE_BOX if self.result.color else GRAYSCALE_IMAGE_BOX
        self.assoc.dimse_timeout = N_SET_TIMEOUT
        try:
            status, _ = self.assoc.send_n_set(values, image_box, box, meta_uid=self.meta)
        finally:
            self.assoc.dimse_timeout = OTHER_TIMEOUT
        self._check(status, "Image Box N-SET")

    def _print_job(self, uid: str) -> PrintJobStatus:
        """The Print Job's Execution Status, if the class was negotiated. The film is
        printed by now, so a failed N-GET (a printer that forgets finished jobs) is
        recorded, not fatal."""
        job = PrintJobStatus(uid)
        if not self.print_job_class:
            return job
        status, reply = self.assoc.send_n_get(
            [Tag(0x2100, 0x0020), Tag(0x2100, 0x0030)], PRINT_JOB, uid
        )
        self.heard.settle()
        code = int(status.Status) if status and "Status" in status else None
        if code is None or (code not in (0x0000, 0x0001) and code & 0xF000 != 0xB000):
            job.info = "Print Job N-GET " + ("unanswered" if code is None else f"0x{code:04X}")
            return job
        reply = reply or Dataset()
        job.execution_status = str(reply.get("ExecutionStatus") or "")
        job.info = str(reply.get("ExecutionStatusInfo") or "")
        log.info("print job %s: %s %s", uid, job.execution_status, job.info)
        return job

    def _check(self, status: Dataset, request: str) -> None:
        """Success passes, a warning is logged and kept, anything else raises; either
        way no N-EVENT-REPORT is left half answered when the next request goes."""
        self.heard.settle()
        if not status or "Status" not in status:
            raise PrintFailed(f"no response to the {request}")
        code = int(status.Status)
        if code == 0x0000:
            return
        comment = str(status.get("ErrorComment") or "")
        if code in (0x0001, 0x0107, 0x0116) or code & 0xF000 == 0xB000:
            log.warning("%s: warning 0x%04X %s", request, code, comment)
            self.result.warnings.append(code)
            return
        raise PrintFailed(f"{request} failed with status 0x{code:04X} {comment}".strip(), code)
