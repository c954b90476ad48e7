"""``pacsnode viewer install``: the OHIF viewer under the data directory (see
:mod:`pacsnode.ohif`), served by the running archive at ``/viewer``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pacsnode import ohif
from pacsnode.cli.common import ConfigOption, DataDirOption, app, console, fail, load

viewer = typer.Typer(help="The OHIF web viewer served at /viewer.", no_args_is_help=True)
app.add_typer(viewer, name="viewer")


@viewer.command("install")
def install(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    if_missing: Annotated[
        bool, typer.Option("--if-missing", help="Do nothing when this version is installed.")
    ] = False,
    tarball: Annotated[
        Path | None,
        typer.Option(
            "--tarball", help="Install from this @ohif/app tarball instead of the registry."
        ),
    ] = None,
) -> None:
    """Download OHIF (@ohif/app) from the npm registry, check its pinned SHA-512 and
    install it under the data directory; no Node needed.

    The tarball is cached (PACSNODE_CACHE_DIR, else ~/.cache/pacsnode), so a machine
    downloads it once. Exit code 2 when it cannot be downloaded or checked.
    """
    settings = load(config, data_dir=data_dir)
    where = ohif.installed(settings.data_dir)
    if if_missing and where is not None:
        console.print(f"OHIF {ohif.VERSION} is installed in {where}", style="dim", markup=False)
        return
    try:
        data = tarball.read_bytes() if tarball else ohif.tarball()
        if tarball and not ohif.verified(data):
            raise ohif.ViewerError(f"{tarball} does not have the pinned SHA-512 of OHIF")
        where = ohif.install(settings.data_dir, data)
    except ohif.ViewerError as exc:
        raise fail(f"viewer not installed: {exc}") from exc
    typer.echo(f"OHIF {ohif.VERSION} installed in {where}; served at {ohif.PREFIX}")
