"""QIDO-RS (PS3.18 §10.6): searches for studies, series and instances.

A search becomes the same :class:`~pacsnode.archive.matching.Query` a C-FIND
identifier becomes, on the Study Root model with relational matching, so the two
doors find the same entities. The answer holds PS3.18's default attributes of the
level (and of the levels above when the path does not fix them), the matching keys
and whatever ``includefield`` adds.

``fuzzymatching=true`` is accepted but changes nothing: names already match
regardless of case, with wildcards; the answer carries PS3.18's ``Warning`` that only
literal matching was done.

``federated=true`` also asks the ``find_spanning`` archives (see :mod:`.federated`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydicom.datadict import keyword_for_tag, tag_for_keyword
from sqlalchemy.exc import DBAPIError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pacsnode import audit
from pacsnode.archive.attributes import ATTRIBUTES, BY_KEYWORD, Kind, Level
from pacsnode.archive.core import Archive
from pacsnode.archive.matching import COMPUTED, Query, QueryError, check_value, row_value
from pacsnode.dimse.qr_model import STUDY_ROOT_FIND
from pacsnode.web.audit_api import actor as audit_actor
from pacsnode.web.dicomweb.accept import accepted
from pacsnode.web.dicomweb.common import DICOM_JSON, DicomWebError, base_url, log, sight
from pacsnode.web.dicomweb.dicom_json import element
from pacsnode.web.dicomweb.dicom_xml import native_model
from pacsnode.web.dicomweb.federated import federation
from pacsnode.web.multipart import Part, content_type, new_boundary, stream

_RESERVED = {
    "includefield",
    "fuzzymatching",
    "limit",
    "offset",
    "accept",
    "charset",
    "federated",
}

# PS3.18 Table 10.6.3-3 to 10.6.3-5: what every answer of a level holds.
DEFAULTS: dict[Level, tuple[str, ...]] = {
    Level.STUDY: (
        "SpecificCharacterSet",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "InstanceAvailability",
        "ModalitiesInStudy",
        "ReferringPhysicianName",
        "RetrieveURL",
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyInstanceUID",
        "StudyID",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
    ),
    Level.SERIES: (
        "Modality",
        "SeriesDescription",
        "RetrieveURL",
        "SeriesInstanceUID",
        "SeriesNumber",
        "NumberOfSeriesRelatedInstances",
        "PerformedProcedureStepStartDate",
        "PerformedProcedureStepStartTime",
        "RequestAttributesSequence",
    ),
    Level.IMAGE: (
        "SOPClassUID",
        "SOPInstanceUID",
        "InstanceAvailability",
        "RetrieveURL",
        "InstanceNumber",
        "Rows",
        "Columns",
        "BitsAllocated",
        "NumberOfFrames",
    ),
}
_ABOVE = {Level.STUDY: (), Level.SERIES: (Level.STUDY,), Level.IMAGE: (Level.STUDY, Level.SERIES)}


@dataclass
class Search:
    """A QIDO-RS request read into what the matching engine and the answer need."""

    level: Level
    keys: dict[str, str] = field(default_factory=dict)
    sequences: dict[str, dict[str, str]] = field(default_factory=dict)
    returned: list[str] = field(default_factory=list)
    limit: int | None = None
    offset: int = 0
    warnings: list[str] = field(default_factory=list)


def _keyword(name: str) -> str:
    """A query parameter's attribute: a keyword, or a tag as eight hex digits."""
    if len(name) == 8 and all(c in "0123456789abcdefABCDEF" for c in name):
        keyword = keyword_for_tag(int(name, 16))
        if keyword:
            return keyword
    elif tag_for_keyword(name) is not None:
        return name
    raise DicomWebError(400, f"query parameter {name!r} is not a DICOM attribute")


_MAX_NUMBER = 2**31 - 1


def _number(name: str, text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) > _MAX_NUMBER:
        raise DicomWebError(400, f"{name} must be an integer from 0 to {_MAX_NUMBER}, not {text!r}")
    return int(text)


