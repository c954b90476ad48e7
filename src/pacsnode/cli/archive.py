"""Commands on the archive itself: serve it, import into it, look at it."""

from __future__ import annotations

import logging
import signal
import threading
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pacsnode import audit
from pacsnode.cli.common import (
    ConfigOption,
    DatabaseOption,
    DataDirOption,
    app,
    configure_logging,
    console,
    load,
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
    """Start the archive and serve until SIGINT or SIGTERM."""
    settings = load(
        config,
        ae_title=ae_title,
        dicom_port=dicom_port,
        http_port=http_port,
        data_dir=data_dir,
        database_url=database_url,
        log_level=log_level,
    )
    configure_logging(settings.log_level)
    from pacsnode.node import Node

    log = logging.getLogger("pacsnode")
    try:
        node = Node(settings)
    except ConfigError as exc:  # settings that only the doors can judge, e.g. http_users
        console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        node.start()
    except OSError as exc:
        log.error("cannot start: %s", exc)
        raise typer.Exit(1) from exc
    log.info("pacsnode ready (data in %s)", settings.data_dir.resolve())
    stop.wait()
    log.info("shutting down")
    node.stop()
    log.info("stopped")


@app.command("import")
def import_(
    paths: Annotated[
        list[Path], typer.Argument(help="Files or folders (searched recursively).", exists=True)
    ],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Import DICOM files into the archive through the same ingest as C-STORE.

    Files of other kinds found in a folder (a README, a viewer on a CD) are skipped;
    a file named on the command line must be DICOM."""
    settings = load(config, data_dir=data_dir, database_url=database_url)
    configure_logging("WARNING")
    from pacsnode.archive.core import Archive
    from pacsnode.archive.ingest import Received, looks_like_dicom

    archive = Archive(settings)
    sources = import_sources(paths)  # a DICOMDIR names exactly what to import
    outcomes: Counter[str] = Counter(failed=len(sources.problems))
    reasons: Counter[str] = Counter(sources.problems)
    skipped: list[Path] = []
    newest_before = archive.metadata.newest_pk()
    imported: list[str] = []
    with audit.command_trail(settings, archive.database) as user, progress_bar() as progress:
        task = progress.add_task("importing", total=len(sources.files))
        for path in sources.files:
            progress.advance(task)
            if path in sources.searched and not looks_like_dicom(path):
                skipped.append(path)
                continue
            result = archive.ingest(Received(path, duplicate_policy=settings.duplicate_policy))
            outcomes[result.outcome.value] += 1
            if result.ok and result.sop_instance_uid:
                imported.append(result.sop_instance_uid)
            if not result.ok:
                reasons[f"0x{result.status:04X} {result.comment}"] += 1
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
    if outcomes["failed"] or outcomes["refused"]:
        raise typer.Exit(1)


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
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Show what the archive holds and how much disk it uses."""
    settings = load(config, data_dir=data_dir, database_url=database_url)
    from pacsnode.archive.core import Archive

    archive = Archive(settings)
    numbers = archive.index.stats()
    archive.close()
    table = Table(title=f"pacsnode archive ({settings.data_dir})")
    table.add_column("what")
    table.add_column("count", justify="right")
    for label, value in (
        ("patients", numbers.patients),
        ("studies", numbers.studies),
        ("series", numbers.series),
        ("instances", numbers.instances),
    ):
        table.add_row(label, str(value))
    table.add_row("disk used", f"{numbers.bytes / 1e6:.1f} MB")
    Console().print(table)
