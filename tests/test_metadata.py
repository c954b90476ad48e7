"""The per-instance DICOM JSON kept for WADO-RS metadata, against pydicom's own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.data import get_charset_files, get_testdata_file

from pacsnode.archive.metadata import BASE, BULK_THRESHOLD, bulk_value, document
from pacsnode.archive.retrieve import Located

FILES = [
    "CT_small.dcm",  # private elements, DS/IS, US
    "MR_small_bigendian.dcm",  # big endian: numbers handed to pydicom
    "examples_ybr_color.dcm",  # UT values over the bulk threshold
    "rtplan.dcm",  # nested sequences
    "test-SR.dcm",
    "waveform_ecg.dcm",  # nested bulk data
    "emri_small_RLE.dcm",
    "MR_small_implicit.dcm",  # implicit VR: VRs from the dictionary
]


def located(path: Path) -> Located:
    return Located(1, "1.2", "1.2.3", "1.2.3.4", "", "", path, 0, None)


def comparable(element: dict[str, Any]) -> Any:
    values = element.get("Value")
    if element["vr"] == "SQ":
        return [{t: comparable(e) for t, e in item.items()} for item in values or []]
    if "BulkDataURI" in element or "InlineBinary" in element:
        return "binary"
    # An empty value among several is null in DICOM JSON (PS3.18 F.2.5); pydicom says "".
    return [(v.strip() or None) if isinstance(v, str) else v for v in values or []] or None


CHARSET_FILES = ["chrH31.dcm", "chrJapMulti.dcm", "chrX1.dcm", "chrRuss.dcm", "chrSQEncoding.dcm"]


def sample_file(name: str) -> Path:
    found = get_testdata_file(name) or get_charset_files(name)[0]
    return Path(found)


@pytest.mark.parametrize("name", FILES + CHARSET_FILES)
def test_same_values_as_pydicom(name: str) -> None:
    path = sample_file(name)
    reference = dcmread(path).to_json_dict(BULK_THRESHOLD, lambda element: "bulk")
    ours = document(path, located(path))
    for tag, element in reference.items():
        if tag.endswith("0000") or tag == "FFFCFFFC":
            assert tag not in ours  # group lengths and padding describe an encoding
            continue
        assert comparable(ours[tag]) == comparable(element), tag


def test_bulk_data_is_a_uri_that_leads_back_to_the_value() -> None:
    path = Path(get_testdata_file("waveform_ecg.dcm"))
    ours = document(path, located(path))
    nested = ours["54000100"]["Value"][0]["54001010"]
    prefix = f"{BASE}/studies/1.2/series/1.2.3/instances/1.2.3.4/bulkdata/"
    assert nested["BulkDataURI"] == prefix + "54000100/0/54001010"
    dataset = dcmread(path)
    value = bulk_value(dataset, nested["BulkDataURI"].removeprefix(prefix))
    assert value is not None
    assert value.value == dataset.WaveformSequence[0].WaveformData
