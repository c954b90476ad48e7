"""``pacsnode audit search``: read the local audit log (what ``GET /api/audit`` reads)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pacsnode.audit.journal import Journal, Search
from pacsnode.cli.common import ConfigOption, DataDirOption, app, console, load

audit_app = typer.Typer(help="Search the local audit trail.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@audit_app.command()
def search(
    event: Annotated[str, typer.Option(help="Event name, code or type (Query, Login…).")] = "",
    user: Annotated[str, typer.Option(help="User name or AE title.")] = "",
    patient: Annotated[str, typer.Option(help="Patient ID.")] = "",
    study: Annotated[str, typer.Option(help="Study Instance UID.")] = "",
    since: Annotated[str, typer.Option(help="ISO 8601 date and time (UTC if no zone).")] = "",
    until: Annotated[str, typer.Option(help="ISO 8601 date and time (UTC if no zone).")] = "",
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines, with the XML.")] = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Find audit messages by event, user, patient, study and time."""
    settings = load(config, data_dir=data_dir)
    params = {"event": event, "user": user, "patient": patient, "study": study}
    try:
        wanted = Search.from_params({**params, "since": since, "until": until, "limit": str(limit)})
    except ValueError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    found = Journal(settings.data_dir / "audit").search(wanted)
    if as_json:
        for entry in found:
            typer.echo(json.dumps(entry, ensure_ascii=False))
        return
    table = Table(title=f"audit messages ({len(found)})")
    for column in ("time", "event", "type", "action", "outcome", "user", "address", "patients"):
        table.add_column(column)
    for entry in found:
        table.add_row(
            entry["time"],
            entry["event"],
            entry["event_type"],
            entry["action"],
            str(entry["outcome"]),
            entry["user"],
            entry["address"],
            ", ".join(entry["patients"]),
        )
    Console(width=200).print(table)
