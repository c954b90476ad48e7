"""Correcting patients and studies, and the authority table, in the admin REST API.

``PATCH /api/patients/{id}[?issuer=…]`` changes a patient's demographics and ``PATCH
/api/studies/{uid}`` a study's attributes (keyword JSON, ``{"PatientName":
"DOE^JANE"}``); ``POST /api/patients/{id}/merge[?issuer=…]`` with ``{"PatientID": …,
"IssuerOfPatientID": …}`` moves the patient's studies to that patient. All go through
the same core as the CLI and HL7 ADT (archive/patients.py). ``GET /api/authorities``,
``GET/PUT/DELETE /api/authorities/{id}`` edit the run-time assigning authorities.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pacsnode import audit
from pacsnode.archive.authorities import (
    AuthorityError,
    AuthorityNotFound,
    authority_as_json,
    authority_from_json,
)
from pacsnode.archive.core import Archive
from pacsnode.archive.patients import AmbiguousPatient, PatientKey, RecordError, RecordNotFound
from pacsnode.web.audit_api import actor as audit_actor
from pacsnode.web.replies import error, json_object


def _patient(request: Request) -> PatientKey:
    return PatientKey(request.path_params["id"], request.query_params.get("issuer"))


def _failure(exc: Exception) -> JSONResponse:
    if isinstance(exc, RecordNotFound):
        return error(404, str(exc))
    if isinstance(exc, AmbiguousPatient):
        return error(409, str(exc), "issuer")
    assert isinstance(exc, RecordError)
    return error(400, str(exc), exc.field)


class PatientsApi:
    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.patients = archive.patients

    async def update_patient(self, request: Request) -> JSONResponse:
        """Change a patient's name, birth date, sex or other IDs."""
        body = await json_object(request)
        if isinstance(body, JSONResponse):
            return body
        try:
            updated = await run_in_threadpool(
                self.patients.update_patient, _patient(request), body, audit_actor(request)
            )
        except (RecordNotFound, AmbiguousPatient, RecordError) as exc:
            return _failure(exc)
        return JSONResponse(updated.as_json())

    async def update_study(self, request: Request) -> JSONResponse:
        """Change a study's description, accession number or referring physician."""
        body = await json_object(request)
        if isinstance(body, JSONResponse):
            return body
        uid = request.path_params["id"]
        try:
            updated = await run_in_threadpool(
                self.patients.update_study, uid, body, audit_actor(request)
            )
        except (RecordNotFound, RecordError) as exc:
            return _failure(exc)
        return JSONResponse(updated.as_json())

    async def merge(self, request: Request) -> JSONResponse:
        """Merge a patient into another: its studies move there, and it is gone."""
        body = await json_object(request)
        if isinstance(body, JSONResponse):
            return body
        into = body.get("PatientID")
        issuer = body.get("IssuerOfPatientID")
        if not isinstance(into, str) or not into.strip():
            return error(400, "PatientID of the patient to merge into is required", "PatientID")
        if issuer is not None and not isinstance(issuer, str):
            return error(400, "IssuerOfPatientID must be a string", "IssuerOfPatientID")
        unknown = set(body) - {"PatientID", "IssuerOfPatientID"}
        if unknown:
            return error(400, f"unknown field {sorted(unknown)[0]!r}", sorted(unknown)[0])
        target = PatientKey(into.strip(), issuer)
        try:
            merged = await run_in_threadpool(
                self.patients.merge, _patient(request), target, audit_actor(request)
            )
        except (RecordNotFound, AmbiguousPatient, RecordError) as exc:
            return _failure(exc)
        return JSONResponse(merged.as_json())

    def authorities(self, request: Request) -> JSONResponse:
        """List the assigning authorities, from the config file and the database."""
        entries = self.archive.authorities.entries()
        return JSONResponse([authority_as_json(entry, source) for entry, source in entries])

    def authority(self, request: Request) -> JSONResponse:
        """One assigning authority and where its entry comes from."""
        number = int(request.path_params["id"])
        shown = self._shown(number)
        return JSONResponse(shown) if shown else error(404, f"no authority {number}")

    def _shown(self, number: int) -> dict[str, Any] | None:
        for entry, source in self.archive.authorities.entries():
            if entry.id == number:
                return authority_as_json(entry, source)
        return None

    async def put_authority(self, request: Request) -> JSONResponse:
        """Add or replace an assigning authority (over a config entry of that id)."""
        body = await json_object(request)
        if isinstance(body, JSONResponse):
            return body
        number = int(request.path_params["id"])
        values: dict[str, Any] = {**body, "id": number}
        try:
            entry = authority_from_json(values)
            created = await run_in_threadpool(self.archive.authorities.put, entry)
        except AuthorityError as exc:
            return error(400, str(exc), exc.field)
        described = f"authority {number} {'added' if created else 'changed'}"
        audit.configuration_change(audit_actor(request), described, kind="network")
        shown = await run_in_threadpool(self._shown, entry.id)
        return JSONResponse(shown, status_code=201 if created else 200)

    def delete_authority(self, request: Request) -> Response:
        """Delete a run-time authority; config file entries are refused with 409."""
        number = int(request.path_params["id"])
        try:
            self.archive.authorities.delete(number)
        except AuthorityNotFound as exc:
            return error(404, str(exc))
        except AuthorityError as exc:
            return error(409, str(exc))
        audit.configuration_change(
            audit_actor(request), f"authority {number} deleted", kind="network"
        )
        return Response(status_code=204)

    def routes(self) -> list[Route]:
        return [
            Route("/patients/{id}", self.update_patient, methods=["PATCH"]),
            Route("/patients/{id}/merge", self.merge, methods=["POST"]),
            Route("/studies/{id}", self.update_study, methods=["PATCH"]),
            Route("/authorities", self.authorities, methods=["GET"]),
            Route("/authorities/{id:int}", self.authority, methods=["GET"]),
            Route("/authorities/{id:int}", self.put_authority, methods=["PUT"]),
            Route("/authorities/{id:int}", self.delete_authority, methods=["DELETE"]),
        ]
