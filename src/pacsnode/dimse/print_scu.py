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
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from PIL import Image
from pydicom import Dataset
from pydicom.pixels import apply_modality_lut, apply_voi, apply_windowing
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from pacsnode import status
from pacsnode.archive.rendering import RenderOptions, render
from pacsnode.dimse import codec
from pacsnode.dimse.nservices import (
    NResult,
    answer_event_report,
    n_action,
    n_create,
    n_delete,
    n_get,
    n_set,
)
from pacsnode.dimse.scu import AssociationFailed, Peer, connect
from pacsnode.net import commands
from pacsnode.net.association import Association, Context, Message
from pacsnode.net.requestor import Proposal

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
PRINTER_INSTANCE = UID("1.2.840.10008.5.1.1.17")
PROPOSED = (GRAYSCALE_META, COLOR_META, PRESENTATION_LUT, PRINT_JOB)
PRESENTATION_LUT_SHAPES = ("IDENTITY", "LIN OD")
"""The shapes a print Presentation LUT may have (PS3.3 C.11.4)."""
BIT_DEPTHS = (8, 12)
PRINT_ACTION = 1
"""Action Type ID of the Film Box (and Film Session) N-ACTION that prints."""
N_SET_TIMEOUT = 240
OTHER_TIMEOUT = 60
"""Seconds to wait for responses (conformance statement: N-SET 240 s, others 60 s)."""
SYNTAXES = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
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
    association = _associate(peer)
    run = _Session(association, heard, settings, any(is_color(image) for image in images))
    try:
        run.print(images, per_film)
    except PrintFailed as failure:
        run.delete_what_was_created()
        failure.result = run.result
        association.abort()  # a failure status, or no response: the conformance says abort
        raise
    except BaseException:
        association.abort()
        raise
    association.release()
    return run.result


class _Heard:
    """The N-EVENT-REPORTs of the Printer and Print Job, which may come between any
    request and its response: each is recorded and answered with Success."""

    def __init__(self) -> None:
        self.events: list[PrintEvent] = []

    def __call__(self, association: Association, message: Message) -> None:
        if message.field != commands.N_EVENT_REPORT_RQ:
            return
        command = message.command
        sop_class = UID(str(command.get("AffectedSOPClassUID", "")))
        kind = int(command.get("EventTypeID", 0))
        try:
            information = codec.decode(message.data or b"", message.context.transfer_syntax)
        except codec.DecodeError:
            information = Dataset()
        info = information.get("PrinterStatusInfo") or information.get("ExecutionStatusInfo")
        heard = PrintEvent(
            "print job" if sop_class == PRINT_JOB else "printer",
            str(command.get("AffectedSOPInstanceUID", "")),
            kind,
            EVENT_NAMES.get(sop_class, {}).get(kind, "UNKNOWN"),
            str(info or ""),
        )
        self.events.append(heard)
        log.info("%s event %s (%d) %s", heard.source, heard.name, kind, heard.info)
        answer_event_report(association, message, status.SUCCESS)


def _associate(peer: Peer) -> Association:
    """An association offering both meta SOP classes, Presentation LUT and Print Job."""
    association = connect(peer, [Proposal(uid, SYNTAXES) for uid in PROPOSED])
    accepted = {context.abstract_syntax for context in association.contexts.values()}
    if not accepted & {GRAYSCALE_META, COLOR_META}:
        association.abort()
        raise AssociationFailed(f"{peer.ae_title} accepts neither grayscale nor color printing")
    return association


