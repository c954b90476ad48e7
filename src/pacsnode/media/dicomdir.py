"""DICOMDIR file-sets: the File-set Creator (export) and the File-set Reader (import).

pydicom's :class:`~pydicom.fileset.FileSet` writes and reads the DICOMDIR and makes
conformant File IDs; this module decides what goes onto the medium. A media
application profile limits the transfer syntaxes a file-set may hold (PS3.11), so
objects stored otherwise are converted on the way out, and the report says which.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError
from pydicom.fileset import DIRECTORY_RECORDERS, FileSet, RecordNode, _four_level_record_type

from pacsnode.archive.core import Archive
from pacsnode.archive.retrieve import Located, locate
from pacsnode.archive.transcoding import TranscodeError, transcode

EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
JPEG_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2.4.50",  # JPEG Baseline
        "1.2.840.10008.1.2.4.51",  # JPEG Extended
        "1.2.840.10008.1.2.4.57",  # JPEG Lossless
        "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    }
)
J2K_SYNTAXES = frozenset({"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"})

# The syntaxes each general-purpose profile (PS3.11 Annexes) allows besides ELE.
PROFILES: dict[str, frozenset[str]] = {
    "STD-GEN-CD": frozenset(),
    "STD-GEN-DVD-JPEG": JPEG_SYNTAXES,
    "STD-GEN-DVD-J2K": JPEG_SYNTAXES | J2K_SYNTAXES,
    "STD-GEN-USB-JPEG": JPEG_SYNTAXES,
    "STD-GEN-USB-J2K": JPEG_SYNTAXES | J2K_SYNTAXES,
}

# Type 1 record keys that objects may lack; invented like ``dcmmkdir --invent`` does,
# in the directory record only: the exported object itself is never changed.
INVENTED = {"StudyDate": "19000101", "StudyTime": "000000", "StudyID": "1", "SeriesNumber": 1}


class ExportError(Exception):
    """The export cannot start: unknown profile, nothing selected, or a file-set already there."""


@dataclass
class ExportReport:
    """What went onto the medium, what was converted to fit the profile, what was left off."""

    dicomdir: Path
    fileset_id: str
    profile: str
    exported: list[str] = field(default_factory=list)
    converted: list[tuple[str, str]] = field(default_factory=list)  # (SOP Instance, from)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (SOP Instance, why)


def export(
    archive: Archive,
    studies: Iterable[str],
    out_dir: Path,
    *,
    series: Iterable[str] = (),
    instances: Iterable[str] = (),
    profile: str = "STD-GEN-CD",
    fileset_id: str = "PACSNODE",
) -> ExportReport:
    """Write the selected stored instances as a file-set with a DICOMDIR into ``out_dir``.

    ``series`` and ``instances``, when given, narrow the studies down to those.
    """
    if profile not in PROFILES:
        raise ExportError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    if (out_dir / "DICOMDIR").exists():
        raise ExportError(f"{out_dir} already holds a file-set")
    fileset = FileSet()
    try:
        fileset.ID = fileset_id  # pydicom checks it: CS, at most 16 characters
    except ValueError as exc:
        raise ExportError(f"bad File-set ID {fileset_id!r}: {exc}") from exc
    report = ExportReport(out_dir / "DICOMDIR", fileset_id, profile)
    chosen = _selected(archive, studies, set(series), set(instances))
    if not chosen:
        raise ExportError("no stored instance matches the selection")
    for item in chosen:
        _add(fileset, item, report)
    out_dir.mkdir(parents=True, exist_ok=True)
    fileset.write(out_dir)
    return report


def _selected(
    archive: Archive, studies: Iterable[str], series: set[str], instances: set[str]
) -> list[Located]:
    chosen = []
    for study in studies:
        for item in locate(archive, study):
            if series and item.series_instance_uid not in series:
                continue
            if instances and item.sop_instance_uid not in instances:
                continue
            chosen.append(item)
    return chosen


def _add(fileset: FileSet, item: Located, report: ExportReport) -> None:
    """Stage one instance, converted to ELE first if the profile does not allow its syntax."""
    allowed = PROFILES[report.profile] | {EXPLICIT_VR_LITTLE_ENDIAN}
    stored = item.transfer_syntax_uid
    try:
        if stored in allowed:
            dataset = dcmread(item.path)
        else:
            data = transcode(item.path, stored, EXPLICIT_VR_LITTLE_ENDIAN)
            dataset = dcmread(BytesIO(data))
        _stage(fileset, dataset)
    except (TranscodeError, InvalidDicomError, OSError, ValueError) as exc:
        report.skipped.append((item.sop_instance_uid, str(exc)))
        return
    if stored not in allowed:
        report.converted.append((item.sop_instance_uid, stored))
    report.exported.append(item.sop_instance_uid)


def _stage(fileset: FileSet, dataset: Dataset) -> None:
    """Add with pydicom's records; if Type 1 record keys are missing, invent them."""
    try:
        fileset.add(dataset)
    except ValueError:
        fileset.add_custom(dataset, _invented_leaf(dataset))


def _invented_leaf(dataset: Dataset) -> RecordNode:
    """PATIENT/STUDY/SERIES/leaf records from the object plus invented missing keys."""
    source = Dataset()
    source.update(dataset)
    for keyword, value in INVENTED.items():
        if not source.get(keyword):
            setattr(source, keyword, value)
    if "InstanceNumber" not in source or source.InstanceNumber in (None, ""):
        source.InstanceNumber = 1
    leaf = _four_level_record_type(source)
    parent: RecordNode | None = None
    for kind in ("PATIENT", "STUDY", "SERIES", leaf):
        record = DIRECTORY_RECORDERS[kind](source)
        record.OffsetOfTheNextDirectoryRecord = 0
        record.RecordInUseFlag = 0xFFFF
        record.OffsetOfReferencedLowerLevelDirectoryEntity = 0
        record.DirectoryRecordType = kind
        if kind == leaf:  # the leaf's key is the instance it references
            record.ReferencedFileID = None
            record.ReferencedSOPClassUIDInFile = dataset.SOPClassUID
            record.ReferencedSOPInstanceUIDInFile = dataset.SOPInstanceUID
            record.ReferencedTransferSyntaxUIDInFile = dataset.file_meta.TransferSyntaxUID
        node = RecordNode(record)
        if parent is not None:
            node.parent = parent
        parent = node
    assert parent is not None
    return parent


def referenced_files(dicomdir: Path) -> tuple[list[Path], list[str]]:
    """The files a DICOMDIR references that exist, and the File IDs of those missing.

    pydicom's reader leaves out records whose file is missing (with a warning), so
    the missing ones are what the records reference beyond what it found. Raises
    :class:`~pydicom.errors.InvalidDicomError` or ``ValueError`` if the DICOMDIR
    itself cannot be read.
    """
    directory = dcmread(dicomdir)
    present = [Path(instance.path) for instance in FileSet(directory)]
    found = {path.resolve() for path in present}
    missing = []
    for record in directory.get("DirectoryRecordSequence", []):
        file_id = record.get("ReferencedFileID")
        if not file_id:
            continue
        components = [file_id] if isinstance(file_id, str) else list(file_id)
        if dicomdir.parent.joinpath(*components).resolve() not in found:
            missing.append("\\".join(components))
    return present, missing
