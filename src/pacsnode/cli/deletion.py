"""``pacsnode delete``: a patient, study, series or instance out of the archive, after
showing what it reaches and asking; the same core call as ``DELETE /api/studies/…``."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console

from pacsnode import audit
from pacsnode.archive.deletion import AmbiguousPatient, NothingToDelete, Selection, Target
from pacsnode.cli.common import (
    ConfigOption,
    DatabaseOption,
    DataDirOption,
    app,
    archive_of,
    console,
    fail,
)


def _describe(selection: Selection) -> str:
    how = "hard (rows and files, cannot be undone)" if selection.hard else "soft (restorable)"
    lines = [
        f"{selection.target.describe()}: {len(selection.instances)} instances in "
        f"{selection.series} series of {len(selection.studies)} studies, "
        f"{selection.size / 1e6:.1f} MB; delete {how}"
    ]
    lines += [f"  {uid}  {line}" for uid, line in selection.studies.items()]
    return "\n".join(lines)


@app.command()
def delete(
    patient: Annotated[str | None, typer.Option(help="A Patient ID.")] = None,
    issuer: Annotated[
        str | None, typer.Option(help="Its Issuer of Patient ID, when several share the ID.")
    ] = None,
    study: Annotated[str | None, typer.Option(help="A Study Instance UID.")] = None,
    series: Annotated[str | None, typer.Option(help="A Series Instance UID.")] = None,
    instance: Annotated[str | None, typer.Option(help="A SOP Instance UID.")] = None,
    hard: Annotated[
        bool, typer.Option("--hard", help="Remove rows and files; it cannot be undone.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Delete a patient, study, series or instance, after showing what it reaches.

    Soft by default: hidden from every query, retrieve and job, kept on disk, and
    stored anew if sent again. --hard removes the rows and the files. Audited as DICOM
    Study Deleted.

    Exit code: 0 deleted, 1 not confirmed, 2 nothing to delete or bad arguments.
    """
    given = [
        (level, value)
        for level, value in (
            ("patient", patient),
            ("study", study),
            ("series", series),
            ("instance", instance),
        )
        if value
    ]
    if len(given) != 1:
        raise fail("give one of --patient, --study, --series or --instance")
    level, uid = given[0]
    if issuer is not None and level != "patient":
        raise fail("--issuer goes with --patient")
    archive = archive_of(config, data_dir, database_url)
    try:
        selection = archive.deletion.select(Target(level, uid, issuer), hard)
        Console(highlight=False).print(_describe(selection), markup=False)
        if not yes and not _confirmed():
            raise fail("nothing deleted", 1)
        with audit.command_trail(archive.settings, archive.database) as user:
            deleted = archive.deletion.apply(selection, user)
    except (NothingToDelete, AmbiguousPatient) as exc:
        raise fail(str(exc)) from exc
    finally:
        archive.close()
    how = "hard" if deleted.hard else "soft"
    typer.echo(f"deleted ({how}) {deleted.target.describe()}: {deleted.instances} instances")


def _confirmed() -> bool:
    """Asked on standard error, so that standard output keeps only the report."""
    console.print("Delete? [y/N] ", end="", markup=False)
    return sys.stdin.readline().strip().lower() in ("y", "yes")
