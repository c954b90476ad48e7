"""``pacsnode jobs``: the outbound queue as an administrator sees it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pacsnode.cli.common import ConfigOption, DatabaseOption, DataDirOption, app, archive_of, fail
from pacsnode.jobs.queue import JobError, JobQueue

jobs = typer.Typer(help="List, retry and cancel outbound jobs.", no_args_is_help=True)
app.add_typer(jobs, name="jobs")

JobId = Annotated[int, typer.Argument(help="The job's number, as 'jobs list' shows it.")]


def _queue(config: Path | None, data_dir: Path | None, database_url: str | None) -> JobQueue:
    return JobQueue(archive_of(config, data_dir, database_url).database)


@jobs.command("list")
def list_jobs(
    status: Annotated[
        str | None, typer.Option(help="pending, running, done, failed or cancelled.")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Show the newest jobs, what they do, and why the failing ones fail."""
    table = Table(title="jobs")
    for column in ("id", "kind", "status", "attempts", "next run", "what", "last error"):
        table.add_column(column)
    for job in _queue(config, data_dir, database_url).list(status, limit):
        table.add_row(
            str(job.pk),
            job.kind,
            job.status.value,
            f"{job.attempts}/{job.max_attempts}",
            job.next_run_at.strftime("%Y-%m-%d %H:%M:%S"),
            job.description,
            job.last_error or "",
        )
    Console().print(table)


def _change(
    name: str, job_id: int, config: Path | None, data_dir: Path | None, url: str | None
) -> None:
    queue = _queue(config, data_dir, url)
    try:
        getattr(queue, name)(job_id)
    except JobError as exc:
        raise fail(str(exc), 1) from exc
    Console().print(f"job {job_id}: {queue.get(job_id).status.value}")


@jobs.command()
def retry(
    job_id: JobId,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Run a failed or cancelled job again, now, with a fresh count of attempts."""
    _change("retry", job_id, config, data_dir, database_url)


@jobs.command()
def cancel(
    job_id: JobId,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Stop a pending or failed job from running again."""
    _change("cancel", job_id, config, data_dir, database_url)
