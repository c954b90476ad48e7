"""Which DICOM attributes the index keeps, at which level, and how they are matched.

One declarative list drives the index schema, the ingest code that fills it and the
query code that matches against it, so that a key added here is stored, matched and
returned everywhere at once. The list is the union of the Query/Retrieve key tables of
the conformance statements in the specification (e.SOFT, AIM, syngo.share, CDRClient,
SIDICOM QR).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from typing import Any

from pydicom import Dataset
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.multival import MultiValue


class Level(StrEnum):
    PATIENT = "PATIENT"
    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"


class Kind(StrEnum):
    TEXT = "text"
    NAME = "name"  # PN: matched case-insensitively on a folded copy
    DATE = "date"
    TIME = "time"
    DATETIME = "datetime"
    INT = "int"
    UID = "uid"
    SEQUENCE = "sequence"  # kept as DICOM JSON, matched item by item


@dataclass(frozen=True)
class Attribute:
    keyword: str
    level: Level
    kind: Kind
    fold_case: bool = False
    """Keep an upper-cased copy so that case-insensitive matching can use an index."""

    @cached_property
    def tag(self) -> int:
        tag = tag_for_keyword(self.keyword)
        assert tag is not None, self.keyword
        return tag

    @cached_property
    def vr(self) -> str:
        return str(dictionary_VR(self.tag))

    @cached_property
    def column(self) -> str:
        words = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", self.keyword.replace("IDs", "Ids"))
        return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", words).lower()

    @cached_property
    def folded_column(self) -> str:
        return f"{self.column}_ci"

    @cached_property
    def has_folded_copy(self) -> bool:
        return self.fold_case or self.kind is Kind.NAME


def _attrs(level: Level, *specs: tuple[str, Kind] | tuple[str, Kind, bool]) -> list[Attribute]:
    return [Attribute(spec[0], level, spec[1], *spec[2:]) for spec in specs]


T, N, D, TM, DT, INT, U, S = (
    Kind.TEXT,
    Kind.NAME,
    Kind.DATE,
    Kind.TIME,
    Kind.DATETIME,
    Kind.INT,
    Kind.UID,
    Kind.SEQUENCE,
)

PATIENT_ATTRIBUTES = _attrs(
    Level.PATIENT,
    ("PatientName", N),
    ("PatientID", T),
    ("IssuerOfPatientID", T),
    ("PatientBirthDate", D),
    ("PatientBirthTime", TM),
    ("PatientSex", T, True),
    ("EthnicGroup", T),
    ("PatientComments", T),
    ("PatientBirthName", N),
    ("OtherPatientIDs", T),
    ("OtherPatientNames", N),
    ("PatientMotherBirthName", N),
    ("IssuerOfPatientIDQualifiersSequence", S),
)

STUDY_ATTRIBUTES = _attrs(
    Level.STUDY,
    ("StudyInstanceUID", U),
    ("StudyDate", D),
    ("StudyTime", TM),
    ("AccessionNumber", T, True),
    ("StudyID", T),
    ("ReferringPhysicianName", N),
    ("StudyDescription", T, True),
    ("AdmittingDiagnosesDescription", T),
    ("PatientAge", T),
    ("PatientSize", T),
    ("PatientWeight", T),
    ("Occupation", T),
    ("AdditionalPatientHistory", T),
    ("NameOfPhysiciansReadingStudy", N),
    ("AdmissionID", T),
    ("IssuerOfAdmissionIDSequence", S),
    ("StudyComments", T),
)

SERIES_ATTRIBUTES = _attrs(
    Level.SERIES,
    ("SeriesInstanceUID", U),
    ("Modality", T, True),
    ("SeriesNumber", INT),
    ("SeriesDate", D),
    ("SeriesTime", TM),
    ("SeriesDescription", T, True),
    ("Laterality", T),
    ("BodyPartExamined", T),
    ("PatientPosition", T),
    ("ProtocolName", T),
    ("OperatorsName", N),
    ("PerformingPhysicianName", N),
    ("PerformedProcedureStepStartDate", D),
    ("PerformedProcedureStepStartTime", TM),
    ("PerformedProcedureStepEndDate", D),
    ("PerformedProcedureStepEndTime", TM),
    ("InstitutionName", T, True),
    ("InstitutionalDepartmentName", T),
    ("StationName", T),
    ("Manufacturer", T),
    ("ManufacturerModelName", T),
    ("RequestAttributesSequence", S),
)

IMAGE_ATTRIBUTES = _attrs(
    Level.IMAGE,
    ("SOPInstanceUID", U),
    ("SOPClassUID", U),
    ("InstanceNumber", INT),
    ("ContentDate", D),
    ("ContentTime", TM),
    ("AcquisitionDate", D),
    ("AcquisitionTime", TM),
    ("AcquisitionDateTime", DT),
    ("ImageComments", T),
    ("ImageType", T),
    ("DetectorID", T),
    ("DetectorDescription", T),
    ("Rows", INT),
    ("Columns", INT),
    ("BitsAllocated", INT),
    ("BitsStored", INT),
    ("SamplesPerPixel", INT),
    ("NumberOfFrames", INT),
    ("PhotometricInterpretation", T),
    ("AcquisitionNumber", INT),
    ("SliceThickness", T),
    ("SliceLocation", T),
    ("ImagePositionPatient", T),
    ("ImageOrientationPatient", T),
    # Presentation states, structured reports and key object selections.
    ("ContentTemplateSequence", S),
    ("ObservationDateTime", DT),
    ("ReferencedRequestSequence", S),
    ("ConceptNameCodeSequence", S),
    ("CompletionFlag", T),
    ("VerificationFlag", T),
    ("VerifyingObserverSequence", S),
    ("ContentLabel", T),
    ("ContentDescription", T),
    ("PresentationCreationDate", D),
    ("PresentationCreationTime", TM),
    ("ContentCreatorName", N),
    ("ReferencedSeriesSequence", S),
    ("CurrentRequestedProcedureEvidenceSequence", S),
)

ATTRIBUTES: dict[Level, list[Attribute]] = {
    Level.PATIENT: PATIENT_ATTRIBUTES,
    Level.STUDY: STUDY_ATTRIBUTES,
    Level.SERIES: SERIES_ATTRIBUTES,
    Level.IMAGE: IMAGE_ATTRIBUTES,
}

BY_KEYWORD: dict[str, Attribute] = {a.keyword: a for attrs in ATTRIBUTES.values() for a in attrs}


def fold(text: str | None) -> str | None:
    """The case-folded form that case-insensitive matching compares."""
    return None if text is None else text.upper()


def text_value(value: Any) -> str:
    """A value as DICOM writes it, multiple values joined with a backslash."""
    if isinstance(value, (list, tuple, MultiValue)):
        return "\\".join(str(v) for v in value)
    return str(value)


def normalized_date(value: str) -> str:
    """Dates are kept as ``YYYYMMDD`` so that a range is a string comparison.

    ACR-NEMA style ``YYYY.MM.DD`` still arrives from old modalities.
    """
    return value.replace(".", "").strip()


def normalized_time(value: str) -> str:
    """Times are kept as ``HHMMSS.FFFFFF`` so that a range is a string comparison.

    ACR-NEMA's ``HH:MM:SS`` loses its colons, and a stored ``2359`` becomes ``235900``
    so that the range ``235900-`` finds it.
    """
    text = value.replace(":", "").strip()
    whole, dot, fraction = text.partition(".")
    return whole.ljust(6, "0") + dot + fraction if whole.isdigit() else text


def _int(value: Any) -> int | None:
    try:
        return int(value[0] if isinstance(value, (list, MultiValue)) else value)
    except (TypeError, ValueError, IndexError):
        return None


def column_values(dataset: Dataset, level: Level) -> dict[str, Any]:
    """The index row values of one level, read from a data set.

    A missing or empty attribute gives ``None``: the index does not distinguish
    "absent" from "empty", and neither does C-FIND matching.
    """
    row: dict[str, Any] = {}
    present = dataset.keys()  # most listed attributes are absent: skip the lookups
    for attr in ATTRIBUTES[level]:
        value = attribute_value(dataset, attr) if attr.tag in present else None
        row[attr.column] = value
        if attr.has_folded_copy:
            row[attr.folded_column] = fold(value)
    return row


def attribute_value(dataset: Dataset, attr: Attribute) -> Any:
    """An indexed attribute's value as its column holds it; ``None`` if empty."""
    value = _plain_value(dataset.get_item(attr.tag), attr)
    if value is _CONVERT:
        value = _converted_value(dataset[attr.tag], attr)
    return value


