"""The UI's pages of the modalities' workflow: the worklist (scheduled procedure steps
added, changed and removed), the performed procedure steps (MPPS) and storage
commitment.

A step is scheduled through the same :class:`~pacsnode.archive.worklist.Worklist` as
``/api/worklist`` (prefetch listening), its form filled by
:func:`~pacsnode.archive.worklist.with_fields` as ``pacsnode worklist add`` fills it;
modalities then find it by MWL C-FIND.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pacsnode.archive.mpps import MppsStore
from pacsnode.archive.worklist import (
    REQUEST_FIELDS,
    STEP_FIELDS,
    Worklist,
    WorklistError,
    fields_of,
    with_fields,
)
from pacsnode.dimse.commitment import REPORT_JOB
from pacsnode.jobs.queue import JobQueue
from pacsnode.web.ui.render import Pages, page

LABELS = {
    "PatientName": "Patient name (FAMILY^GIVEN)",
    "PatientID": "Patient ID",
    "PatientBirthDate": "Birth date",
    "PatientSex": "Sex",
    "AccessionNumber": "Accession number",
    "RequestedProcedureID": "Requested procedure ID",
    "RequestedProcedureDescription": "Requested procedure",
    "ReferringPhysicianName": "Referring physician",
    "Modality": "Modality",
    "ScheduledStationAETitle": "Station AE title",
    "ScheduledProcedureStepStartDate": "Start date",
    "ScheduledProcedureStepStartTime": "Start time",
    "ScheduledProcedureStepID": "Step ID",
    "ScheduledProcedureStepDescription": "Step description",
    "ScheduledPerformingPhysicianName": "Performing physician",
}
"""The form's fields, each named by its DICOM keyword (and so is any error about it)."""
FIELDS = (*REQUEST_FIELDS, *STEP_FIELDS)


def _shown(values: dict[str, str]) -> dict[str, str]:
    """Stored values as the form's date and time inputs take them."""
    shown = dict(values)
    for keyword, value in values.items():
        if keyword.endswith("Date") and len(value) == 8:
            shown[keyword] = f"{value[:4]}-{value[4:6]}-{value[6:]}"
        elif keyword.endswith("Time") and len(value) >= 4:
            shown[keyword] = ":".join(value[i : i + 2] for i in range(0, min(len(value), 6), 2))
    return shown


def _fields(form: Any) -> dict[str, str]:
    return {keyword: str(form.get(keyword, "")) for keyword in FIELDS}


class WorklistPages:
    def __init__(self, worklist: Worklist, mpps: MppsStore, queue: JobQueue, pages: Pages) -> None:
        self.worklist = worklist
        self.mpps_store = mpps
        self.queue = queue
        self.pages = pages

    def worklist_page(self, request: Request) -> Response:
        """Scheduled procedure steps, as modalities find them, and a form to add one."""
        items = [item.as_json() for item in self.worklist.items(500)]
        today = datetime.now()
        blank = {"ScheduledProcedureStepStartDate": today.strftime("%Y-%m-%d")}
        return self.pages.render(
            request,
            "worklist.html",
            items=items,
            fields=FIELDS,
            labels=LABELS,
            values=blank,
            item=None,
        )

    def edit_form(self, request: Request) -> Response:
        """The form filled with an item's values, to change it."""
        pk = int(request.path_params["id"])
        try:
            item = self.worklist.get(pk)
        except WorklistError as exc:
            return self.pages.message(request, str(exc), 404)
        values = _shown(fields_of(item.dataset))
        return self.pages.render(
            request, "_worklist_form.html", fields=FIELDS, labels=LABELS, values=values, item=item
        )

    async def add(self, request: Request) -> Response:
        """Schedule a step (as ``POST /api/worklist``)."""
        fields = _fields(await request.form())
        try:
            item = await run_in_threadpool(self.worklist.add, with_fields(fields))
        except WorklistError as exc:
            return self.pages.message(request, str(exc), 400)
        study = item.dataset.StudyInstanceUID
        return self.pages.message(
            request, f"worklist item {item.pk} scheduled: study {study}", refresh=True
        )

    async def change(self, request: Request) -> Response:
        """Change the typed values of an item, keeping the rest of its data set (its
        Study Instance UID above all), as ``PUT /api/worklist/{id}``."""
        pk = int(request.path_params["id"])
        fields = _fields(await request.form())
        try:
            item = await run_in_threadpool(self.worklist.get, pk)
        except WorklistError as exc:
            return self.pages.message(request, str(exc), 404)
        try:
            changed = with_fields(fields, item.dataset)
            await run_in_threadpool(self.worklist.replace, pk, changed)
        except WorklistError as exc:
            return self.pages.message(request, str(exc), 400)
        return self.pages.message(request, f"worklist item {pk} changed", refresh=True)

    def delete(self, request: Request) -> Response:
        pk = int(request.path_params["id"])
        try:
            self.worklist.delete(pk)
        except WorklistError as exc:
            return self.pages.message(request, str(exc), 404)
        return self.pages.message(request, f"worklist item {pk} deleted", refresh=True)

    def mpps(self, request: Request) -> Response:
        """Performed procedure steps the modalities reported."""
        steps = self.mpps_store.list(None, 500)
        return self.pages.render(request, "mpps.html", steps=[s.as_json() for s in steps])

    def commitments(self, request: Request) -> Response:
        """Storage commitment: reports we owe on new associations, and sends whose rule
        asked for commitment, with their outcome."""
        jobs = [
            job
            for job in self.queue.list(None, 500)
            if job.kind == REPORT_JOB or job.payload.get("commit")
        ]
        return self.pages.render(request, "commitments.html", jobs=jobs)

    def routes(self) -> list[Route]:
        post = ["POST"]
        return [
            page("/worklist", self.worklist_page),
            page("/worklist", self.add, methods=post),
            page("/worklist/{id:int}/edit", self.edit_form),
            page("/worklist/{id:int}", self.change, methods=post),
            page("/worklist/{id:int}/delete", self.delete, methods=post),
            page("/mpps", self.mpps),
            page("/commitments", self.commitments),
        ]
