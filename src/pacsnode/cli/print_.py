"""``pacsnode print``: films of a study or series of the local archive on a DICOM printer."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pacsnode.cli.common import (
    CalledOption,
    CallingOption,
    ConfigOption,
    HostArg,
    PortArg,
    app,
    configure_logging,
    console,
    load,
)

if TYPE_CHECKING:
    from pydicom import Dataset

    from pacsnode.archive.core import Archive
    from pacsnode.archive.retrieve import Located


def _series_instances(archive: Archive, series_uid: str) -> list[Located]:
    """A series' visible instances, found without knowing its study."""
    from pacsnode.archive.retrieve import located_row, visible_instances
    from pacsnode.archive.schema import instance, series

    statement = (
        visible_instances()
        .where(series.c.series_instance_uid == series_uid)
        .order_by(instance.c.instance_number, instance.c.pk)
    )
    with archive.database.reader.connect() as connection:
        rows = connection.execute(statement).all()
    return [located_row(row, archive.storage) for row in rows]


def _images(study: str | None, series: str | None, config: Path | None) -> list[Dataset]:
    """The stored images to print, in series and instance order; objects without pixel
    data (reports, presentation states) are left out."""
    from pacsnode.archive.core import Archive
    from pacsnode.archive.rendering import open_image
    from pacsnode.archive.retrieve import locate

    archive = Archive(load(config))
    try:
        if series is not None:
            located = _series_instances(archive, series)
        else:
            located = locate(archive, study or "")
        opened = (open_image(item.path, item.transfer_syntax_uid) for item in located)
        return [image for image in opened if "PixelData" in image]
    finally:
        archive.close()


@app.command(name="print")
def print_(
    host: HostArg,
    port: PortArg,
    study: Annotated[str | None, typer.Option(help="Print this study of the archive.")] = None,
    series: Annotated[str | None, typer.Option(help="Print this series of the archive.")] = None,
    layout: Annotated[
        str, typer.Option(help="Columns,rows of images per film (STANDARD format).")
    ] = "1,1",
    film_size: Annotated[str, typer.Option(help="Film Size ID, e.g. 14INX17IN.")] = "14INX17IN",
    orientation: Annotated[str, typer.Option(help="PORTRAIT or LANDSCAPE.")] = "PORTRAIT",
    magnification: Annotated[
        str, typer.Option(help="REPLICATE, BILINEAR, CUBIC or NONE.")
    ] = "REPLICATE",
    copies: Annotated[int, typer.Option(min=1, help="Number of copies.")] = 1,
    called_ae: CalledOption = "ANY-SCP",
    calling_ae: CallingOption = None,
    config: ConfigOption = None,
) -> None:
    """Print a study or series of the local archive (Basic Grayscale Print Management).

    Exit code: 0 printed (possibly with warnings), 1 the printer failed a request,
    2 no association, nothing to print or bad arguments.
    """
    from pacsnode.dimse.print_scu import PrintFailed, positions, print_images
    from pacsnode.dimse.scu import AssociationFailed, Peer

    if (study is None) == (series is None):
        raise typer.BadParameter("give exactly one of --study and --series")
    display_format = f"STANDARD\\{layout}"
    try:
        positions(display_format)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--layout") from exc
    calling_ae = calling_ae or load(config).ae_title
    configure_logging("WARNING")
    images = _images(study, series, config)
    if not images:
        console.print("[red]nothing to print: no stored images there[/red]")
        raise typer.Exit(2)
    peer = Peer(host, port, called_ae, calling_ae)
    try:
        result = print_images(
            peer, images, display_format, film_size, orientation, magnification, copies
        )
    except AssociationFailed as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    except PrintFailed as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    warnings = ", ".join(f"0x{code:04X}" for code in result.warnings)
    typer.echo(
        f"printed {result.images_printed} images on {len(result.film_boxes)} films "
        f"({called_ae}@{host}:{port}, printer {result.printer_status or 'status unknown'})"
        + (f"; warnings {warnings}" if warnings else "")
    )
