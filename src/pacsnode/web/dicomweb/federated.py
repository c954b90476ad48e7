"""Federated QIDO-RS: ``federated=true`` also asks the ``find_spanning`` archives.

The search becomes a Study Root C-FIND identifier (the level, the matching keys, and
the attributes the answer returns as empty keys) sent to every spanning target while
the index is searched. Their answers follow ours as DICOM JSON, without the entities
we already returned (same 4-tuple as C-FIND spanning). They carry the remote's
Retrieve AE Title and no Retrieve URL: they are not retrievable through this door.
Sequence matching keys are not forwarded, so remote answers may be less filtered.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydicom import Dataset
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.uid import ExplicitVRLittleEndian

from pacsnode.archive.attributes import Level
from pacsnode.archive.core import Archive
from pacsnode.dimse.qr_model import STUDY_ROOT_FIND
from pacsnode.dimse.scu import Dialer
from pacsnode.dimse.spanning import DEDUPE_KEYS, RemoteSearch, remote_answers, start_searches

log = logging.getLogger("pacsnode.qido")

_NOT_SENT = {"RetrieveURL", "SpecificCharacterSet", "QueryRetrieveLevel"}
_NUMERIC_VRS = frozenset({"US", "UL", "SS", "SL", "FL", "FD", "SV", "UV", "AT"})
_RELATIONAL = b"\x01"
_DEDUPE_TAGS = tuple(f"{tag_for_keyword(keyword):08X}" for keyword in DEDUPE_KEYS)


def identifier(level: Level, keys: dict[str, str], returned: list[str]) -> Dataset:
    """The C-FIND identifier of a QIDO-RS search."""
    ds = Dataset()
    ds.QueryRetrieveLevel = level.value
    for keyword in [*returned, *keys]:
        tag = tag_for_keyword(keyword)
        if keyword in _NOT_SENT or tag is None:
            continue
        vr = dictionary_VR(tag).split(" ")[0]  # "US or SS" is sent as US
        if vr == "SQ":
            continue  # sequence matching is not forwarded
        value = keys.get(keyword) or None
        ds.add_new(tag, vr, None if vr in _NUMERIC_VRS else value)
    return ds


def _json_key(answer: dict[str, Any]) -> tuple[str, ...]:
    def first(tag: str) -> str:
        values = answer.get(tag, {}).get("Value") or [""]
        return str(values[0]).strip()

    return tuple(first(tag) for tag in _DEDUPE_TAGS)


def _as_json(answer: Dataset) -> dict[str, Any] | None:
    answer.pop("QueryRetrieveLevel", None)
    try:
        return dict(sorted(answer.to_json_dict().items()))
    except Exception as exc:  # a remote value that does not convert costs that answer only
        log.warning("federated QIDO-RS answer dropped: %s", exc)
        return None


class Federation:
    """The remote searches of one federated QIDO-RS request."""

    def __init__(self, searches: list[RemoteSearch]) -> None:
        self.searches = searches

    def merged(self, local: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Our answers, then the remote ones not among them."""
        seen = {_json_key(answer) for answer in local}
        remote = (_as_json(answer) for answer in remote_answers(self.searches, seen, _never))
        return [*local, *(answer for answer in remote if answer is not None)]


def _never() -> bool:
    return False


@contextmanager
def federation(
    archive: Archive, level: Level, keys: dict[str, str], returned: list[str]
) -> Iterator[Federation]:
    """Start the remote searches now, so that they run while the index is searched."""
    extended = b"" if level is Level.STUDY else _RELATIONAL
    searches = start_searches(
        Dialer(archive.settings, archive.remotes.get),
        archive.remotes,
        identifier(level, keys, returned),
        STUDY_ROOT_FIND,
        ExplicitVRLittleEndian,
        extended,
    )
    try:
        yield Federation(searches)
    finally:
        for search in searches:
            search.stop()
