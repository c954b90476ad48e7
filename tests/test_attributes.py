"""The index values ingest reads straight from raw elements (archive/attributes.py) are
those pydicom's own conversion gives, for every indexed attribute of every file pydicom
and pydicom-data ship (implicit and explicit VR, little and big endian, character sets)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import corpus
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from pacsnode.archive.attributes import (
    ATTRIBUTES,
    Level,
    _converted_value,
    column_values,
    fold,
)

FILES = corpus()


def converted_row(dataset: Dataset, level: Level) -> dict[str, Any]:
    """An index row made with pydicom's conversion of every value."""
    row: dict[str, Any] = {}
    for attr in ATTRIBUTES[level]:
        value = _converted_value(dataset[attr.tag], attr) if attr.tag in dataset else None
        row[attr.column] = value
        if attr.has_folded_copy:
            row[attr.folded_column] = fold(value)
    return row


def read(path: Path) -> Dataset:
    try:
        return dcmread(path, stop_before_pixels=True, force=True)
    except (InvalidDicomError, EOFError, ValueError, OSError) as exc:
        pytest.skip(f"pydicom cannot read it: {exc}")


def test_the_corpus_holds_what_the_fast_paths_read() -> None:
    """Among the files: raw US values little endian and big endian, and text."""
    kinds = set()
    for path in FILES:
        try:
            dataset = dcmread(path, stop_before_pixels=True, force=True)
        except Exception:
            continue
        for element in dataset.elements():
            if element.tag == 0x00280010:  # Rows
                kinds.add(("US", dataset.original_encoding[1]))
    assert {("US", True), ("US", False)} <= kinds


@pytest.mark.parametrize("path", FILES, ids=[path.name for path in FILES])
def test_raw_values_are_those_pydicom_converts(path: Path) -> None:
    raw, converted = read(path), read(path)
    for level in Level:
        try:
            expected = converted_row(converted, level)
        except Exception:
            continue  # a value pydicom cannot convert: ingest refuses such a file
        assert column_values(raw, level) == expected, level
