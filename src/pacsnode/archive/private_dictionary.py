"""The VRs of private elements whose creators document them.

An Implicit VR data set does not say what its private elements are. When one must
be written in Explicit VR, an element whose creator is listed here gets its
documented VR; any other private element becomes ``UN`` (PS3.5 6.2.2), never a
guess. The Schick creators are those of CDRClient's conformance statement
(digest-000_004 B5), whose viewsets, change lists and notes travel in Implicit VR.

The entries are also given to pydicom, so that reading such an object (indexing,
DICOM JSON) sees the same VRs.
"""

from __future__ import annotations

from pydicom.datadict import add_private_dict_entries

PrivateEntries = dict[int, tuple[str, str, str]]
"""Element offset within the block (``xx`` of ``(gggg,xxee)`` dropped) → VR, VM, name."""

PRIVATE_DICTIONARY: dict[str, PrivateEntries] = {
    "SCHICK TECHNOLOGIES - Viewset Creator ID": {
        0x01: ("UI", "1", "Viewset Instance UID"),
        0x02: ("LO", "1", "Viewset Name"),
        0x03: ("SQ", "1", "Viewset Item Sequence"),
        0x04: ("UL", "1", "Viewset Mode"),
        0x05: ("UL", "1", "Viewset Type"),
    },
    "SCHICK TECHNOLOGIES - Viewset Item Creator ID": {
        0x01: ("UI", "1", "Viewset Item Image Instance UID"),
        0x02: ("US", "1", "Viewset Item Number"),
        0x03: ("US", "1", "Viewset Item Order"),
        0x04: ("US", "1", "Viewset Item Type"),
        0x05: ("US", "1", "Viewset Item Orientation"),
        0x06: ("US", "4", "Viewset Item Rect"),
        0x07: ("US", "1", "Viewset Item Caption Height"),
        0x08: ("US", "1", "Viewset Item Source"),
        0x09: ("US", "1", "Viewset Item Default Width"),
        0x0A: ("US", "1", "Viewset Item Default Height"),
    },
    "SCHICK TECHNOLOGIES - Change List Creator ID": {
        0x01: ("UI", "1", "Change List Reference Image Instance UID"),
        0x02: ("SQ", "1", "Change List Item Sequence"),
    },
    "SCHICK TECHNOLOGIES - Change Item Creator ID": {
        0x01: ("UI", "1", "Change List Item UID"),
        0x02: ("US", "1", "Change Operation"),
        0x03: ("DT", "1", "Change Date"),
        0x04: ("PN", "1", "Change User Name"),
        0x05: ("OB", "1", "Additional Change Data"),
    },
    "SCHICK TECHNOLOGIES - Note List Creator ID": {
        0x01: ("UI", "1", "Note List Reference Image Instance UID"),
        0x02: ("SQ", "1", "Note Item Sequence"),
    },
    "SCHICK TECHNOLOGIES - Note Item Creator ID": {
        # Appendix A of the statement reserves a note list's block with this creator
        # (digest-000_004 D9): its (xx01) and (xx02) are then the list's UI and SQ.
        0x01: ("UI", "1", "Note Reference Image Instance UID"),
        0x02: ("SQ", "1", "Note Sequence"),
    },
    "SCHICK TECHNOLOGIES - Image Security Creator ID": {
        0x01: ("UL", "1", "Image Checksum"),
    },
}
"""Keyed by the Private Creator value as written, without padding."""

NOTE_ITEM_ENTRIES: PrivateEntries = {
    0x01: ("ST", "1", "Note Text"),
    0x02: ("DT", "1", "Note Date"),
    0x03: ("PN", "1", "Note User Name"),
    0x04: ("US", "2", "Note Coordinates"),
}
"""The elements of one note (§5.1.3 Table 22), inside the items of a note list.

Their creator string is the one Appendix A uses for the list itself, so inside a
note list's items the item table applies: see :func:`private_vr`."""


def private_vr(creator: str, offset: int, inside: str | None = None) -> str | None:
    """The documented VR of element ``offset`` of ``creator``'s block, if known.

    ``inside`` is the creator of the private sequence whose item holds the element:
    a Note Item creator inside a note list's items names a note, not a list.
    """
    if creator == "SCHICK TECHNOLOGIES - Note Item Creator ID" and inside in _NOTE_LISTS:
        entry = NOTE_ITEM_ENTRIES.get(offset)
    else:
        entry = PRIVATE_DICTIONARY.get(creator, {}).get(offset)
    return entry[0] if entry else None


_NOTE_LISTS = frozenset(
    {"SCHICK TECHNOLOGIES - Note List Creator ID", "SCHICK TECHNOLOGIES - Note Item Creator ID"}
)


def register_with_pydicom() -> None:
    """Give pydicom the same VRs, for the group each creator is documented in.

    The Note Item creator is left out: its VRs depend on where it stands, which
    pydicom's dictionary cannot say, and ``UN`` is better than a wrong VR.
    """
    groups = {"Viewset": 0x0009, "Image Security": 0x0029}
    for creator, entries in PRIVATE_DICTIONARY.items():
        if creator in _NOTE_LISTS - {"SCHICK TECHNOLOGIES - Note List Creator ID"}:
            continue
        group = next((g for word, g in groups.items() if word in creator), 0x0021)
        add_private_dict_entries(
            creator,
            {
                (group << 16) | 0x1000 | offset: (vr, vm, name, "")
                for offset, (vr, vm, name) in entries.items()
            },
        )


register_with_pydicom()
