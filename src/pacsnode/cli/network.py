"""Commands toward other DICOM nodes: the SCU side."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pacsnode.archive.commitment import Reference
from pacsnode.cli.common import (
    CalledOption,
    CallingOption,
    ConfigOption,
    PortArg,
    TargetArg,
    app,
    archive_of,
    configure_logging,
    console,
    fail,
    load,
    peer,
    progress_bar,
    split_port,
    walk,
)
from pacsnode.dimse.scu import OutgoingFile, StoreOutcome

RestArg = Annotated[
    list[str] | None,
    typer.Argument(metavar="[PORT] [FILE]...", help="The port after a HOST; files or folders."),
]


@app.command()
def echo(
    target: TargetArg,
    port: PortArg = None,
    called_ae: CalledOption = None,
    calling_ae: CallingOption = None,
    config: ConfigOption = None,
) -> None:
    """Send a C-ECHO (verification) to a remote AE, or to HOST PORT.

    Exit code: 0 success, 1 a failure status, 2 no association or bad arguments.
    """
    from pacsnode.dimse.scu import AssociationFailed
    from pacsnode.dimse.scu import echo as send_echo

    node = peer(target, port, called_ae, calling_ae, config)
    started = time.monotonic()
    try:
        status = send_echo(node)
    except AssociationFailed as exc:
        raise fail(str(exc)) from exc
    elapsed_ms = (time.monotonic() - started) * 1000
    Console().print(
        f"C-ECHO {node.ae_title}@{node.host}:{node.port}: status 0x{status:04X} "
        f"in {elapsed_ms:.0f} ms"
    )
    if status != 0:
        raise typer.Exit(1)


def _files(words: list[str]) -> list[Path]:
    """Files and folders named on the command line; each must exist."""
    paths = [Path(word) for word in words]
    for path in paths:
        if not path.exists():
            raise fail(f"{path} does not exist")
    return paths


def _archive_files(
    study: list[str], series: list[str], config: Path | None, folder: Path, destination: str
) -> list[Path]:
    """The files the local archive holds of these studies, or of these series of one;
    an instance the outgoing step changes (archive/outgoing.py) as its copy in
    ``folder``."""
    from pacsnode.archive.retrieve import locate
    from pacsnode.archive.transcoding import modified

    if series and len(study) != 1:
        raise typer.BadParameter("--series needs exactly one --study", param_hint="--series")
    if not study:
        return []
    archive = archive_of(config)
    try:
        if series:
            found = [item for uid in series for item in locate(archive, study[0], uid)]
        else:
            found = [item for uid in study for item in locate(archive, uid)]
        paths = []
        for item in found:
            modification = archive.outgoing.modification(
                item.path, item.sop_instance_uid, item.edited, destination
            )
            if not modification:
                paths.append(item.path)
                continue
            copy = folder / f"{item.sop_instance_uid}.dcm"
            copy.write_bytes(modified(item.path, item.transfer_syntax_uid, modification))
            paths.append(copy)
        return paths
    finally:
        archive.close()


def _transcoded(
    files: list[OutgoingFile], target: str, folder: Path
) -> tuple[list[OutgoingFile], dict[Path, Path], list[StoreOutcome]]:
    """Copies of the files in ``target`` (in ``folder``), each copy's original, and the
    files that cannot be converted as failures; the copies go out as their own bytes."""
    from pacsnode.archive.transcoding import TranscodeError, transcode
    from pacsnode.dimse.scu import describe

    converted: list[OutgoingFile] = []
    originals: dict[Path, Path] = {}
    failures: list[StoreOutcome] = []
    for index, item in enumerate(files):
        try:
            data = transcode(item.path, item.transfer_syntax, target)
        except TranscodeError as exc:
            failures.append(StoreOutcome(item.path, None, str(exc)))
            continue
        copy = folder / f"{index}.dcm"
        copy.write_bytes(data)
        converted.append(describe(copy) or item)
        originals[copy] = item.path
    return converted, originals, failures


SYNTAX_HELP = (
    "Convert to this transfer syntax UID before sending: Explicit or Implicit VR Little "
    "Endian (decompress), or a lossless one (RLE, JPEG 2000 or JPEG-LS Lossless); sent "
    "uncompressed if the peer does not accept it."
)


@app.command()
def store(
    target: TargetArg,
    rest: RestArg = None,
    study: Annotated[
        list[str] | None, typer.Option(help="Send a study of the local archive (UID).")
    ] = None,
    series: Annotated[
        list[str] | None, typer.Option(help="Only this series of the one --study (UID).")
    ] = None,
    transfer_syntax: Annotated[str | None, typer.Option(help=SYNTAX_HELP)] = None,
    called_ae: CalledOption = None,
    calling_ae: CallingOption = None,
    config: ConfigOption = None,
) -> None:
    """Send DICOM files, or studies of the local archive, with C-STORE.

    Each goes in its own transfer syntax when accepted, or in --transfer-syntax.

    Exit code: 0 all stored, 1 some failed, 2 no association or bad arguments.
    """
    from pacsnode.archive.transcoding import DECODED, LOSSLESS_TARGETS
    from pacsnode.dimse.scu import AssociationFailed, describe
    from pacsnode.dimse.scu import store as send

    if transfer_syntax is not None and transfer_syntax not in (*DECODED, *LOSSLESS_TARGETS):
        raise typer.BadParameter(
            "not one this node converts to: " + ", ".join((*DECODED, *LOSSLESS_TARGETS)),
            param_hint="--transfer-syntax",
        )
    port, words = split_port(rest or [])
    files = _files(words)
    node = peer(target, port, called_ae, calling_ae, config)

    configure_logging("ERROR")
    with tempfile.TemporaryDirectory(prefix="pacsnode-store-") as folder:
        stored = _archive_files(study or [], series or [], config, Path(folder), node.ae_title)
        candidates = list(walk(files)) + stored
        if not candidates:
            raise fail("nothing to send: give files, folders or --study")
        outgoing = [item for item in map(describe, candidates) if item is not None]
        skipped = len(candidates) - len(outgoing)
        total = len(outgoing)
        originals: dict[Path, Path] = {}
        failures: list[StoreOutcome] = []
        if transfer_syntax:
            outgoing, originals, failures = _transcoded(outgoing, transfer_syntax, Path(folder))
        with progress_bar() as progress:
            task = progress.add_task("sending", total=total, completed=len(failures))

            def on_result(outcome: StoreOutcome) -> None:
                if outcome.status is None or outcome.status >= 0xA000 or outcome.status == 0x0111:
                    original = originals.get(outcome.path, outcome.path)
                    failures.append(StoreOutcome(original, outcome.status, outcome.comment))
                progress.advance(task)

            try:
                send(node, outgoing, on_result)
            except AssociationFailed as exc:
                raise fail(str(exc)) from exc
    for failure in failures:
        status = "none" if failure.status is None else f"0x{failure.status:04X}"
        console.print(
            f"[red]failed[/red] {escape(f'{failure.path}: status {status} {failure.comment}')}"
        )
    Console().print(
        f"sent {total - len(failures)} of {total} files"
        + (f"; {skipped} not DICOM, skipped" if skipped else "")
    )
    if failures:
        raise typer.Exit(1)


def _references_of_studies(studies: list[str], config: Path | None) -> list[Reference]:
    """What the local archive holds of these studies, to ask a remote to commit."""
    from pacsnode.archive.attributes import Level

    if not studies:
        return []
    archive = archive_of(config)
    try:
        return [
            Reference(item.sop_class_uid, item.sop_instance_uid)
            for uid in studies
            for item in archive.select(Level.STUDY, {"StudyInstanceUID": uid}, False)
        ]
    finally:
        archive.close()


@app.command()
def commit(
    target: TargetArg,
    rest: Annotated[
        list[str] | None,
        typer.Argument(metavar="[PORT] [FILE]...", help="The port after a HOST; files sent."),
    ] = None,
    study: Annotated[
        list[str] | None, typer.Option(help="A Study Instance UID of the local archive.")
    ] = None,
    called_ae: CalledOption = None,
    calling_ae: CallingOption = None,
    listen_port: Annotated[
        int | None,
        typer.Option(help="Also take the report on a new association to this port."),
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the report.")] = 60.0,
    config: ConfigOption = None,
) -> None:
    """Ask a remote archive to commit instances (Storage Commitment) and show its report.

    Exit code: 0 all committed, 1 some not, 2 no association or no report.
    """
    from pacsnode.dimse.commitment import request_commitment
    from pacsnode.dimse.scu import AssociationFailed, describe

    port, words = split_port(rest or [])
    files = _files(words)
    node = peer(target, port, called_ae, calling_ae, config)
    configure_logging("ERROR")
    described = [item for item in map(describe, walk(files)) if item is not None]
    references = [Reference(item.sop_class, item.sop_instance) for item in described]
    references += _references_of_studies(study or [], config)
    if not references:
        raise fail("nothing to commit: give files or --study")
    try:
        result = request_commitment(node, references, timeout, listen_port, load(config))
    except (AssociationFailed, TimeoutError) as exc:
        raise fail(str(exc)) from exc
    information = result.information
    table = Table(title=f"storage commitment {information.TransactionUID}")
    table.add_column("SOP Instance UID")
    table.add_column("result")
    for item in information.get("ReferencedSOPSequence", []):
        table.add_row(str(item.ReferencedSOPInstanceUID), "committed")
    for item in information.get("FailedSOPSequence", []):
        reason = int(item.get("FailureReason", 0))
        table.add_row(str(item.ReferencedSOPInstanceUID), f"failed 0x{reason:04X}")
    Console().print(table)
    if result.event_type != 1:
        raise typer.Exit(1)
