"""Changing the transfer syntax of a stored object for a reader that asks for another.

Every door that hands out an object in another syntax calls :func:`convert` (or
:func:`transcode` for a whole Part 10 file): C-MOVE and C-GET sub-operations,
routing, WADO-RS and WADO-URI, media export, ``pacsnode store``. The data set is
re-encoded element by element at every level (:mod:`pacsnode.archive.encoding`);
only the pixel data goes through pydicom's codecs, and only when the syntax's
compression changes.

Unless asked otherwise, only what keeps the pixels as they are stored is done:
decompressing to Explicit or Implicit VR Little Endian, and compressing to a
lossless syntax; a reader that wants more gets :class:`TranscodeError`, which the
doors answer as "not acceptable". Lossy compression (JPEG 2000, for a routing rule
that allows it) is asked for by naming a compression ratio, and is never applied
to an object that is lossy already: compressing twice would lose twice.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

from pydicom import Dataset, dcmread
from pydicom.dataelem import DataElement
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import correct_ambiguous_vr_element, write_data_element
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

from pacsnode.archive.encoding import (
    LONG_VRS,
    Chunk,
    Element,
    Encoding,
    EncodingError,
    parse,
    reencode,
    split_meta,
)
from pacsnode.archive.modification import Modification
from pacsnode.config import is_lossy_syntax

DECODED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
LOSSLESS_TARGETS = (RLELossless, JPEG2000Lossless, JPEGLSLossless)
"""Lossless syntaxes pydicom's installed encoders can write."""
NATIVE = frozenset({ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian})
"""Syntaxes whose pixel data is not encapsulated (deflate aside)."""

_META_GROUP_LENGTH = 0x00020000
_META_TRANSFER_SYNTAX = 0x00020010


class TranscodeError(ValueError):
    """The object cannot be given in the asked syntax without changing its pixels."""


def can_transcode(stored: str, target: str, lossy_ratio: int | None = None) -> bool:
    """Whether :func:`convert` would succeed, judged without reading the file."""
    if lossy_ratio is not None and target == JPEG2000:
        return not is_lossy_syntax(stored)
    return target == stored or target in DECODED or target in LOSSLESS_TARGETS


def transcode(
    path: Path, stored: str, target: str, modification: Modification | None = None
) -> bytes:
    """The Part 10 file at ``path`` (stored in ``stored``) re-encoded in ``target``."""
    if target == stored and not modification:
        return path.read_bytes()
    meta, body = convert(path, stored, target, modification=modification)
    return b"".join([meta, *body])


def writable(syntax: str) -> bool:
    """Whether a modified data set can be written in this syntax (the re-encoder writes
    Little Endian, neither Big Endian nor deflated)."""
    encoding = Encoding.of(syntax)
    return encoding.little and not encoding.deflated


def modified(path: Path, stored: str, modification: Modification) -> bytes:
    """The Part 10 file with the outgoing step's changes, in its stored syntax when
    that can be written, else in Explicit VR Little Endian."""
    return transcode(
        path, stored, stored if writable(stored) else ExplicitVRLittleEndian, modification
    )


def convert(
    path: Path,
    stored: str,
    target: str,
    lossy_ratio: int | None = None,
    modification: Modification | None = None,
) -> tuple[bytes, list[Chunk]]:
    """The stored file's File Meta (naming ``target``) and its data set in ``target``.

    The data set comes as chunks, large values as slices of the mapped file, so a
    sender can write them out without joining them first. ``lossy_ratio`` allows
    lossy JPEG 2000 at that compression ratio; ``modification`` changes top-level
    attributes on the way (the outgoing step, coercion).
    """
    if not can_transcode(stored, target, lossy_ratio):
        if lossy_ratio is not None and target == JPEG2000:
            raise TranscodeError("already lossy compressed")
        raise TranscodeError(f"{target} is not a syntax this archive converts to")
    data = _mapped(path)
    meta, offset = split_meta(data)
    replace = {}
    if _pixels_change(stored, target):
        replace = _pixel_changes(path, stored, target, lossy_ratio)
    if modification:
        replace.update(modification.encoded(Encoding.of(target).implicit))
    try:
        body = reencode(data[offset:], Encoding.of(stored), Encoding.of(target), replace)
    except EncodingError as exc:
        raise TranscodeError(f"cannot convert {stored} to {target}: {exc}") from exc
    return _meta_naming(meta, target), body


def decoded(path: Path, stored: str) -> Dataset:
    """The object with its pixel data decompressed, for rendering and frames."""
    dataset = dcmread(path, force=True)
    dataset.file_meta.TransferSyntaxUID = UID(stored)
    return dataset


