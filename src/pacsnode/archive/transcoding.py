"""Changing the transfer syntax of a stored object for a reader that asks for another.

Only what keeps the pixels as they are stored is done: decompressing to Explicit or
Implicit VR Little Endian, and compressing to a lossless syntax. Nothing is ever
compressed lossily; a reader that wants that gets :class:`TranscodeError`, which
the doors answer as "not acceptable".
"""

from __future__ import annotations

import io
from pathlib import Path

from pydicom import Dataset, dcmread
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)

DECODED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
LOSSLESS_TARGETS = (RLELossless, JPEG2000Lossless, JPEGLSLossless)
"""Lossless syntaxes pydicom's installed encoders can write."""


class TranscodeError(ValueError):
    """The object cannot be given in the asked syntax without changing its pixels."""


def can_transcode(stored: str, target: str) -> bool:
    """Whether :func:`transcode` would succeed, judged without reading the file."""
    return target == stored or target in DECODED or target in LOSSLESS_TARGETS


def transcode(path: Path, stored: str, target: str) -> bytes:
    """The Part 10 file at ``path`` (stored in ``stored``) re-encoded in ``target``."""
    if target == stored:
        return path.read_bytes()
    if not can_transcode(stored, target):
        raise TranscodeError(f"{target} is not a syntax this archive converts to")
    dataset = dcmread(path, force=True)
    dataset.file_meta.TransferSyntaxUID = UID(stored)
    try:
        if "PixelData" not in dataset:
            _reencode(dataset, target)
        elif UID(target).is_compressed:
            if UID(stored).is_compressed:
                dataset.decompress(generate_instance_uid=False)
            dataset.compress(target, generate_instance_uid=False)
        else:
            if UID(stored).is_compressed:
                dataset.decompress(generate_instance_uid=False)
            _reencode(dataset, target)
    except (NotImplementedError, RuntimeError, ValueError, AttributeError) as exc:
        raise TranscodeError(f"cannot convert {stored} to {target}: {exc}") from exc
    return _encoded(dataset)


def decoded(path: Path, stored: str) -> Dataset:
    """The object with its pixel data decompressed, for rendering and frames."""
    dataset = dcmread(path, force=True)
    dataset.file_meta.TransferSyntaxUID = UID(stored)
    return dataset


def _reencode(dataset: Dataset, target: str) -> None:
    """Re-encode a data set without compressed pixel data; a compressed syntax encodes
    everything but pixel data as explicit VR, so an SR can be written in it too."""
    uid = UID(target)
    if not uid.is_little_endian:
        raise TranscodeError("big endian is not written")
    dataset.file_meta.TransferSyntaxUID = uid
    dataset.set_original_encoding(uid.is_implicit_VR, True)


def _encoded(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
