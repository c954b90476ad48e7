"""README.TXT and INDEX.HTM at a file-set's root, as IHE PDI (Portable Data for
Imaging) suggests for a medium given to a patient: who and what is on it, that it
carries no viewer, readable without any DICOM software.

Both are made from the DICOMDIR, not from the selection, so that after an update
they list the whole file-set. They are not DICOM files, the DICOMDIR does not name
them, and a File-set Reader passes them by.
"""

from __future__ import annotations

import html
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pydicom import dcmread
from pydicom.fileset import FileInstance, FileSet

from pacsnode import __version__

README = "README.TXT"
INDEX = "INDEX.HTM"


@dataclass
class _Study:
    date: str
    description: str
    accession: str
    series: set[str] = field(default_factory=set)
    instances: int = 0

    def line(self) -> str:
        when = self.date and f"{self.date[:4]}-{self.date[4:6]}-{self.date[6:8]}"
        what = ", ".join(
            filter(None, [when, self.description, self.accession and f"accession {self.accession}"])
        )
        return f"{what or 'undated study'}: {len(self.series)} series, {self.instances} instances"


def _text(instance: FileInstance, keyword: str) -> str:
    return str(instance[keyword].value or "") if keyword in instance else ""


def _contents(fileset: FileSet) -> dict[str, list[_Study]]:
    """Patient ("Name (ID …)") to their studies, from the directory records."""
    studies: dict[tuple[str, str], _Study] = {}
    for instance in fileset:
        patient = (
            f"{_text(instance, 'PatientName') or 'unnamed'} (ID {_text(instance, 'PatientID')})"
        )
        key = (patient, _text(instance, "StudyInstanceUID"))
        if key not in studies:
            studies[key] = _Study(
                _text(instance, "StudyDate"),
                _text(instance, "StudyDescription"),
                _text(instance, "AccessionNumber"),
            )
        studies[key].series.add(_text(instance, "SeriesInstanceUID"))
        studies[key].instances += 1
    patients: dict[str, list[_Study]] = defaultdict(list)
    for (patient, _), study in studies.items():
        patients[patient].append(study)
    return patients


def write_pdi_files(root: Path) -> None:
    """Write (or rewrite) README.TXT and INDEX.HTM for the file-set in ``root``."""
    patients = _contents(FileSet(dcmread(root / "DICOMDIR")))
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "This medium holds medical images and documents in DICOM format: a DICOM",
        "file-set (DICOM PS3.10), whose index is the file DICOMDIR.",
        "It holds no viewer. Open it with a DICOM viewer that reads a DICOMDIR;",
        f"INDEX.HTM lists the same content for a web browser. Written by pacsnode {__version__}",
        f"on {made}.",
        "",
    ]
    for patient, studies in patients.items():
        lines.append(f"Patient {patient}")
        lines.extend(f"  Study {study.line()}" for study in studies)
    (root / README).write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    rows = "\n".join(
        f"<li>{html.escape(patient)}<ul>"
        + "".join(f"<li>{html.escape(study.line())}</li>" for study in studies)
        + "</ul></li>"
        for patient, studies in patients.items()
    )
    page = (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>DICOM medium</title></head>\n'
        "<body><h1>DICOM medium</h1>\n"
        "<p>Images and documents in DICOM format, indexed by the file DICOMDIR. There is no"
        ' viewer on this medium. See <a href="README.TXT">README.TXT</a>.</p>\n'
        f"<ul>\n{rows}\n</ul>\n<p>Written by pacsnode {__version__} on {made}.</p>\n"
        "</body></html>\n"
    )
    (root / INDEX).write_text(page, encoding="utf-8")