def _meta_naming(meta: memoryview, target: str) -> bytes:
    """File Meta with ``target`` as its Transfer Syntax UID and a true group length."""
    uid = target.encode("ascii")
    uid += b"\0" * (len(uid) % 2)
    syntax = struct.pack("<HH2sH", 0x0002, 0x0010, b"UI", len(uid)) + uid
    kept: list[bytes] = []
    replaced = False
    for element in parse(meta, Encoding(implicit=False)):
        if element.tag == _META_GROUP_LENGTH:
            continue
        encoded = syntax if element.tag == _META_TRANSFER_SYNTAX else _encoded_meta(element)
        replaced |= element.tag == _META_TRANSFER_SYNTAX
        kept.append(encoded)
    if not replaced:
        kept.append(syntax)
        kept.sort(key=lambda e: struct.unpack_from("<HH", e))
    body = b"".join(kept)
    length = struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(body))
    return b"\0" * 128 + b"DICM" + length + body


def _encoded_meta(element: Element) -> bytes:
    value = bytes(element.value)
    group, elem = element.tag >> 16, element.tag & 0xFFFF
    if element.vr in LONG_VRS:
        return struct.pack("<HH2s2xI", group, elem, element.vr.encode(), len(value)) + value
    return struct.pack("<HH2sH", group, elem, element.vr.encode(), len(value)) + value


def _mapped(path: Path) -> memoryview:
    """The file's bytes, mapped rather than read: a 1 GB object is not copied."""
    with path.open("rb") as fp:
        if path.stat().st_size == 0:
            raise TranscodeError(f"{path.name} is empty")
        return memoryview(mmap.mmap(fp.fileno(), 0, access=mmap.ACCESS_READ))


def _pixels_change(stored: str, target: str) -> bool:
    """Whether the pixel data must go through a codec: compressed on one side only,
    or compressed differently on both."""
    native = {*NATIVE, DeflatedExplicitVRLittleEndian}
    return stored != target and not (stored in native and target in native)


def _pixel_changes(
    path: Path, stored: str, target: str, lossy_ratio: int | None
) -> dict[int, bytes | None]:
    """The top-level elements pydicom's codecs change, encoded for ``target``.

    pydicom decodes (and encodes) the pixel data and adjusts the Image Pixel module
    (Photometric Interpretation, Planar Configuration…); those elements, and only
    those, replace the originals. Sequences are never taken from pydicom.
    """
    dataset = dcmread(path, force=True)
    dataset.file_meta.TransferSyntaxUID = UID(stored)
    if "PixelData" not in dataset:
        if lossy_ratio is not None:
            raise TranscodeError("no pixel data")
        return {}
    tags = list(dataset.keys())  # iterating a Dataset would convert every element
    before = {tag: dataset.get_item(tag) for tag in tags}
    try:
        if UID(stored).is_compressed:
            dataset.decompress(generate_instance_uid=False)
        if lossy_ratio is not None:
            _compress_lossy(dataset, target, lossy_ratio)
        elif UID(target).is_compressed:
            dataset.compress(target, generate_instance_uid=False)
    except (NotImplementedError, RuntimeError, ValueError, AttributeError) as exc:
        raise TranscodeError(f"cannot convert {stored} to {target}: {exc}") from exc
    changes: dict[int, bytes | None] = {int(tag): None for tag in before if tag not in dataset}
    for tag in list(dataset.keys()):
        element = dataset.get_item(tag)
        if element is before.get(tag) or not isinstance(element, DataElement):
            continue
        if element.VR != "SQ":
            changes[int(tag)] = _encoded_element(element, dataset, Encoding.of(target))
    return changes


def _compress_lossy(dataset: Dataset, target: str, ratio: int) -> None:
    """JPEG 2000 at ``ratio``, marked as PS3.3 C.7.6.1.1.5 asks."""
    if dataset.get("LossyImageCompression") == "01":
        raise TranscodeError("already lossy compressed")
    dataset.compress(target, j2k_cr=[ratio], generate_instance_uid=False)
    dataset.LossyImageCompression = "01"
    dataset.LossyImageCompressionRatio = [ratio]
    dataset.LossyImageCompressionMethod = ["ISO_15444_1"]


def _encoded_element(element: DataElement, dataset: Dataset, encoding: Encoding) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = encoding.implicit
    if " or " in element.VR:
        correct_ambiguous_vr_element(element, dataset, True)
    write_data_element(fp, element)
    return fp.getvalue()
