"""``pacsnode rejected``: what IOCM rejection notes withdrew, and undoing it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pacsnode import audit
from pacsnode.archive.rejection import REJECTION_CODES, Rejections
from pacsnode.cli.common import ConfigOption, DatabaseOption, DataDirOption, app, archive_of, fail

rejected = typer.Typer(help="List, restore and purge rejected instances.", no_args_is_help=True)
app.add_typer(rejected, name="rejected")


def _open(config: Path | None, data_dir: Path | None, database_url: str | None) -> Rejections:
    return archive_of(config, data_dir, database_url).rejections


@rejected.command("list")
def list_rejected(
    code: Annotated[str | None, typer.Option(help="Only this rejection code.")] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Show the rejected instances and the notes that rejected them."""
    table = Table(title="rejected instances")
    for column in ("SOP Instance UID", "code", "reason", "note", "when"):
        table.add_column(column)
    for entry in _open(config, data_dir, database_url).listed(code):
        table.add_row(
            entry.sop_instance_uid,
            entry.code,
            REJECTION_CODES.get(entry.code, ""),
            entry.note_sop_instance_uid,
            entry.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    Console().print(table)


@rejected.command()
def restore(
    sop_instance_uid: Annotated[str, typer.Argument(help="The rejected instance.")],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Make a rejected instance visible again, and let it be sent again."""
    if not _open(config, data_dir, database_url).restore(sop_instance_uid):
        raise fail(f"{sop_instance_uid} is not rejected", 1)
    Console().print(f"{sop_instance_uid} restored")


@rejected.command()
def purge(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Delete the instances whose retention expired (113039), files and all."""
    archive = archive_of(config, data_dir, database_url)
    try:
        with audit.command_trail(archive.settings, archive.database) as user:
            count = archive.rejections.purge(user)
    finally:
        archive.close()
    Console().print(f"{count} instances purged")
