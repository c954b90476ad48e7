"""``pacsnode conformance``: the DICOM Conformance Statement of the configured node."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from pacsnode.cli.common import ConfigOption, app, fail, load


@app.command()
def conformance(
    form: Annotated[
        str, typer.Option("--format", "-f", help="md (Markdown), html (a page) or json.")
    ] = "md",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file, not stdout.")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Print the DICOM Conformance Statement (PS3.2) of the node this config describes:
    what its server accepts and proposes, from the same tables, and its policies."""
    from pacsnode.archive.core import ArchiveError, remote_table
    from pacsnode.conformance.build import statement
    from pacsnode.conformance.render import FORMATS, render

    if form not in FORMATS:
        raise typer.BadParameter(f"one of {', '.join(FORMATS)}", param_hint="--format")
    settings = load(config)
    try:
        remotes = remote_table(settings).all()
    except ArchiveError as exc:
        raise fail(str(exc)) from exc
    text = render(statement(settings, remotes), form)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