def _includefields(search: Search, texts: list[str]) -> None:
    for text in texts:
        for name in filter(None, (piece.strip() for piece in text.split(","))):
            if name == "all":
                search.returned += _all_at(search.level)
            else:
                search.returned.append(".".join(_keyword(part) for part in name.split(".")))


def _all_at(level: Level) -> list[str]:
    levels = [Level.PATIENT, Level.STUDY, Level.SERIES, Level.IMAGE]
    wanted = levels[: levels.index(level) + 1]
    computed = [k for k, (at, _) in COMPUTED.items() if at in wanted and at is not Level.PATIENT]
    return [a.keyword for lv in wanted for a in ATTRIBUTES[lv]] + computed


def _match_key(search: Search, name: str, value: str) -> None:
    """Add one matching key; 400 for a value its attribute cannot hold, as PS3.18 asks."""
    path = [_keyword(part) for part in name.split(".")]
    top = path[0]
    if len(path) > 1 or top in BY_KEYWORD or top in COMPUTED:
        try:
            check_value(path[-1], value)
        except QueryError as exc:
            raise DicomWebError(400, f"query parameter {name}: {exc}") from exc
    if len(path) > 1:
        search.sequences.setdefault(top, {})[".".join(path[1:])] = value
        search.keys.setdefault(top, "")
        return
    if top not in BY_KEYWORD and top not in COMPUTED:
        search.warnings.append(f"{top} is not a supported matching key and was ignored")
        return
    if BY_KEYWORD.get(top) is not None and BY_KEYWORD[top].kind is Kind.UID:
        value = value.replace(",", "\\")
    search.keys[top] = value


def read_search(request: Request, level: Level) -> Search:
    """The request's parameters as a :class:`Search`; 400 names a bad parameter."""
    search = Search(level)
    params = request.query_params
    for name, value in params.multi_items():
        if name not in _RESERVED:
            _match_key(search, name, value)
    for uid_key in ("study", "series"):
        if uid_key in request.path_params:
            keyword = "StudyInstanceUID" if uid_key == "study" else "SeriesInstanceUID"
            search.keys[keyword] = request.path_params[uid_key]
    _includefields(search, params.getlist("includefield"))
    fuzzy = params.get("fuzzymatching", "false").lower()
    if fuzzy not in ("true", "false"):
        raise DicomWebError(400, f"fuzzymatching must be true or false, not {fuzzy!r}")
    if fuzzy == "true":
        search.warnings.append(
            "The fuzzymatching parameter is not supported. Only literal matching has been "
            "performed."
        )
    if "limit" in params:
        search.limit = _number("limit", params["limit"])
    if "offset" in params:
        search.offset = _number("offset", params["offset"])
    return search


def _returned_keywords(search: Search, path_params: dict[str, str]) -> list[str]:
    wanted = list(DEFAULTS[search.level])
    for above in _ABOVE[search.level]:
        fixed = "study" in path_params if above is Level.STUDY else "series" in path_params
        if not fixed:
            wanted += DEFAULTS[above]
    wanted += [k for k in search.keys if k not in wanted]
    wanted += [k.split(".")[0] for k in search.returned]
    return list(dict.fromkeys(wanted))


def _urls(row: Any, base: str) -> dict[Level, str]:
    study = f"{base}/studies/{row['study.study_instance_uid']}"
    series_uid = row.get("series.series_instance_uid")
    series = f"{study}/series/{series_uid}"
    return {
        Level.STUDY: study,
        Level.SERIES: series,
        Level.IMAGE: f"{series}/instances/{row.get('instance.sop_instance_uid')}",
    }


def answer(row: Any, keywords: list[str], level: Level, base: str) -> dict[str, Any]:
    """One match as a DICOM JSON object."""
    result: dict[str, Any] = {}
    for keyword in keywords:
        if keyword == "RetrieveURL":
            value: Any = _urls(row, base)[level]
        elif keyword == "InstanceAvailability":
            value = "ONLINE"
        elif keyword == "SpecificCharacterSet":
            value = "ISO_IR 192"
        else:
            value = row_value(row, keyword)
        tag, encoded = element(keyword, value)
        result[tag] = encoded
    return dict(sorted(result.items()))


