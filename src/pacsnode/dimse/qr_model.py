"""The Query/Retrieve information models: their SOP classes and extended negotiation."""

from __future__ import annotations

from pydicom import Dataset

from pacsnode.archive.attributes import Level
from pacsnode.archive.matching import QueryError
from pacsnode.net.association import Association

PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
PATIENT_STUDY_ONLY_FIND = "1.2.840.10008.5.1.4.1.2.3.1"
PATIENT_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
PATIENT_STUDY_ONLY_MOVE = "1.2.840.10008.5.1.4.1.2.3.2"
PATIENT_ROOT_GET = "1.2.840.10008.5.1.4.1.2.1.3"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
PATIENT_STUDY_ONLY_GET = "1.2.840.10008.5.1.4.1.2.3.3"
FIND_SOP_CLASSES = (PATIENT_ROOT_FIND, STUDY_ROOT_FIND, PATIENT_STUDY_ONLY_FIND)
MOVE_SOP_CLASSES = (PATIENT_ROOT_MOVE, STUDY_ROOT_MOVE, PATIENT_STUDY_ONLY_MOVE)
GET_SOP_CLASSES = (PATIENT_ROOT_GET, STUDY_ROOT_GET, PATIENT_STUDY_ONLY_GET)
STUDY_ROOT = (STUDY_ROOT_FIND, STUDY_ROOT_MOVE, STUDY_ROOT_GET)
PATIENT_STUDY_ONLY = (PATIENT_STUDY_ONLY_FIND, PATIENT_STUDY_ONLY_MOVE, PATIENT_STUDY_ONLY_GET)

QUERY_RETRIEVE_CLASSES = frozenset((*FIND_SOP_CLASSES, *MOVE_SOP_CLASSES, *GET_SOP_CLASSES))


def negotiate_extended(sop_class: str, app_info: bytes) -> bytes | None:
    """Grant relational queries and retrieves, and combined date-time matching, as asked.

    Byte 1 (relational) is answered as requested for every model; byte 2 (combined
    date-time matching) too for C-FIND. Fuzzy semantic matching of person names and
    timezone adjustment (bytes 3 and 4) are answered 0: not supported.
    """
    if sop_class not in QUERY_RETRIEVE_CLASSES or not app_info:
        return None
    granted = bytearray(len(app_info))
    granted[0] = app_info[0] & 1
    if sop_class in FIND_SOP_CLASSES and len(app_info) > 1:
        granted[1] = app_info[1] & 1
    return bytes(granted)


def _requested_option(assoc: Association, model: str, byte: int) -> bool:
    """Whether the peer asked for (and so was granted) an extended negotiation option."""
    app_info = assoc.request.user.extended.get(model, b"")
    return len(app_info) > byte and app_info[byte] == 1


def relational(assoc: Association, model: str) -> bool:
    return _requested_option(assoc, model, 0)


def combined_datetime(assoc: Association, model: str) -> bool:
    return model in FIND_SOP_CLASSES and _requested_option(assoc, model, 1)


IDENTIFIER_DOES_NOT_MATCH = 0xA900


def query_level(identifier: Dataset, model: str) -> Level:
    """The Query/Retrieve Level (read case-insensitively), if the model has it."""
    raw = str(identifier.get("QueryRetrieveLevel", "")).strip().upper()
    try:
        level = Level(raw)
    except ValueError as exc:
        raise QueryError(f"Query/Retrieve Level {raw!r} is not valid") from exc
    levels: tuple[Level, ...]
    if model in STUDY_ROOT:
        levels = (Level.STUDY, Level.SERIES, Level.IMAGE)
    elif model in PATIENT_STUDY_ONLY:
        levels = (Level.PATIENT, Level.STUDY)
    else:
        levels = (Level.PATIENT, Level.STUDY, Level.SERIES, Level.IMAGE)
    if level not in levels:
        raise QueryError(f"level {level} is not in this information model")
    return level


def failure(status: int, comment: str) -> Dataset:
    """A failure status with its Error Comment, as the handlers yield it."""
    answer = Dataset()
    answer.Status = status
    answer.ErrorComment = comment[:64]
    return answer
