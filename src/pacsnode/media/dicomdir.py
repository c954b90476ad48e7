"""DICOMDIR file-sets: the File-set Creator (export), Updater (export into an existing
file-set) and Reader (import).

pydicom's :class:`~pydicom.fileset.FileSet` writes and reads the DICOMDIR and makes
conformant File IDs; this module decides what goes onto the medium. A media
application profile limits the transfer syntaxes a file-set may hold (PS3.11), so
objects stored otherwise are converted on the way out, and the report says which.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError
from pydicom.fileset import DIRECTORY_RECORDERS, FileSet, RecordNode, _four_level_record_type

from pacsnode.archive.core import Archive
from pacsnode.archive.deidentify import Deidentifier
from pacsnode.archive.outgoing import Outgoing
from pacsnode.archive.retrieve import Located, locate
from pacsnode.archive.transcoding import TranscodeError, modified, transcode, writable
from pacsnode.media.pdi import README, write_pdi_files

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

# Type 1 record keys that objects may lack; invented like ``dcmmkdir --invent`` does
# (and a Patient ID from the name), in the directory record only: the exported object
# itself is never changed.
INVENTED = {"StudyDate": "19000101", "StudyTime": "000000", "StudyID": "-", "SeriesNumber": 1}

DEFAULT_FILESET_ID = "PACSNODE"


class _Recorder(Protocol):
    """A pydicom directory record creator, as DIRECTORY_RECORDERS holds them."""

    def __call__(self, ds: Dataset) -> Dataset: ...


def _sr_record(recorder: _Recorder) -> _Recorder:
    """Mend pydicom's SR DOCUMENT and KEY OBJECT DOC records where dciodvfy finds fault.

    PS3.3 F.5: the record's Content Sequence holds only the root's HAS CONCEPT MOD
    items, where pydicom copies the whole content tree (which would also bloat the
    DICOMDIR with big reports); and a VERIFIED document's record needs Verification
    DateTime, which the document keeps per observer in Verifying Observer Sequence.
    """

    def record(ds: Dataset) -> Dataset:
        made = recorder(ds)
        modifiers = [
            item
            for item in made.get("ContentSequence", [])
            if item.get("RelationshipType") == "HAS CONCEPT MOD"
        ]
        if modifiers:
            made.ContentSequence = modifiers
        elif "ContentSequence" in made:
            del made.ContentSequence
        verified = [
            str(observer.VerificationDateTime)
            for observer in ds.get("VerifyingObserverSequence", [])
            if observer.get("VerificationDateTime")
        ]
        if (
            ds.get("VerificationFlag") == "VERIFIED"
            and verified
            and "VerificationDateTime" not in made
        ):
            made.VerificationDateTime = max(verified)  # the latest verification
        return made

    return record


MENDED_RECORDERS = {
    kind: _sr_record(DIRECTORY_RECORDERS[kind]) for kind in ("SR DOCUMENT", "KEY OBJECT DOC")
}
"""Our record creators where pydicom's do not meet PS3.3 F.5; their records go in through
``FileSet.add_custom`` (pydicom's table itself is left as it is)."""


class ExportError(Exception):
    """The export cannot start: unknown profile, nothing selected, or a file-set already
    there (or, when updating, none there or one the profile does not allow)."""


class NothingSelected(ExportError):
    """No stored instance matches the selection."""


@dataclass
class ExportReport:
    """What went onto the medium, what was converted to fit the profile, what was left off."""

    dicomdir: Path
    fileset_id: str
    profile: str
    exported: list[str] = field(default_factory=list)
    already_there: list[str] = field(default_factory=list)
    moved: list[tuple[str, str]] = field(default_factory=list)  # (old File ID, new File ID)
    converted: list[tuple[str, str]] = field(default_factory=list)  # (SOP Instance, from)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (SOP Instance, why)
    deidentifier: Deidentifier | None = None
    """Set when the objects go de-identified (their UIDs are then pseudonyms)."""

    def written_uid(self, sop_instance_uid: str) -> str:
        """The SOP Instance UID an instance has on the medium."""
        if self.deidentifier is None:
            return sop_instance_uid
        return self.deidentifier.uid(sop_instance_uid)


def export(
    archive: Archive,
    studies: Iterable[str],
    out_dir: Path,
    *,
    series: Iterable[str] = (),
    instances: Iterable[str] = (),
    profile: str = "STD-GEN-CD",
    fileset_id: str | None = None,
    update: bool = False,
    pdi: bool = False,
    deidentifier: Deidentifier | None = None,
) -> ExportReport:
    """Write the selected stored instances as a file-set with a DICOMDIR into ``out_dir``.

    ``series`` and ``instances``, when given, narrow the studies down to those. With
    ``update`` the instances are added to the file-set already in ``out_dir`` (File-set
    Updater): only if everything it holds fits the profile, keeping its File-set ID,
    leaving out instances it already has. A fresh file-set is never written over one
    that is there, so an update is always asked for. ``pdi`` adds IHE PDI's README.TXT
    and INDEX.HTM; an update rewrites them if they are there. A ``deidentifier``
    writes every object de-identified (:mod:`pacsnode.archive.deidentify`).
    """
    if profile not in PROFILES:
        raise ExportError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    dicomdir = out_dir / "DICOMDIR"
    if update:
        fileset = _existing(dicomdir, profile, fileset_id)
    elif dicomdir.exists():
        raise ExportError(f"{out_dir} already holds a file-set; to add to it, update it")
    else:
        fileset = _new(fileset_id or DEFAULT_FILESET_ID)
    report = ExportReport(dicomdir, str(fileset.ID or ""), profile, deidentifier=deidentifier)
    chosen = _selected(archive, studies, set(series), set(instances))
    if not chosen:
        raise NothingSelected("no stored instance matches the selection")
    before = {str(instance.SOPInstanceUID): instance.FileID for instance in fileset}
    out_dir.mkdir(parents=True, exist_ok=True)
    after = _write(fileset, chosen, report, out_dir, archive.outgoing)
    report.moved = [(old, after[sop]) for sop, old in before.items() if after[sop] != old]
    if pdi or (update and (out_dir / README).exists()):
        write_pdi_files(out_dir)
    return report


def _write(
    fileset: FileSet,
    chosen: list[Located],
    report: ExportReport,
    out_dir: Path,
    outgoing: Outgoing,
) -> dict[str, str]:
    """Add what the file-set lacks and write it; the File IDs afterwards, by SOP Instance.

    Converted objects wait in a spool inside ``out_dir``, so that they use the room of
    the medium they go to and vanish with the export.
    """
    present = {str(instance.SOPInstanceUID) for instance in fileset}
    with tempfile.TemporaryDirectory(prefix="export-", dir=out_dir) as spool:
        sources: dict[str, Path] = {}
        for item in chosen:
            if report.written_uid(item.sop_instance_uid) in present:
                report.already_there.append(item.sop_instance_uid)
            elif (source := _add(fileset, item, report, Path(spool), outgoing)) is not None:
                sources[item.sop_instance_uid] = source
        if fileset.path is None:
            fileset.write(out_dir)
        else:
            fileset.write()
        written = {str(instance.SOPInstanceUID): instance for instance in fileset}
        for sop, source in sources.items():  # the staged header makes way for the object
            shutil.copyfile(source, written[report.written_uid(sop)].path)
    return {sop: instance.FileID for sop, instance in written.items()}  # by the medium's UIDs


def _new(fileset_id: str) -> FileSet:
    fileset = FileSet()
    try:
        fileset.ID = fileset_id  # pydicom checks it: CS, at most 16 characters
    except ValueError as exc:
        raise ExportError(f"bad File-set ID {fileset_id!r}: {exc}") from exc
    return fileset


def _existing(dicomdir: Path, profile: str, fileset_id: str | None) -> FileSet:
    """The file-set to update, read whole first; refused if the profile cannot hold it."""
    if not dicomdir.is_file():
        raise ExportError(f"no file-set to update: {dicomdir} does not exist")
    try:
        fileset = FileSet(dcmread(dicomdir))
    except (InvalidDicomError, ValueError, OSError) as exc:
        raise ExportError(f"cannot read {dicomdir}: {exc}") from exc
    if fileset_id is not None and fileset_id != fileset.ID:
        raise ExportError(f"the file-set's ID is {fileset.ID!r}, not {fileset_id!r}")
    allowed = PROFILES[profile] | {EXPLICIT_VR_LITTLE_ENDIAN}
    for instance in fileset:
        if instance.TransferSyntaxUID not in allowed:
            raise ExportError(
                f"the file-set holds {instance.FileID} in {instance.TransferSyntaxUID},"
                f" which {profile} does not allow"
            )
    return fileset


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


def as_stored(
    found: Iterable[Located], work: Path, outgoing: Outgoing, destination: str | None = None
) -> list[tuple[str, Path | bytes]]:
    """A file-set of the stored files exactly as they are (unless the outgoing step
    toward ``destination`` changes them), for a ZIP download: the DICOMDIR's bytes,
    then each File ID with the stored file it names, or the changed object's bytes.

    Any transfer syntax goes (no profile applies); only the headers are read and staged,
    in ``work``, to have pydicom make the records and File IDs. An instance whose header
    cannot be read is left out, and the list says nothing of it.
    """
    fileset = FileSet()
    fileset.ID = DEFAULT_FILESET_ID
    stored: dict[str, Path | bytes] = {}
    for item in found:
        try:
            content = _outgoing(item, outgoing, destination)
            source = item.path if isinstance(content, Path) else io.BytesIO(content)
            _stage(fileset, dcmread(source, stop_before_pixels=True))
        except (TranscodeError, InvalidDicomError, OSError, ValueError):
            continue
        stored[item.sop_instance_uid] = content
    if not stored:
        return []
    fileset.write(work)
    files: list[tuple[str, Path | bytes]] = [("DICOMDIR", (work / "DICOMDIR").read_bytes())]
    for instance in fileset:
        files.append((Path(instance.FileID).as_posix(), stored[str(instance.SOPInstanceUID)]))
    return files


def _outgoing(item: Located, outgoing: Outgoing, destination: str | None) -> Path | bytes:
    """The stored file, or the object the outgoing step makes of it."""
    modification = outgoing.modification(item.path, item.sop_instance_uid, item.edited, destination)
    if not modification:
        return item.path
    return modified(item.path, item.transfer_syntax_uid, modification)


def _add(
    fileset: FileSet, item: Located, report: ExportReport, spool: Path, outgoing: Outgoing
) -> Path | None:
    """Stage the instance's header, which is all pydicom needs for the records and the
    File ID; return the file to put there: the stored file as it is (so that it reaches
    the medium byte for byte), or, written in ``spool``, its conversion to Explicit VR
    Little Endian when the profile does not allow the stored syntax, or what the
    outgoing step makes of it."""
    allowed = PROFILES[report.profile] | {EXPLICIT_VR_LITTLE_ENDIAN}
    stored = item.transfer_syntax_uid
    source = item.path
    try:
        modification = outgoing.modification(item.path, item.sop_instance_uid, item.edited, None)
        if stored not in allowed or modification:
            syntax = stored if stored in allowed and writable(stored) else EXPLICIT_VR_LITTLE_ENDIAN
            source = spool / item.sop_instance_uid
            source.write_bytes(transcode(item.path, stored, syntax, modification))
        if report.deidentifier is not None:
            clean = spool / f"{item.sop_instance_uid}.deid"
            report.deidentifier.file(source, clean)
            source = clean
        _stage(fileset, dcmread(source, stop_before_pixels=True))
    except (TranscodeError, InvalidDicomError, OSError, ValueError) as exc:
        report.skipped.append((item.sop_instance_uid, str(exc)))
        return None
    if stored not in allowed:
        report.converted.append((item.sop_instance_uid, stored))
    report.exported.append(item.sop_instance_uid)
    return source


def _stage(fileset: FileSet, dataset: Dataset) -> None:
    """Add with pydicom's records, or ours for SR and KOS leaves; if Type 1 record keys
    are missing, invent them."""
    if _four_level_record_type(dataset) not in MENDED_RECORDERS:
        try:
            fileset.add(dataset)
            return
        except ValueError:
            pass
    try:
        leaf = _records(dataset, dataset)
    except ValueError:
        leaf = _records(dataset, _with_invented_keys(dataset))
    fileset.add_custom(dataset, leaf)


def _with_invented_keys(dataset: Dataset) -> Dataset:
    """A copy of the object with the record keys it lacks invented."""
    source = Dataset()
    source.update(dataset)
    for keyword, value in INVENTED.items():
        if not source.get(keyword):
            setattr(source, keyword, value)
    if "InstanceNumber" not in source or source.InstanceNumber in (None, ""):
        source.InstanceNumber = 1
    if not source.get("PatientID"):  # one per name: patients without an ID stay apart
        name = str(source.get("PatientName") or "")
        source.PatientID = "NOID" + hashlib.sha1(name.encode()).hexdigest()[:12].upper()
    return source


def _records(dataset: Dataset, source: Dataset) -> RecordNode:
    """PATIENT/STUDY/SERIES/leaf records of ``dataset`` made from ``source`` (itself,
    or a copy with invented keys); the leaf node is returned."""
    leaf = _four_level_record_type(source)
    parent: RecordNode | None = None
    for kind in ("PATIENT", "STUDY", "SERIES", leaf):
        record = MENDED_RECORDERS.get(kind, DIRECTORY_RECORDERS[kind])(source)
        record.OffsetOfTheNextDirectoryRecord = 0
        record.RecordInUseFlag = 0xFFFF
        record.OffsetOfReferencedLowerLevelDirectoryEntity = 0
        record.DirectoryRecordType = kind
        if "SpecificCharacterSet" in source:  # 1C in every record, as pydicom's add() does
            record.SpecificCharacterSet = source.SpecificCharacterSet
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
