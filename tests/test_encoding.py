"""Conversions between transfer syntaxes, checked element by element at every level.

Every file of pydicom and pydicom-data, and Schick-like objects with private
sequences, goes to Explicit and Implicit VR Little Endian and back the other way.
Each result is read by DCMTK ``dcmdump`` (no error or warning) and by pydicom, and
every element at every nesting level is compared with the source.
"""

from __future__ import annotations

import subprocess
import warnings
from pathlib import Path

import pytest
from conftest import corpus
from dataset_compare import differences, read
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from schick import SCHICK, schick_files, schick_image, write

from pacsnode.archive.encoding import Encoding, parse
from pacsnode.archive.transcoding import TranscodeError, split_meta, transcode

ELE, ILE = ExplicitVRLittleEndian, ImplicitVRLittleEndian

UNCONVERTIBLE = {
    # Broken files the archive's ingest refuses too; converting them must fail cleanly.
    "MR_truncated.dcm": "longer than its data set",
    "rtplan_truncated.dcm": "longer than its data set",
    "emri_small_jpeg_2k_lossless_too_short.dcm": "truncated",
    "SC_rgb_jpeg.dcm": "no valid VR",  # Implicit VR under an explicit syntax
    # Compressed pixel data the installed decoders cannot read.
    "JPEG-lossy.dcm": "cannot convert",
    "JPEG2000-embedded-sequence-delimiter.dcm": "cannot convert",
}
PIXEL_MODULE = frozenset({0x00280004, 0x00280006, 0x00282110, 0x00282112, 0x00282114})
"""What decompression may change beside the pixels: photometric interpretation,
planar configuration and the lossy compression attributes."""


def _syntax(path: Path) -> str | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            meta = dcmread(path, stop_before_pixels=True).file_meta
        except Exception:
            return None
    return str(meta.get("TransferSyntaxUID", "")) or None


def _sources() -> list[Path]:
    return [path for path in corpus() if _syntax(path)]


def dcmdump_problems(paths: list[Path]) -> list[str]:
    """Every error or warning DCMTK prints while reading the files."""
    done = subprocess.run(
        ["dcmdump", "-q", *map(str, paths)], capture_output=True, text=True, errors="replace"
    )
    lines = (done.stdout + done.stderr).splitlines()
    problems = [line for line in lines if line.startswith(("W:", "E:", "F:"))]
    if done.returncode:
        problems.append(f"dcmdump exited {done.returncode}")
    return problems


def round_trips(source: Path, folder: Path) -> dict[str, Path]:
    """source → ELE → ILE and source → ILE → ELE, each step written to a file."""
    stored = _syntax(source)
    assert stored
    results: dict[str, Path] = {}
    for first, second in ((ELE, ILE), (ILE, ELE)):
        one = folder / f"{_name(first)}.dcm"
        one.write_bytes(transcode(source, stored, first))
        two = folder / f"{_name(first)}-{_name(second)}.dcm"
        two.write_bytes(transcode(one, first, second))
        results[one.stem], results[two.stem] = one, two
    return results


def _name(syntax: str) -> str:
    return "ele" if syntax == ELE else "ile"


def check_conversions(source: Path, folder: Path) -> None:
    results = round_trips(source, folder)
    assert dcmdump_problems(list(results.values())) == []
    changed = (
        PIXEL_MODULE
        if dcmread(source, stop_before_pixels=True).file_meta["TransferSyntaxUID"].value
        not in (ELE, ILE, "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99")
        else frozenset()
    )
    for name, path in results.items():
        result = read(path)
        expected = ELE if name.endswith("ele") else ILE
        assert result.file_meta.TransferSyntaxUID == expected
        assert differences(read(source), result, changed) == [], f"{source.name} → {name}"
        assert _encodings_agree(path, expected), f"{name}: an element is not in {expected}"


def _encodings_agree(path: Path, syntax: str) -> bool:
    """Walked by the archive's own parser in the file's syntax, to the last byte: an
    item left in the other encoding would not parse."""
    data = memoryview(path.read_bytes())
    _, offset = split_meta(data)
    return bool(parse(data[offset:], Encoding.of(syntax)))


SOURCES = [p for p in _sources() if p.name not in UNCONVERTIBLE]


@pytest.mark.parametrize("source", SOURCES, ids=[p.name for p in SOURCES])
def test_corpus_file_converts_both_ways(source: Path, tmp_path: Path) -> None:
    check_conversions(source, tmp_path)


