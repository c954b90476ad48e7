"""Printing in the admin REST API.

``GET /api/printers`` lists the ``[[printer]]`` entries; ``POST /api/print`` checks a
print request and queues a ``print`` job, answering 202 with its id, to be followed at
``/api/jobs/{id}`` (its ``result`` holds the print's report).
"""

from __future__ import annotations

import json
from dataclasses import asdict

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pacsnode.archive.core import Archive
from pacsnode.dimse.print_jobs import (
    PRINT_JOB_KIND,
    NothingToPrint,
    PrintRequest,
    PrintRequestError,
    plan,
)
from pacsnode.jobs.workers import Workers


def _error(status: int, message: str, field: str | None = None) -> JSONResponse:
    body = {"error": message} if field is None else {"error": message, "field": field}
    return JSONResponse(body, status_code=status)


class PrintApi:
    def __init__(self, archive: Archive, workers: Workers) -> None:
        self.archive = archive
        self.workers = workers

    def printers(self, request: Request) -> JSONResponse:
        """List the configured printers with their film sizes and layouts."""
        return JSONResponse([asdict(printer) for printer in self.archive.settings.printers])

    async def print_(self, request: Request) -> JSONResponse:
        """Queue a print of a study, series or instances; 202 with the job id."""
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return _error(400, "the body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "the body must be a JSON object")
        try:
            wanted = PrintRequest.from_json(body)
            payload, description = await run_in_threadpool(plan, self.archive, wanted)
        except PrintRequestError as exc:
            return _error(400, str(exc), exc.field)
        except NothingToPrint as exc:
            return _error(404, str(exc))
        pk = await run_in_threadpool(self.workers.enqueue, PRINT_JOB_KIND, payload, description)
        return JSONResponse(
            {"id": pk, "description": description},
            status_code=202,
            headers={"Location": f"/api/jobs/{pk}"},
        )

    def routes(self) -> list[Route]:
        return [
            Route("/printers", self.printers),
            Route("/print", self.print_, methods=["POST"]),
        ]
