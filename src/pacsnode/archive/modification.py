"""New values for the top level of a stored data set, with what PS3.3 C.12.1 asks to
keep of the values they replace.

Coercion on receipt (archive/coercion.py) and the outgoing step (archive/outgoing.py)
say what they change as :class:`Change` s; a :class:`Modification` turns those into
the elements to write. New text is encoded in the data set's Specific Character Set
when it fits, else the set becomes ISO_IR 192 and every other element holding
non-ASCII text is re-encoded to match (digest-002 items 103-104). The values replaced
go into an Original Attributes Sequence item per reason (COERCE or CORRECT), after
the items the object already had; an attribute that was absent is recorded empty.
Everything else is copied as it is by the re-encoder (archive/encoding.py), which
takes these elements as its replacements.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pydicom import Dataset
from pydicom.charset import convert_encodings
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as DicomSequence
from pydicom.valuerep import PersonName

Reason = Literal["COERCE", "CORRECT"]
UTF8 = "ISO_IR 192"
CHARACTER_SET = 0x00080005
ORIGINAL_ATTRIBUTES = 0x04000561
CHARSET_VRS = frozenset({"SH", "LO", "ST", "LT", "UC", "UT", "PN"})
"""VRs whose bytes depend on the Specific Character Set."""


@dataclass(frozen=True)
class Change:
    """One top-level attribute written anew (``element``) or removed (``None``)."""

    tag: int
    element: DataElement | None
    original: DataElement | None
    """What the data set held before (None: nothing)."""
    reason: Reason
    recorded: bool = True
    """Whether ``original`` goes into Original Attributes Sequence; not for what must
    not be kept anywhere (the French clearing of ethnic group and religion)."""

    @property
    def effective(self) -> bool:
        return _value(self.element) != _value(self.original)


def element_for(tag: int, value: Any) -> DataElement:
    """A top-level element of the dictionary's VR; ``None`` or '' gives an empty one."""
    vr = dictionary_VR(tag)
    if vr == "SQ":
        return DataElement(tag, vr, DicomSequence(value or []))
    return DataElement(tag, vr, None if value in (None, "") else value)


def text_of(element: DataElement | None) -> str:
    """A value as DICOM writes it (a sequence as DICOM JSON), for logs and audit."""
    value = _value(element)
    if element is not None and element.VR == "SQ":
        return json.dumps(value or [], separators=(",", ":"))
    if isinstance(value, list):
        return "\\".join(str(v) for v in value)
    return "" if value is None else str(value)


class Modification:
    def __init__(
        self,
        dataset: Dataset,
        changes: Sequence[Change],
        system: str,
        source: str = "",
        when: datetime | None = None,
    ) -> None:
        """``dataset`` is the data set changed, as read (its own character set, or the
        one a change declares); ``system`` the Modifying System, ``source`` the Source
        of Previous Values."""
        self.dataset = dataset
        self.changes = [change for change in changes if change.effective]
        self.system = system
        self.source = source
        self.when = when or datetime.now(UTC)
        declared = next((c.element for c in self.changes if c.tag == CHARACTER_SET), None)
        given = declared.value if declared is not None else dataset.get("SpecificCharacterSet")
        self.base = _terms(given)
        self.character_set = self.base if self._fits() else [UTF8]
        self.elements = self._elements() if self.changes else {}

    def __bool__(self) -> bool:
        return bool(self.changes)

    def described(self) -> dict[str, str]:
        """Keyword to new value of each attribute changed (for the audit trail)."""
        return {keyword_for_tag(c.tag) or f"{c.tag:08X}": text_of(c.element) for c in self.changes}

    def encoded(self, implicit: bool) -> dict[int, bytes | None]:
        """The elements to write, encoded in Little Endian, Implicit or Explicit VR;
        ``None`` removes one."""
        return {
            tag: None if element is None else _encoded(element, implicit, self.character_set)
            for tag, element in self.elements.items()
        }

    def json(self) -> dict[str, dict[str, Any] | None]:
        """The same as DICOM JSON members (for metadata documents)."""
        return {
            f"{tag:08X}": None if element is None else element.to_json_dict(None, 1024)
            for tag, element in self.elements.items()
            if tag != CHARACTER_SET  # JSON is Unicode whatever the object declares
        }

    def _fits(self) -> bool:
        texts = [text for c in self.changes if c.element is not None for text in _texts(c.element)]
        return all(_encodable(text, self.base) for text in texts)

    def _elements(self) -> dict[int, DataElement | None]:
        elements: dict[int, DataElement | None] = {c.tag: c.element for c in self.changes}
        switched = self.character_set != self.base
        if switched:
            elements[CHARACTER_SET] = DataElement(CHARACTER_SET, "CS", UTF8)
            for tag in self._non_ascii():
                elements.setdefault(tag, _decoded_element(self.dataset, tag))
        elements[ORIGINAL_ATTRIBUTES] = self._original_attributes(switched)
        return elements

    def _non_ascii(self) -> Iterator[int]:
        """Top-level elements whose text is not ASCII, sequences by any of their items."""
        for tag in list(self.dataset.keys()):
            if tag != ORIGINAL_ATTRIBUTES and _holds_non_ascii(self.dataset, tag):
                yield int(tag)

    def _original_attributes(self, switched: bool) -> DataElement:
        items = [_decoded(item) for item in self.dataset.get("OriginalAttributesSequence") or []]
        recorded = [c for c in self.changes if c.recorded]
        if switched and all(c.tag != CHARACTER_SET for c in recorded):
            original = (
                self.dataset.get_item(CHARACTER_SET) if CHARACTER_SET in self.dataset else None
            )
            recorded.append(
                Change(CHARACTER_SET, None, _converted(original), self.changes[0].reason)
            )
        for reason in ("COERCE", "CORRECT"):
            group = [c for c in recorded if c.reason == reason]
            if group:
                items.append(self._item(reason, group))
        return DataElement(ORIGINAL_ATTRIBUTES, "SQ", DicomSequence(items))

    def _item(self, reason: Reason, changes: list[Change]) -> Dataset:
        previous = Dataset()
        for change in changes:
            original = change.original
            previous[change.tag] = (
                _copy(original) if original is not None else element_for(change.tag, None)
            )
        item = Dataset()
        item.ModifiedAttributesSequence = [previous]
        item.AttributeModificationDateTime = self.when.strftime("%Y%m%d%H%M%S.%f+0000")
        item.ModifyingSystem = self.system[:64]
        item.SourceOfPreviousValues = self.source[:64]
        item.ReasonForTheAttributeModification = reason
        return item


