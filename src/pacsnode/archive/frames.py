"""Single frames of stored pixel data, read without loading the rest of the object.

A viewer scrolling a 1,000-frame object asks for one frame at a time; reading the
whole pixel data for each would cost a thousandfold. The file is parsed up to the
pixel data, whose position is then used to seek to the frame: by arithmetic for
native data, through the offset tables for encapsulated data.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.encaps import get_frame
from pydicom.pixels import iter_pixels
from pydicom.tag import Tag
from pydicom.uid import UID

_PIXEL_DATA = 0x7FE00010
_UNDEFINED = 0xFFFFFFFF

# PS3.18 Table 8.7.3-2: the media type a frame of each compressed syntax is sent as.
FRAME_MEDIA_TYPES = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/x-dicom-rle",
    "1.2.840.10008.1.2.4.110": "image/jxl",
    "1.2.840.10008.1.2.4.111": "image/jxl",
    "1.2.840.10008.1.2.4.112": "image/jxl",
}


class FrameError(LookupError):
    """The object has no pixel data, or not the frame asked for."""


@dataclass(frozen=True)
class PixelLayout:
    offset: int
    """Where the pixel data value starts in the file."""
    encapsulated: bool
    frames: int
    frame_size: int
    """Bytes per native frame; 0 for encapsulated data."""


def layout(path: Path) -> PixelLayout:
    dataset = dcmread(path, force=True, defer_size=1024)
    raw = dataset._dict.get(Tag(_PIXEL_DATA))
    if not isinstance(raw, RawDataElement) or raw.value_tell is None:
        raise FrameError("the object has no pixel data")
    frames = int(dataset.get("NumberOfFrames") or 1)
    encapsulated = raw.length == _UNDEFINED
    size = 0
    if not encapsulated:
        bits = int(dataset.get("BitsAllocated", 8))
        pixels = int(dataset.Rows) * int(dataset.Columns) * int(dataset.get("SamplesPerPixel", 1))
        size = pixels * bits // 8
    return PixelLayout(raw.value_tell, encapsulated, frames, size)


def check_numbers(numbers: list[int], frames: int) -> None:
    wrong = [n for n in numbers if not 1 <= n <= frames]
    if wrong:
        raise FrameError(f"frame {wrong[0]} does not exist; the object has {frames}")


def stored_frames(path: Path, numbers: list[int]) -> Iterator[bytes]:
    """Frames (1-based) as stored: native bytes, or one compressed frame each."""
    pixels = layout(path)
    check_numbers(numbers, pixels.frames)
    with path.open("rb") as source:
        for number in numbers:
            source.seek(pixels.offset)
            if pixels.encapsulated:
                yield get_frame(source, number - 1, number_of_frames=pixels.frames)
            else:
                source.seek(pixels.offset + (number - 1) * pixels.frame_size)
                yield source.read(pixels.frame_size)


def decoded_frames(path: Path, transfer_syntax: str, numbers: list[int]) -> Iterator[bytes]:
    """Frames decompressed to native little endian bytes, colour as pydicom gives it."""
    if not UID(transfer_syntax).is_compressed and UID(transfer_syntax).is_little_endian:
        yield from stored_frames(path, numbers)
        return
    check_numbers(numbers, layout(path).frames)
    for array in iter_pixels(path, indices=[n - 1 for n in numbers]):
        yield array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
