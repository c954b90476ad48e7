"""The remote AE table, and working with remote nodes, in the admin REST API.

``GET /api/remote``, ``GET/PUT/DELETE /api/remote/{ae}`` edit the run-time entries
(see :mod:`pacsnode.archive.remotes`). ``POST /api/remote/{ae}/echo`` and ``/query``
call the node now (C-ECHO, C-FIND) through the same SCU functions as the command line;
``/retrieve`` (into the archive) and ``/store`` (from it) queue a job and answer 202
with its id, to be followed at ``/api/jobs/{id}``.
"""

from __future__ import annotations

import time
from typing import Any

from pydicom import Dataset
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pacsnode import audit
from pacsnode.archive.core import Archive
from pacsnode.archive.remotes import RemoteError, RemoteNotFound, remote_from_json
from pacsnode.config import RemoteAE
from pacsnode.dimse import query_scu, scu
from pacsnode.jobs.workers import Workers
from pacsnode.web.audit_api import actor as audit_actor
from pacsnode.web.keyword_json import keyword_json
from pacsnode.web.replies import error, json_object
from pacsnode.workflows.retrieve import RETRIEVE_JOB, RetrieveError, RetrieveRequest, plan
from pacsnode.workflows.sending import STORE_JOB, NothingToSend, SendError, SendRequest
from pacsnode.workflows.sending import plan as plan_send

QUERY_FIELDS = ("model", "level", "keys")


def _audit(request: Request, description: str) -> None:
    audit.configuration_change(audit_actor(request), description, kind="network")


