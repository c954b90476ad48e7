"""``pacsnode find/move/get/mpps`` and ``worklist find``: query and retrieve from any node.

What an administrator otherwise does with DCMTK's findscu, movescu and getscu, with the
keys typed as keywords (``-k PatientName=DOE*``; ``-k StudyDate`` alone asks for the
attribute back) and output scripts can read (``--format csv|json``). Exit codes, the
same as ``echo``, ``store`` and ``commit``: 0 success; 1 a failure status or failed
sub-operations; 2 no association (refused, unreachable, or the service not accepted)
or bad arguments.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from pydicom import Dataset
from rich.console import Console

from pacsnode.archive.attributes import BY_KEYWORD
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
    peer,
    progress_bar,
    split_port,
)
from pacsnode.cli.matches import OutputFormat, print_matches, print_tree, text, tree_row
from pacsnode.cli.worklist import worklist
from pacsnode.dimse.query_scu import (
    MODELS,
    MoveResult,
    Progress,
    QueryFailed,
    Sequences,
    StoreHandler,
    identifier,
    tag_of,
)
from pacsnode.dimse.scu import AssociationFailed, Peer
from pacsnode.dimse.storage import SpoolFile
from pacsnode.net.association import Association

EXIT_CODES = (
    "Exit code: 0 success, 1 a failure status or failed sub-operations, "
    "2 no association or bad arguments."
)


class ModelName(StrEnum):
    PATIENT = "patient"
    STUDY = "study"
    PSONLY = "psonly"
    MWL = "mwl"


class LevelName(StrEnum):
    PATIENT = "PATIENT"
    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"


KeyOption = Annotated[
    list[str] | None,
    typer.Option(
        "--key",
        "-k",
        help="KEYWORD=VALUE to match (wildcards, ranges), KEYWORD alone to return it; "
        "a tag (0010,0010) works too, Sequence.KEYWORD for a sequence item's key.",
    ),
]
ModelOption = Annotated[
    ModelName, typer.Option("--model", "-m", help="Information model.", case_sensitive=False)
]
LevelOption = Annotated[
    LevelName | None,
    typer.Option("--level", "-l", help="Query/Retrieve Level.", case_sensitive=False),
]
FormatOption = Annotated[
    OutputFormat, typer.Option("--format", "-f", help="How to print the matches.")
]

SPS = "ScheduledProcedureStepSequence"
DEFAULT_KEYS: dict[str, list[str]] = {
    "PATIENT": [
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "NumberOfPatientRelatedStudies",
    ],
    "STUDY": [
        "StudyDate",
        "StudyTime",
        "PatientName",
        "PatientID",
        "AccessionNumber",
        "ModalitiesInStudy",
        "StudyDescription",
        "NumberOfStudyRelatedInstances",
        "StudyInstanceUID",
    ],
    "SERIES": [
        "SeriesNumber",
        "SeriesDate",
        "Modality",
        "SeriesDescription",
        "NumberOfSeriesRelatedInstances",
        "SeriesInstanceUID",
    ],
    "IMAGE": ["InstanceNumber", "ContentDate", "SOPClassUID", "SOPInstanceUID"],
    "mwl": [
        "PatientName",
        "PatientID",
        "AccessionNumber",
        "RequestedProcedureID",
        f"{SPS}.Modality",
        f"{SPS}.ScheduledStationAETitle",
        f"{SPS}.ScheduledProcedureStepStartDate",
        f"{SPS}.ScheduledProcedureStepStartTime",
        f"{SPS}.ScheduledProcedureStepDescription",
        f"{SPS}.ScheduledProcedureStepID",
    ],
}
"""What a query returns besides the keys asked for, so that a bare query is useful."""

SPS_KEYS = frozenset(
    key.split(".")[1] for key in DEFAULT_KEYS["mwl"] if key.startswith(f"{SPS}.")
) | {"ScheduledPerformingPhysicianName", "ScheduledStationName", "ScheduledProcedureStepStatus"}
"""Worklist keys that live in the Scheduled Procedure Step item, wherever typed."""

UNIQUE_KEYS = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}


# --- keys --------------------------------------------------------------------------------


def parse_keys(keys: Iterable[str]) -> dict[str, str]:
    """``-k`` options as an ordered ``{"Key" or "Sequence.Key": value}``; checks names."""
    parsed: dict[str, str] = {}
    for key in keys:
        name, _, value = key.partition("=")
        name = name.strip()
        for part in name.split("."):
            try:
                tag_of(part)
            except ValueError as exc:
                raise typer.BadParameter(str(exc), param_hint="--key") from exc
        if name.count(".") > 1:
            raise typer.BadParameter(f"{name}: one level of sequence only", param_hint="--key")
        parsed[name] = value
    return parsed


def split_keys(keys: dict[str, str]) -> tuple[dict[str, str], Sequences]:
    """Top-level keys, and the keys of each sequence's item."""
    top: dict[str, str] = {}
    sequences: dict[str, dict[str, str]] = {}
    for name, value in keys.items():
        if "." in name:
            sequence, inner = name.split(".")
            sequences.setdefault(sequence, {})[inner] = value
        elif name not in sequences:
            top[name] = value
    return top, sequences


