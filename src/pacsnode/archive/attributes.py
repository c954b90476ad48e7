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
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from typing import Any

from pydicom import Dataset
from pydicom.datadict import tag_for_keyword
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


def _date(value: str) -> str:
    """Dates are kept as ``YYYYMMDD`` so that a range is a string comparison.

    ACR-NEMA style ``YYYY.MM.DD`` still arrives from old modalities.
    """
    return value.replace(".", "").strip()


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
        element = dataset[attr.tag] if attr.tag in present else None
        value: Any = None
        if element is not None and not element.is_empty:
            raw = element.value
            if attr.kind is Kind.SEQUENCE:
                value = json.dumps([item.to_json_dict() for item in raw])
            elif attr.kind is Kind.INT:
                value = _int(raw)
            elif attr.kind is Kind.DATE:
                value = _date(text_value(raw))
            else:
                value = text_value(raw).strip()
        row[attr.column] = value
        if attr.has_folded_copy:
            row[attr.folded_column] = fold(value)
    return row