_CONVERT = object()
"""Marks a value that only pydicom's conversion reads right."""
_PLAIN_VRS = frozenset({"AE", "AS", "CS", "DA", "IS", "LO", "PN", "SH", "TM", "UI"})
_PLAIN_BYTES = re.compile(rb"[\x20-\x5b\x5d-\x7e]*")
"""Printable ASCII but the backslash: one value, the same text in every character set
DICOM allows (ISO 2022 needs an escape byte to leave ASCII)."""
_INTEGER = re.compile(r" *[+-]?[0-9]+ *")


def _plain_value(element: Any, attr: Attribute) -> Any:
    """The value of a still-raw element read straight from its bytes, as pydicom would
    convert it, when it is one plain ASCII value or one little endian US; else
    ``_CONVERT``.

    Ingest reads some forty attributes of every instance; through pydicom's element
    conversion and validation they cost about a fifth of a millisecond.
    """
    if not isinstance(element, RawDataElement):
        return _CONVERT
    if attr.vr == "US":  # Rows, Columns, Bits Allocated…: one little endian short
        data = element.value
        as_read = element.VR in (None, "US") and element.is_little_endian
        if as_read and isinstance(data, bytes) and len(data) == 2:
            return int.from_bytes(data, "little")
        return _CONVERT
    if attr.vr not in _PLAIN_VRS:
        return _CONVERT
    if element.VR not in (None, attr.vr) or not isinstance(element.value, bytes):
        return _CONVERT  # implicit VR (None) reads as the dictionary says; others vary
    data = element.value.rstrip(b"\0 ") if attr.vr == "UI" else element.value
    if not _PLAIN_BYTES.fullmatch(data):
        return _CONVERT
    text = data.decode("ascii").strip()
    if not text:
        return None
    if attr.kind is Kind.INT:
        return int(text) if _INTEGER.fullmatch(text) else _CONVERT
    if attr.kind is Kind.DATE:
        return normalized_date(text)
    if attr.kind is Kind.TIME:
        return normalized_time(text)
    return text