def checked_identifier(keys: dict[str, str]) -> tuple[dict[str, str], Sequences]:
    """Split keys, refusing values their VR cannot hold before any association opens."""
    top, sequences = split_keys(keys)
    try:
        identifier(None, top, sequences)
    except (ValueError, TypeError, OverflowError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--key") from exc
    return top, sequences


def with_defaults(level: str, keys: dict[str, str]) -> dict[str, str]:
    return {**dict.fromkeys(DEFAULT_KEYS[level], ""), **keys}


def worklist_keys(keys: dict[str, str]) -> dict[str, str]:
    """Step attributes typed at the top (``Modality=MR``) moved into the SPS item."""
    return {(f"{SPS}.{name}" if name in SPS_KEYS else name): value for name, value in keys.items()}


@contextmanager
def exit_codes() -> Iterator[None]:
    """Association problems exit 2, failure statuses 1, with the reason on stderr."""
    try:
        yield
    except AssociationFailed as exc:
        raise fail(str(exc)) from exc
    except QueryFailed as exc:
        raise fail(f"C-FIND failed: {exc}", 1) from exc


def _peer(
    target: str,
    port: int | None,
    called_ae: str | None,
    calling_ae: str | None,
    config: Path | None,
) -> Peer:
    configure_logging("ERROR")
    return peer(target, port, called_ae, calling_ae, config)


def _level(model: ModelName, level: LevelName | None, default: str) -> str:
    """The level asked for, or ``default``; refused when the model does not have it."""
    levels = MODELS[model.value].levels
    chosen = level.value if level else (default if default in levels else levels[0])
    if chosen not in levels:
        raise typer.BadParameter(
            f"the {model.value} model has the levels {', '.join(levels)}", param_hint="--level"
        )
    return chosen


# --- find --------------------------------------------------------------------------------


@app.command()
def find(
    target: TargetArg,
    port: PortArg = None,
    key: KeyOption = None,
    model: ModelOption = ModelName.STUDY,
    level: LevelOption = None,
    output: FormatOption = OutputFormat.TABLE,
    tree: Annotated[
        bool,
        typer.Option(
            help="Walk the hierarchy from the model's top level down to --level (default "
            "IMAGE) on one association, printing an indented tree; keys filter their level."
        ),
    ] = False,
    called_ae: CalledOption = None,
    calling_ae: CallingOption = None,
    config: ConfigOption = None,
) -> None:
    """Query a remote AE, or HOST PORT, with C-FIND (Patient Root, Study Root,
    Patient/Study Only, worklist).

    Besides the keys given, each level returns a few useful attributes (names, dates,
    UIDs, counts). --format json prints a list of DICOM JSON data sets.

    Exit code: 0 success, 1 a failure status, 2 no association or bad arguments.
    """
    keys = parse_keys(key or [])
    node = _peer(target, port, called_ae, calling_ae, config)
    if model is ModelName.MWL:
        run_worklist_find(node, keys, output)
    elif tree:
        _print_tree(node, model, _level(model, level, "IMAGE"), keys)
    else:
        chosen = _level(model, level, "STUDY")
        keys = with_defaults(chosen, keys)
        top, sequences = checked_identifier(keys)
        from pacsnode.dimse.query_scu import find as send_find

        with exit_codes():
            print_matches(send_find(node, model.value, chosen, top, sequences), [*keys], output)


def run_worklist_find(peer: Peer, keys: dict[str, str], output: OutputFormat) -> None:
    from pacsnode.dimse.query_scu import find as send_find

    keys = with_defaults("mwl", worklist_keys(keys))
    top, sequences = checked_identifier(keys)
    with exit_codes():
        print_matches(send_find(peer, "mwl", None, top, sequences), [*keys], output)


@worklist.command("find")
def worklist_find(
    target: TargetArg,
    port: PortArg = None,
    key: KeyOption = None,
    output: FormatOption = OutputFormat.TABLE,
    called_ae: CalledOption = None,
    calling_ae: CallingOption = None,
    config: ConfigOption = None,
) -> None:
    """Query a REMOTE worklist (Modality Worklist C-FIND), as a modality does.

    Step keys (Modality, ScheduledStationAETitle, ScheduledProcedureStepStartDate, ...)
    go into the Scheduled Procedure Step item by themselves.

    Exit code: 0 success, 1 a failure status, 2 no association or bad arguments.
    """
    run_worklist_find(
        _peer(target, port, called_ae, calling_ae, config), parse_keys(key or []), output
    )


def _keys_by_level(keys: dict[str, str], levels: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """Each key at the level it belongs to; keys of a level above the model's top at its
    top, and keys the index does not know at the deepest level asked for."""
    placed: dict[str, dict[str, str]] = {level: {} for level in levels}
    for name, value in keys.items():
        attribute = BY_KEYWORD.get(name.split(".")[0])
        level = attribute.level.value if attribute else levels[-1]
        placed[level if level in levels else levels[0]][name] = value
    return placed


def _print_tree(peer: Peer, model: ModelName, deepest: str, keys: dict[str, str]) -> None:
    from pacsnode.dimse.query_scu import find_on, query_association

    all_levels = MODELS[model.value].levels
    levels = all_levels[: all_levels.index(deepest) + 1]
    placed = _keys_by_level(keys, levels)
    rows: list[list[str]] = []

    def walk(depth: int, parents: dict[str, str], assoc: Association) -> None:
        level = levels[depth]
        top, sequences = checked_identifier({**with_defaults(level, placed[level]), **parents})
        for found in list(find_on(assoc, model.value, level, top, sequences)):
            rows.append(tree_row(level, depth, found))
            if depth + 1 < len(levels):
                unique = UNIQUE_KEYS[level]
                walk(depth + 1, {**parents, unique: text(found, unique)}, assoc)

    with exit_codes(), query_association(peer, model.value) as assoc:
        walk(0, {}, assoc)
    print_tree(rows, Console(highlight=False))


# --- move and get ------------------------------------------------------------------------


def _retrieve_keys(keys: dict[str, str]) -> dict[str, str]:
    top, _sequences = checked_identifier(keys)
    if not top:
        raise typer.BadParameter("give the keys of what to retrieve", param_hint="--key")
    return top


def _report(result: MoveResult, what: str) -> None:
    for uid in result.failed_sop_instance_uids:
        console.print(f"failed {uid}", style="red", markup=False)
    Console().print(
        f"{what}: status 0x{result.status:04X}"
        + (f" ({result.comment})" if result.comment else "")
        + f", {result.completed} completed, {result.failed} failed, {result.warning} warning"
    )
    if not result.ok:
        raise typer.Exit(1)


@contextmanager
def _progress_task(description: str) -> Iterator[Progress]:
    """A progress bar fed by pending responses: their counts give its total."""
    with progress_bar() as progress:
        task = progress.add_task(description, total=None)

        def update(result: MoveResult) -> None:
            done = result.completed + result.failed + result.warning
            total = done + result.remaining if result.remaining is not None else None
            progress.update(task, completed=done, total=total)

        yield update


@app.command()
def move(
    target: TargetArg,
    rest: Annotated[
        list[str],
        typer.Argument(
            metavar="[PORT] DEST", help="The port after a HOST; the AE title to send to."
        ),
    ],
    key: KeyOption = None,
    model: ModelOption = ModelName.STUDY,
    level: LevelOption = None,
    called_ae: CalledOption = None,
    calling_ae: CallingOption = None,
    config: ConfigOption = None,
) -> None:
    """Ask a node to send studies, series or instances to an AE (C-MOVE).

    Exit code: 0 all sent, 1 a failure status or failed sub-operations, 2 no
    association or bad arguments.
    """
    from pacsnode.dimse.query_scu import move as send_move

    port, words = split_port(rest)
    if len(words) != 1:
        raise fail("give the destination AE title: move REMOTE DEST, or move HOST PORT DEST")
    destination = words[0]
    chosen, keys, node = _retrieve(model, level, key, (target, port, called_ae, calling_ae), config)
    with exit_codes(), _progress_task(f"moving to {destination}") as update:
        result = send_move(node, model.value, chosen, keys, destination, update)
    _report(result, f"C-MOVE to {destination}")


def _retrieve(
    model: ModelName,
    level: LevelName | None,
    key: list[str] | None,
    address: tuple[str, int | None, str | None, str | None],
    config: Path | None,
) -> tuple[str, dict[str, str], Peer]:
    """What C-MOVE and C-GET share: the level, the keys and the peer, checked."""
    if model is ModelName.MWL:
        raise typer.BadParameter("the worklist cannot be retrieved", param_hint="--model")
    chosen = _level(model, level, "STUDY")
    keys = _retrieve_keys(parse_keys(key or []))
    return chosen, keys, _peer(*address, config)


def _safe_name(uid: str) -> str:
    return re.sub(r"[^0-9A-Za-z.]", "_", uid) or "unnamed"


def file_writer(out: Path) -> StoreHandler:
    """A C-STORE handler keeping each instance as ``<SOP Instance UID>.dcm`` in ``out``."""

    def keep(spooled: SpoolFile) -> int:
        spooled.path.rename(out / f"{_safe_name(spooled.sop_instance)}.dcm")
        return 0x0000

    return keep


@app.command()
def get(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the received files.", file_okay=False)
    ],
    target: TargetArg,
    port: PortArg = None,
    key: KeyOption = None,
    model: ModelOption = ModelName.STUDY,
    level: LevelOption = None,
    called_ae: CalledOption = None,
    calling_ae: CallingOption = None,
    config: ConfigOption = None,
) -> None:
    """Retrieve instances on this association (C-GET) as Part 10 files named by UID.

    Exit code: 0 all received, 1 a failure status or failed sub-operations, 2 no
    association or bad arguments.
    """
    from pacsnode.dimse.query_scu import get as send_get

    chosen, keys, node = _retrieve(model, level, key, (target, port, called_ae, calling_ae), config)
    out.mkdir(parents=True, exist_ok=True)
    with exit_codes(), _progress_task("receiving") as update:
        result = send_get(node, model.value, chosen, keys, file_writer(out), out, update)
    _report(result, f"C-GET into {out}")


# --- MPPS --------------------------------------------------------------------------------

mpps = typer.Typer(help="Send MPPS N-CREATE and N-SET to a node.", no_args_is_help=True)
app.add_typer(mpps, name="mpps")

JsonOption = Annotated[
    Path | None,
    typer.Option("--json", help="The data set in the DICOM JSON model.", exists=True),
]
MPPS_STATUSES = ("IN PROGRESS", "COMPLETED", "DISCONTINUED")


def _mpps_dataset(
    json_file: Path | None, defaults: dict[str, str], changes: dict[str, str], keys: list[str]
) -> Dataset:
    """The JSON file or else the defaults, then the changes, then the ``-k`` keys."""
    dataset = Dataset.from_json(json.loads(json_file.read_text())) if json_file else Dataset()
    wanted = {} if json_file else defaults
    top, sequences = checked_identifier({**wanted, **changes, **parse_keys(keys)})
    for element in identifier(None, top, sequences):
        dataset[element.tag] = element
    return dataset


def _mpps_exit(status: int, what: str) -> None:
    Console().print(f"{what}: status 0x{status:04X}")
    if status != 0 and not 0xB000 <= status <= 0xBFFF:
        raise typer.Exit(1)


def _now() -> dict[str, str]:
    moment = datetime.now()
    return {"date": moment.strftime("%Y%m%d"), "time": moment.strftime("%H%M%S")}


@mpps.command()
def create(
    target: TargetArg,
    port: PortArg = None,
    key: KeyOption = None,
    json_file: JsonOption = None,
    uid: Annotated[str | None, typer.Option(help="The step's SOP Instance UID.")] = None,
    called_ae: CalledOption = None,
    calling_ae: CallingOption = None,
    config: ConfigOption = None,
) -> None:
    """Start a performed procedure step (N-CREATE, IN PROGRESS); prints its UID.

    Without --json, a minimal step starting now, for a new study unless
    -k ScheduledStepAttributesSequence.StudyInstanceUID=... names one.

    Exit code: 0 created, 1 a failure status, 2 no association or bad arguments.
    """
    from pydicom.uid import generate_uid

    from pacsnode.dimse.mpps_scu import create as send_create

    node = _peer(target, port, called_ae, calling_ae, config)
    now = _now()
    defaults = {
        "PatientName": "",
        "PatientID": "",
        "PatientBirthDate": "",
        "PatientSex": "",
        "PerformedProcedureStepID": now["date"] + now["time"],
        "PerformedStationAETitle": node.calling_ae,
        "PerformedProcedureStepStartDate": now["date"],
        "PerformedProcedureStepStartTime": now["time"],
        "PerformedProcedureStepStatus": "IN PROGRESS",
        "Modality": "OT",
        "ScheduledStepAttributesSequence.StudyInstanceUID": str(generate_uid()),
        "ScheduledStepAttributesSequence.AccessionNumber": "",
        "PerformedSeriesSequence": "",
    }
    dataset = _mpps_dataset(json_file, defaults, {}, key or [])
    with exit_codes():
        status, created = send_create(node, dataset, uid)
    _mpps_exit(status, f"MPPS {created} N-CREATE")


@mpps.command("set")
def set_step(
    target: TargetArg,
    rest: Annotated[
        list[str],
        typer.Argument(metavar="[PORT] UID", help="The port after a HOST; the step's UID."),
    ],
    status: Annotated[
        str | None, typer.Option(help=f"New status: {', '.join(MPPS_STATUSES)}.")
    ] = None,
    key: KeyOption = None,
    json_file: JsonOption = None,
    called_ae: CalledOption = None,
    calling_ae: CallingOption = None,
    config: ConfigOption = None,
) -> None:
    """Change a step (N-SET): its status, and the end date and time, now by default.

    Exit code: 0 set, 1 a failure status, 2 no association or bad arguments.
    """
    from pacsnode.dimse.mpps_scu import set as send_set

    changes: dict[str, str] = {}
    if status is not None:
        if status.upper() not in MPPS_STATUSES:
            raise typer.BadParameter(f"one of {', '.join(MPPS_STATUSES)}", param_hint="--status")
        changes["PerformedProcedureStepStatus"] = status.upper()
        if status.upper() != "IN PROGRESS":
            now = _now()
            changes["PerformedProcedureStepEndDate"] = now["date"]
            changes["PerformedProcedureStepEndTime"] = now["time"]
    port, words = split_port(rest)
    if len(words) != 1:
        raise fail("give the step's UID: mpps set REMOTE UID, or mpps set HOST PORT UID")
    uid = words[0]
    node = _peer(target, port, called_ae, calling_ae, config)
    dataset = _mpps_dataset(json_file, {}, changes, key or [])
    with exit_codes():
        answer = send_set(node, uid, dataset)
    _mpps_exit(answer, f"MPPS {uid} N-SET")
