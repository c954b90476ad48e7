"""``pacsnode worklist``: schedule, list and remove modality worklist items."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from pydicom import Dataset
from rich.console import Console
from rich.table import Table

from pacsnode.archive.worklist import SPS, Worklist, WorklistError, with_fields
from pacsnode.cli.common import (
    ConfigOption,
    DatabaseOption,
    DataDirOption,
    app,
    fail,
    load,
    open_archive,
)

worklist = typer.Typer(help="Add, list and delete modality worklist items.", no_args_is_help=True)
app.add_typer(worklist, name="worklist")

Text = Annotated[str | None, typer.Option()]


def _open(config: Path | None, data_dir: Path | None, database_url: str | None) -> Worklist:
    from pacsnode.jobs.queue import JobQueue
    from pacsnode.workflows.prefetch import on_scheduled

    settings = load(config, data_dir=data_dir, database_url=database_url)
    archive = open_archive(settings)
    database = archive.database
    queue = JobQueue(database, settings.job_max_attempts, settings.job_retry_delay)
    scheduled = on_scheduled(queue, settings)
    return Worklist(database, settings.worklist_hide_finished, scheduled, archive.issuers)


@worklist.command()
def add(
    patient_id: Text = None,
    patient_name: Annotated[
        str | None, typer.Option(help="As DICOM writes it: FAMILY^GIVEN")
    ] = None,
    birth_date: Annotated[str | None, typer.Option(help="YYYYMMDD")] = None,
    sex: Annotated[str | None, typer.Option(help="M, F or O")] = None,
    accession: Text = None,
    modality: Text = None,
    station_ae: Annotated[str | None, typer.Option(help="Scheduled Station AE Title")] = None,
    start: Annotated[str | None, typer.Option(help="YYYYMMDDHHMM (default: now)")] = None,
    procedure: Annotated[str | None, typer.Option(help="Requested procedure, in words")] = None,
    procedure_id: Annotated[str | None, typer.Option(help="Requested Procedure ID")] = None,
    step_id: Annotated[str | None, typer.Option(help="Scheduled Procedure Step ID")] = None,
    physician: Annotated[str | None, typer.Option(help="Referring physician")] = None,
    json_file: Annotated[
        Path | None,
        typer.Option("--json", help="The whole item in the DICOM JSON model.", exists=True),
    ] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Schedule a procedure step on the worklist."""
    moment = datetime.strptime(start, "%Y%m%d%H%M") if start else datetime.now()
    options = {
        "PatientID": patient_id,
        "PatientName": patient_name,
        "PatientBirthDate": birth_date,
        "PatientSex": sex,
        "AccessionNumber": accession,
        "RequestedProcedureDescription": procedure,
        "RequestedProcedureID": procedure_id,
        "ReferringPhysicianName": physician,
        "Modality": modality,
        "ScheduledStationAETitle": station_ae,
        "ScheduledProcedureStepID": step_id,
        "ScheduledProcedureStepDescription": procedure,
        "ScheduledProcedureStepStartDate": moment.strftime("%Y%m%d"),
        "ScheduledProcedureStepStartTime": moment.strftime("%H%M%S"),
    }
    try:
        if json_file is not None:
            dataset = Dataset.from_json(json.loads(json_file.read_text()))
        else:
            dataset = with_fields({k: v for k, v in options.items() if v})
        item = _open(config, data_dir, database_url).add(dataset)
    except WorklistError as exc:
        raise fail(str(exc), 1) from exc
    Console().print(f"worklist item {item.pk}: study {item.dataset.StudyInstanceUID}")


@worklist.command("list")
def list_items(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Show the worklist: who, what, where and when."""
    table = Table(title="worklist")
    for column in ("id", "status", "patient", "accession", "modality", "station", "start"):
        table.add_column(column)
    for item in _open(config, data_dir, database_url).items():
        dataset = item.dataset
        step = dataset.get(SPS)[0]
        table.add_row(
            str(item.pk),
            item.status,
            f"{dataset.get('PatientName', '')} ({dataset.get('PatientID', '')})",
            str(dataset.get("AccessionNumber", "")),
            str(step.get("Modality", "")),
            str(step.get("ScheduledStationAETitle", "")),
            f"{step.get('ScheduledProcedureStepStartDate', '')} "
            f"{step.get('ScheduledProcedureStepStartTime', '')}",
        )
    Console().print(table)


@worklist.command()
def delete(
    item_id: Annotated[int, typer.Argument(help="The item's number, as 'worklist list' shows.")],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Remove an item from the worklist."""
    try:
        _open(config, data_dir, database_url).delete(item_id)
    except WorklistError as exc:
        raise fail(str(exc), 1) from exc
    Console().print(f"worklist item {item_id} deleted")