def test_schick_objects_convert_both_ways(tmp_path: Path) -> None:
    for source in schick_files(tmp_path / "sources"):
        folder = tmp_path / source.stem
        folder.mkdir()
        check_conversions(source, folder)


@pytest.mark.parametrize("name", sorted(UNCONVERTIBLE))
def test_broken_or_undecodable_files_are_refused_with_a_reason(name: str) -> None:
    source = next(p for p in corpus() if p.name == name)
    stored = _syntax(source)
    assert stored
    for target in {ELE, ILE} - {stored}:
        with pytest.raises(TranscodeError, match=UNCONVERTIBLE[name]):
            transcode(source, stored, target)


def test_implicit_items_are_implicit_after_conversion(tmp_path: Path) -> None:
    """The reported corruption: sequence items of an Explicit VR object stayed
    explicit inside the Implicit VR result."""
    source = write(schick_image(), tmp_path / "ele.dcm", ELE)
    converted = transcode(source, ELE, ILE)
    item_creator = (SCHICK + "Viewset Item Creator ID ").encode()  # padded to even
    at = converted.index(item_creator) + len(item_creator)
    # The item's next element, (0009,1001) UI: a 4-byte length and no VR.
    assert converted[at : at + 4] == b"\x09\x00\x01\x10"
    assert converted[at + 4 : at + 8] == (46).to_bytes(4, "little")
    assert converted[at + 8 : at + 54] == b"1.2.840.114244.030.4.337057497.868863780.4817\0"


def test_explicit_round_trip_gives_the_same_bytes(tmp_path: Path) -> None:
    """ELE → ILE → ELE gives back the source's bytes up to the first element whose
    VR Implicit VR cannot carry: the orphan checksum (0029,1001), which comes back as
    UN with its bytes."""
    source = write(schick_image(undefined_lengths=True), tmp_path / "ele.dcm", ELE)
    implicit = tmp_path / "ile.dcm"
    implicit.write_bytes(transcode(source, ELE, ILE))
    back = transcode(implicit, ILE, ELE)
    data = source.read_bytes()
    original_body = data[split_meta(memoryview(data))[1] :]
    body = back[split_meta(memoryview(back))[1] :]
    orphan = original_body.index(b"\x29\x00\x01\x10UL")
    assert body[:orphan] == original_body[:orphan]
    assert body[orphan : orphan + 16] == b"\x29\x00\x01\x10UN\0\0\x04\0\0\0\x93\x80\x78\x4b"


def test_schick_elements_get_their_documented_vrs_in_explicit_vr(tmp_path: Path) -> None:
    source = write(schick_image(), tmp_path / "ile.dcm", ILE)
    result = tmp_path / "ele.dcm"
    result.write_bytes(transcode(source, ILE, ELE))
    ds = dcmread(result)
    viewset = ds.private_block(0x0009, SCHICK + "Viewset Creator ID")
    assert viewset[0x03].VR == "SQ" and viewset[0x04].VR == "UL"
    item = viewset[0x03].value[0].private_block(0x0009, SCHICK + "Viewset Item Creator ID")
    assert [item[n].VR for n in (0x01, 0x02, 0x06)] == ["UI", "US", "US"]
    assert item[0x06].value == [10, 20, 300, 200]
    changes = ds.private_block(0x0021, SCHICK + "Change List Creator ID")[0x02].value[0]
    change = changes.private_block(0x0021, SCHICK + "Change Item Creator ID")
    assert [change[n].VR for n in range(1, 6)] == ["UI", "US", "DT", "PN", "OB"]
    notes = ds.private_block(0x0021, SCHICK + "Note Item Creator ID")
    assert notes[0x02].VR == "SQ"
    note = notes[0x02].value[0].private_block(0x0021, SCHICK + "Note Item Creator ID")
    assert [note[n].VR for n in range(1, 5)] == ["ST", "DT", "PN", "US"]
    assert ds[0x00291001].VR == "UN"  # an orphan: no creator, no guess
    assert ds[0x00291001].value == (0x4B788093).to_bytes(4, "little")
    vendor = ds.private_block(0x0041, "ACME IMAGING 1.0")
    assert vendor[0x05].VR in ("UN", "SQ")  # pydicom may read a UN sequence as SQ
    raw = result.read_bytes()
    assert b"\x41\x00\x05\x10UN\x00\x00" in raw  # unknown creator: UN, never a guess
