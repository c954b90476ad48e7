"""``pacsnode patient``, ``pacsnode study`` and ``pacsnode authority``: correcting patient
and study records, merging patients, and the assigning authority table; the same core
calls as the REST API and HL7 ADT."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pacsnode import audit
from pacsnode.archive.authorities import AuthorityError, AuthorityNotFound, authority_from_json
from pacsnode.archive.patients import (
    AmbiguousPatient,
    PatientKey,
    RecordError,
    RecordNotFound,
    Updated,
)
from pacsnode.cli.common import (
    ConfigOption,
    DatabaseOption,
    DataDirOption,
    app,
    archive_of,
    fail,
)

patient = typer.Typer(help="Correct a patient's demographics, or merge two patients.")
study = typer.Typer(help="Correct a study's attributes.")
authority = typer.Typer(help="List, add or change, and delete assigning authorities.")
for _typer, _name in ((patient, "patient"), (study, "study"), (authority, "authority")):
    _typer.info.no_args_is_help = True
    app.add_typer(_typer, name=_name)

IssuerOption = Annotated[
    str | None, typer.Option(help="Its Issuer of Patient ID, when several share the ID.")
]
_FAILURES = (RecordNotFound, AmbiguousPatient, RecordError)


def _report(updated: Updated) -> None:
    if not updated.changed:
        Console().print(f"{updated.target}: nothing changed")
        return
    for keyword, value in updated.changed.items():
        Console(highlight=False).print(f"{updated.target}: {keyword} = {value!r}", markup=False)


def _given(**values: str | None) -> dict[str, str]:
    return {keyword: value for keyword, value in values.items() if value is not None}


@patient.command("update")
def update_patient(
    patient_id: Annotated[str, typer.Argument(help="The Patient ID.")],
    issuer: IssuerOption = None,
    name: Annotated[str | None, typer.Option(help="Patient's Name, as FAMILY^GIVEN.")] = None,
    birth_date: Annotated[str | None, typer.Option(help="YYYYMMDD; '' empties it.")] = None,
    sex: Annotated[str | None, typer.Option(help="M, F or O; '' empties it.")] = None,
    other_ids: Annotated[str | None, typer.Option(help="Other Patient IDs, A\\B.")] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Change a patient's demographics in the index: what every door shows and sends
    from now on (stored files keep their bytes). Audited as Patient Record."""
    values = _given(
        PatientName=name, PatientBirthDate=birth_date, PatientSex=sex, OtherPatientIDs=other_ids
    )
    archive = archive_of(config, data_dir, database_url)
    try:
        with audit.command_trail(archive.settings, archive.database) as user:
            updated = archive.patients.update_patient(PatientKey(patient_id, issuer), values, user)
    except _FAILURES as exc:
        raise fail(str(exc)) from exc
    finally:
        archive.close()
    _report(updated)


@patient.command("merge")
def merge(
    patient_id: Annotated[str, typer.Argument(help="The Patient ID merged away.")],
    into: Annotated[str, typer.Argument(help="The Patient ID its studies move to.")],
    issuer: IssuerOption = None,
    into_issuer: Annotated[str | None, typer.Option(help="The issuer of INTO.")] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Merge a patient into another: its studies move there and it is gone (a patient
    the archive does not hold yet takes its place). Audited as Patient Record."""
    archive = archive_of(config, data_dir, database_url)
    try:
        with audit.command_trail(archive.settings, archive.database) as user:
            merged = archive.patients.merge(
                PatientKey(patient_id, issuer), PatientKey(into, into_issuer), user
            )
    except _FAILURES as exc:
        raise fail(str(exc)) from exc
    finally:
        archive.close()
    Console().print(f"{patient_id} merged into {merged.target}: {merged.studies} studies")


@study.command("update")
def update_study(
    uid: Annotated[str, typer.Argument(help="The Study Instance UID.")],
    description: Annotated[str | None, typer.Option(help="Study Description.")] = None,
    accession: Annotated[str | None, typer.Option(help="Accession Number.")] = None,
    referring_physician: Annotated[
        str | None, typer.Option(help="Referring Physician's Name.")
    ] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Change a study's attributes in the index; audited as DICOM Instances Accessed."""
    values = _given(
        StudyDescription=description,
        AccessionNumber=accession,
        ReferringPhysicianName=referring_physician,
    )
    archive = archive_of(config, data_dir, database_url)
    try:
        with audit.command_trail(archive.settings, archive.database) as user:
            updated = archive.patients.update_study(uid, values, user)
    except _FAILURES as exc:
        raise fail(str(exc)) from exc
    finally:
        archive.close()
    _report(updated)


@authority.command("list")
def list_authorities(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Show the assigning authorities, from the config file and from the database."""
    table = Table(title="assigning authorities")
    for column in ("id", "issuer", "universal entity ID", "type", "source"):
        table.add_column(column)
    archive = archive_of(config, data_dir, database_url)
    try:
        for entry, source in archive.authorities.entries():
            table.add_row(
                str(entry.id),
                entry.issuer,
                entry.universal_entity_id,
                entry.universal_entity_id_type,
                source,
            )
    finally:
        archive.close()
    Console().print(table)


@authority.command("add")
def add_authority(
    number: Annotated[int, typer.Argument(metavar="ID", help="Its id; 0 is the default.")],
    issuer: Annotated[str, typer.Argument(help="Its Issuer of Patient ID.")],
    universal_id: Annotated[str, typer.Option(help="Universal Entity ID (an OID…).")] = "",
    universal_id_type: Annotated[str, typer.Option(help="ISO, DNS, URI, UUID…")] = "",
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Add an assigning authority, or replace the one with that id."""
    values = {
        "id": number,
        "issuer": issuer,
        "universal_entity_id": universal_id,
        "universal_entity_id_type": universal_id_type,
    }
    try:
        entry = authority_from_json(values)
    except AuthorityError as exc:
        raise fail(str(exc)) from exc
    archive = archive_of(config, data_dir, database_url)
    try:
        created = archive.authorities.put(entry)
        done = f"authority {number}: {'added' if created else 'changed'}"
        audit.command_change(archive.settings, done, kind="network")
    finally:
        archive.close()
    Console().print(done)


@authority.command("delete")
def delete_authority(
    number: Annotated[int, typer.Argument(metavar="ID", help="The authority's id.")],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Delete an authority added at run time (config file entries stay: edit the file)."""
    archive = archive_of(config, data_dir, database_url)
    try:
        archive.authorities.delete(number)
        audit.command_change(archive.settings, f"authority {number}: deleted", kind="network")
    except (AuthorityError, AuthorityNotFound) as exc:
        raise fail(str(exc), 1) from exc
    finally:
        archive.close()
    Console().print(f"authority {number}: deleted")
