"""``pacsnode remote`` and ``pacsnode retrieve``: the remote AE table and pulling from it.

Like the other administrative commands these write the index database directly; a
running server sees a changed remote AE within seconds and runs a queued retrieve on
its job workers.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from pacsnode import audit
from pacsnode.archive.database import now
from pacsnode.archive.remotes import RemoteError, RemoteNotFound, remote_from_json
from pacsnode.cli.common import ConfigOption, DatabaseOption, DataDirOption, app, archive_of, fail
from pacsnode.jobs.queue import Job, JobQueue, JobStatus

if TYPE_CHECKING:
    from pacsnode.archive.core import Archive

remote = typer.Typer(help="List, add or change, and delete remote AEs.", no_args_is_help=True)
app.add_typer(remote, name="remote")

AeArg = Annotated[str, typer.Argument(help="The remote node's AE title.")]
Words = Annotated[
    str, typer.Option(help="Comma-separated: echo, store, find, move, get, commit, mwl, mpps.")
]


def _archive(config: Path | None, data_dir: Path | None, database_url: str | None) -> Archive:
    return archive_of(config, data_dir, database_url)


def _fail(message: str) -> typer.Exit:
    return fail(message, 1)


@remote.command("list")
def list_remotes(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Show every remote AE, from the config file and from the database."""
    table = Table(title="remote AEs")
    for column in ("AE title", "host", "port", "offers", "allowed", "source", "description"):
        table.add_column(column)
    for entry in _archive(config, data_dir, database_url).remotes.entries():
        item = entry.remote
        table.add_row(
            item.ae_title,
            item.host,
            str(item.port),
            ",".join(item.offers) or "all",
            ",".join(item.allowed) or "all",
            entry.source,
            item.description,
        )
    Console().print(table)


@remote.command()
def add(
    ae_title: AeArg,
    host: Annotated[str, typer.Argument(help="Host name or address.")],
    port: Annotated[int, typer.Argument(help="DIMSE port.")],
    description: Annotated[str, typer.Option(help="What the node is.")] = "",
    offers: Words = "",
    allowed: Words = "",
    transfer_syntaxes: Annotated[
        str, typer.Option(help="Comma-separated UIDs to send it, best first.")
    ] = "",
    duplicate_policy: Annotated[str | None, typer.Option(help="For what it sends.")] = None,
    commitment_report: Annotated[str, typer.Option(help="same, new or same_if_open.")] = (
        "same_if_open"
    ),
    pending_responses: Annotated[bool, typer.Option(help="Pending C-MOVE/C-GET responses.")] = True,
    move_destination_only: Annotated[bool, typer.Option(help="Never sent to unasked.")] = False,
    fallback_authority: Annotated[
        int | None, typer.Option(help="The authority id of what it sends without an issuer.")
    ] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Add a remote AE, or replace the one with that title (config entries are overridden)."""
    values = {
        "ae_title": ae_title,
        "host": host,
        "port": port,
        "description": description,
        "offers": offers,
        "allowed": allowed,
        "transfer_syntaxes": transfer_syntaxes,
        "duplicate_policy": duplicate_policy,
        "commitment_report": commitment_report,
        "pending_responses": pending_responses,
        "move_destination_only": move_destination_only,
        "fallback_authority": fallback_authority,
    }
    try:
        item = remote_from_json(values)
    except RemoteError as exc:  # bad arguments
        raise fail(str(exc)) from exc
    archive = _archive(config, data_dir, database_url)
    if fallback_authority is not None and archive.authorities.get(fallback_authority) is None:
        raise _fail(f"fallback authority {fallback_authority} is no authority")
    try:
        created = archive.remotes.put(item)
    except RemoteError as exc:
        raise _fail(str(exc)) from exc
    done = f"{item.ae_title}: {'added' if created else 'changed'}"
    audit.command_change(archive.settings, f"remote AE {done}", kind="network")
    Console().print(done)


@remote.command()
def delete(
    ae_title: AeArg,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Delete a remote AE added at run time (config file entries stay: edit the file)."""
    try:
        archive = _archive(config, data_dir, database_url)
        archive.remotes.delete(ae_title)
    except (RemoteError, RemoteNotFound) as exc:
        raise _fail(str(exc)) from exc
    audit.command_change(archive.settings, f"remote AE {ae_title}: deleted", kind="network")
    Console().print(f"{ae_title}: deleted")


@app.command()
def retrieve(
    remote_ae: Annotated[str, typer.Argument(metavar="REMOTE", help="The remote AE to pull from.")],
    study: Annotated[str, typer.Option(help="Study Instance UID.")],
    series: Annotated[
        list[str] | None, typer.Option(help="Series Instance UID; repeat for more.")
    ] = None,
    instance: Annotated[
        list[str] | None, typer.Option(help="SOP Instance UID (of one --series); repeatable.")
    ] = None,
    method: Annotated[
        str | None, typer.Option(help="move or get; default: move if the remote offers it.")
    ] = None,
    wait: Annotated[bool, typer.Option(help="Wait for the server to run it; show the report.")] = (
        False
    ),
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Queue a retrieve of a study, series or instances into the archive.

    The running server does the work (C-MOVE to its own AE title, or C-GET); follow it
    with 'pacsnode jobs list' or --wait.
    """
    from pacsnode.workflows.retrieve import RetrieveError, RetrieveRequest, enqueue

    archive = _archive(config, data_dir, database_url)
    queue = JobQueue(archive.database)
    request = RetrieveRequest(remote_ae, study, tuple(series or ()), tuple(instance or ()), method)
    try:
        pk = enqueue(queue, archive.remotes, request)
    except (RemoteNotFound, RetrieveError) as exc:
        raise _fail(str(exc)) from exc
    job = queue.get(pk)
    Console().print(f"job {pk}: {job.description}")
    if wait:
        _wait(queue, pk)


NO_SERVER_AFTER = 10.0
"""Seconds a due job may wait unclaimed, while no job runs, before --wait decides
that no server works the queue (a server's workers look every second)."""


def _wait(queue: JobQueue, pk: int) -> None:
    """Until the job is done, or its attempt failed (it may still be retried later);
    exit 2 if no server takes it up."""
    while True:
        job = queue.get(pk)
        if job.status is JobStatus.DONE or job.status is JobStatus.CANCELLED:
            break
        if job.status is JobStatus.FAILED or job.attempts > 0:
            _show(job)
            raise _fail(f"job {pk} {job.status.value}: {job.last_error}")
        overdue = (now() - job.next_run_at).total_seconds() > NO_SERVER_AFTER
        if overdue and job.status is JobStatus.PENDING and not queue.list(JobStatus.RUNNING, 1):
            raise fail(
                f"job {pk} was not started within {NO_SERVER_AFTER:.0f} s: no 'pacsnode serve' "
                "works the job queue of this archive; the job stays queued for when one does"
            )
        time.sleep(0.5)
    _show(job)


def _show(job: Job) -> None:
    result = job.result or {}
    Console().print(
        f"job {job.pk} {job.status.value}: {result.get('completed', 0)} completed, "
        f"{result.get('failed', 0)} failed, {result.get('warning', 0)} warning, "
        f"final status {result.get('status')}"
    )
    for uid in result.get("failed_sop_instance_uids", []):
        Console().print(f"failed: {uid}")