class Qido:
    def __init__(self, archive: Archive) -> None:
        self.archive = archive

    def routes(self) -> list[BaseRoute]:
        get = ["GET"]
        return [
            Route("/studies", self.studies, methods=get),
            Route("/series", self.series, methods=get),
            Route("/instances", self.instances, methods=get),
            Route("/studies/{study}/series", self.series, methods=get),
            Route("/studies/{study}/instances", self.instances, methods=get),
            Route("/studies/{study}/series/{series}/instances", self.instances, methods=get),
        ]

    def studies(self, request: Request) -> Response:
        """Search for studies (QIDO-RS)."""
        return self.search(request, Level.STUDY)

    def series(self, request: Request) -> Response:
        """Search for series (QIDO-RS)."""
        return self.search(request, Level.SERIES)

    def instances(self, request: Request) -> Response:
        """Search for instances (QIDO-RS)."""
        return self.search(request, Level.IMAGE)

    def search(self, request: Request, level: Level) -> Response:
        as_xml = _wants_xml(request)
        search = read_search(request, level)
        audit.query(audit_actor(request), STUDY_ROOT_FIND, str(request.url))
        if request.query_params.get("federated", "false").lower() == "true":
            returned = _returned_keywords(search, dict(request.path_params))
            with federation(self.archive, level, search.keys, returned) as remote:
                matches = remote.merged(self.matches(search, request))
        else:
            matches = self.matches(search, request)
        more = search.limit is not None and len(matches) > search.limit
        if more:
            matches = matches[: search.limit]
            search.warnings.append(
                "There are additional results that can be requested with a larger offset."
            )
        headers = {"Warning": ", ".join(f'299 pacsnode: "{w}"' for w in search.warnings)}
        headers = headers if search.warnings else {}
        if as_xml:
            boundary = new_boundary()
            parts = [Part("application/dicom+xml", native_model(match)) for match in matches]
            body = b"".join(stream(parts, boundary))
            media = content_type("application/dicom+xml", boundary)
            return Response(body, media_type=media, headers=headers)
        body = json.dumps(matches, separators=(",", ":"), ensure_ascii=False).encode()
        return Response(body, media_type=DICOM_JSON, headers=headers)

    def matches(self, search: Search, request: Request) -> list[dict[str, Any]]:
        """The answers of a search, run by the same engine as C-FIND (and, under
        ``/dicom-web/aets/{ae_title}``, with what that AE sees)."""
        seen = sight(self.archive, request)
        query = Query(
            level=search.level,
            keys=search.keys,
            patient_root=False,
            case_insensitive=self.archive.settings.case_insensitive_matching,
            relational=True,
            sequences=search.sequences,
            visible=seen.visible,
            deleted=seen.deleted,
        )
        limit = None if search.limit is None else search.limit + 1
        try:
            requestor = request.path_params.get("ae_title")  # its issuers, as by DIMSE
            rows = self.archive.find(query, search.offset or None, limit, requestor)
        except QueryError as exc:
            raise DicomWebError(400, str(exc)) from exc
        keywords = _returned_keywords(search, dict(request.path_params))
        base = base_url(request, self.archive.settings.public_url)
        try:
            return [answer(row, keywords, search.level, base) for row in rows]
        except DBAPIError as exc:
            log.error("QIDO-RS failed, index unavailable: %s", exc)
            raise DicomWebError(503, "index unavailable") from exc


def _wants_xml(request: Request) -> bool:
    """Whether the client asked for XML parts; 406 for something neither JSON nor XML."""
    for media in accepted(request):
        if media.matches(DICOM_JSON) or media.media_type in ("application/json", "*/*"):
            return False
        if media.media_type == "multipart/related" and media.part_type in (
            "application/dicom+xml",
            None,
        ):
            return True
        if media.media_type == "application/dicom+xml":
            return True
    raise DicomWebError(406, "QIDO-RS answers application/dicom+json or application/dicom+xml")
