"""The admin REST API under ``/api``: thin routes onto the same core calls as the CLI.

Endpoints are plain functions where they can be: Starlette runs those on its thread
pool, so the blocking database calls never hold up the event loop. Those that read a
body are coroutines and hand their database work to the pool themselves.
"""

from __future__ import annotations

from typing import Any

from pydicom import Dataset
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pacsnode.archive.mpps import MppsError, MppsStore
from pacsnode.archive.rejection import Rejections
from pacsnode.archive.worklist import Worklist, WorklistError
from pacsnode.jobs.queue import JobError, JobStatus
from pacsnode.jobs.workers import Workers
from pacsnode.web.audit_api import actor as audit_actor
from pacsnode.web.replies import error


def _id(request: Request) -> int:
    return int(request.path_params["id"])


class JobsApi:
    """Outbound jobs: list them, look at one, run a failed one again, or cancel it."""

    def __init__(self, workers: Workers) -> None:
        self.workers = workers
        self.queue = workers.queue

    def index(self, request: Request) -> JSONResponse:
        """List the newest jobs, optionally of one status."""
        status = request.query_params.get("status")
        if status and status not in set(JobStatus):
            return error(400, f"status must be one of {', '.join(JobStatus)}")
        limit = int(request.query_params.get("limit", "100"))
        return JSONResponse([job.as_json() for job in self.queue.list(status, limit)])

    def show(self, request: Request) -> JSONResponse:
        """One job: what it does, its attempts, last error and result."""
        try:
            return JSONResponse(self.queue.get(_id(request)).as_json())
        except JobError as exc:
            return error(404, str(exc))

    def retry(self, request: Request) -> JSONResponse:
        """Run a failed or cancelled job again, now."""
        return self._change(request, self.queue.retry)

    def cancel(self, request: Request) -> JSONResponse:
        """Stop a pending or failed job from running again."""
        return self._change(request, self.queue.cancel)

    def _change(self, request: Request, change: Any) -> JSONResponse:
        pk = _id(request)
        try:
            changed = change(pk)
        except JobError as exc:
            missing = str(exc).startswith("no job")
            return error(404 if missing else 409, str(exc))
        self.workers.wake()  # it may be running by the time the answer is read
        return JSONResponse(changed.as_json())

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
        """List the performed procedure steps the modalities reported."""
        status = request.query_params.get("status")
        limit = int(request.query_params.get("limit", "100"))
        return JSONResponse([step.as_json() for step in self.store.list(status, limit)])

    def show(self, request: Request) -> JSONResponse:
        """One performed procedure step by its SOP Instance UID."""
        try:
            return JSONResponse(self.store.get(request.path_params["uid"]).as_json())
        except MppsError as exc:
            return error(404, str(exc))

    def routes(self) -> list[Route]:
        return [Route("/mpps", self.index), Route("/mpps/{uid}", self.show)]


class WorklistApi:
    """Worklist items in the DICOM JSON model: what modalities find by MWL C-FIND."""

    def __init__(self, worklist: Worklist) -> None:
        self.worklist = worklist

    def index(self, request: Request) -> JSONResponse:
        """List the worklist items (DICOM JSON)."""
        limit = int(request.query_params.get("limit", "1000"))
        return JSONResponse([item.as_json() for item in self.worklist.items(limit)])

    async def create(self, request: Request) -> JSONResponse:
        """Schedule a worklist item from a DICOM JSON data set."""
        dataset = await _dicom_json(request)
        if isinstance(dataset, JSONResponse):
            return dataset
        try:
            item = await run_in_threadpool(self.worklist.add, dataset)
        except WorklistError as exc:
            return error(400, str(exc))
        return JSONResponse(
            item.as_json(), status_code=201, headers={"Location": f"/api/worklist/{item.pk}"}
        )

    def show(self, request: Request) -> JSONResponse:
        """One worklist item."""
        try:
            return JSONResponse(self.worklist.get(_id(request)).as_json())
        except WorklistError as exc:
            return error(404, str(exc))

    async def replace(self, request: Request) -> JSONResponse:
        """Replace a worklist item's data set."""
        dataset = await _dicom_json(request)
        if isinstance(dataset, JSONResponse):
            return dataset
        try:
            item = await run_in_threadpool(self.worklist.replace, _id(request), dataset)
        except WorklistError as exc:
            return error(404 if str(exc).startswith("no ") else 400, str(exc))
        return JSONResponse(item.as_json())

    def delete(self, request: Request) -> Response:
        """Remove a worklist item."""
        try:
            self.worklist.delete(_id(request))
        except WorklistError as exc:
            return error(404, str(exc))
        return Response(status_code=204)

    def routes(self) -> list[Route]:
        return [
            Route("/worklist", self.index, methods=["GET"]),
            Route("/worklist", self.create, methods=["POST"]),
            Route("/worklist/{id:int}", self.show, methods=["GET"]),
            Route("/worklist/{id:int}", self.replace, methods=["PUT"]),
            Route("/worklist/{id:int}", self.delete, methods=["DELETE"]),
        ]


async def _dicom_json(request: Request) -> Dataset | JSONResponse:
    """The request body as a data set in the DICOM JSON model, or the 400 to answer."""
    try:
        body = await request.json()
        return Dataset.from_json(body)
    except (ValueError, TypeError, KeyError) as exc:
        return error(400, f"not a data set in the DICOM JSON model: {exc}")


class RejectedApi:
    """Instances withdrawn by IOCM rejection notes: list, restore, purge."""

    def __init__(self, rejections: Rejections) -> None:
        self.rejections = rejections

    def index(self, request: Request) -> JSONResponse:
        """List the instances IOCM rejection notes withdrew."""
        code = request.query_params.get("code")
        return JSONResponse([entry.as_json() for entry in self.rejections.listed(code)])

    def restore(self, request: Request) -> JSONResponse:
        """Make a rejected instance visible again."""
        uid = request.path_params["uid"]
        if not self.rejections.restore(uid):
            return error(404, f"{uid} is not rejected")
        return JSONResponse({"restored": uid})

    def purge(self, request: Request) -> JSONResponse:
        """Delete, files and all, the instances whose retention expired."""
        return JSONResponse({"purged": self.rejections.purge(audit_actor(request))})

    def routes(self) -> list[Route]:
        return [
            Route("/rejected", self.index),
            Route("/rejected/purge", self.purge, methods=["POST"]),
            Route("/rejected/{uid}/restore", self.restore, methods=["POST"]),
        ]
