"""``pacsnode print``: films of a study, series or instances of the local archive on a
DICOM printer, a configured ``[[printer]]`` or one given by host and port."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from pacsnode.cli.common import (
    CallingOption,
    ConfigOption,
    app,
    archive_of,
    check_ae_title,
    configure_logging,
    fail,
)

if TYPE_CHECKING:
    from pacsnode.config import Printer
    from pacsnode.dimse.print_scu import PrintResult


def _unconfigured(host: str, port: int, called_ae: str, layout: str, film_size: str) -> Printer:
    """A printer known only by address: it is taken to accept what is asked of it."""
    from pacsnode.config import Printer
    from pacsnode.dimse.print_scu import display_format

    return Printer(
        name=host,
        ae_title=called_ae,
        host=host,
        port=port,
        film_sizes=(film_size or "14INX17IN",),
        layouts=(display_format(layout or "1,1"),),
    )


def _summary(result: PrintResult, where: str) -> str:
    lines = [
        f"printed {result.images_printed} images on {len(result.film_boxes)} films "
        f"({where}, printer {result.printer_status or 'status unknown'}"
        f"{', colour' if result.color else ''})"
    ]
    if result.warnings:
        lines.append("warnings " + ", ".join(f"0x{code:04X}" for code in result.warnings))
    lines += [f"note: {note}" for note in result.notes]
    lines += [
        f"print job {job.instance}: {job.execution_status or 'status unknown'} {job.info}".strip()
        for job in result.print_jobs
    ]
    lines += [f"{e.source} event {e.name} {e.info}".strip() for e in result.events]
    return "\n".join(lines)


@app.command(name="print")
def print_(
    printer: Annotated[str, typer.Argument(help="The name of a configured printer, or its host.")],
    port: Annotated[
        int | None, typer.Argument(help="The printer's DIMSE port, when PRINTER is a host.")
    ] = None,
    study: Annotated[str | None, typer.Option(help="Print this study of the archive.")] = None,
    series: Annotated[
        list[str] | None, typer.Option(help="Print this series (repeatable).")
    ] = None,
    instance: Annotated[
        list[str] | None, typer.Option(help="Print this instance (repeatable).")
    ] = None,
    layout: Annotated[
        str, typer.Option(help="C,R (STANDARD) or an Image Display Format; default: the printer's.")
    ] = "",
    film_size: Annotated[
        str, typer.Option(help="Film Size ID, e.g. 14INX17IN; default: the printer's.")
    ] = "",
    orientation: Annotated[str, typer.Option(help="PORTRAIT or LANDSCAPE.")] = "",
    magnification: Annotated[str, typer.Option(help="REPLICATE, BILINEAR, CUBIC or NONE.")] = "",
    copies: Annotated[int, typer.Option(min=1, help="Number of copies.")] = 1,
    color: Annotated[
        bool, typer.Option("--color", help="Print in colour (if the printer accepts it).")
    ] = False,
    called_ae: Annotated[
        str, typer.Option("--called-ae", "-aec", help="The printer's AE title (with HOST PORT).")
    ] = "ANY-SCP",
    calling_ae: CallingOption = None,
    config: ConfigOption = None,
) -> None:
    """Print a study, series or instances of the local archive (Basic Grayscale or
    Color Print Management), on a configured printer or on HOST PORT.

    Exit code: 0 printed (possibly with warnings), 1 the printer failed a request,
    2 no association, nothing to print or bad arguments.
    """
    from pacsnode.dimse.print_scu import PrintFailed
    from pacsnode.dimse.scu import AssociationFailed
    from pacsnode.workflows.print_jobs import (
        NothingToPrint,
        PrintRequest,
        PrintRequestError,
        print_request,
    )

    if not (study or series or instance):
        raise typer.BadParameter("give --study, --series or --instance")
    request = PrintRequest(
        printer,
        study or "",
        tuple(series or ()),
        tuple(instance or ()),
        layout,
        film_size,
        orientation.upper(),
        magnification.upper(),
        copies,
        color,
    )
    adhoc = None if port is None else _unconfigured(printer, port, called_ae, layout, film_size)
    configure_logging("WARNING")
    if calling_ae is not None:
        check_ae_title(calling_ae, "--calling-ae")
    if adhoc is not None:
        check_ae_title(adhoc.ae_title, "--called-ae")
    archive = archive_of(config)
    try:
        result = print_request(archive, request, adhoc, calling_ae or "")
    except PrintRequestError as exc:
        raise typer.BadParameter(str(exc), param_hint=f"--{(exc.field or 'printer')}") from exc
    except (AssociationFailed, NothingToPrint) as exc:
        raise fail(str(exc)) from exc
    except PrintFailed as exc:
        raise fail(str(exc), 1) from exc
    finally:
        archive.close()
    where = f"{adhoc.ae_title}@{printer}:{port}" if adhoc else printer
    typer.echo(_summary(result, where))
