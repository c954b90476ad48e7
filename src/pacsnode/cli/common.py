"""What every ``pacsnode`` command shares: the Typer app, options, console and helpers.

Failures a command expects (a bad setting, no archive, an unusable directory or
database, an unknown remote AE) end it with one line on standard error and exit code
2, never a traceback; :func:`fail` is the one way they are told.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from pacsnode import __version__
from pacsnode.config import CONFIG_ENV, SYSTEM_CONFIG, ConfigError, Settings, load_settings
from pacsnode.logs import configure_logging as configure_logging

if TYPE_CHECKING:
    from pacsnode.archive.core import Archive
    from pacsnode.config import RemoteAE
    from pacsnode.dimse.scu import Peer

app = typer.Typer(
    help="pacsnode: a DICOM archive. Run 'pacsnode serve' to start it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


def _version(shown: bool) -> None:
    if shown:
        typer.echo(f"pacsnode {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """pacsnode: a DICOM archive. Run 'pacsnode serve' to start it."""


ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help=f"TOML config file (default: ${CONFIG_ENV}, else {SYSTEM_CONFIG} if it exists).",
        exists=True,
        dir_okay=False,
    ),
]
DataDirOption = Annotated[Path | None, typer.Option(help="Where files and the index live.")]
DatabaseOption = Annotated[
    str | None, typer.Option(help="SQLAlchemy URL of the index (default: SQLite in data dir).")
]


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``message`` as one line on standard error; the exit to raise with ``code``."""
    console.print(message, style="red", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(code)


def load(config: Path | None, **overrides: object) -> Settings:
    try:
        return load_settings(config, overrides)
    except ConfigError as exc:
        raise fail(f"configuration error: {exc}") from exc


def open_archive(settings: Settings, create: bool = False) -> Archive:
    """The archive the settings name, said on standard error; only ``serve`` and
    ``import`` may ``create`` one (in an empty or new directory)."""
    from pacsnode.archive.core import Archive, ArchiveError, display_url

    try:
        archive = Archive.open(settings, create)
    except ArchiveError as exc:
        raise fail(str(exc)) from exc
    named = settings.database_url or settings.cluster  # not the default SQLite file
    index = f"index {display_url(settings.resolved_database_url)}; " if named else ""
    console.print(
        f"archive {settings.data_dir.absolute()} ({index}config {settings.config_file or 'none'})",
        style="dim",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    return archive


def archive_of(
    config: Path | None, data_dir: Path | None = None, database_url: str | None = None
) -> Archive:
    """The archive of an administrative command's options (it must exist)."""
    return open_archive(load(config, data_dir=data_dir, database_url=database_url))


def check_ae_title(title: str, option: str) -> str:
    """An AE title typed as an option; pynetdicom would raise on a long one."""
    if not title.strip() or len(title) > 16 or "\\" in title:
        raise fail(f"{option}: {title!r} is not an AE title (1 to 16 characters, no '\\')")
    return title


def peer(
    target: str,
    port: int | None,
    called_ae: str | None,
    calling_ae: str | None,
    config: Path | None,
) -> Peer:
    """The node a command calls: ``HOST PORT``, or a remote AE by its title (the
    config's ``[[remote_ae]]`` and the archive's run-time table, as the server sees
    them), whose address and AE title are then used. Associations use TLS toward
    remote AEs with ``tls = true``, and the config's timeouts and PDU size, as the
    server's do."""
    from pacsnode.dimse.scu import Dialer

    settings = load(config)
    try:
        dialer = Dialer(settings)
        dialer.tls.check()
    except ConfigError as exc:
        raise fail(f"configuration error: {exc}") from exc
    ours = check_ae_title(calling_ae or settings.ae_title, "--calling-ae")
    if port is not None:
        return dialer.to(target, port, check_ae_title(called_ae or "ANY-SCP", "--called-ae"), ours)
    remote = remote_named(settings, target)
    called = check_ae_title(called_ae or remote.ae_title, "-aec")
    return dialer.to(remote.host, remote.port, called, ours)


def remote_named(settings: Settings, name: str) -> RemoteAE:
    """A remote AE by the title an administrator typed; a misspelt one ends the command
    with the closest known title."""
    from pacsnode.archive.core import ArchiveError, remote_table
    from pacsnode.validation import did_you_mean

    try:
        remotes = remote_table(settings)
    except ArchiveError as exc:
        raise fail(str(exc)) from exc
    found = remotes.find(name)
    if found is not None:
        return found
    titles = [remote.ae_title for remote in remotes.all()]
    raise fail(
        f"no remote AE {name!r}{did_you_mean(name, titles)} in the config file "
        f"({settings.config_file or 'none'}) or the archive's remote AE table; "
        "give HOST PORT to call a node by its address"
    )


def split_port(words: list[str]) -> tuple[int | None, list[str]]:
    """``[PORT] REST…`` after a REMOTE or HOST: a number right after it is the port."""
    if words and words[0].isdigit():
        return int(words[0]), words[1:]
    return None, words


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


TargetArg = Annotated[
    str,
    typer.Argument(
        metavar="REMOTE|HOST",
        help="A remote AE by its title ([[remote_ae]] or 'pacsnode remote add'), or a host "
        "followed by PORT.",
    ),
]
PortArg = Annotated[
    int | None, typer.Argument(help="DIMSE port, when the first argument is a host.")
]
CalledOption = Annotated[
    str | None,
    typer.Option(
        "--called-ae",
        "-aec",
        help="The peer's AE title (default: the remote AE's title, or ANY-SCP with HOST PORT).",
    ),
]
CallingOption = Annotated[
    str | None,
    typer.Option("--calling-ae", "-aet", help="Our AE title (default: the configured ae_title)."),
]
