"""Data sets of DIMSE messages (identifiers, N-service attributes) to and from bytes.

pydicom reads and writes them. A data set read in one syntax and written in another
(a C-FIND forwarded by spanning) is written by pydicom in the syntax it was read in
and then converted element by element (:mod:`pacsnode.archive.encoding`), because
pydicom writes nested items in the encoding they were read in.
"""

from __future__ import annotations

import struct
import zlib
from functools import lru_cache
from typing import BinaryIO, cast

from pydicom import Dataset
from pydicom.charset import convert_encodings, default_encoding
from pydicom.datadict import DicomDictionary, dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement, empty_value_for_VR
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.tag import BaseTag

from pacsnode.archive.encoding import Encoding, reencode


class DecodeError(ValueError):
    """A data set that does not decode in its presentation context's syntax."""


def decode(data: bytes, syntax: str) -> Dataset:
    encoding = Encoding.of(syntax)
    if encoding.deflated:
        try:
            data = zlib.decompress(data, -zlib.MAX_WBITS)
        except zlib.error as exc:
            raise DecodeError(f"deflated data set does not inflate: {exc}") from exc
    try:
        dataset = _flat(data, encoding) if encoding.little else None
        if dataset is None:
            fp = cast(BinaryIO, DicomBytesIO(data))
            dataset = read_dataset(fp, encoding.implicit, encoding.little)
            for _element in dataset:  # convert every value now: a bad one fails here
                pass
    except Exception as exc:  # pydicom raises nearly anything on a broken data set
        raise DecodeError(f"data set does not decode: {exc}") from exc
    return dataset


_IMPLICIT = struct.Struct("<HHI")
_EXPLICIT = struct.Struct("<HH2sH")
_LONG_VRS = frozenset(
    {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
)


def _flat(data: bytes, encoding: Encoding) -> Dataset | None:
    """A little endian data set of standard top-level elements, read without
    pydicom's general reader, which cost most of a C-FIND's decoding; ``None`` for
    anything else (a sequence, a private or unknown element, a VR that differs from
    the dictionary's), which pydicom then reads.

    Empty elements, most of an identifier, get the value pydicom gives them
    (:func:`empty_value_for_VR`); pydicom converts the others before it returns, so
    that a bad value fails here.
    """
    elements: dict[BaseTag, RawDataElement | DataElement] = {}
    valued: list[BaseTag] = []
    offset, end = 0, len(data)
    while offset < end:
        if end - offset < 8:
            return None
        if encoding.implicit:
            group, number, length = _IMPLICIT.unpack_from(data, offset)
            offset += 8
            vr = None
        else:
            group, number, raw_vr, length = _EXPLICIT.unpack_from(data, offset)
            vr = raw_vr.decode("latin-1")
            offset += 8
            if vr in _LONG_VRS:
                if end - offset < 4:
                    return None
                (length,) = struct.unpack_from("<I", data, offset)
                offset += 4
        tag = BaseTag(group << 16 | number)
        known = _standard_vr(tag)
        if known is None or vr not in (None, known):
            return None  # see _standard_vr, or a VR the sender chose otherwise
        if length == 0xFFFFFFFF or offset + length > end:
            return None
        value = data[offset : offset + length]
        if length:
            elements[tag] = RawDataElement(
                tag, known, length, value, offset, encoding.implicit, True
            )
            valued.append(tag)
        else:
            empty = empty_value_for_VR(known)
            elements[tag] = DataElement(tag, known, empty, already_converted=True)
        offset += length
    dataset = Dataset(elements)
    charset = dataset.get("SpecificCharacterSet")
    used = convert_encodings(charset) if charset is not None else default_encoding
    dataset.set_original_encoding(encoding.implicit, True, used)
    for tag in valued:
        dataset[tag]  # converted in place
    return dataset


@lru_cache(maxsize=4096)
def _standard_vr(tag: int) -> str | None:
    """The dictionary VR of an element :func:`_flat` reads itself; ``None`` for a
    private or unknown element, a sequence or an ambiguous VR. Cached: the same few
    tags come in every C-FIND identifier."""
    if (tag >> 16) % 2 or tag not in DicomDictionary:
        return None
    vr = str(dictionary_VR(tag))
    return None if vr == "SQ" or " or " in vr else vr


def encode(dataset: Dataset, syntax: str) -> bytes:
    target = Encoding.of(syntax)
    plain = Encoding(target.implicit, target.little)
    implicit, little = dataset.original_encoding
    natural = plain if implicit is None or little is None else Encoding(implicit, little)
    written = _written(dataset, natural)
    if natural != plain:
        written = b"".join(reencode(written, natural, plain))
    if target.deflated:
        compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        written = compressor.compress(written) + compressor.flush()
    return written


def _written(dataset: Dataset, encoding: Encoding) -> bytes:
    fp = DicomBytesIO()
    fp.is_implicit_VR = encoding.implicit
    fp.is_little_endian = encoding.little
    write_dataset(fp, dataset)
    return fp.getvalue()
