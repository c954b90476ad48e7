"""The remote AE table and retrieve-into-the-archive in the admin REST API.

``GET /api/remote``, ``GET/PUT/DELETE /api/remote/{ae}`` edit the run-time entries
(see :mod:`pacsnode.archive.remotes`); ``POST /api/remote/{ae}/retrieve`` queues a
retrieve job and answers 202 with its id, to be followed at ``/api/jobs/{id}``.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pacsnode import audit
from pacsnode.archive.remotes import RemoteError, RemoteNotFound, Remotes, remote_from_json
from pacsnode.jobs.workers import Workers
from pacsnode.web.audit_api import actor as audit_actor
from pacsnode.web.replies import error, json_object
from pacsnode.workflows.retrieve import RETRIEVE_JOB, RetrieveError, RetrieveRequest, plan


def _audit(request: Request, description: str) -> None:
    audit.configuration_change(audit_actor(request), description, kind="network")


class RemotesApi:
    def __init__(self, remotes: Remotes, workers: Workers) -> None:
        self.remotes = remotes
        self.workers = workers

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
            created = await run_in_threadpool(self.remotes.put, remote)
        except RemoteError as exc:
            return error(400, str(exc), exc.field)
        entry = await run_in_threadpool(self.remotes.entry, remote.ae_title)
        _audit(request, f"remote AE {title} {'added' if created else 'changed'}")
        return JSONResponse(entry.as_json(), status_code=201 if created else 200)

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

    def routes(self) -> list[Route]:
        return [
            Route("/remote", self.index),
            Route("/remote/{ae}", self.show),
            Route("/remote/{ae}", self.put, methods=["PUT"]),
            Route("/remote/{ae}", self.delete, methods=["DELETE"]),
            Route("/remote/{ae}/retrieve", self.retrieve, methods=["POST"]),
        ]
