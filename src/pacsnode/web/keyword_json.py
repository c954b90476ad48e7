"""Data sets as keyword JSON, the REST API's form for people and scripts: attributes
by keyword (``{"PatientName": "DOE^JOHN"}``), numbers as numbers, several values as a
list, sequences as lists of objects. DICOMweb keeps the DICOM JSON model (tags and
VRs); this is for ``/api``, where a reader should not need the data dictionary."""

from __future__ import annotations

from typing import Any

from pydicom import Dataset
from pydicom.dataelem import DataElement
from pydicom.multival import MultiValue


def keyword_json(dataset: Dataset) -> dict[str, Any]:
    """Every element with a keyword; private and binary values are left out."""
    found: dict[str, Any] = {}
    for element in dataset:
        if element.keyword and not isinstance(element.value, bytes):
            found[element.keyword] = _value(element)
    return found


def _value(element: DataElement) -> Any:
    if element.VR == "SQ":
        return [keyword_json(item) for item in element.value]
    value = element.value
    if value is None or value == "":
        return None
    if isinstance(value, MultiValue | list):
        return [_scalar(item) for item in value]
    return _scalar(value)


def _scalar(value: Any) -> Any:
    return value if isinstance(value, int | float) else str(value)
