"""Data sets re-encoded element by element in another transfer syntax.

A conversion between Explicit and Implicit VR must reach every element at every
level of every sequence: pydicom writes a nested item in the encoding it was read
in, which once left Explicit VR items inside an Implicit VR data set. This module
parses the data set's structure itself and writes each element anew. Values are
copied as bytes (swapped only between byte orders), never decoded, so what needs
no change comes out byte for byte.

Implicit VR does not carry VRs. Writing Explicit VR from it takes them from the
standard dictionary, from :mod:`pacsnode.archive.private_dictionary` for private
creators that document theirs, and ``UN`` for everything else (PS3.5 6.2.2). The
ambiguous VRs (``US or SS``, ``OB or OW``) are settled as PS3.5 Annex A and the
pixel attributes of the data set say.
"""

from __future__ import annotations

import array
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from pydicom.datadict import dictionary_VR
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ImplicitVRLittleEndian

from pacsnode.archive.private_dictionary import private_vr

Chunk = bytes | memoryview

UNDEFINED = 0xFFFFFFFF
ITEM = 0xFFFEE000
ITEM_END = 0xFFFEE00D
SEQUENCE_END = 0xFFFEE0DD
PIXEL_DATA = 0x7FE00010
_META_TRANSFER_SYNTAX = 0x00020010
ICON_IMAGE_SEQUENCE = 0x00880200

LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
SHORT_VRS = frozenset(
    {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO", "LT", "PN", "SH"}
    | {"SL", "SS", "ST", "TM", "UI", "UL", "US"}
)
_SWAP_SIZE = {
    "AT": 2, "US": 2, "SS": 2, "OW": 2,
    "UL": 4, "SL": 4, "FL": 4, "OF": 4, "OL": 4,
    "FD": 8, "OD": 8, "SV": 8, "UV": 8, "OV": 8,
}  # fmt: skip
_ARRAY_CODES = {2: "H", 4: "I", 8: "Q"}
_US_OR_SS_CONTEXT = 0x00280103  # Pixel Representation
_BITS_ALLOCATED = 0x00280100
_WAVEFORM_BITS_ALLOCATED = 0x003A021A
_LUT_DESCRIPTOR = 0x00283002


class EncodingError(ValueError):
    """The data set's structure cannot be followed, or not written as asked."""


@dataclass(frozen=True)
class Encoding:
    """How a transfer syntax encodes the data set (compressed ones: Explicit VR LE)."""

    implicit: bool
    little: bool = True
    deflated: bool = False

    @classmethod
    def of(cls, syntax: str) -> Encoding:
        if syntax == ImplicitVRLittleEndian:
            return cls(implicit=True)
        if syntax == ExplicitVRBigEndian:
            return cls(implicit=False, little=False)
        return cls(implicit=False, deflated=syntax == DeflatedExplicitVRLittleEndian)


@dataclass(slots=True)
class Element:
    tag: int
    vr: str
    """As encoded, or as resolved for Implicit VR; may be ambiguous (``US or SS``)."""
    value: memoryview
    """The value field as in the source; for undefined length, up to its delimiter."""
    items: list[Item] | None = None
    undefined: bool = False
    verbatim: bool = False
    """Copied as it is: ``UN`` contents and encapsulated pixel data."""


@dataclass(slots=True)
class Item:
    elements: list[Element] = field(default_factory=list)
    undefined: bool = False


def reencode(
    data: memoryview | bytes,
    source: Encoding,
    target: Encoding,
    replace: Mapping[int, bytes | None] | None = None,
) -> list[Chunk]:
    """The data set ``data`` (no File Meta) written in ``target``, as chunks.

    ``replace`` maps top-level tags to elements already encoded in ``target`` (a
    new Pixel Data, a changed Photometric Interpretation) or to ``None`` to drop
    them. Large values come back as slices of ``data``, not copies.
    """
    if not target.little or target.deflated:
        raise EncodingError("only Explicit and Implicit VR Little Endian are written")
    view = memoryview(data)
    if source.deflated:
        view = memoryview(_inflate(view))
        source = Encoding(implicit=False)
    elements, _ = _Reader(view, source).dataset(0, len(view), None)
    writer = _Writer(source, target)
    return writer.top_level(elements, dict(replace or {}))


def parse(data: memoryview | bytes, encoding: Encoding) -> list[Element]:
    """The data set's elements, with sequences parsed into items, for inspection."""
    view = memoryview(data)
    if encoding.deflated:
        view = memoryview(_inflate(view))
        encoding = Encoding(implicit=False)
    return _Reader(view, encoding).dataset(0, len(view), None)[0]


def split_meta(data: memoryview) -> tuple[memoryview, int]:
    """The File Meta group's bytes of a Part 10 file (empty if it has none) and where
    its data set begins."""
    start = 132 if bytes(data[128:132]) == b"DICM" else 0
    pos = start
    while len(data) - pos >= 8 and struct.unpack_from("<H", data, pos)[0] == 0x0002:
        if bytes(data[pos + 4 : pos + 6]).decode("latin-1") in LONG_VRS:
            pos += 12 + struct.unpack_from("<I", data, pos + 8)[0]
        else:
            pos += 8 + struct.unpack_from("<H", data, pos + 6)[0]
    return data[start:pos], pos


def meta_syntax(meta: memoryview) -> str | None:
    """The Transfer Syntax UID of a File Meta group, if it names one."""
    try:
        elements = parse(meta, Encoding(implicit=False))
    except EncodingError:
        return None
    found = next((e for e in elements if e.tag == _META_TRANSFER_SYNTAX), None)
    return _text(found.value) if found is not None else None


def _inflate(data: memoryview) -> bytes:
    try:
        return zlib.decompress(data, -zlib.MAX_WBITS)
    except zlib.error as exc:
        raise EncodingError(f"deflated data set does not inflate: {exc}") from exc


class _Reader:
    """Walks one encoded data set; Implicit VR elements get their VRs resolved."""

    def __init__(self, data: memoryview, encoding: Encoding) -> None:
        self.data = data
        self.encoding = encoding
        order = "<" if encoding.little else ">"
        self.tag_length = struct.Struct(order + "HHI")
        self.explicit_short = struct.Struct(order + "HH2sH")
        self.explicit_long = struct.Struct(order + "HH2s2xI")

    def dataset(self, pos: int, end: int, parent_creator: str | None) -> tuple[list[Element], int]:
        """Elements from ``pos`` up to ``end`` or an Item Delimitation Item."""
        elements: list[Element] = []
        creators: dict[tuple[int, int], str] = {}
        data = self.data
        while pos < end:
            if end - pos < 8:
                raise EncodingError(f"{end - pos} stray bytes at the end of a data set")
            group, elem, length = self.tag_length.unpack_from(data, pos)
            tag = group << 16 | elem
            if tag == ITEM_END:
                return elements, pos + 8
            if tag in (ITEM, SEQUENCE_END):
                raise EncodingError(f"unexpected delimiter ({group:04X},{elem:04X})")
            if self.encoding.implicit:
                vr = _implicit_vr(tag, creators, parent_creator)
                header = 8
            else:
                vr, length, header = self._explicit_header(pos, tag)
            pos += header
            element, pos = self._value(tag, vr, length, pos, end, creators)
            if group & 1 and 0x0010 <= elem <= 0x00FF:
                creators[(group, elem)] = _text(element.value)
            elements.append(element)
        if pos != end:
            raise EncodingError("an element runs past the end of its data set")
        return elements, pos

    def _explicit_header(self, pos: int, tag: int) -> tuple[str, int, int]:
        data = self.data
        if len(data) - pos < 8:
            raise EncodingError(f"element {_name(tag)} is truncated")
        raw_vr = bytes(data[pos + 4 : pos + 6])
        vr = raw_vr.decode("latin-1")
        if vr in SHORT_VRS:
            return vr, self.explicit_short.unpack_from(data, pos)[3], 8
        if vr in LONG_VRS:
            if len(data) - pos < 12:
                raise EncodingError(f"element {_name(tag)} is truncated")
            return vr, self.explicit_long.unpack_from(data, pos)[3], 12
        raise EncodingError(f"element {_name(tag)} has no valid VR ({raw_vr!r})")

    def _value(
        self,
        tag: int,
        vr: str,
        length: int,
        pos: int,
        end: int,
        creators: dict[tuple[int, int], str],
    ) -> tuple[Element, int]:
        data = self.data
        if length == UNDEFINED:
            if vr == "SQ":
                items, after = self._items(pos, None, tag, creators)
                return Element(tag, vr, data[pos:after], items, undefined=True), after
            if vr in ("OB", "OW") and not self.encoding.implicit:
                after = self._fragments(pos)
                return Element(tag, vr, data[pos:after], undefined=True, verbatim=True), after
            # An unknown element of undefined length: a sequence in Implicit VR LE.
            after = _Reader(data, Encoding(implicit=True))._items(pos, None, tag, {})[1]
            return Element(tag, "UN", data[pos:after], undefined=True, verbatim=True), after
        after = pos + length
        if after > end:
            raise EncodingError(f"element {_name(tag)} is longer than its data set")
        if vr == "SQ":
            try:
                items, _ = self._items(pos, after, tag, creators)
            except EncodingError:
                if not self.encoding.implicit:
                    raise
                # The dictionary says SQ, but the value is not one: keep it unread.
                return Element(tag, "UN", data[pos:after], verbatim=True), after
            return Element(tag, vr, data[pos:after], items), after
        return Element(tag, vr, data[pos:after], verbatim=vr == "UN"), after

    def _items(
        self,
        pos: int,
        end: int | None,
        tag: int,
        creators: Mapping[tuple[int, int], str],
    ) -> tuple[list[Item], int]:
        """The items of a sequence: up to ``end``, or to its delimiter when undefined."""
        data = self.data
        limit = len(data) if end is None else end
        sequence_creator = _creator_of(tag, creators)
        items: list[Item] = []
        while end is None or pos < end:
            if limit - pos < 8:
                raise EncodingError(f"sequence {_name(tag)} is truncated")
            group, elem, length = self.tag_length.unpack_from(data, pos)
            item_tag = group << 16 | elem
            pos += 8
            if item_tag == SEQUENCE_END and end is None:
                return items, pos
            if item_tag != ITEM:
                raise EncodingError(f"sequence {_name(tag)} holds ({group:04X},{elem:04X})")
            if length == UNDEFINED:
                elements, pos = self.dataset(pos, limit, sequence_creator)
                items.append(Item(elements, undefined=True))
            else:
                if pos + length > limit:
                    raise EncodingError(f"an item of {_name(tag)} is longer than its sequence")
                elements, pos = self.dataset(pos, pos + length, sequence_creator)
                items.append(Item(elements))
        return items, pos

    def _fragments(self, pos: int) -> int:
        """Where encapsulated pixel data ends, past its Sequence Delimitation Item."""
        data = self.data
        while len(data) - pos >= 8:
            group, elem, length = self.tag_length.unpack_from(data, pos)
            pos += 8
            if group << 16 | elem == SEQUENCE_END:
                return pos
            if group << 16 | elem != ITEM or length == UNDEFINED:
                raise EncodingError("encapsulated pixel data holds a stray element")
            pos += length
        raise EncodingError("encapsulated pixel data is truncated")


def _implicit_vr(
    tag: int, creators: Mapping[tuple[int, int], str], parent_creator: str | None
) -> str:
    group, elem = tag >> 16, tag & 0xFFFF
    if elem == 0:
        return "UL"
    if group & 1:
        if 0x0010 <= elem <= 0x00FF:
            return "LO"
        creator = creators.get((group, elem >> 8))
        found = private_vr(creator, elem & 0xFF, parent_creator) if creator else None
        return found or "UN"
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UN"


def _creator_of(tag: int, creators: Mapping[tuple[int, int], str]) -> str | None:
    group, elem = tag >> 16, tag & 0xFFFF
    return creators.get((group, elem >> 8)) if group & 1 else None


def _text(value: memoryview) -> str:
    return bytes(value).decode("latin-1").strip(" \0")


def _name(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


class _Writer:
    def __init__(self, source: Encoding, target: Encoding) -> None:
        self.swap = source.little != target.little
        self.implicit = target.implicit

    def top_level(self, elements: list[Element], replace: dict[int, bytes | None]) -> list[Chunk]:
        return [chunk for piece, _ in self.level(elements, (), replace) for chunk in piece]

    def level(
        self,
        elements: list[Element],
        ancestors: tuple[dict[int, Element], ...],
        replace: dict[int, bytes | None] | None = None,
    ) -> list[tuple[list[Chunk], int]]:
        """Each element of one data set encoded, with its encoded size."""
        here = {element.tag: element for element in elements}
        context = (here, *ancestors)
        out: list[tuple[list[Chunk], int]] = []
        tags: list[int] = []
        pending = dict(replace or {})
        for element in elements:
            for tag in sorted(t for t in pending if t < element.tag):
                self._add_replacement(out, tags, tag, pending.pop(tag))
            if element.tag in pending:
                self._add_replacement(out, tags, element.tag, pending.pop(element.tag))
                continue
            if element.tag == ICON_IMAGE_SEQUENCE and _holds_encapsulated(element):
                continue  # a compressed icon cannot follow its image into native
            out.append(self.element(element, context))
            tags.append(element.tag)
        for tag in sorted(pending):
            self._add_replacement(out, tags, tag, pending[tag])
        _fill_group_lengths(out, tags, self.implicit)
        return out

    @staticmethod
    def _add_replacement(
        out: list[tuple[list[Chunk], int]], tags: list[int], tag: int, encoded: bytes | None
    ) -> None:
        if encoded is not None:
            out.append(([encoded], len(encoded)))
            tags.append(tag)

    def element(
        self, element: Element, context: tuple[dict[int, Element], ...]
    ) -> tuple[list[Chunk], int]:
        vr = _settle(element, context)
        if element.items is not None and not element.verbatim:
            body, size = self.sequence(element, context)
            length = UNDEFINED if element.undefined else size
            header = self.header(element.tag, vr, length)
            return [header, *body], len(header) + size
        value: Chunk = element.value
        if self.swap and vr in _SWAP_SIZE and not element.verbatim:
            value = _swapped(value, _swap_size(element, vr, context))
        length = UNDEFINED if element.undefined else len(value)
        if not self.implicit and vr in SHORT_VRS and length > 0xFFFF:
            vr = "UN"  # too long for a 16-bit length field: PS3.5 6.2.2
        header = self.header(element.tag, vr, length)
        return [header, value], len(header) + len(value)

    def sequence(
        self, element: Element, context: tuple[dict[int, Element], ...]
    ) -> tuple[list[Chunk], int]:
        chunks: list[Chunk] = []
        size = 0
        for item in element.items or ():
            encoded = self.level(item.elements, context)
            body_size = sum(s for _, s in encoded)
            length = UNDEFINED if item.undefined else body_size
            chunks.append(struct.pack("<HHI", 0xFFFE, 0xE000, length))
            for piece, _ in encoded:
                chunks.extend(piece)
            size += 8 + body_size
            if item.undefined:
                chunks.append(struct.pack("<HHI", 0xFFFE, 0xE00D, 0))
                size += 8
        if element.undefined:
            chunks.append(struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))
            size += 8
        return chunks, size

    def header(self, tag: int, vr: str, length: int) -> bytes:
        group, elem = tag >> 16, tag & 0xFFFF
        if self.implicit:
            return struct.pack("<HHI", group, elem, length)
        if vr in SHORT_VRS:
            return struct.pack("<HH2sH", group, elem, vr.encode(), length)
        return struct.pack("<HH2s2xI", group, elem, vr.encode(), length)


def _settle(element: Element, context: tuple[dict[int, Element], ...]) -> str:
    """The VR to write: ambiguous dictionary VRs settled as PS3.5 says."""
    vr = element.vr
    if " or " not in vr:
        return vr
    if element.tag == PIXEL_DATA:
        return "OW" if _number(context[:1], _BITS_ALLOCATED, 16) > 8 else "OB"
    if vr == "US or SS":
        return "SS" if _number(context, _US_OR_SS_CONTEXT, 0) == 1 else "US"
    if vr == "US or OW":
        return "US" if _number(context[:1], _LUT_DESCRIPTOR, 0) == 1 else "OW"
    if vr == "OB or OW" and element.tag >> 16 == 0x5400:
        return "OW" if _number(context[:1], _WAVEFORM_BITS_ALLOCATED, 16) > 8 else "OB"
    return "OW"  # overlay, gray LUT, air and dark current data: OW in every syntax


def _number(
    context: tuple[dict[int, Element], ...], tag: int, default: int, little: bool = True
) -> int:
    """The first value of a US element, from the nearest level that holds it."""
    for level in context:
        element = level.get(tag)
        if element is not None and len(element.value) >= 2:
            return int.from_bytes(element.value[:2], "little" if little else "big")
    return default


def _swap_size(element: Element, vr: str, context: tuple[dict[int, Element], ...]) -> int:
    """Native pixel data is swapped in words of its Bits Allocated, as DCMTK and
    pydicom read it; everything else in units of its VR."""
    if element.tag == PIXEL_DATA and vr == "OW":
        bits = _number(context[:1], _BITS_ALLOCATED, 16, little=False)
        return bits // 8 if bits in (32, 64) else 2
    return _SWAP_SIZE[vr]


def _swapped(value: Chunk, size: int) -> bytes:
    if len(value) % size:
        return bytes(value)
    values = array.array(_ARRAY_CODES[size], bytes(value))
    values.byteswap()
    return values.tobytes()


def _holds_encapsulated(element: Element) -> bool:
    return any(
        inner.tag == PIXEL_DATA and inner.undefined
        for item in element.items or ()
        for inner in item.elements
    )


def _fill_group_lengths(
    out: list[tuple[list[Chunk], int]], tags: list[int], implicit: bool
) -> None:
    """Group Length elements (retired, but still sent) made true again."""
    for index, tag in enumerate(tags):
        if tag & 0xFFFF != 0:
            continue
        group = tag >> 16
        total = sum(size for (_, size), t in zip(out, tags, strict=True) if t >> 16 == group)
        value = struct.pack("<I", total - out[index][1])
        header = (
            struct.pack("<HHI", group, 0, 4)
            if implicit
            else struct.pack("<HH2sH", group, 0, b"UL", 4)
        )
        out[index] = ([header, value], len(header) + 4)