class _Session:
    """One film session on one association: what it created and what it met."""

    def __init__(
        self, association: Association, heard: _Heard, settings: FilmSettings, color_images: bool
    ) -> None:
        self.association = association
        self.heard = heard
        self.settings = settings
        accepted = {context.abstract_syntax for context in association.contexts.values()}
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

    def _context(self, abstract_syntax: str) -> Context:
        context = self.association.context_for(abstract_syntax)
        if context is None:
            raise PrintFailed(f"no presentation context for {abstract_syntax}")
        return context

    def _call(self, request: str, operation: Callable[..., NResult], *args: object) -> NResult:
        """An N-operation whose failure (status or silence) ends the print."""
        on_request = lambda message: self.heard(self.association, message)  # noqa: E731
        try:
            result = operation(self.association, *args, on_request=on_request)
        except ConnectionError as exc:
            raise PrintFailed(f"no response to the {request}: {exc}") from exc
        self._check(result, request)
        return result

    def print(self, images: list[Dataset], per_film: int) -> None:
        self._printer_status()
        self.result.film_session = self._create(
            FILM_SESSION, self._session_dataset(), self.meta, "Film Session N-CREATE"
        )
        if self.lut_shape:
            lut = Dataset()
            lut.PresentationLUTShape = self.lut_shape
            self.result.presentation_lut = self._create(
                PRESENTATION_LUT, lut, PRESENTATION_LUT, "Presentation LUT N-CREATE"
            )
        batches = [images[start : start + per_film] for start in range(0, len(images), per_film)]
        if self.settings.per_session:
            self._print_session(batches)
        else:
            for batch in batches:
                self._film(batch)
        self._delete(FILM_SESSION, self.result.film_session, self.meta, "Film Session N-DELETE")
        if self.result.presentation_lut:
            self._delete(
                PRESENTATION_LUT,
                self.result.presentation_lut,
                PRESENTATION_LUT,
                "Presentation LUT N-DELETE",
            )
        self._note_printer_failures()

    def delete_what_was_created(self) -> None:
        """After a failure: the session (with its films and image boxes) and the LUT go,
        best effort, their statuses no longer changing the outcome."""
        self._note_printer_failures()
        leftovers = [
            (FILM_SESSION, self.result.film_session, self.meta),
            (PRESENTATION_LUT, self.result.presentation_lut, PRESENTATION_LUT),
        ]
        for sop_class, instance, meta in leftovers:
            if instance and self.association.established:
                try:
                    n_delete(self.association, self._context(meta), sop_class, instance)
                except (ConnectionError, PrintFailed) as exc:
                    log.info("print: %s %s not deleted: %s", sop_class.name, instance, exc)

    def _delete(self, sop_class: UID, instance: str, meta: UID, request: str) -> None:
        self._call(request, n_delete, self._context(meta), sop_class, instance)

    def _note(self, text: str) -> None:
        log.info("print: %s", text)
        self.result.notes.append(text)

    def _printer_status(self) -> None:
        """FAILURE, or an info that stops the queue, ends the print before anything is
        created; any other state that is not NORMAL prints, with a note."""
        attributes = [0x21100010, 0x21100020]
        reply = self._call(
            "Printer N-GET", n_get, self._context(self.meta), PRINTER, PRINTER_INSTANCE, attributes
        ).data
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

    def _create(self, sop_class: UID, values: Dataset, meta: UID, request: str) -> str:
        result = self._call(request, n_create, self._context(meta), sop_class, None, values)
        if not result.instance:
            raise PrintFailed("the printer did not name the instance it created")
        return result.instance

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
        context = self._context(self.meta)
        reply = self._call("Film Box N-ACTION", n_action, context, FILM_BOX, film, PRINT_ACTION)
        self._printed([film], len(images), reply.data)
        self._delete(FILM_BOX, film, self.meta, "Film Box N-DELETE")

    def _print_session(self, batches: list[list[Dataset]]) -> None:
        """Every film box created and filled, then one Film Session N-ACTION prints
        them all (digest-002 §5.14), then the film boxes are deleted."""
        films = [self._filled_film(batch) for batch in batches]
        reply = self._call(
            "Film Session N-ACTION",
            n_action,
            self._context(self.meta),
            FILM_SESSION,
            self.result.film_session,
            PRINT_ACTION,
        )
        self._printed(films, sum(len(batch) for batch in batches), reply.data)
        for film in films:
            self._delete(FILM_BOX, film, self.meta, "Film Box N-DELETE")

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
        created = self._call(
            "Film Box N-CREATE",
            n_create,
            self._context(self.meta),
            FILM_BOX,
            None,
            self._film_box_dataset(),
        )
        film = created.instance
        if not film:
            raise PrintFailed("the printer did not name the film box it created")
        boxes = (created.data or Dataset()).get("ReferencedImageBoxSequence") or []
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
        self.association.idle_timeout = N_SET_TIMEOUT
        try:
            self._call("Image Box N-SET", n_set, self._context(self.meta), image_box, box, values)
        finally:
            self.association.idle_timeout = OTHER_TIMEOUT

    def _print_job(self, uid: str) -> PrintJobStatus:
        """The Print Job's Execution Status, if the class was negotiated. The film is
        printed by now, so a failed N-GET (a printer that forgets finished jobs) is
        recorded, not fatal."""
        job = PrintJobStatus(uid)
        if not self.print_job_class:
            return job
        on_request = lambda message: self.heard(self.association, message)  # noqa: E731
        try:
            answered = n_get(
                self.association,
                self._context(PRINT_JOB),
                PRINT_JOB,
                uid,
                [0x21000020, 0x21000030],
                on_request,
            )
        except ConnectionError:
            job.info = "Print Job N-GET unanswered"
            return job
        if not status.is_success_or_warning(answered.status) and answered.status != 0x0001:
            job.info = f"Print Job N-GET 0x{answered.status:04X}"
            return job
        reply = answered.data or Dataset()
        job.execution_status = str(reply.get("ExecutionStatus") or "")
        job.info = str(reply.get("ExecutionStatusInfo") or "")
        log.info("print job %s: %s %s", uid, job.execution_status, job.info)
        return job

    def _check(self, result: NResult, request: str) -> None:
        """Success passes, a warning is logged and kept, anything else raises."""
        code = result.status
        kind = status.category(code)
        if kind is status.Category.SUCCESS:
            return
        if kind is status.Category.WARNING:
            log.warning("%s: warning 0x%04X %s", request, code, result.comment)
            self.result.warnings.append(code)
            return
        raise PrintFailed(
            f"{request} failed with status 0x{code:04X} {result.comment}".strip(), code
        )
