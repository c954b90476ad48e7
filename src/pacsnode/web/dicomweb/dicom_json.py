"""Index values as DICOM JSON (PS3.18 F.2), for QIDO-RS answers.

The index keeps values as text (multiple values joined by backslashes), integers, and
sequences as DICOM JSON already; this turns them into JSON elements without building
pydicom data sets, which is what keeps a 10,000-study search fast.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword

_INTEGER_VRS = frozenset({"IS", "SL", "SS", "SV", "UL", "US", "UV"})
_DECIMAL_VRS = frozenset({"DS", "FL", "FD"})
_PERSON_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")


@cache
def tag_and_vr(keyword: str) -> tuple[str, str]:
    """The 8-digit tag and the dictionary VR of a keyword."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    vr = dictionary_VR(tag)
    return f"{tag:08X}", "US" if vr == "US or SS" else vr


def _number(text: str, integer: bool) -> int | float | str:
    try:
        number = float(text)
    except ValueError:
        return text  # kept as received; a reader sees what the sender wrote
    return int(number) if integer and number.is_integer() else number


def _person(text: str) -> dict[str, str]:
    groups = text.split("=")
    return {name: group for name, group in zip(_PERSON_GROUPS, groups, strict=False) if group}


def _values(vr: str, value: Any) -> list[Any]:
    if vr == "SQ":
        return json.loads(value) if isinstance(value, str) else list(value)
    if isinstance(value, (int, float)):
        return [value]
    texts = str(value).split("\\")
    if vr == "PN":
        return [_person(text) for text in texts]
    if vr in _INTEGER_VRS or vr in _DECIMAL_VRS:
        return [_number(text.strip(), vr in _INTEGER_VRS) for text in texts if text.strip()]
    return texts


def element(keyword: str, value: Any) -> tuple[str, dict[str, Any]]:
    """The ``(tag, {"vr": …, "Value": […]})`` pair of one attribute; empty if ``None``."""
    tag, vr = tag_and_vr(keyword)
    if value is None or value == "":
        return tag, {"vr": vr}
    values = _values(vr, value)
    return tag, {"vr": vr, "Value": values} if values else {"vr": vr}
