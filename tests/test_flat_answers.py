"""C-FIND answers written straight from index values give exactly the bytes pydicom's
writer gives for the same data set, in both little endian syntaxes and in several
character sets; what the direct writer cannot do goes through pydicom."""

from __future__ import annotations

import pytest
from pydicom import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from pacsnode.dimse import flat

ANSWER = [
    (0x00080020, "DA", "20240131"),
    (0x00080030, "TM", "101500"),
    (0x00080050, "SH", "ACC1"),
    (0x00080052, "CS", "IMAGE"),
    (0x00080054, "AE", "PACSNODE"),
    (0x00080061, "CS", "CT\\MR"),
    (0x00081030, "LO", "Thorax"),
    (0x00100010, "PN", "Müller^Jürgen"),
    (0x00100020, "LO", "P1"),
    (0x00100030, "DA", None),
    (0x00201208, "IS", 42),
    (0x0020000D, "UI", "1.2.3"),  # odd length: padded with NUL
    (0x00280010, "US", 512),
    (0x00321032, "PN", ""),
    (0x00400254, "LO", "Ärztliche Untersuchung"),
]


def pydicom_bytes(elements: list[flat.Element], syntax: str, charset: str) -> bytes:
    dataset = Dataset()
    dataset.SpecificCharacterSet = charset
    for tag, vr, value in elements:
        dataset.add_new(tag, vr, str(value) if vr == "IS" and value is not None else value)
    fp = DicomBytesIO()
    fp.is_implicit_VR = syntax == ImplicitVRLittleEndian
    fp.is_little_endian = True
    write_dataset(fp, dataset)
    return fp.getvalue()


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
@pytest.mark.parametrize("charset", ["ISO_IR 192", "ISO_IR 100"])
def test_the_same_bytes_as_pydicom(syntax: str, charset: str) -> None:
    elements = [(0x00080005, "CS", charset), *ANSWER]
    assert flat.encodable(elements, syntax)
    assert flat.encode(reversed(elements), syntax, charset) == pydicom_bytes(
        ANSWER, syntax, charset
    )


def test_sequences_and_other_syntaxes_go_through_pydicom() -> None:
    assert not flat.encodable([(0x00081110, "SQ", None)], ExplicitVRLittleEndian)
    assert not flat.encodable(ANSWER, ExplicitVRBigEndian)
    assert not flat.encodable(ANSWER, DeflatedExplicitVRLittleEndian)
    assert not flat.encodable([(0x00280010, "US", "512")], ExplicitVRLittleEndian)