def _converted_value(element: Any, attr: Attribute) -> Any:
    if element.is_empty:
        return None
    raw = element.value
    if attr.kind is Kind.SEQUENCE:
        return json.dumps([item.to_json_dict() for item in raw])
    if attr.kind is Kind.INT:
        return _int(raw)
    if attr.kind is Kind.DATE:
        return normalized_date(text_value(raw))
    if attr.kind is Kind.TIME:
        return normalized_time(text_value(raw))
    return text_value(raw).strip()


# Date and time keys that combined date-time matching (PS3.4 C.2.2.2.5) reads as one.
DATE_TIME_PAIRS: dict[str, str] = {
    "PatientBirthDate": "PatientBirthTime",
    "StudyDate": "StudyTime",
    "SeriesDate": "SeriesTime",
    "ContentDate": "ContentTime",
    "AcquisitionDate": "AcquisitionTime",
    "PerformedProcedureStepStartDate": "PerformedProcedureStepStartTime",
    "PerformedProcedureStepEndDate": "PerformedProcedureStepEndTime",
    "PresentationCreationDate": "PresentationCreationTime",
}

_NOT_MATCHABLE_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN", "SQ"}


def kind_of_vr(vr: str) -> Kind:
    """How a value inside a sequence item is matched, read from its VR."""
    return {
        "UI": Kind.UID,
        "DA": Kind.DATE,
        "TM": Kind.TIME,
        "DT": Kind.DATETIME,
        "PN": Kind.NAME,
    }.get(vr, Kind.TEXT)


def _normalized(vr: str, value: Any) -> str:
    text = str(value).strip()
    if vr == "DA":
        return normalized_date(text)
    if vr == "TM":
        return normalized_time(text)
    return text


def item_values(item: Dataset, prefix: str = "") -> Iterator[tuple[str, str]]:
    """Every (path, value) of a sequence item, nested sequences flattened into it.

    A path names the keywords down from the item (``ConceptNameCodeSequence.CodeValue``
    inside a ReferencedRequestSequence item); a multi-valued element gives one pair a
    value, so that a key matches when any of the values does.
    """
    for element in item:
        keyword = element.keyword
        if not keyword or element.is_empty:
            continue
        if element.VR == "SQ":
            for nested in element.value:
                yield from item_values(nested, f"{prefix}{keyword}.")
        elif element.VR not in _NOT_MATCHABLE_VRS:
            raw = element.value
            values = raw if isinstance(raw, (list, MultiValue)) else [raw]
            for value in values:
                yield f"{prefix}{keyword}", _normalized(str(element.VR), value)


def sequence_values(dataset: Dataset, level: Level) -> list[dict[str, Any]]:
    """The index rows that let sequence matching look inside the items of one level."""
    rows: list[dict[str, Any]] = []
    present = dataset.keys()
    for attr in ATTRIBUTES[level]:
        if attr.kind is not Kind.SEQUENCE or attr.tag not in present:
            continue
        for number, item in enumerate(dataset[attr.tag].value or []):
            for path, value in item_values(item):
                rows.append(
                    {
                        "sequence": attr.keyword,
                        "item": number,
                        "path": path,
                        "value": value,
                        "value_ci": fold(value),
                    }
                )
    return rows
