"""``pacsnode delete``: a patient, study, series or instance out of the archive, after
showing what it reaches and asking; the same core call as ``DELETE /api/studies/…``.
``pacsnode restore`` undoes a soft deletion, as ``POST /api/studies/…/restore``.

Deleting here queues the IOCM rejection notes in the archive's job queue, which the
server sends."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console

from pacsnode import audit
from pacsnode.archive.core import Archive
from pacsnode.archive.deletion import (
    AmbiguousPatient,
    NothingToDelete,
    NothingToRestore,
    Selection,
    Target,
    check_reason,
)
from pacsnode.archive.rejection import RETENTION_EXPIRED
from pacsnode.cli.common import (
    ConfigOption,
    DatabaseOption,
    DataDirOption,
    app,
    archive_of,
    console,
    fail,
)

PatientOption = Annotated[str | None, typer.Option(help="A Patient ID.")]
IssuerOption = Annotated[
    str | None, typer.Option(help="Its Issuer of Patient ID, when several share the ID.")
]
StudyOption = Annotated[str | None, typer.Option(help="A Study Instance UID.")]
SeriesOption = Annotated[str | None, typer.Option(help="A Series Instance UID.")]
InstanceOption = Annotated[str | None, typer.Option(help="A SOP Instance UID.")]
"""What ``delete`` and ``restore`` reach: one of them (with ``--issuer`` for a patient)."""


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
    patient: PatientOption = None,
    issuer: IssuerOption = None,
    study: StudyOption = None,
    series: SeriesOption = None,
    instance: InstanceOption = None,
    hard: Annotated[
        bool, typer.Option("--hard", help="Remove rows and files; it cannot be undone.")
    ] = False,
    reason: Annotated[
        str,
        typer.Option(
            help="Rejection code told to the IOCM destinations: 113001, 113037, 113038, 113039."
        ),
    ] = RETENTION_EXPIRED,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Delete a patient, study, series or instance, after showing what it reaches.

    Soft by default: hidden from every query, retrieve and job, kept on disk, and
    stored anew if sent again; pacsnode restore shows it again. --hard removes the rows
    and the files. Audited as DICOM Study Deleted; the IOCM destinations are sent a
    rejection note with --reason's code.

    Exit code: 0 deleted, 1 not confirmed, 2 nothing to delete or bad arguments.
    """
    target = _target(patient, issuer, study, series, instance)
    try:
        check_reason(reason)
    except ValueError as exc:
        raise fail(str(exc)) from exc
    archive = archive_of(config, data_dir, database_url)
    _announce(archive)
    try:
        selection = archive.deletion.select(target, hard, reason)
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


@app.command()
def restore(
    patient: PatientOption = None,
    issuer: IssuerOption = None,
    study: StudyOption = None,
    series: SeriesOption = None,
    instance: InstanceOption = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Undelete: show again what a soft deletion hid of a patient, study, series or
    instance. Audited as DICOM Instances Accessed (C).

    Exit code: 0 restored, 2 nothing softly deleted there or bad arguments.
    """
    target = _target(patient, issuer, study, series, instance)
    archive = archive_of(config, data_dir, database_url)
    try:
        with audit.command_trail(archive.settings, archive.database) as user:
            restored = archive.deletion.restore(target, user)
    except (NothingToRestore, AmbiguousPatient) as exc:
        raise fail(str(exc)) from exc
    finally:
        archive.close()
    typer.echo(f"restored {restored.target.describe()}: {restored.instances} instances")


def _target(
    patient: str | None,
    issuer: str | None,
    study: str | None,
    series: str | None,
    instance: str | None,
) -> Target:
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
    return Target(level, uid, issuer)


def _announce(archive: Archive) -> None:
    """Queue IOCM notes for what this command deletes, for the server to send."""
    from pacsnode.jobs.queue import JobQueue
    from pacsnode.workflows.iocm import announce

    settings = archive.settings
    queue = JobQueue(archive.database, settings.job_max_attempts, settings.job_retry_delay)
    announce(archive, queue.enqueue)


def _confirmed() -> bool:
    """Asked on standard error, so that standard output keeps only the report."""
    console.print("Delete? [y/N] ", end="", markup=False)
    return sys.stdin.readline().strip().lower() in ("y", "yes")
