"""DIMSE data sets decoded by pacsnode's reader of flat identifiers, compared element
by element with what pydicom's own reader makes of the same bytes."""

from __future__ import annotations

import random

import pytest
from pydicom import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.sequence import Sequence

from pacsnode.dimse import codec

SYNTAXES = {"explicit": "1.2.840.10008.1.2.1", "implicit": "1.2.840.10008.1.2"}
KEYS: dict[str, list[object]] = {
    "PatientName": ["", "DOE*", "Müller^Hans", "A^B\\C^D", "?OE^JOHN", "山田^太郎"],
    "PatientID": ["", "P1", "P1\\P2"],
    "StudyDate": ["", "20200101-20201231", "20210601"],
    "StudyTime": ["", "101010-"],
    "AccessionNumber": ["", "A1"],
    "ModalitiesInStudy": ["", "CT\\MR"],
    "StudyInstanceUID": ["", "1.2.3", "1.2.3\\1.2.4"],
    "NumberOfStudyRelatedInstances": ["", "5"],
    "StudyDescription": ["", "brain  ", "Herz/Thorax"],
    "PatientSex": ["", "M"],
    "SeriesNumber": ["", "3"],
    "Rows": [512, 0],
    "SliceThickness": ["", "1.5"],
    "RetrieveAETitle": [""],
    "ReferringPhysicianName": ["", "SMITH"],
}


def _identifiers(count: int) -> list[Dataset]:
    chance = random.Random(20261207)
    made = []
    for _ in range(count):
        ds = Dataset()
        charset = chance.choice([None, "ISO_IR 100", "ISO_IR 192"])
        if charset:
            ds.SpecificCharacterSet = charset
        ds.QueryRetrieveLevel = chance.choice(["PATIENT", "STUDY", "SERIES"])
        for keyword in chance.sample(sorted(KEYS), chance.randint(1, len(KEYS))):
            value = chance.choice(KEYS[keyword])
            if isinstance(value, str) and not value.isascii() and charset != "ISO_IR 192":
                value = "Müller^Hans" if charset else "MULLER^HANS"
            setattr(ds, keyword, value)
        made.append(ds)
    return made


def _described(dataset: Dataset) -> list[tuple[int, str, str, str]]:
    return [(int(e.tag), e.VR, type(e.value).__name__, repr(e.value)) for e in dataset]


@pytest.mark.parametrize("syntax", SYNTAXES.values(), ids=SYNTAXES.keys())
def test_flat_identifiers_decode_as_pydicom_reads_them(syntax: str) -> None:
    for identifier in _identifiers(400):
        data = codec.encode(identifier, syntax)
        assert codec._flat(data, codec.Encoding.of(syntax)) is not None
        ours = codec.decode(data, syntax)
        theirs = read_dataset(DicomBytesIO(data), syntax.endswith(".2"), True)
        assert _described(ours) == _described(theirs)
        assert ours.original_encoding == theirs.original_encoding
        assert ours.original_character_set == theirs.original_character_set
        assert codec.encode(ours, syntax) == codec.encode(theirs, syntax)


@pytest.mark.parametrize("syntax", SYNTAXES.values(), ids=SYNTAXES.keys())
def test_identifiers_with_sequences_or_private_elements_are_read_by_pydicom(syntax: str) -> None:
    nested = Dataset()
    nested.QueryRetrieveLevel = "STUDY"
    item = Dataset()
    item.CodeValue = "T-A0100"
    nested.ProcedureCodeSequence = Sequence([item])
    private = Dataset()
    private.QueryRetrieveLevel = "STUDY"
    private.add_new(0x00091010, "LO", "ACME")
    for identifier in (nested, private):
        data = codec.encode(identifier, syntax)
        assert codec._flat(data, codec.Encoding.of(syntax)) is None
        ours = codec.decode(data, syntax)
        assert _described(ours)[0] == _described(identifier)[0]
        assert codec.encode(ours, syntax) == data
