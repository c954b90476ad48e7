"""DIMSE command sets (PS3.7 section 9.3 and 10.3): the group 0000 elements.

A command set is always Implicit VR Little Endian and holds a fixed handful of
elements, so it is encoded and decoded here directly, as a dict keyed by keyword,
rather than through a general data set library.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

Command = dict[str, Any]

C_STORE_RQ, C_STORE_RSP = 0x0001, 0x8001
C_GET_RQ, C_GET_RSP = 0x0010, 0x8010
C_FIND_RQ, C_FIND_RSP = 0x0020, 0x8020
C_MOVE_RQ, C_MOVE_RSP = 0x0021, 0x8021
C_ECHO_RQ, C_ECHO_RSP = 0x0030, 0x8030
N_EVENT_REPORT_RQ, N_EVENT_REPORT_RSP = 0x0100, 0x8100
N_GET_RQ, N_GET_RSP = 0x0110, 0x8110
N_SET_RQ, N_SET_RSP = 0x0120, 0x8120
N_ACTION_RQ, N_ACTION_RSP = 0x0130, 0x8130
N_CREATE_RQ, N_CREATE_RSP = 0x0140, 0x8140
N_DELETE_RQ, N_DELETE_RSP = 0x0150, 0x8150
C_CANCEL_RQ = 0x0FFF

NAMES = {
    C_STORE_RQ: "C-STORE-RQ",
    C_STORE_RSP: "C-STORE-RSP",
    C_GET_RQ: "C-GET-RQ",
    C_GET_RSP: "C-GET-RSP",
    C_FIND_RQ: "C-FIND-RQ",
    C_FIND_RSP: "C-FIND-RSP",
    C_MOVE_RQ: "C-MOVE-RQ",
    C_MOVE_RSP: "C-MOVE-RSP",
    C_ECHO_RQ: "C-ECHO-RQ",
    C_ECHO_RSP: "C-ECHO-RSP",
    N_EVENT_REPORT_RQ: "N-EVENT-REPORT-RQ",
    N_EVENT_REPORT_RSP: "N-EVENT-REPORT-RSP",
    N_GET_RQ: "N-GET-RQ",
    N_GET_RSP: "N-GET-RSP",
    N_SET_RQ: "N-SET-RQ",
    N_SET_RSP: "N-SET-RSP",
    N_ACTION_RQ: "N-ACTION-RQ",
    N_ACTION_RSP: "N-ACTION-RSP",
    N_CREATE_RQ: "N-CREATE-RQ",
    N_CREATE_RSP: "N-CREATE-RSP",
    N_DELETE_RQ: "N-DELETE-RQ",
    N_DELETE_RSP: "N-DELETE-RSP",
    C_CANCEL_RQ: "C-CANCEL-RQ",
}

NO_DATA_SET = 0x0101
"""Command Data Set Type saying no data set follows; any other value says one does."""
HAS_DATA_SET = 0x0000
MEDIUM = 0x0000

ELEMENTS: dict[int, tuple[str, str]] = {
    0x0000: ("CommandGroupLength", "UL"),
    0x0002: ("AffectedSOPClassUID", "UI"),
    0x0003: ("RequestedSOPClassUID", "UI"),
    0x0100: ("CommandField", "US"),
    0x0110: ("MessageID", "US"),
    0x0120: ("MessageIDBeingRespondedTo", "US"),
    0x0600: ("MoveDestination", "AE"),
    0x0700: ("Priority", "US"),
    0x0800: ("CommandDataSetType", "US"),
    0x0900: ("Status", "US"),
    0x0901: ("OffendingElement", "AT"),
    0x0902: ("ErrorComment", "LO"),
    0x0903: ("ErrorID", "US"),
    0x1000: ("AffectedSOPInstanceUID", "UI"),
    0x1001: ("RequestedSOPInstanceUID", "UI"),
    0x1002: ("EventTypeID", "US"),
    0x1005: ("AttributeIdentifierList", "AT"),
    0x1008: ("ActionTypeID", "US"),
    0x1020: ("NumberOfRemainingSuboperations", "US"),
    0x1021: ("NumberOfCompletedSuboperations", "US"),
    0x1022: ("NumberOfFailedSuboperations", "US"),
    0x1023: ("NumberOfWarningSuboperations", "US"),
    0x1030: ("MoveOriginatorApplicationEntityTitle", "AE"),
    0x1031: ("MoveOriginatorMessageID", "US"),
}
_BY_KEYWORD = {keyword: (element, vr) for element, (keyword, vr) in ELEMENTS.items()}
_HEADER = struct.Struct("<HHI")
_US = struct.Struct("<H")
_UL = struct.Struct("<I")


class CommandError(ValueError):
    """A command set that cannot be decoded or lacks what its message needs."""


def encode(command: Mapping[str, Any]) -> bytes:
    """The command set, with its Command Group Length, in Implicit VR Little Endian."""
    elements = sorted(_BY_KEYWORD[keyword] + (value,) for keyword, value in command.items())
    body = b"".join(
        _HEADER.pack(0x0000, element, len(encoded)) + encoded
        for element, vr, value in elements
        if element != 0x0000
        for encoded in (_value(vr, value),)
    )
    return _HEADER.pack(0x0000, 0x0000, 4) + _UL.pack(len(body)) + body


def _value(vr: str, value: Any) -> bytes:
    if vr == "US":
        return _US.pack(value)
    if vr == "UL":
        return _UL.pack(value)
    if vr == "AT":
        tags = value if isinstance(value, list | tuple) else [value]
        return b"".join(struct.pack("<HH", tag >> 16, tag & 0xFFFF) for tag in tags)
    encoded = str(value).encode("ascii" if vr == "UI" else "latin-1", "replace")
    if len(encoded) % 2:
        encoded += b"\0" if vr == "UI" else b" "
    return encoded


def decode(data: bytes | bytearray | memoryview) -> Command:
    """The elements of a command set; elements it does not know are left out."""
    command: Command = {}
    view = memoryview(data)
    pos = 0
    while pos < len(view):
        if len(view) - pos < 8:
            raise CommandError("command set is cut short")
        group, element, length = _HEADER.unpack_from(view, pos)
        pos += 8
        if group != 0x0000 or pos + length > len(view):
            raise CommandError(f"element ({group:04X},{element:04X}) does not fit the command")
        known = ELEMENTS.get(element)
        if known is not None:
            keyword, vr = known
            command[keyword] = _decoded(vr, view[pos : pos + length], keyword)
        pos += length
    if "CommandField" not in command:
        raise CommandError("command set has no Command Field")
    return command


def _decoded(vr: str, raw: memoryview, keyword: str) -> Any:
    try:
        if vr == "US":
            return _US.unpack(raw)[0]
        if vr == "UL":
            return _UL.unpack(raw)[0]
        if vr == "AT":
            pairs = struct.iter_unpack("<HH", raw)
            return [group << 16 | element for group, element in pairs]
    except struct.error as exc:
        raise CommandError(f"{keyword} has a length of {len(raw)}") from exc
    return bytes(raw).decode("latin-1").strip(" \0")


def has_data_set(command: Mapping[str, Any]) -> bool:
    return command.get("CommandDataSetType", NO_DATA_SET) != NO_DATA_SET


def describe(command: Mapping[str, Any]) -> str:
    field = command.get("CommandField", 0)
    return NAMES.get(field, f"command 0x{field:04X}")
