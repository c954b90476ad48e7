"""Data sets of DIMSE messages (identifiers, N-service attributes) to and from bytes.

pydicom reads and writes them. A data set read in one syntax and written in another
(a C-FIND forwarded by spanning) is written by pydicom in the syntax it was read in
and then converted element by element (:mod:`pacsnode.archive.encoding`), because
pydicom writes nested items in the encoding they were read in.
"""

from __future__ import annotations

import zlib
from typing import BinaryIO, cast

from pydicom import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset

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
        fp = cast(BinaryIO, DicomBytesIO(data))
        dataset = read_dataset(fp, encoding.implicit, encoding.little)
        for _element in dataset:  # convert every value now: a bad one fails here
            pass
    except Exception as exc:  # pydicom raises nearly anything on a broken data set
        raise DecodeError(f"data set does not decode: {exc}") from exc
    return dataset


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