def _terms(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    terms = [value] if isinstance(value, str) else list(value)
    return [str(term).strip() for term in terms]


def _encodable(text: str, terms: list[str]) -> bool:
    if text.isascii():
        return True
    if not terms:
        return False  # the default repertoire is ASCII
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        codecs = convert_encodings(terms)
    for codec in codecs:
        try:
            text.encode(codec)
            return True
        except (UnicodeError, LookupError):
            continue
    return False


def _value(element: DataElement | None) -> Any:
    """A comparable form of an element's value: None for an empty one."""
    if element is None or element.is_empty:
        return None
    value = element.value
    if element.VR == "SQ":
        return [item.to_json_dict() for item in value]
    if isinstance(value, list | tuple | MultiValue):
        return [str(v).strip() for v in value]
    return str(value).strip()


def _texts(element: DataElement) -> Iterator[str]:
    if element.VR == "SQ":
        for item in element.value or []:
            for tag in sorted(item.keys()):
                yield from _texts(item[tag])
    elif element.VR in CHARSET_VRS and not element.is_empty:
        values = element.value if element.VM > 1 else [element.value]
        yield from (str(v) for v in values)


def _holds_non_ascii(dataset: Dataset, tag: Any) -> bool:
    raw = dataset.get_item(tag)
    if isinstance(raw, RawDataElement):
        vr = raw.VR or vr_of(raw.tag)
        if vr != "SQ":
            value = raw.value or b""
            return vr in CHARSET_VRS and not (value.isascii() and b"\x1b" not in value)
    element = dataset[tag]
    if element.VR == "SQ":
        items = element.value or []
        return any(_holds_non_ascii(item, t) for item in items for t in sorted(item.keys()))
    return any(not text.isascii() for text in _texts(element))


def vr_of(tag: int) -> str:
    """The standard dictionary's VR of a tag, ``UN`` for one it does not know."""
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return "UN"


def _decoded_element(dataset: Dataset, tag: int) -> DataElement:
    """An element read as its data set's character set says, values as Unicode text."""
    element = dataset[tag]
    if element.VR == "SQ":
        return DataElement(tag, "SQ", DicomSequence(_decoded(i) for i in element.value or []))
    return _copy(element)


def _decoded(item: Dataset) -> Dataset:
    """A sequence item with every element converted (text decoded), so that it can be
    written in any encoding and character set."""
    copy = Dataset()
    for tag in sorted(item.keys()):
        if tag.element == 0:
            continue
        copy[tag] = _decoded_element(item, tag)
    return copy


def _converted(element: Any) -> DataElement | None:
    if element is None:
        return None
    if isinstance(element, RawDataElement):
        holder = Dataset()
        holder[element.tag] = element
        return _copy(holder[element.tag])
    return _copy(element)


def _copy(element: DataElement) -> DataElement:
    if element.VR == "SQ":
        return DataElement(element.tag, "SQ", DicomSequence(_decoded(i) for i in element.value))
    value = element.value
    if isinstance(value, PersonName):
        value = str(value)
    return DataElement(element.tag, element.VR, value)


def _encoded(element: DataElement, implicit: bool, character_set: list[str]) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = implicit
    write_data_element(fp, element, character_set or None)
    return fp.getvalue()
