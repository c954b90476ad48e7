"""The ``pacsnode`` command: the server, and the tools an administrator reaches for."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from pacsnode.config import ConfigError, Settings, load_settings

app = typer.Typer(
    help="pacsnode: a DICOM archive. Run 'pacsnode serve' to start it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="TOML config file (default: $PACSNODE_CONFIG).",
        exists=True,
        dir_okay=False,
    ),
]
DataDirOption = Annotated[Path | None, typer.Option(help="Where files and the index live.")]
DatabaseOption = Annotated[
    str | None, typer.Option(help="SQLAlchemy URL of the index (default: SQLite in data dir).")
]


def _settings(config: Path | None, **overrides: object) -> Settings:
    try:
        return load_settings(config, overrides)
    except ConfigError as exc:
        console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    # pydicom both logs and warns about odd values: keep the log line, drop the echo.
    warnings.filterwarnings("ignore", module="pydicom")
    logging.getLogger("alembic").setLevel(logging.WARNING)


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
    settings = _settings(
        config,
        ae_title=ae_title,
        dicom_port=dicom_port,
        http_port=http_port,
        data_dir=data_dir,
        database_url=database_url,
        log_level=log_level,
    )
    _configure_logging(settings.log_level)
    from pacsnode.node import Node

    log = logging.getLogger("pacsnode")
    node = Node(settings)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        node.start()
    except OSError as exc:
        log.error("cannot listen on port %d: %s", settings.dicom_port, exc)
        raise typer.Exit(1) from exc
    log.info("pacsnode ready (data in %s)", settings.data_dir.resolve())
    stop.wait()
    log.info("shutting down")
    node.stop()
    log.info("stopped")


def _walk(paths: list[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            for root, _dirs, names in os.walk(path):
                for name in sorted(names):
                    yield Path(root) / name
        else:
            yield path


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    )


@app.command("import")
def import_(
    paths: Annotated[
        list[Path], typer.Argument(help="Files or folders (searched recursively).", exists=True)
    ],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Import DICOM files into the archive through the same ingest as C-STORE."""
    settings = _settings(config, data_dir=data_dir, database_url=database_url)
    _configure_logging("WARNING")
    from pacsnode.archive.core import Archive
    from pacsnode.archive.ingest import Received

    archive = Archive(settings)
    files = [p for p in _walk(paths) if p.name.upper() != "DICOMDIR"]
    outcomes: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    with _progress() as progress:
        task = progress.add_task("importing", total=len(files))
        for path in files:
            result = archive.ingest(Received(path, duplicate_policy=settings.duplicate_policy))
            outcomes[result.outcome.value] += 1
            if not result.ok:
                reasons[f"0x{result.status:04X} {result.comment}"] += 1
            progress.advance(task)
    archive.close()
    _print_summary(outcomes, reasons)
    if outcomes["failed"] or outcomes["refused"]:
        raise typer.Exit(1)


def _print_summary(outcomes: Counter[str], reasons: Counter[str]) -> None:
    table = Table(title="import summary")
    table.add_column("outcome")
    table.add_column("files", justify="right")
    for outcome, count in sorted(outcomes.items()):
        table.add_row(outcome, str(count))
    Console().print(table)
    for reason, count in reasons.most_common():
        Console().print(f"  {count} x {reason}")


HostArg = Annotated[str, typer.Argument(help="Host of the remote node.")]
PortArg = Annotated[int, typer.Argument(help="DIMSE port of the remote node.")]
CalledOption = Annotated[str, typer.Option("--called-ae", "-aec", help="The peer's AE title.")]
CallingOption = Annotated[
    str | None,
    typer.Option("--calling-ae", "-aet", help="Our AE title (default: the configured ae_title)."),
]


@app.command()
def echo(
    host: HostArg,
    port: PortArg,
    called_ae: CalledOption = "ANY-SCP",
    calling_ae: CallingOption = None,
    config: ConfigOption = None,
) -> None:
    """Send a C-ECHO (verification). Exit code 0 only on success."""
    from pacsnode.dimse.scu import AssociationFailed, Peer
    from pacsnode.dimse.scu import echo as send_echo

    calling_ae = calling_ae or _settings(config).ae_title
    started = time.monotonic()
    try:
        status = send_echo(Peer(host, port, called_ae, calling_ae))
    except AssociationFailed as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    elapsed_ms = (time.monotonic() - started) * 1000
    Console().print(
        f"C-ECHO {called_ae}@{host}:{port}: status 0x{status:04X} in {elapsed_ms:.0f} ms"
    )
    if status != 0:
        raise typer.Exit(1)


@app.command()
def store(
    host: HostArg,
    port: PortArg,
    files: Annotated[list[Path], typer.Argument(help="Files or folders to send.", exists=True)],
    called_ae: CalledOption = "ANY-SCP",
    calling_ae: CallingOption = None,
    config: ConfigOption = None,
) -> None:
    """Send DICOM files with C-STORE, each in its own transfer syntax when accepted.

    Exit code: 0 all stored, 1 some failed, 2 no association.
    """
    from pacsnode.dimse.scu import AssociationFailed, Peer, StoreOutcome, describe
    from pacsnode.dimse.scu import store as send

    calling_ae = calling_ae or _settings(config).ae_title

    _configure_logging("ERROR")
    candidates = list(_walk(files))
    outgoing = [item for item in map(describe, candidates) if item is not None]
    failures: list[StoreOutcome] = []
    skipped = len(candidates) - len(outgoing)
    with _progress() as progress:
        task = progress.add_task("sending", total=len(outgoing))

        def on_result(outcome: StoreOutcome) -> None:
            if outcome.status is None or outcome.status >= 0xA000 or outcome.status == 0x0111:
                failures.append(outcome)
            progress.advance(task)

        try:
            send(Peer(host, port, called_ae, calling_ae), outgoing, on_result)
        except AssociationFailed as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from exc
    for failure in failures:
        status = "none" if failure.status is None else f"0x{failure.status:04X}"
        console.print(f"[red]failed[/red] {failure.path}: status {status} {failure.comment}")
    Console().print(
        f"sent {len(outgoing) - len(failures)} of {len(outgoing)} files"
        + (f"; {skipped} not DICOM, skipped" if skipped else "")
    )
    if failures:
        raise typer.Exit(1)


@app.command()
def stats(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Show what the archive holds and how much disk it uses."""
    settings = _settings(config, data_dir=data_dir, database_url=database_url)
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
