"""A print SCP for the tests, on pynetdicom: DCMTK's dcmprscp prints grayscale only.

It serves the Basic Grayscale and Basic Color Print Management Meta SOP Classes, the
Presentation LUT and the Print Job SOP Classes (each can be left out), checks every
N-CREATE, N-SET and N-ACTION against the attributes PS3.4 H.4 requires of the SCU,
answers a request that lacks one with 0x0120 (Missing Attribute) and records it in
``problems``, and records everything it received. Like a printer, it tells the SCU
about itself: a Printer N-EVENT-REPORT when a session starts, and a Print Job DONE
event when a film (or a whole film session, N-ACTION on the Film Session) is printed.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from conftest import free_port
from pydicom import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE, evt
from pynetdicom.events import Event

from pacsnode.dimse.print_scu import (
    COLOR_IMAGE_BOX,
    COLOR_META,
    FILM_BOX,
    FILM_SESSION,
    GRAYSCALE_IMAGE_BOX,
    GRAYSCALE_META,
    PRESENTATION_LUT,
    PRINT_JOB,
    PRINTER,
    positions,
)

MISSING_ATTRIBUTE = 0x0120
NO_SUCH_INSTANCE = 0x0112


@dataclass
class ImageBox:
    film_box: str
    sop_class: str
    position: int
    values: Dataset | None = None
    """What the N-SET brought."""

    def pixels(self) -> np.ndarray:
        """The received pixels as rows x columns (x 3 for RGB)."""
        assert self.values is not None, "the image box was never set"
        keyword = "BasicColorImageSequence" if self.is_color else "BasicGrayscaleImageSequence"
        item = self.values[keyword][0]
        dtype = np.uint8 if item.BitsAllocated == 8 else np.dtype("<u2")
        shape = (item.Rows, item.Columns, 3) if self.is_color else (item.Rows, item.Columns)
        return np.frombuffer(item.PixelData, dtype=dtype).reshape(shape)

    @property
    def is_color(self) -> bool:
        return self.sop_class == COLOR_IMAGE_BOX


@dataclass
class Received:
    sessions: dict[str, Dataset] = field(default_factory=dict)
    film_boxes: dict[str, Dataset] = field(default_factory=dict)
    image_boxes: dict[str, ImageBox] = field(default_factory=dict)
    luts: dict[str, Dataset] = field(default_factory=dict)
    printed: list[str] = field(default_factory=list)
    session_prints: list[str] = field(default_factory=list)
    """Film sessions printed as a whole by a Film Session N-ACTION."""
    deleted: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    meta_classes: list[str] = field(default_factory=list)
    aborted: int = 0

    def images_of(self, film_box: str) -> dict[int, ImageBox]:
        return {b.position: b for b in self.image_boxes.values() if b.film_box == film_box}


class PrintServer:
    """Runs on a free loopback port from ``start()`` to ``stop()``."""

    def __init__(
        self,
        grayscale: bool = True,
        color: bool = True,
        presentation_lut: bool = True,
        print_job: bool = True,
        failures: dict[str, int] | None = None,
        printer_status: str = "NORMAL",
        printer_status_info: str = "",
        session_event: tuple[int, str] = (2, "SUPPLY LOW"),
    ) -> None:
        self.ae_title = "TESTPRINT"
        self.port = free_port()
        self.received = Received()
        self.printer_status = printer_status
        self.printer_status_info = printer_status_info or (
            "NORMAL" if printer_status == "NORMAL" else "FILM JAM"
        )
        self.session_event = session_event
        """Event Type ID and Printer Status Info of the Printer event a session brings."""
        self.failures = failures or {}
        """Request name ("Image Box N-SET", "Film Box N-CREATE", ...) to the status to
        answer it with."""
        self._lock = threading.Lock()
        self._ae = AE(self.ae_title)
        offered = [
            (GRAYSCALE_META, grayscale),
            (COLOR_META, color),
            (PRESENTATION_LUT, presentation_lut),
            (PRINT_JOB, print_job),
        ]
        for uid, on in offered:
            if on:
                self._ae.add_supported_context(
                    uid, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
                )
        self._server: Any = None

    def start(self) -> PrintServer:
        handlers = [
            (evt.EVT_N_GET, self._get),
            (evt.EVT_N_CREATE, self._create),
            (evt.EVT_N_SET, self._set),
            (evt.EVT_N_ACTION, self._action),
            (evt.EVT_N_DELETE, self._delete),
            (evt.EVT_ABORTED, self._aborted),
        ]
        self._server = self._ae.start_server(
            ("127.0.0.1", self.port), block=False, evt_handlers=handlers
        )
        return self

    def stop(self) -> None:
        self._server.shutdown()

    def _problem(self, request: str, text: str) -> tuple[int, None]:
        with self._lock:
            self.received.problems.append(f"{request}: {text}")
        return MISSING_ATTRIBUTE, None

    def _aborted(self, event: Event) -> None:
        self.received.aborted += 1

    def _get(self, event: Event) -> tuple[int, Dataset | None]:
        sop_class = UID(str(event.request.RequestedSOPClassUID))
        reply = Dataset()
        if sop_class == PRINTER:
            reply.PrinterStatus = self.printer_status
            reply.PrinterStatusInfo = self.printer_status_info
        elif sop_class == PRINT_JOB:
            reply.ExecutionStatus = "DONE"
            reply.ExecutionStatusInfo = "NORMAL"
        else:
            return NO_SUCH_INSTANCE, None
        return 0x0000, reply

    def _create(self, event: Event) -> tuple[int, Dataset | None]:
        sop_class = UID(str(event.request.AffectedSOPClassUID))
        values = event.attribute_list
        uid = generate_uid()
        name = {FILM_SESSION: "Film Session", FILM_BOX: "Film Box"}.get(
            sop_class, "Presentation LUT"
        )
        if f"{name} N-CREATE" in self.failures:
            return self.failures[f"{name} N-CREATE"], None
        reply = Dataset()
        if sop_class == FILM_SESSION:
            self.received.sessions[uid] = values
            self.received.meta_classes.append(str(event.context.abstract_syntax))
            kind, info = self.session_event
            self._report(event, PRINTER, "1.2.840.10008.5.1.1.17", kind, "PrinterStatusInfo", info)
        elif sop_class == FILM_BOX:
            problem = self._film_box_problem(values)
            if problem:
                return self._problem("Film Box N-CREATE", problem)
            self.received.film_boxes[uid] = values
            reply.ReferencedImageBoxSequence = self._image_boxes(event, uid, values)
        elif sop_class == PRESENTATION_LUT:
            if "PresentationLUTShape" not in values and "PresentationLUTSequence" not in values:
                return self._problem("Presentation LUT N-CREATE", "no shape and no LUT")
            self.received.luts[uid] = values
        else:
            return NO_SUCH_INSTANCE, None
        reply.AffectedSOPInstanceUID = uid
        return 0x0000, reply

    def _film_box_problem(self, values: Dataset) -> str:
        """PS3.4 H.4.2.2.1: Image Display Format and the Referenced Film Session
        Sequence are required; a referenced Presentation LUT must exist, with the
        Illumination and Reflected Ambient Light it needs (PS3.3 C.13.3)."""
        if "ImageDisplayFormat" not in values:
            return "no Image Display Format"
        sessions = values.get("ReferencedFilmSessionSequence") or []
        if len(sessions) != 1 or sessions[0].ReferencedSOPClassUID != FILM_SESSION:
            return "no Referenced Film Session Sequence"
        if sessions[0].ReferencedSOPInstanceUID not in self.received.sessions:
            return "an unknown film session"
        for lut in values.get("ReferencedPresentationLUTSequence") or []:
            if lut.ReferencedSOPInstanceUID not in self.received.luts:
                return "an unknown Presentation LUT"
            if "Illumination" not in values or "ReflectedAmbientLight" not in values:
                return "a Presentation LUT without Illumination and Reflected Ambient Light"
        return ""

    def _image_boxes(self, event: Event, film_box: str, values: Dataset) -> list[Dataset]:
        color = event.context.abstract_syntax == COLOR_META
        sop_class = COLOR_IMAGE_BOX if color else GRAYSCALE_IMAGE_BOX
        boxes = []
        for position in range(1, positions(str(values.ImageDisplayFormat)) + 1):
            uid = generate_uid()
            self.received.image_boxes[uid] = ImageBox(film_box, sop_class, position)
            reference = Dataset()
            reference.ReferencedSOPClassUID = sop_class
            reference.ReferencedSOPInstanceUID = uid
            boxes.append(reference)
        return boxes

    def _set(self, event: Event) -> tuple[int, Dataset | None]:
        request = event.request
        box = self.received.image_boxes.get(str(request.RequestedSOPInstanceUID))
        if box is None or request.RequestedSOPClassUID != box.sop_class:
            return NO_SUCH_INSTANCE, None
        if "Image Box N-SET" in self.failures:
            return self.failures["Image Box N-SET"], None
        values = event.modification_list
        problem = _image_box_problem(values, box.is_color)
        if problem:
            return self._problem("Image Box N-SET", problem)
        box.values = values
        return 0x0000, Dataset()

    def _action(self, event: Event) -> tuple[int, Dataset | None]:
        request = event.request
        instance = str(request.RequestedSOPInstanceUID)
        if request.RequestedSOPClassUID == FILM_SESSION and request.ActionTypeID == 1:
            return self._print_session(event, instance)
        if instance not in self.received.film_boxes or request.ActionTypeID != 1:
            return NO_SUCH_INSTANCE, None
        if "Film Box N-ACTION" in self.failures:
            return self.failures["Film Box N-ACTION"], None
        if self._unset(instance):
            return self._problem("Film Box N-ACTION", "no image box was set")
        self.received.printed.append(instance)
        return self._job(event)

    def _print_session(self, event: Event, session: str) -> tuple[int, Dataset | None]:
        """PS3.4 H.4.1.2.3: print every film box of the session (C600 when it has none)."""
        if session not in self.received.sessions:
            return NO_SUCH_INSTANCE, None
        if "Film Session N-ACTION" in self.failures:
            return self.failures["Film Session N-ACTION"], None
        films = [
            uid
            for uid, values in self.received.film_boxes.items()
            if values.ReferencedFilmSessionSequence[0].ReferencedSOPInstanceUID == session
        ]
        if not films:
            return 0xC600, None
        if any(self._unset(film) for film in films):
            return self._problem("Film Session N-ACTION", "a film box has no image box set")
        self.received.session_prints.append(session)
        self.received.printed.extend(films)
        return self._job(event)

    def _unset(self, film_box: str) -> bool:
        """Whether no image box of the film box was set."""
        return not any(box.values for box in self.received.images_of(film_box).values())

    def _job(self, event: Event) -> tuple[int, Dataset]:
        """A Print Job for what the N-ACTION printed, reported DONE and referenced."""
        job = generate_uid()
        self._report(event, PRINT_JOB, job, 3, "ExecutionStatusInfo", "NORMAL")
        reference = Dataset()
        reference.ReferencedSOPClassUID = PRINT_JOB
        reference.ReferencedSOPInstanceUID = job
        reply = Dataset()
        reply.ReferencedPrintJobSequence = [reference]
        return 0x0000, reply

    def _delete(self, event: Event) -> int:
        self.received.deleted.append(str(event.request.RequestedSOPInstanceUID))
        return 0x0000

    def _report(
        self, event: Event, sop_class: UID, instance: str, kind: int, key: str, value: str
    ) -> None:
        """An N-EVENT-REPORT to the SCU, sent before answering the request at hand."""
        accepted = {cx.abstract_syntax for cx in event.assoc.accepted_contexts}
        if sop_class == PRINT_JOB and PRINT_JOB not in accepted:
            return
        info = Dataset()
        setattr(info, key, value)
        meta = None if sop_class == PRINT_JOB else UID(str(event.context.abstract_syntax))
        event.assoc.send_n_event_report(info, kind, sop_class, instance, meta_uid=meta)


def _image_box_problem(values: Dataset, color: bool) -> str:
    """PS3.4 H.4.3.1.2 / H.4.3.2.2 and PS3.3 C.13.5: the required Image Box N-SET
    attributes, and the pixel module values the box allows."""
    if "ImageBoxPosition" not in values:
        return "no Image Box Position"
    keyword = "BasicColorImageSequence" if color else "BasicGrayscaleImageSequence"
    if len(values.get(keyword) or []) != 1:
        return f"no {keyword} item"
    item = values[keyword][0]
    required = (
        "SamplesPerPixel",
        "PhotometricInterpretation",
        "Rows",
        "Columns",
        "PixelAspectRatio",
        "BitsAllocated",
        "BitsStored",
        "HighBit",
        "PixelRepresentation",
        "PixelData",
    ) + (("PlanarConfiguration",) if color else ())
    missing = [name for name in required if name not in item]
    if missing:
        return "missing " + ", ".join(missing)
    pixel_module = (
        item.SamplesPerPixel,
        item.PhotometricInterpretation,
        item.BitsAllocated,
        item.BitsStored,
        item.HighBit,
        item.PixelRepresentation,
    )
    allowed = (
        [(3, "RGB", 8, 8, 7, 0)]
        if color
        else [(1, "MONOCHROME2", 8, 8, 7, 0), (1, "MONOCHROME2", 16, 12, 11, 0)]
    )
    if pixel_module not in allowed:
        return f"pixel module {pixel_module} is not allowed"
    if color and item.PlanarConfiguration not in (0, 1):
        return "Planar Configuration must be 0 or 1"
    size = item.Rows * item.Columns * (3 if color else 1) * (item.BitsAllocated // 8)
    if len(item.PixelData) != size + size % 2:
        return f"{len(item.PixelData)} bytes of pixel data for {size}"
    return ""
