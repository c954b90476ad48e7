"""The admin REST API under ``/api``: thin routes onto the same core calls as the CLI.

Endpoints are plain functions: Starlette runs them on its thread pool, so the blocking
database calls never hold up the event loop.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pacsnode.archive.mpps import MppsError, MppsStore
from pacsnode.jobs.queue import JobError, JobStatus
from pacsnode.jobs.workers import Workers


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _id(request: Request) -> int:
    return int(request.path_params["id"])


class JobsApi:
    """Outbound jobs: list them, look at one, run a failed one again, or cancel it."""

    def __init__(self, workers: Workers) -> None:
        self.workers = workers
        self.queue = workers.queue

    def index(self, request: Request) -> JSONResponse:
        status = request.query_params.get("status")
        if status and status not in set(JobStatus):
            return _error(400, f"status must be one of {', '.join(JobStatus)}")
        limit = int(request.query_params.get("limit", "100"))
        return JSONResponse([job.as_json() for job in self.queue.list(status, limit)])

    def show(self, request: Request) -> JSONResponse:
        try:
            return JSONResponse(self.queue.get(_id(request)).as_json())
        except JobError as exc:
            return _error(404, str(exc))

    def retry(self, request: Request) -> JSONResponse:
        return self._change(request, self.queue.retry)

    def cancel(self, request: Request) -> JSONResponse:
        return self._change(request, self.queue.cancel)

    def _change(self, request: Request, change: Any) -> JSONResponse:
        pk = _id(request)
        try:
            change(pk)
        except JobError as exc:
            missing = str(exc).startswith("no job")
            return _error(404 if missing else 409, str(exc))
        self.workers.wake()
        return JSONResponse(self.queue.get(pk).as_json())

    def routes(self) -> list[Route]:
        return [
            Route("/jobs", self.index),
            Route("/jobs/{id:int}", self.show),
            Route("/jobs/{id:int}/retry", self.retry, methods=["POST"]),
            Route("/jobs/{id:int}/cancel", self.cancel, methods=["POST"]),
        ]


class MppsApi:
    """Performed procedure steps as the modalities reported them."""

    def __init__(self, store: MppsStore) -> None:
        self.store = store

    def index(self, request: Request) -> JSONResponse:
        status = request.query_params.get("status")
        limit = int(request.query_params.get("limit", "100"))
        return JSONResponse([step.as_json() for step in self.store.list(status, limit)])

    def show(self, request: Request) -> JSONResponse:
        try:
            return JSONResponse(self.store.get(request.path_params["uid"]).as_json())
        except MppsError as exc:
            return _error(404, str(exc))

    def routes(self) -> list[Route]:
        return [Route("/mpps", self.index), Route("/mpps/{uid}", self.show)]
