"""Commands on the archive itself: serve it, import into it, look at it."""

from __future__ import annotations

import csv
import json
import logging
import signal
import threading
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pacsnode import audit
from pacsnode.cli.common import (
    ConfigOption,
    DatabaseOption,
    DataDirOption,
    app,
    archive_of,
    configure_logging,
    console,
    fail,
    load,
    open_archive,
    progress_bar,
)
from pacsnode.cli.media import import_sources
from pacsnode.config import ConfigError


@app.command()
def serve(
    config: ConfigOption = None,
    ae_title: Annotated[str | None, typer.Option(help="Our AE title [PACSNODE].")] = None,
    dicom_port: Annotated[int | None, typer.Option(help="DIMSE port [11112].")] = None,
    http_port: Annotated[int | None, typer.Option(help="HTTP port [8042].")] = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
    log_level: Annotated[str | None, typer.Option(help="DEBUG, INFO, WARNING [INFO].")] = None,
) -> None:
    """Start the archive and serve until SIGINT or SIGTERM.

    A new archive is made only in an empty or new data directory. Exit code 2 when it
    cannot start (a setting, the data directory, the index database, a port in use).
    """
    from pacsnode.logs import configure_server_logging

    settings = load(
        config,
        ae_title=ae_title,
        dicom_port=dicom_port,
        http_port=http_port,
        data_dir=data_dir,
        database_url=database_url,
        log_level=log_level,
    )
    try:
        configure_server_logging(settings)
    except OSError as exc:
        raise fail(f"cannot write the log file {settings.log_file}: {exc.strerror}") from exc
    from pacsnode import pinned
    from pacsnode.node import Node
    from pacsnode.processes import Supervisor, default_workers

    try:
        pinned.check()
    except pinned.MissingDependency as exc:
        raise fail(f"cannot start: {exc}") from exc

    log = logging.getLogger("pacsnode")
    archive = open_archive(settings, create=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    workers = default_workers(settings)
    try:
        if workers > 1:
            archive.close()
            Supervisor(settings, workers).run(stop)
            log.info("stopped")
            return
        node = Node(settings, archive)
        node.prepare()
        node.start()
    except ConfigError as exc:  # settings that only the doors can judge, e.g. http_users
        archive.close()
        raise fail(f"configuration error: {exc}") from exc
    except OSError as exc:
        log.debug("start failed", exc_info=True)
        raise fail(f"cannot start: {exc}") from exc
    log.info("pacsnode ready (data in %s)", settings.data_dir.resolve())
    stop.wait()
    log.info("shutting down")
    node.stop()
    log.info("stopped")


VerboseOption = Annotated[
    bool, typer.Option("--verbose", "-v", help="List each file not stored, with the reason.")
]
ReportOption = Annotated[
    Path | None,
    typer.Option(help="Write a CSV line per file (path, outcome, status, reason) here."),
]


@app.command("import")
def import_(
    paths: Annotated[
        list[Path], typer.Argument(help="Files or folders (searched recursively).", exists=True)
    ],
    verbose: VerboseOption = False,
    report: ReportOption = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Import DICOM files into the archive through the same ingest as C-STORE.

    A new archive is made only in an empty or new data directory. Files of other kinds
    found in a folder (a README, a viewer on a CD) are skipped; a file named on the
    command line must be DICOM. Exit code: 0 all stored (or already there), 1 some files
    refused or failed, 2 nothing could start.
    """
    settings = load(config, data_dir=data_dir, database_url=database_url)
    configure_logging("WARNING")
    from pacsnode.archive.ingest import Received, looks_like_dicom
    from pacsnode.archive.receiving import Origin

    archive = open_archive(settings, create=True)
    sources = import_sources(paths)  # a DICOMDIR names exactly what to import
    outcomes: Counter[str] = Counter(failed=len(sources.problems))
    reasons: Counter[str] = Counter(sources.problems)
    lines: list[tuple[str, str, str, str]] = [("", "failed", "", why) for why in sources.problems]
    skipped: list[Path] = []
    newest_before = archive.metadata.newest_pk()
    imported: list[str] = []
    with audit.command_trail(settings, archive.database) as user, progress_bar() as progress:
        task = progress.add_task("importing", total=len(sources.files))
        for path in sources.files:
            progress.advance(task)
            if path in sources.searched and not looks_like_dicom(path):
                skipped.append(path)
                lines.append((str(path), "skipped", "", "not DICOM"))
                continue
            result = archive.receive(Received(path), Origin("import"))
            outcomes[result.outcome.value] += 1
            status = f"0x{result.status:04X}"
            lines.append((str(path), result.outcome.value, status, result.comment))
            if result.ok and result.sop_instance_uid:
                imported.append(result.sop_instance_uid)
            if not result.ok:
                reasons[f"{status} {result.comment}"] += 1
        # Viewers ask for a study's metadata first: have it ready, as C-STORE does.
        task = progress.add_task("metadata", total=None)
        done: int | None = newest_before
        while done is not None:
            done = archive.metadata.warm_after(done, 50)
        medium = " ".join(path.resolve().as_uri() for path in paths)
        failed = outcomes["failed"] + outcomes["refused"]
        audit.media_imported(user, medium, imported, failed=failed)
    archive.close()
    outcomes["skipped"] = len(skipped)
    _print_summary(+outcomes, reasons, skipped)
    refused = [line for line in lines if line[1] in ("failed", "refused")]
    if verbose:
        for name, outcome, status, why in refused:
            detail = " ".join(part for part in (status, why) if part)
            console.print(escape(f"{outcome} {name or 'file-set'}: {detail}"))
    if report is not None:
        _write_report(report, lines)
    if refused:
        raise typer.Exit(1)


def _write_report(report: Path, lines: list[tuple[str, str, str, str]]) -> None:
    try:
        with report.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(("path", "outcome", "status", "reason"))
            writer.writerows(lines)
    except OSError as exc:
        raise fail(f"cannot write the report {report}: {exc.strerror}") from exc


def _print_summary(outcomes: Counter[str], reasons: Counter[str], skipped: list[Path]) -> None:
    table = Table(title="import summary")
    table.add_column("outcome")
    table.add_column("files", justify="right")
    for outcome, count in sorted(outcomes.items()):
        table.add_row(outcome, str(count))
    out = Console()
    out.print(table)
    for reason, count in reasons.most_common():
        out.print(f"  {count} x {reason}", markup=False, highlight=False)
    for path in skipped:
        out.print(f"  {path}: skipped: not DICOM", markup=False, highlight=False)


@app.command()
def stats(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Show what the archive holds and how much disk it uses."""
    archive = archive_of(config, data_dir, database_url)
    numbers = archive.index.stats()
    archive.close()
    if as_json:
        typer.echo(json.dumps(numbers.as_json()))
        return
    table = Table(title=f"pacsnode archive ({archive.settings.data_dir})")
    table.add_column("what")
    table.add_column("count", justify="right")
    for label, value in (
        ("patients", numbers.patients),
        ("studies", numbers.studies),
        ("series", numbers.series),
        ("instances", numbers.instances),
    ):
        table.add_row(label, str(value))
    table.add_row("deleted or rejected, kept", str(numbers.hidden))
    table.add_row("disk used", f"{numbers.bytes / 1e6:.1f} MB")
    Console().print(table)
