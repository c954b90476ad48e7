"""How ``pacsnode find`` prints what it found: a table that stays readable in a
terminal, JSON or CSV for scripts, and the labelled rows of ``--tree``.

A UID is never wrapped over lines: UID columns come last, and when the terminal is too
narrow for them they are shortened in the middle (``1.2.826.0.1…45.67``), where a UID
is least telling; when even that leaves no room, each match is printed as a block of
labelled lines. Columns have short labels, SOP classes their names. JSON and CSV
always carry whole values under the keywords.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from enum import StrEnum

from pydicom import Dataset
from pydicom.datadict import dictionary_VR
from pydicom.multival import MultiValue
from pydicom.uid import UID
from rich.console import Console
from rich.table import Table

from pacsnode.dimse.query_scu import tag_of


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


MIN_UID_WIDTH = 20
"""Narrower than this, a UID says too little: matches are printed as blocks instead."""
MIN_TEXT_WIDTH = 8
"""What other columns may shrink to (they wrap), when UIDs need the room."""
LABELS = {
    "PatientName": "Patient",
    "PatientID": "Patient ID",
    "PatientBirthDate": "Birth date",
    "PatientSex": "Sex",
    "NumberOfPatientRelatedStudies": "Studies",
    "StudyDate": "Date",
    "StudyTime": "Time",
    "AccessionNumber": "Accession",
    "ModalitiesInStudy": "Modalities",
    "StudyDescription": "Description",
    "NumberOfStudyRelatedInstances": "Instances",
    "StudyInstanceUID": "Study UID",
    "SeriesNumber": "Series",
    "SeriesDate": "Date",
    "SeriesDescription": "Description",
    "NumberOfSeriesRelatedInstances": "Instances",
    "SeriesInstanceUID": "Series UID",
    "InstanceNumber": "Number",
    "ContentDate": "Date",
    "SOPClassUID": "SOP class",
    "SOPInstanceUID": "SOP Instance UID",
}
"""Short column labels for the keys a bare query returns; others show their keyword."""


def text(dataset: Dataset, name: str) -> str:
    """One attribute as text: multiple values joined by backslashes, as DICOM writes them."""
    if "." in name:
        sequence, name = name.split(".")
        items = dataset.get(sequence) or []
        return text(items[0], name) if items else ""
    element = dataset.get(tag_of(name))
    if element is None or element.value is None:
        return ""
    if element.VR == "SQ":
        return f"{len(element.value)} items"
    if isinstance(element.value, MultiValue | list):
        return "\\".join(str(value) for value in element.value)
    return str(element.value)


def is_uid(name: str) -> bool:
    try:
        return dictionary_VR(tag_of(name.split(".")[-1])) == "UI"
    except (KeyError, ValueError):
        return False


def shorten(uid: str, width: int) -> str:
    """A UID cut in the middle to ``width`` characters."""
    if len(uid) <= width:
        return uid
    head = (width - 1) // 2
    return f"{uid[:head]}…{uid[len(uid) - (width - 1 - head) :]}"


def uid_width(rows: list[list[str]], uid_columns: list[int], width: int) -> int:
    """How wide each UID column may be so that the table fits ``width`` characters:
    whole if they fit, else most of what the other columns leave when they wrap (which
    may be less than :data:`MIN_UID_WIDTH`)."""
    if not uid_columns:
        return 0
    natural = [max((len(row[i]) for row in rows), default=0) for i in range(len(rows[0]))]
    borders = 3 * len(natural) + 1
    if sum(natural) + borders <= width:
        return max(natural[i] for i in uid_columns)
    others = sum(
        min(length, MIN_TEXT_WIDTH) for i, length in enumerate(natural) if i not in uid_columns
    )
    left = (width - borders - others) // len(uid_columns)
    return left if left < MIN_UID_WIDTH else max(MIN_UID_WIDTH, left * 2 // 3)


def _cell(column: str, value: str) -> str:
    """A value as a person reads it: a SOP class by its name."""
    if column.split(".")[-1] == "SOPClassUID" and value:
        return UID(value).name
    return value


def print_table(title: str, columns: list[str], rows: list[list[str]], out: Console) -> None:
    """Rows under labelled columns, UID columns last and never wrapped; or, in a
    terminal too narrow for that, one block of labelled lines per row."""
    uid = [is_uid(column) and column.split(".")[-1] != "SOPClassUID" for column in columns]
    order = sorted(range(len(columns)), key=lambda i: uid[i])
    headers = [LABELS.get(columns[i], columns[i].split(".")[-1]) for i in order]
    ordered = [[_cell(columns[i], row[i]) for i in order] for row in rows]
    uids = [n for n, i in enumerate(order) if uid[i]]
    width = uid_width([headers, *ordered], uids, out.width)
    if uids and width < MIN_UID_WIDTH:
        _print_blocks(title, headers, ordered, out)
        return
    table = Table(title=title)
    for n, header in enumerate(headers):
        if n in uids:
            table.add_column(header, no_wrap=True, min_width=width)
        else:
            table.add_column(header, overflow="fold")
    for row in ordered:
        table.add_row(*(shorten(v, width) if n in uids else v for n, v in enumerate(row)))
    out.print(table)


def _print_blocks(title: str, headers: list[str], rows: list[list[str]], out: Console) -> None:
    label_width = max(len(header) for header in headers)
    out.print(title, markup=False)
    for row in rows:
        out.print()
        for header, value in zip(headers, row, strict=True):
            out.print(f"{header:<{label_width}}  {value}", markup=False, soft_wrap=True)


def print_matches(matches: Iterator[Dataset], columns: list[str], output: OutputFormat) -> int:
    """Print as they arrive (CSV) or all at once (table, JSON); returns how many."""
    count = 0
    if output is OutputFormat.CSV:
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        for found in matches:
            writer.writerow([text(found, column) for column in columns])
            count += 1
        return count
    found_all = list(matches)
    if output is OutputFormat.JSON:
        sys.stdout.write(json.dumps([found.to_json_dict() for found in found_all], indent=1))
        sys.stdout.write("\n")
        return len(found_all)
    rows = [[text(found, column) for column in columns] for found in found_all]
    print_table(f"{len(found_all)} matches", columns, rows, Console())
    return len(found_all)


TREE_COLUMNS = ("level", "description", "date", "modality", "instances", "UID")


def tree_row(level: str, depth: int, found: Dataset) -> list[str]:
    """One entity of ``--tree`` under :data:`TREE_COLUMNS`, its level indented."""

    def value(name: str) -> str:
        return text(found, name)

    if level == "PATIENT":
        studies = value("NumberOfPatientRelatedStudies")
        described = f"{value('PatientName')} (ID {value('PatientID')})"
        cells = [described, value("PatientBirthDate"), "", f"{studies} studies" if studies else ""]
        cells.append("")
    elif level == "STUDY":
        accession = value("AccessionNumber")
        described = value("StudyDescription") + (f" (accession {accession})" if accession else "")
        cells = [described.strip(), value("StudyDate"), value("ModalitiesInStudy")]
        cells += [value("NumberOfStudyRelatedInstances"), value("StudyInstanceUID")]
    elif level == "SERIES":
        number = value("SeriesNumber")
        described = f"{'#' + number if number else ''} {value('SeriesDescription')}".strip()
        cells = [described, value("SeriesDate"), value("Modality")]
        cells += [value("NumberOfSeriesRelatedInstances"), value("SeriesInstanceUID")]
    else:
        sop_class, number = value("SOPClassUID"), value("InstanceNumber")
        described = f"{'#' + number if number else ''} {UID(sop_class).name if sop_class else ''}"
        cells = [described.strip(), value("ContentDate"), "", "", value("SOPInstanceUID")]
    return ["  " * depth + level, *cells]


def print_tree(rows: list[list[str]], out: Console) -> None:
    """The ``--tree`` rows as one borderless table under labelled columns."""
    width = uid_width([list(TREE_COLUMNS), *rows], [len(TREE_COLUMNS) - 1], out.width)
    table = Table(box=None, pad_edge=False, show_edge=False)
    for column in TREE_COLUMNS[:-1]:
        table.add_column(column, overflow="fold")
    table.add_column(TREE_COLUMNS[-1], no_wrap=True)
    for row in rows:
        table.add_row(*row[:-1], shorten(row[-1], width))
    out.print(table)
