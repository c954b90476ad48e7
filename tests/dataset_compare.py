"""Element-by-element comparison of two objects at every sequence level, read by pydicom.

Used to check every conversion against its source: pydicom, not the archive's own
parser, reads both sides. Differences that a conversion must make are allowed and
nothing else:

- Group Length elements, which are recomputed;
- a VR of ``UN`` on one side (a private element of unknown VR written in Explicit
  VR, or an unknown one read from Implicit VR): its bytes must equal the other
  side's value encoded in Implicit VR Little Endian, and a sequence's items are
  read back from those bytes and compared in turn;
- pixel data, compared as decoded pixels when the source was compressed, and the
  Image Pixel attributes pydicom's decoder changes (listed by the caller).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom import Dataset, dcmread
from pydicom.dataelem import DataElement
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_sequence
from pydicom.filewriter import write_data_element
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import UID

PIXEL_DATA = 0x7FE00010
ICON_IMAGE_SEQUENCE = 0x00880200
SWAPPED_VRS = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


def read(path: Path) -> Dataset:
    return dcmread(path, force=True)


def differences(
    source: Dataset, result: Dataset, changed: frozenset[int] = frozenset()
) -> list[str]:
    """Every element of ``source`` missing from ``result`` or with another value.

    ``changed`` names top-level tags the conversion may change (pixel attributes
    of a decompressed object); they must still be present on both sides.
    """
    big_endian = UID(source.file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2.2"
    compressed = UID(source.file_meta.TransferSyntaxUID).is_compressed
    found: list[str] = []
    _compare(source, result, "", big_endian, compressed, changed, found)
    return found


def _compare(
    a: Dataset,
    b: Dataset,
    where: str,
    big_endian: bool,
    compressed: bool,
    changed: frozenset[int],
    found: list[str],
) -> None:
    for tag in sorted(set(a.keys()) | set(b.keys())):
        name = f"{where}{_tag(tag)}"
        if tag.element == 0:
            continue
        if tag == ICON_IMAGE_SEQUENCE and compressed and tag not in b:
            continue  # a compressed icon is dropped with its image's compression
        if tag not in a or tag not in b:
            found.append(f"{name} only in the {'source' if tag in a else 'result'}")
            continue
        if tag in changed:
            continue
        raw_a, raw_b = _raw(a, tag), _raw(b, tag)
        ea, eb = a[tag], b[tag]
        if tag == PIXEL_DATA and not where:
            if not _same_pixels(a, b, big_endian):
                found.append(f"{name} pixels differ")
            continue
        _compare_element(ea, eb, (raw_a, raw_b), name, big_endian, found)


def _compare_element(
    ea: DataElement,
    eb: DataElement,
    raw: tuple[bytes | None, bytes | None],
    name: str,
    big_endian: bool,
    found: list[str],
) -> None:
    if ea.VR == "SQ" and eb.VR == "SQ":
        _compare_items(ea.value, eb.value, name, big_endian, found)
    elif ea.VR == eb.VR:
        if _value(ea, big_endian) != _value(eb, False):
            found.append(f"{name} {ea.VR}: {ea.value!r:.60} != {eb.value!r:.60}")
    elif "UN" in (ea.VR, eb.VR):
        known, unknown = (eb, ea) if ea.VR == "UN" else (ea, eb)
        swap = big_endian and known is ea
        if known.VR == "SQ":
            items = _implicit_items(unknown.value)
            pair = (known.value, items) if known is ea else (items, known.value)
            _compare_items(*pair, name, big_endian, found)
        elif _implicit_bytes(known, swap) != bytes(unknown.value or b""):
            found.append(f"{name} {known.VR}/UN: {known.value!r:.60} != {unknown.value!r:.60}")
    elif "SQ" in (ea.VR, eb.VR):
        # pydicom's private dictionary named another VR for the other side: its bytes
        # must still be the sequence, in Implicit VR.
        other_raw = raw[1] if ea.VR == "SQ" else raw[0]
        if other_raw is None:
            found.append(f"{name} VR {ea.VR} became {eb.VR}")
            return
        items = _implicit_items(other_raw)
        pair = (ea.value, items) if ea.VR == "SQ" else (items, eb.value)
        _compare_items(*pair, name, big_endian, found)
    else:  # pydicom's private dictionary named a VR on one side only: compare bytes
        raw_a = _implicit_bytes(ea, big_endian) if raw[0] is None else raw[0]
        if raw_a != (_implicit_bytes(eb, False) if raw[1] is None else raw[1]):
            found.append(f"{name} {ea.VR}/{eb.VR}: {ea.value!r:.60} != {eb.value!r:.60}")


def _compare_items(a: Sequence, b: Sequence, name: str, big_endian: bool, found: list[str]) -> None:
    if len(a) != len(b):
        found.append(f"{name}: {len(a)} items became {len(b)}")
        return
    for number, (item_a, item_b) in enumerate(zip(a, b, strict=True), start=1):
        _compare(item_a, item_b, f"{name}[{number}]", big_endian, False, frozenset(), found)


def _value(element: DataElement, big_endian: bool) -> object:
    value = element.value
    size = SWAPPED_VRS.get(element.VR)
    if big_endian and size and isinstance(value, bytes) and len(value) % size == 0:
        return np.frombuffer(value, f">u{size}").astype(f"<u{size}").tobytes()
    return value


def _raw(dataset: Dataset, tag: BaseTag) -> bytes | None:
    """The value's bytes as read, when pydicom has not converted it yet."""
    element = dataset.get_item(tag)
    if isinstance(element, DataElement) or element is None:
        return None
    return bytes(element.value or b"")


def _implicit_bytes(element: DataElement, big_endian: bool) -> bytes:
    """The element's value as Implicit VR Little Endian writes it."""
    copy = DataElement(element.tag, element.VR, _value(element, big_endian))
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, True
    write_data_element(fp, copy)
    return fp.getvalue()[8:]


def _implicit_items(value: bytes | None) -> Sequence:
    data = bytes(value or b"")
    fp = DicomBytesIO(data)
    fp.is_little_endian, fp.is_implicit_VR = True, True
    return read_sequence(fp, True, True, len(data), "iso8859")


def _same_pixels(a: Dataset, b: Dataset, big_endian: bool) -> bool:
    try:
        return bool(np.array_equal(a.pixel_array, b.pixel_array))
    except Exception:  # pixels pydicom cannot lay out (odd sizes): compare the bytes
        return _value(a["PixelData"], big_endian) == b["PixelData"].value


def _tag(tag: BaseTag) -> str:
    return f"({tag.group:04X},{tag.element:04X})"
