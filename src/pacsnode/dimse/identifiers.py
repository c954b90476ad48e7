"""C-FIND identifiers: the keys a request matches on, and answers that return every
requested key, with its value or empty."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydicom import Dataset
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.sequence import Sequence

from pacsnode.archive.attributes import item_values, text_value

NOT_KEYS = {"QueryRetrieveLevel", "SpecificCharacterSet"}


def query_keys(
    identifier: Iterable[DataElement],
) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """The identifier's keys (keyword to value, '' to return only), and the keys of
    the first item of each sequence key, flattened."""
    keys: dict[str, str] = {}
    sequences: dict[str, dict[str, str]] = {}
    for element in identifier:
        keyword = element.keyword
        if not keyword or keyword in NOT_KEYS:
            continue
        keys[keyword] = ""
        if element.VR == "SQ":
            if element.value:  # matching on the first item; more are not allowed
                sequences[keyword] = dict(item_values(element.value[0]))
        elif not element.is_empty:
            keys[keyword] = text_value(element.value).strip()
    return keys, sequences


def requested_items(stored: Sequence, requested: Dataset) -> Sequence:
    """The stored items cut down to the attributes the query item asked for.

    A query item with no attributes asks for everything (PS3.4 C.2.2.2.6).
    """
    if not len(requested):
        return stored
    items = []
    for item in stored:
        answer = Dataset()
        for element in requested:
            if element.tag in item:
                answer[element.tag] = item[element.tag]
            else:
                set_returned(answer, element, None)
        items.append(answer)
    return Sequence(items)


def returned_vr(element: DataElement) -> str:
    """The VR a requested key is answered in: as asked, or the dictionary's."""
    return element.VR if element.VR not in ("UN", "") else _vr(element.tag)


def set_returned(response: Dataset, element: DataElement, value: Any) -> None:
    """Return every requested key: with its value, or empty, never dropped."""
    vr = returned_vr(element)
    if value is None or value == "":
        response.add_new(element.tag, vr, [] if vr == "SQ" else None)
    else:
        response.add_new(element.tag, vr, str(value) if vr in ("IS", "DS") else value)


def _vr(tag: int) -> str:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"
