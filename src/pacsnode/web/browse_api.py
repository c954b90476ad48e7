"""``/api/patients``, ``/api/studies``, ``/api/series``, ``/api/instances``: the archive
as keyword JSON, and deleting from it.

``GET /api/studies?PatientName=DOE*&StudyDate=20240101-&limit=50&offset=0`` filters
with any key the index keeps, at any level, as C-FIND matches; ``GET
/api/studies/{uid}`` is one study with the UIDs of its series. ``DELETE`` on an entity
is a soft delete (hidden, restorable; operator) or with ``?hard=1`` a hard one (rows
and files; admin), through the same core call as ``pacsnode delete``; ``?reason=`` is
the rejection code the IOCM destinations are told (113039 by default). A patient is
named by its Patient ID, and ``?issuer=`` when several issuers use that ID.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pacsnode.archive.browse import RESOURCES, Browser, FilterError, filters_from, paging
from pacsnode.archive.core import Archive
from pacsnode.archive.deletion import AmbiguousPatient, NothingToDelete, Target, check_reason
from pacsnode.archive.rejection import RETENTION_EXPIRED
from pacsnode.web.audit_api import actor as audit_actor
from pacsnode.web.replies import error

RESERVED = ("limit", "offset")
DELETION_WORDS = {"patients": "patient", "studies": "study", "series": "series"}
DELETION_WORDS["instances"] = "instance"
_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no")


def hard_requested(params: Any) -> bool:
    """``?hard=1`` (or true, yes); absent or 0, false, no is a soft delete."""
    value = str(params.get("hard", "0")).lower()
    if value not in _TRUE + _FALSE:
        raise FilterError("hard must be 1 or 0 (true or false)", "hard")
    return value in _TRUE


class BrowseApi:
    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.browser = Browser(archive.database, archive.settings.case_insensitive_matching)

    def _list(self, request: Request, resource: str) -> JSONResponse:
        params = dict(request.query_params)
        try:
            limit, offset = paging(params)
            keys = filters_from({k: v for k, v in params.items() if k not in RESERVED})
        except FilterError as exc:
            return error(400, str(exc), exc.field)
        page = self.browser.page(RESOURCES[resource], keys, limit, offset)
        return JSONResponse(page.as_json())

    def _show(self, request: Request, resource: str) -> JSONResponse:
        uid = request.path_params["id"]
        issuer = request.query_params.get("issuer")
        found = self.browser.entity(RESOURCES[resource], uid, issuer)
        if not found:
            return error(404, f"no {DELETION_WORDS[resource]} {uid} in the archive")
        if len(found) > 1:
            issuers = ", ".join(repr(item["IssuerOfPatientID"] or "") for item in found)
            return error(409, f"patient ID {uid} is used with the issuers {issuers}", "issuer")
        return JSONResponse(found[0])

    def _delete(self, request: Request, resource: str) -> JSONResponse:
        level = DELETION_WORDS[resource]
        issuer = request.query_params.get("issuer") if level == "patient" else None
        try:
            hard = hard_requested(request.query_params)
            reason = check_reason(request.query_params.get("reason", RETENTION_EXPIRED))
            target = Target(level, request.path_params["id"], issuer)
            deleted = self.archive.deletion.delete(target, hard, audit_actor(request), reason)
        except FilterError as exc:
            return error(400, str(exc), exc.field)
        except ValueError as exc:  # a reason that is no rejection code
            return error(400, str(exc), "reason")
        except NothingToDelete as exc:
            return error(404, str(exc))
        except AmbiguousPatient as exc:
            return error(409, str(exc), "issuer")
        return JSONResponse(deleted.as_json())

    def patients(self, request: Request) -> JSONResponse:
        """List patients: filter by any attribute the index keeps, page with limit/offset."""
        return self._list(request, "patients")

    def studies(self, request: Request) -> JSONResponse:
        """List studies: filter by any attribute the index keeps, page with limit/offset."""
        return self._list(request, "studies")

    def series(self, request: Request) -> JSONResponse:
        """List series: filter by any attribute the index keeps, page with limit/offset."""
        return self._list(request, "series")

    def instances(self, request: Request) -> JSONResponse:
        """List instances: filter by any attribute the index keeps, page with limit/offset."""
        return self._list(request, "instances")

    def patient(self, request: Request) -> JSONResponse:
        """One patient by Patient ID (and issuer), with its studies."""
        return self._show(request, "patients")

    def study(self, request: Request) -> JSONResponse:
        """One study by Study Instance UID, with its series."""
        return self._show(request, "studies")

    def one_series(self, request: Request) -> JSONResponse:
        """One series by Series Instance UID, with its instances."""
        return self._show(request, "series")

    def instance(self, request: Request) -> JSONResponse:
        """One instance by SOP Instance UID, with where and how it is stored."""
        return self._show(request, "instances")

    def delete_patient(self, request: Request) -> JSONResponse:
        """Delete a patient's studies: soft, or with hard=1 rows and files."""
        return self._delete(request, "patients")

    def delete_study(self, request: Request) -> JSONResponse:
        """Delete a study: soft (hidden, restorable), or with hard=1 rows and files."""
        return self._delete(request, "studies")

    def delete_series(self, request: Request) -> JSONResponse:
        """Delete a series: soft (hidden, restorable), or with hard=1 rows and files."""
        return self._delete(request, "series")

    def delete_instance(self, request: Request) -> JSONResponse:
        """Delete an instance: soft (hidden, restorable), or with hard=1 row and file."""
        return self._delete(request, "instances")

    def routes(self) -> list[Route]:
        get, delete = ["GET"], ["DELETE"]
        return [
            Route("/patients", self.patients, methods=get),
            Route("/studies", self.studies, methods=get),
            Route("/series", self.series, methods=get),
            Route("/instances", self.instances, methods=get),
            Route("/patients/{id}", self.patient, methods=get),
            Route("/studies/{id}", self.study, methods=get),
            Route("/series/{id}", self.one_series, methods=get),
            Route("/instances/{id}", self.instance, methods=get),
            Route("/patients/{id}", self.delete_patient, methods=delete),
            Route("/studies/{id}", self.delete_study, methods=delete),
            Route("/series/{id}", self.delete_series, methods=delete),
            Route("/instances/{id}", self.delete_instance, methods=delete),
        ]
