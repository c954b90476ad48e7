"""DICOM JSON objects as the Native DICOM Model (PS3.19 A.1), for clients that ask for
``application/dicom+xml``. One converter serves every resource that answers with
metadata, since all of them have the JSON form first."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from pydicom.datadict import keyword_for_tag

NAMESPACE = "http://dicom.nema.org/PS3.19/models/NativeDICOM"
_NAME_PARTS = ("FamilyName", "GivenName", "MiddleName", "NamePrefix", "NameSuffix")


def native_model(dataset: dict[str, Any]) -> bytes:
    root = ET.Element("NativeDicomModel", xmlns=NAMESPACE)
    _fill(root, dataset)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _fill(parent: ET.Element, dataset: dict[str, Any]) -> None:
    for tag, attribute in sorted(dataset.items()):
        element = ET.SubElement(parent, "DicomAttribute", {"tag": tag, "vr": attribute["vr"]})
        keyword = keyword_for_tag(int(tag, 16))
        if keyword:
            element.set("keyword", keyword)
        if "BulkDataURI" in attribute:
            ET.SubElement(element, "BulkData", uri=attribute["BulkDataURI"])
        elif "InlineBinary" in attribute:
            ET.SubElement(element, "InlineBinary").text = attribute["InlineBinary"]
        for number, value in enumerate(attribute.get("Value", []), start=1):
            _value(element, attribute["vr"], number, value)


def _value(element: ET.Element, vr: str, number: int, value: Any) -> None:
    if vr == "SQ":
        _fill(ET.SubElement(element, "Item", number=str(number)), value or {})
    elif vr == "PN":
        name = ET.SubElement(element, "PersonName", number=str(number))
        for group, text in (value or {}).items():
            _person_group(ET.SubElement(name, group), text)
    elif value is not None:
        ET.SubElement(element, "Value", number=str(number)).text = str(value)


def _person_group(group: ET.Element, text: str) -> None:
    for part, component in zip(_NAME_PARTS, text.split("^"), strict=False):
        if component:
            ET.SubElement(group, part).text = component
