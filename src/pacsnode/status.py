"""DICOM status codes (PS3.7 Annex C, PS3.4): one table for every door.

C-STORE, C-FIND, C-MOVE, C-GET, the N-services, STOW-RS failure reasons and import
summaries all report these values. A code's category follows from its value
(PS3.7 C.1); its name, from this table or from its service's meaning where PS3.4
gives a range (``A7xx`` "Refused: Out of Resources" and so on).
"""

from __future__ import annotations

from enum import StrEnum

SUCCESS = 0x0000
PENDING = 0xFF00
PENDING_WARNING = 0xFF01
"""Pending, but optional keys were not supported for matching or return."""
CANCEL = 0xFE00

ATTRIBUTE_LIST_ERROR = 0x0107
ATTRIBUTE_VALUE_OUT_OF_RANGE = 0x0116
COERCION_OF_DATA_ELEMENTS = 0xB000
SUB_OPERATIONS_COMPLETE_WITH_FAILURES = 0xB000
ELEMENTS_DISCARDED = 0xB006
DATA_SET_DOES_NOT_MATCH_SOP_CLASS_WARNING = 0xB007

NO_SUCH_ATTRIBUTE = 0x0105
INVALID_ATTRIBUTE_VALUE = 0x0106
PROCESSING_FAILURE = 0x0110
DUPLICATE_SOP_INSTANCE = 0x0111
NO_SUCH_OBJECT_INSTANCE = 0x0112
NO_SUCH_EVENT_TYPE = 0x0113
NO_SUCH_ARGUMENT = 0x0114
INVALID_ARGUMENT_VALUE = 0x0115
INVALID_OBJECT_INSTANCE = 0x0117
NO_SUCH_SOP_CLASS = 0x0118
CLASS_INSTANCE_CONFLICT = 0x0119
MISSING_ATTRIBUTE = 0x0120
MISSING_ATTRIBUTE_VALUE = 0x0121
SOP_CLASS_NOT_SUPPORTED = 0x0122
NO_SUCH_ACTION = 0x0123
NOT_AUTHORIZED = 0x0124
DUPLICATE_INVOCATION = 0x0210
UNRECOGNIZED_OPERATION = 0x0211
MISTYPED_ARGUMENT = 0x0212
RESOURCE_LIMITATION = 0x0213

OUT_OF_RESOURCES = 0xA700
FILE_SAVE_ERROR = 0xA701
"""C-STORE: the file could not be written (CDRServer's FILESAVE_ERROR)."""
UNABLE_TO_CALCULATE_MATCHES = 0xA701
"""C-MOVE and C-GET: out of resources, unable to calculate the number of matches."""
UNABLE_TO_PERFORM_SUB_OPERATIONS = 0xA702
MOVE_DESTINATION_UNKNOWN = 0xA801
DOES_NOT_MATCH_SOP_CLASS = 0xA900
"""Data set (C-STORE) or identifier (C-FIND, C-MOVE, C-GET) does not match the SOP class."""
CANNOT_UNDERSTAND = 0xC000
"""C-STORE: cannot understand; C-FIND, C-MOVE, C-GET: unable to process."""
UNABLE_TO_PROCESS = 0xC000


class Category(StrEnum):
    SUCCESS = "success"
    PENDING = "pending"
    CANCEL = "cancel"
    WARNING = "warning"
    FAILURE = "failure"


NAMES: dict[int, str] = {
    SUCCESS: "Success",
    PENDING: "Pending",
    PENDING_WARNING: "Pending (optional keys not supported)",
    CANCEL: "Cancel",
    0x0001: "Warning: requested optional attributes are not supported",
    ATTRIBUTE_LIST_ERROR: "Warning: attribute list error",
    ATTRIBUTE_VALUE_OUT_OF_RANGE: "Warning: attribute value out of range",
    0xB000: "Warning: coercion of data elements, or sub-operations with failures",
    ELEMENTS_DISCARDED: "Warning: elements discarded",
    DATA_SET_DOES_NOT_MATCH_SOP_CLASS_WARNING: "Warning: data set does not match SOP class",
    NO_SUCH_ATTRIBUTE: "No such attribute",
    INVALID_ATTRIBUTE_VALUE: "Invalid attribute value",
    PROCESSING_FAILURE: "Processing failure",
    DUPLICATE_SOP_INSTANCE: "Duplicate SOP instance",
    NO_SUCH_OBJECT_INSTANCE: "No such object instance",
    NO_SUCH_EVENT_TYPE: "No such event type",
    NO_SUCH_ARGUMENT: "No such argument",
    INVALID_ARGUMENT_VALUE: "Invalid argument value",
    INVALID_OBJECT_INSTANCE: "Invalid object instance",
    NO_SUCH_SOP_CLASS: "No such SOP class",
    CLASS_INSTANCE_CONFLICT: "Class-instance conflict",
    MISSING_ATTRIBUTE: "Missing attribute",
    MISSING_ATTRIBUTE_VALUE: "Missing attribute value",
    SOP_CLASS_NOT_SUPPORTED: "Refused: SOP class not supported",
    NO_SUCH_ACTION: "No such action",
    NOT_AUTHORIZED: "Refused: not authorized",
    DUPLICATE_INVOCATION: "Duplicate invocation",
    UNRECOGNIZED_OPERATION: "Unrecognized operation",
    MISTYPED_ARGUMENT: "Mistyped argument",
    RESOURCE_LIMITATION: "Resource limitation",
    OUT_OF_RESOURCES: "Refused: out of resources",
    0xA701: "Refused: out of resources (file not saved, or matches not calculated)",
    UNABLE_TO_PERFORM_SUB_OPERATIONS: "Refused: out of resources, sub-operations not performed",
    MOVE_DESTINATION_UNKNOWN: "Refused: move destination unknown",
    DOES_NOT_MATCH_SOP_CLASS: "Error: data set or identifier does not match SOP class",
    CANNOT_UNDERSTAND: "Error: cannot understand, unable to process",
}


def category(code: int) -> Category:
    """The category of a status value (PS3.7 C.1 and Annex C)."""
    if code == SUCCESS:
        return Category.SUCCESS
    if code in (PENDING, PENDING_WARNING):
        return Category.PENDING
    if code == CANCEL:
        return Category.CANCEL
    if code in (0x0001, ATTRIBUTE_LIST_ERROR, ATTRIBUTE_VALUE_OUT_OF_RANGE):
        return Category.WARNING
    if 0xB000 <= code <= 0xBFFF:
        return Category.WARNING
    return Category.FAILURE


def name(code: int) -> str:
    """What a status means, for logs and messages; by range where PS3.4 gives one."""
    if code in NAMES:
        return NAMES[code]
    ranges = {0xA7: "Refused: out of resources", 0xA9: "Error: does not match SOP class"}
    prefix = ranges.get(code >> 8)
    if prefix:
        return prefix
    if 0xC000 <= code <= 0xCFFF:
        return "Error: cannot understand, unable to process"
    return f"{category(code).value} 0x{code:04X}"


def is_success_or_warning(code: int | None) -> bool:
    """Whether the peer kept what was sent (a warning still stores it)."""
    return code is not None and category(code) in (Category.SUCCESS, Category.WARNING)


def describe(code: int) -> str:
    return f"0x{code:04X} ({name(code)})"
