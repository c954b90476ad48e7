"""``pacsnode export-media``: write studies as a DICOMDIR file-set or add them to one;
and reading one back."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from pacsnode import audit
from pacsnode.cli.common import (
    ConfigOption,
    DatabaseOption,
    DataDirOption,
    app,
    archive_of,
    fail,
    walk,
)


@app.command("export-media")
def export_media(
    out_dir: Annotated[Path, typer.Argument(help="Folder to write the file-set into.")],
    study: Annotated[list[str], typer.Option(help="Study Instance UID (repeatable).")],
    series: Annotated[
        list[str] | None, typer.Option(help="Only this Series Instance UID (repeatable).")
    ] = None,
    profile: Annotated[
        str, typer.Option(help="Media application profile, e.g. STD-GEN-CD, STD-GEN-DVD-JPEG.")
    ] = "STD-GEN-CD",
    fileset_id: Annotated[
        str | None, typer.Option(help="File-set ID (up to 16 chars); default PACSNODE.")
    ] = None,
    update: Annotated[
        bool, typer.Option(help="Add to the file-set already in OUT_DIR (File-set Updater).")
    ] = False,
    pdi: Annotated[
        bool, typer.Option(help="Add IHE PDI's README.TXT and INDEX.HTM (no viewer).")
    ] = False,
    deidentify: Annotated[
        bool,
        typer.Option(
            help="Write the objects de-identified: PS3.15 Basic Application Level "
            "Confidentiality Profile, pseudonyms from the archive's key."
        ),
    ] = False,
    deidentify_option: Annotated[
        list[str] | None,
        typer.Option(
            help="A PS3.15 option with --deidentify (repeatable): retain-uids, retain-dates, "
            "retain-patient-characteristics, retain-device-identity, "
            "retain-institution-identity, clean-descriptors, retain-safe-private."
        ),
    ] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    database_url: DatabaseOption = None,
) -> None:
    """Write the studies to OUT_DIR as a file-set with a DICOMDIR (File-set Creator), or
    with --update add them to the file-set there (File-set Updater)."""
    from pacsnode.archive.deidentify import Deidentifier, OptionError, Options, pseudonym_key
    from pacsnode.media.dicomdir import ExportError, export

    if deidentify_option and not deidentify:
        raise fail("--deidentify-option goes with --deidentify")
    try:
        options = Options.from_words(deidentify_option or ())
    except OptionError as exc:
        raise fail(str(exc)) from exc
    archive = archive_of(config, data_dir, database_url)
    try:
        deidentifier = (
            Deidentifier(options, pseudonym_key(archive.settings.data_dir)) if deidentify else None
        )
        report = export(
            archive,
            study,
            out_dir,
            series=series or (),
            profile=profile,
            fileset_id=fileset_id,
            update=update,
            pdi=pdi,
            deidentifier=deidentifier,
        )
        with audit.command_trail(archive.settings, archive.database) as user:
            medium = out_dir.resolve().as_uri()
            failed = len(report.skipped)
            audit.media_exported(
                user, medium, report.exported, profile=report.profile, failed=failed
            )
    except ExportError as exc:
        raise fail(str(exc)) from exc
    finally:
        archive.close()
    out = Console()
    out.print(f"{report.dicomdir}: file-set {report.fileset_id}, profile {report.profile}")
    how = f" de-identified ({', '.join(options.words()) or 'basic profile'})" if deidentify else ""
    out.print(f"exported {len(report.exported)} instances{how}")
    if report.already_there:
        out.print(f"{len(report.already_there)} instances were in the file-set already")
    for old, new in report.moved:
        out.print(f"  moved {old} to {new}")
    for sop, stored in report.converted:
        out.print(f"  converted {sop} from {stored} to Explicit VR Little Endian")
    for sop, why in report.skipped:
        out.print(f"  [red]skipped[/red] {sop}: {why}")
    if report.skipped or not (report.exported or report.already_there):
        raise typer.Exit(1)


@dataclass(frozen=True)
class ImportSources:
    files: list[Path]
    """Every file to import, in order."""
    searched: set[Path]
    """Those found by searching a folder without a DICOMDIR, where other files may lie."""
    problems: list[str]
    """Why files that a DICOMDIR references cannot be had."""


def import_sources(paths: list[Path]) -> ImportSources:
    """The files to import: those a DICOMDIR references where a folder has one (PS3.10
    File-set Reader), else every file found."""
    from pydicom.errors import InvalidDicomError

    from pacsnode.media.dicomdir import referenced_files

    files: list[Path] = []
    searched: set[Path] = set()
    problems: list[str] = []
    for path in paths:
        dicomdir = path / "DICOMDIR" if path.is_dir() else path
        if dicomdir.name.upper() != "DICOMDIR" or not dicomdir.is_file():
            found = [p for p in walk([path]) if p.name.upper() != "DICOMDIR"]
            files.extend(found)
            if path.is_dir():
                searched.update(found)
            continue
        try:
            present, missing = referenced_files(dicomdir)
        except (InvalidDicomError, ValueError, OSError) as exc:
            problems.append(f"unreadable DICOMDIR {dicomdir.name}: {exc}")
            continue
        files.extend(present)
        problems.extend(f"missing from the file-set: {file_id}" for file_id in missing)
    return ImportSources(files, searched, problems)