class RemotesApi:
    def __init__(self, archive: Archive, workers: Workers) -> None:
        self.archive = archive
        self.remotes = archive.remotes
        self.workers = workers
        self.dialer = scu.Dialer(archive.settings, archive.remotes.get)

    def _peer(self, title: str, service: str) -> tuple[RemoteAE, scu.Peer]:
        remote = self.remotes.get(title)
        if remote is None:
            raise RemoteNotFound(f"no remote AE {title!r}")
        if not remote.offers_service(service):
            raise RemoteError(f"{remote.ae_title} does not offer {service}", "remote")
        return remote, self.dialer.peer(remote)

    def index(self, request: Request) -> JSONResponse:
        """List the remote AEs, from the config file and from the database."""
        return JSONResponse([entry.as_json() for entry in self.remotes.entries()])

    def show(self, request: Request) -> JSONResponse:
        """One remote AE and where its entry comes from."""
        try:
            return JSONResponse(self.remotes.entry(request.path_params["ae"]).as_json())
        except RemoteNotFound as exc:
            return error(404, str(exc))

    async def put(self, request: Request) -> JSONResponse:
        """Add or replace the entry; the title in the path wins over one in the body."""
        body = await json_object(request)
        if isinstance(body, JSONResponse):
            return body
        title = request.path_params["ae"]
        if body.get("ae_title", title) != title:
            return error(400, "ae_title differs from the AE title in the path", "ae_title")
        try:
            remote = remote_from_json({**body, "ae_title": title})
            self._check_authority(remote)
            created = await run_in_threadpool(self.remotes.put, remote)
        except RemoteError as exc:
            return error(400, str(exc), exc.field)
        entry = await run_in_threadpool(self.remotes.entry, remote.ae_title)
        _audit(request, f"remote AE {title} {'added' if created else 'changed'}")
        return JSONResponse(entry.as_json(), status_code=201 if created else 200)

    def _check_authority(self, remote: RemoteAE) -> None:
        number = remote.fallback_authority
        if number is not None and self.archive.authorities.get(number) is None:
            raise RemoteError(f"fallback_authority: {number} is no authority", "fallback_authority")

    def delete(self, request: Request) -> Response:
        """Delete a run-time entry; config file entries are refused with 409."""
        try:
            self.remotes.delete(request.path_params["ae"])
        except RemoteNotFound as exc:
            return error(404, str(exc))
        except RemoteError as exc:
            return error(409, str(exc))
        _audit(request, f"remote AE {request.path_params['ae']} deleted")
        return Response(status_code=204)

    async def retrieve(self, request: Request) -> JSONResponse:
        """Queue a retrieve from the remote into the archive; 202 with the job id."""
        body = await json_object(request)
        if isinstance(body, JSONResponse):
            return body
        try:
            wanted = RetrieveRequest.from_json(request.path_params["ae"], body)
            payload, description = await run_in_threadpool(plan, self.remotes, wanted)
        except RemoteNotFound as exc:
            return error(404, str(exc))
        except RetrieveError as exc:
            return error(400, str(exc), exc.field)
        pk = await run_in_threadpool(self.workers.enqueue, RETRIEVE_JOB, payload, description)
        return JSONResponse(
            {"id": pk, "method": payload["method"], "description": description},
            status_code=202,
            headers={"Location": f"/api/jobs/{pk}"},
        )

    def echo(self, request: Request) -> JSONResponse:
        """C-ECHO the remote AE now; 502 when no association can be made."""
        try:
            remote, peer = self._peer(request.path_params["ae"], "echo")
        except RemoteNotFound as exc:
            return error(404, str(exc))
        except RemoteError as exc:
            return error(400, str(exc), exc.field)
        started = time.monotonic()
        try:
            status = scu.echo(peer)
        except scu.AssociationFailed as exc:
            return error(502, str(exc))
        return JSONResponse(
            {
                "ae_title": remote.ae_title,
                "status": f"0x{status:04X}",
                "ok": status == 0,
                "milliseconds": round((time.monotonic() - started) * 1000),
            }
        )

    async def query(self, request: Request) -> JSONResponse:
        """C-FIND the remote AE now; its matches as keyword JSON."""
        body = await json_object(request)
        if isinstance(body, JSONResponse):
            return body
        try:
            model, level, keys = _query_fields(body)
            remote, peer = self._peer(request.path_params["ae"], "find")
            found = await run_in_threadpool(_find, peer, model, level, keys)
        except RemoteNotFound as exc:
            return error(404, str(exc))
        except RemoteError as exc:
            return error(400, str(exc), exc.field)
        except scu.AssociationFailed as exc:
            return error(502, str(exc))
        except query_scu.QueryFailed as exc:
            return error(502, f"C-FIND failed: {exc}")
        return JSONResponse({"ae_title": remote.ae_title, "matches": found})

    async def store(self, request: Request) -> JSONResponse:
        """Queue sending a study, series or instances of the archive; 202 with the job id."""
        body = await json_object(request)
        if isinstance(body, JSONResponse):
            return body
        try:
            wanted = SendRequest.from_json(request.path_params["ae"], body)
            payload, description = await run_in_threadpool(plan_send, self.archive, wanted)
        except RemoteNotFound as exc:
            return error(404, str(exc))
        except SendError as exc:
            return error(400, str(exc), exc.field)
        except NothingToSend as exc:
            return error(404, str(exc))
        pk = await run_in_threadpool(self.workers.enqueue, STORE_JOB, payload, description)
        return JSONResponse(
            {"id": pk, "description": description},
            status_code=202,
            headers={"Location": f"/api/jobs/{pk}"},
        )

    def routes(self) -> list[Route]:
        return [
            Route("/remote", self.index),
            Route("/remote/{ae}", self.show),
            Route("/remote/{ae}", self.put, methods=["PUT"]),
            Route("/remote/{ae}", self.delete, methods=["DELETE"]),
            Route("/remote/{ae}/retrieve", self.retrieve, methods=["POST"]),
            Route("/remote/{ae}/echo", self.echo, methods=["POST"]),
            Route("/remote/{ae}/query", self.query, methods=["POST"]),
            Route("/remote/{ae}/store", self.store, methods=["POST"]),
        ]


def _query_fields(body: dict[str, Any]) -> tuple[str, str | None, dict[str, str]]:
    """``model`` (default study), ``level`` (default STUDY) and ``keys`` (keyword to
    matching value, "" to have it returned) of a query request, checked."""
    unknown = set(body) - set(QUERY_FIELDS)
    if unknown:
        raise RemoteError(f"unknown field {sorted(unknown)[0]!r}", sorted(unknown)[0])
    model = body.get("model", "study")
    if model not in query_scu.MODELS:
        raise RemoteError(f"model must be one of {', '.join(query_scu.MODELS)}", "model")
    levels = query_scu.MODELS[model].levels
    level = str(body.get("level", "STUDY" if "STUDY" in levels else "")).upper() or None
    if levels and level not in levels:
        raise RemoteError(f"the {model} model has the levels {', '.join(levels)}", "level")
    keys = body.get("keys", {})
    if not isinstance(keys, dict) or not all(isinstance(v, str) for v in keys.values()):
        raise RemoteError("keys must be an object of keyword to matching value", "keys")
    try:
        query_scu.identifier(level, keys)
    except (ValueError, TypeError, OverflowError) as exc:
        raise RemoteError(f"keys: {exc}", "keys") from exc
    return model, level, keys


def _find(peer: scu.Peer, model: str, level: str | None, keys: dict[str, str]) -> list[Any]:
    found: list[Dataset] = list(query_scu.find(peer, model, level, keys))
    return [keyword_json(dataset) for dataset in found]
