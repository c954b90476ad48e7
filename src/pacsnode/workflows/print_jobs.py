"""Printing a selection of the archive on a configured printer, now or as a job.

``pacsnode print PRINTER`` prints at once; ``POST /api/print`` queues a job of kind
``print``, so that a printer that is away gets the films when it is back. The request
is checked when it is made (known printer, a layout and film size it takes, something
to print), so that the REST API and the CLI can refuse it at once.

A job is retried only when no association could be made: once the printer has
answered, a retry could print again what did print, so a failure status fails the job
(:class:`~pacsnode.jobs.queue.Abandoned`) with the printer's status in its error and
the print's report in its ``result``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

from pydicom import Dataset

from pacsnode import audit
from pacsnode.archive.core import Archive
from pacsnode.archive.rendering import open_image
from pacsnode.archive.retrieve import Located, located_row, visible_instances
from pacsnode.archive.schema import instance, series, study
from pacsnode.config import Printer, Settings
from pacsnode.dimse.print_scu import (
    FilmSettings,
    PrintFailed,
    PrintResult,
    display_format,
    positions,
    print_films,
)
from pacsnode.dimse.scu import Peer
from pacsnode.errors import FieldError, text_field, uid_list
from pacsnode.jobs.queue import Abandoned
from pacsnode.jobs.workers import Workers

log = logging.getLogger("pacsnode.print")

PRINT_JOB_KIND = "print"


class PrintRequestError(FieldError):
    """A print that cannot be asked for; ``field`` names the offending request field."""


class NothingToPrint(LookupError):
    """The selection holds no stored image."""


@dataclass(frozen=True)
class PrintRequest:
    """What to print where; empty film values take the printer's defaults."""

    printer: str
    study: str = ""
    series: tuple[str, ...] = ()
    instances: tuple[str, ...] = ()
    layout: str = ""
    film_size: str = ""
    orientation: str = ""
    magnification: str = ""
    copies: int = 1
    color: bool = False

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> PrintRequest:
        """From the REST API's body (or a job's payload)."""
        unknown = set(values) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise PrintRequestError(f"unknown fields: {', '.join(sorted(unknown))}")
        copies = values.get("copies", 1)
        if not isinstance(copies, int) or isinstance(copies, bool) or copies < 1:
            raise PrintRequestError("copies must be a positive whole number", "copies")
        if not isinstance(values.get("color", False), bool):
            raise PrintRequestError("color must be true or false", "color")

        def text(name: str) -> str:
            return text_field(values.get(name), name, PrintRequestError)

        def uids(name: str) -> tuple[str, ...]:
            return uid_list(values.get(name), name, PrintRequestError)

        return cls(
            printer=text("printer"),
            study=text("study"),
            series=uids("series"),
            instances=uids("instances"),
            layout=text("layout"),
            film_size=text("film_size"),
            orientation=text("orientation").upper(),
            magnification=text("magnification").upper(),
            copies=copies,
            color=bool(values.get("color", False)),
        )

    def payload(self) -> dict[str, Any]:
        values = asdict(self)
        values["series"], values["instances"] = list(self.series), list(self.instances)
        return values


def printer_named(settings: Settings, name: str) -> Printer:
    for printer in settings.printers:
        if printer.name == name:
            return printer
    known = ", ".join(printer.name for printer in settings.printers) or "none configured"
    raise PrintRequestError(f"no printer {name!r} ({known})", "printer")


def film_settings(printer: Printer, request: PrintRequest) -> FilmSettings:
    """The request's film values, or the printer's defaults; refused if the printer
    does not take them."""
    layout = display_format(request.layout or printer.layouts[0])
    try:
        positions(layout)
    except ValueError as exc:
        raise PrintRequestError(str(exc), "layout") from exc
    if layout not in {display_format(known) for known in printer.layouts}:
        taken = ", ".join(printer.layouts)
        raise PrintRequestError(f"{printer.name} takes the layouts {taken}", "layout")
    film_size = request.film_size or printer.film_sizes[0]
    if film_size not in printer.film_sizes:
        taken = ", ".join(printer.film_sizes)
        raise PrintRequestError(f"{printer.name} takes the film sizes {taken}", "film_size")
    if printer.max_copies and request.copies > printer.max_copies:
        raise PrintRequestError(
            f"{printer.name} prints at most {printer.max_copies} copies", "copies"
        )
    orientation = request.orientation or printer.orientation
    if orientation not in ("PORTRAIT", "LANDSCAPE"):
        raise PrintRequestError("orientation must be PORTRAIT or LANDSCAPE", "orientation")
    return FilmSettings(
        layout=layout,
        film_size=film_size,
        orientation=orientation,
        magnification=request.magnification or printer.magnification,
        copies=request.copies,
        medium_type=printer.medium_type,
        film_destination=printer.film_destination,
        color=request.color or printer.color,
        bits=printer.bits,
        presentation_lut=printer.presentation_lut,
        per_session=printer.print_per_session,
    )


