"""What every ``pacsnode`` command shares: the Typer app, options, console and helpers."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

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


if TYPE_CHECKING:
    from pacsnode.dimse.scu import Peer


def load(config: Path | None, **overrides: object) -> Settings:
    try:
        return load_settings(config, overrides)
    except ConfigError as exc:
        console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc


def peer(host: str, port: int, called_ae: str, calling_ae: str | None, config: Path | None) -> Peer:
    """The node a command calls, as the server would call it: our AE title (the option,
    else the config's), the config's timeouts and PDU size, and TLS toward a remote AE
    of the config with ``tls = true``."""
    from pacsnode.dimse.scu import Dialer

    settings = load(config)
    try:
        dialer = Dialer(settings)
        dialer.tls.check()
    except ConfigError as exc:
        console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc
    return dialer.to(host, port, called_ae, calling_ae or settings.ae_title)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s [%(process)d] %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # pydicom both logs and warns about odd values: keep the log line, drop the echo.
    warnings.filterwarnings("ignore", module="pydicom")
    logging.getLogger("alembic").setLevel(logging.WARNING)


def walk(paths: list[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            for root, _dirs, names in os.walk(path):
                for name in sorted(names):
                    yield Path(root) / name
        else:
            yield path


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
    )


HostArg = Annotated[str, typer.Argument(help="Host of the remote node.")]
PortArg = Annotated[int, typer.Argument(help="DIMSE port of the remote node.")]
CalledOption = Annotated[str, typer.Option("--called-ae", "-aec", help="The peer's AE title.")]
CallingOption = Annotated[
    str | None,
    typer.Option("--calling-ae", "-aet", help="Our AE title (default: the configured ae_title)."),
]
