"""Printing in the admin REST API.

``GET /api/printers`` lists the ``[[printer]]`` entries; ``POST /api/print`` checks a
print request and queues a ``print`` job, answering 202 with its id, to be followed at
``/api/jobs/{id}`` (its ``result`` holds the print's report).
"""

from __future__ import annotations

from dataclasses import asdict

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pacsnode.archive.core import Archive
from pacsnode.jobs.workers import Workers
from pacsnode.web.replies import error, json_object
from pacsnode.workflows.print_jobs import (
    PRINT_JOB_KIND,
    NothingToPrint,
    PrintRequest,
    PrintRequestError,
    plan,
)


class PrintApi:
    def __init__(self, archive: Archive, workers: Workers) -> None:
        self.archive = archive
        self.workers = workers

    def printers(self, request: Request) -> JSONResponse:
        """List the configured printers with their film sizes and layouts."""
        return JSONResponse([asdict(printer) for printer in self.archive.settings.printers])

    async def print_(self, request: Request) -> JSONResponse:
        """Queue a print of a study, series or instances; 202 with the job id."""
        body = await json_object(request)
        if isinstance(body, JSONResponse):
            return body
        try:
            wanted = PrintRequest.from_json(body)
            payload, description = await run_in_threadpool(plan, self.archive, wanted)
        except PrintRequestError as exc:
            return error(400, str(exc), exc.field)
        except NothingToPrint as exc:
            return error(404, str(exc))
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