def selected(archive: Archive, request: PrintRequest) -> list[Located]:
    """The visible instances the request names, in series and instance order."""
    if not (request.study or request.series or request.instances):
        raise PrintRequestError("name a study, series or instances to print", "study")
    statement = visible_instances()
    if request.study:
        statement = statement.where(study.c.study_instance_uid == request.study)
    if request.series:
        statement = statement.where(series.c.series_instance_uid.in_(request.series))
    if request.instances:
        statement = statement.where(instance.c.sop_instance_uid.in_(request.instances))
    statement = statement.order_by(
        series.c.series_number, series.c.pk, instance.c.instance_number, instance.c.pk
    )
    with archive.database.reader.connect() as connection:
        rows: list[Any] = list(connection.execute(statement).all())
    return [located_row(row, archive.storage) for row in rows]


def images(located: list[Located]) -> list[Dataset]:
    """The stored objects with pixel data: reports and presentation states are left out."""
    opened = (open_image(item.path, item.transfer_syntax_uid) for item in located)
    return [image for image in opened if "PixelData" in image]


def plan(archive: Archive, request: PrintRequest) -> tuple[dict[str, Any], str]:
    """The job's payload and description; raises if the print cannot be asked for."""
    printer = printer_named(archive.settings, request.printer)
    settings = film_settings(printer, request)
    found = selected(archive, request)
    if not found:
        raise NothingToPrint("nothing to print: no stored instance in the selection")
    what = f"{len(found)} instances"
    return request.payload(), f"print {what} on {printer.name} ({settings.layout})"


def print_request(
    archive: Archive, request: PrintRequest, printer: Printer | None = None, calling_ae: str = ""
) -> PrintResult:
    """Print now, on this thread, on the named printer (or on ``printer``, one not in
    the config); raises PrintRequestError, NothingToPrint, AssociationFailed or
    PrintFailed."""
    printer = printer or printer_named(archive.settings, request.printer)
    settings = film_settings(printer, request)
    pictures = images(selected(archive, request))
    if not pictures:
        raise NothingToPrint("nothing to print: no stored image in the selection")
    calling_ae = calling_ae or archive.settings.ae_title
    peer = Peer(printer.host, printer.port, printer.ae_title, calling_ae)
    uids = [str(picture.SOPInstanceUID) for picture in pictures]
    destination = audit.Actor(printer.ae_title, printer.host, dicom=True)
    try:
        result = print_films(peer, pictures, settings)
    except PrintFailed as exc:
        printed = exc.result.images_printed if exc.result else 0
        audit.instances_sent(destination, uids[:printed], failed=len(uids) - printed)
        raise
    audit.instances_sent(destination, uids)
    return result


class PrintJobs:
    """Runs ``print`` jobs in the server; registered with its workers."""

    def __init__(self, archive: Archive, workers: Workers) -> None:
        self.archive = archive
        self.workers = workers
        workers.register(PRINT_JOB_KIND, self.run)

    def run(self, payload: dict[str, Any]) -> None:
        pk = self.workers.current_job().pk
        try:
            result = print_request(self.archive, PrintRequest.from_json(payload))
        except (PrintRequestError, NothingToPrint) as exc:
            raise Abandoned(str(exc)) from exc
        except PrintFailed as exc:
            report = exc.result.as_json() if exc.result else {}
            self.workers.queue.report(pk, {"state": "failed", "error": str(exc), **report})
            raise Abandoned(str(exc)) from exc
        self.workers.queue.report(pk, {"state": "done", **result.as_json()})
        log.info(
            "printed %d images on %d films on %s",
            result.images_printed,
            len(result.film_boxes),
            payload["printer"],
        )
