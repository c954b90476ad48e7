"""``pacsnode doctor``: probe another DICOM node and say what works, what does not and why."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pacsnode.cli.common import (
    CalledOption,
    CallingOption,
    ConfigOption,
    PortArg,
    TargetArg,
    app,
    configure_logging,
    console,
    fail,
    load,
    open_archive,
    peer,
    remote_named,
)
from pacsnode.doctor.report import SECTIONS, Outcome, Report

if TYPE_CHECKING:
    from pacsnode.config import RemoteAE, Settings
    from pacsnode.dimse.scu import Peer
    from pacsnode.doctor.storage import Held

STYLES = {
    Outcome.OK: "green",
    Outcome.WARNING: "yellow",
    Outcome.FAILED: "bold red",
    Outcome.NOT_OFFERED: "dim",
    Outcome.SKIPPED: "dim",
}


@app.command()
def doctor(
    target: TargetArg,
    port: PortArg = None,
    called_ae: CalledOption = None,
    calling_ae: CallingOption = None,
    form: Annotated[str, typer.Option("--format", "-f", help="text or json.")] = "text",
    fix: Annotated[
        bool,
        typer.Option(
            "--fix", help="Write what was learnt (offers, transfer syntaxes) into the remote AE."
        ),
    ] = False,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for a storage commitment report.")
    ] = 10.0,
    config: ConfigOption = None,
) -> None:
    """Probe a DICOM node as our AE title: TCP, TLS, association and C-ECHO; the storage
    classes and syntaxes it accepts; C-FIND per model and level, C-MOVE to us, C-GET;
    storage commitment, worklist and MPPS. Each failure comes with a hint.

    C-MOVE results and commitment reports are received on our DICOM port and dropped.
    Nothing is stored on the node. Exit code: 0 nothing failed, 1 a check failed, 2 bad
    arguments.
    """
    from pacsnode.doctor.probe import diagnose

    if form not in ("text", "json"):
        raise typer.BadParameter("text or json", param_hint="--format")
    node = peer(target, port, called_ae, calling_ae, config)
    settings = load(config)
    configure_logging("ERROR")
    held = _held(settings)
    report = diagnose(node, settings, held, timeout)
    if form == "json":
        typer.echo(report.to_json())
    else:
        show(report)
    if fix:
        entry = remote_named(settings, target) if port is None else _entry_for(settings, node)
        _fix(settings, entry, report, held)
    if report.failed:
        raise typer.Exit(1)


def _held(settings: Settings) -> Held | None:
    """What the archive holds, if there is one here to compare with."""
    from pacsnode.archive.core import Archive, ArchiveError

    try:
        archive = Archive.open(settings)
    except ArchiveError:
        return None
    try:
        return archive.index.held()
    finally:
        archive.close()


def _entry_for(settings: Settings, node: Peer) -> RemoteAE:
    """The remote AE entry of a node called by address: its AE title's, or a new one."""
    from pacsnode.archive.core import remote_table
    from pacsnode.config import RemoteAE

    found = remote_table(settings).get(node.ae_title)
    return found or RemoteAE(node.ae_title, node.host, node.port)


def _fix(settings: Settings, entry: RemoteAE, report: Report, held: Held | None) -> None:
    from pacsnode import audit
    from pacsnode.archive.remotes import RemoteError
    from pacsnode.doctor.fix import fixed

    if report.finding("association").outcome is not Outcome.OK:
        raise fail("--fix: nothing learnt without an association; the entry is unchanged")
    changed = fixed(entry, report.learnt, held)
    archive = open_archive(settings)
    try:
        archive.remotes.put(changed)
    except RemoteError as exc:
        raise fail(f"--fix: {exc}") from exc
    finally:
        archive.close()
    offers = ",".join(changed.offers) or "all"
    syntaxes = ",".join(changed.transfer_syntaxes) or "as stored"
    done = f"remote AE {changed.ae_title}: offers {offers}; transfer syntaxes {syntaxes}"
    audit.command_change(settings, f"{done} (pacsnode doctor --fix)", kind="network")
    console.print(f"written: {done}", markup=False, highlight=False, soft_wrap=True)


def show(report: Report) -> None:
    """The report as a PACS administrator reads it: a table per section, hints below."""
    out = Console()
    out.print(f"[bold]{escape(report.remote)}[/bold] as {escape(report.calling_ae)}")
    if report.listening:
        out.print(f"listening for C-MOVE and reports: {escape(report.listening)}")
    for section in SECTIONS:
        findings = [f for f in report.findings if f.section == section]
        table = Table(title=section, title_justify="left", show_header=False, expand=True)
        table.add_column("check", no_wrap=True, width=17)
        table.add_column("outcome", no_wrap=True, width=11)
        table.add_column("finding", ratio=1)
        for finding in findings:
            text = escape(finding.summary)
            if finding.hint:
                text += f"\n[yellow]→ {escape(finding.hint)}[/yellow]"
            style = STYLES[finding.outcome]
            table.add_row(finding.check, f"[{style}]{finding.outcome.value}[/{style}]", text)
        out.print(table)
    failed = sum(f.outcome is Outcome.FAILED for f in report.findings)
    out.print("nothing failed" if not failed else f"[bold red]{failed} failed[/bold red]")
