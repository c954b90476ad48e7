"""The UI's pages of the node's work: remote AEs (echo, query, retrieve), routing
rules, jobs, worklist, MPPS, storage commitment and the audit log.

Each action calls what its REST route calls: the remote AE table, the SCU functions,
the job queue, the router, the audit journal.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pacsnode import audit
from pacsnode.archive.core import Archive
from pacsnode.archive.mpps import MppsStore
from pacsnode.archive.remotes import RemoteError, RemoteNotFound, remote_from_json
from pacsnode.archive.worklist import Worklist
from pacsnode.audit.journal import Journal, Search
from pacsnode.dimse import query_scu, scu
from pacsnode.dimse.commitment import REPORT_JOB
from pacsnode.jobs.queue import JobError, JobStatus
from pacsnode.jobs.workers import Workers
from pacsnode.web.audit_api import actor
from pacsnode.web.keyword_json import keyword_json
from pacsnode.web.ui.render import Pages, page
from pacsnode.workflows.retrieve import RETRIEVE_JOB, RetrieveError, RetrieveRequest
from pacsnode.workflows.retrieve import plan as plan_retrieve
from pacsnode.workflows.routing import Router, RuleError, rule_json

QUERY_KEYS = ("PatientName", "PatientID", "StudyDate", "ModalitiesInStudy", "AccessionNumber")
RETURNED = (*QUERY_KEYS, "StudyInstanceUID", "StudyDescription", "NumberOfStudyRelatedInstances")
LIST_FIELDS = ("offers", "allowed", "transfer_syntaxes")


def _remote_form(form: FormData) -> dict[str, Any]:
    """The remote AE form as the REST API's JSON entry."""
    values: dict[str, Any] = {
        "ae_title": str(form.get("ae_title", "")).strip(),
        "host": str(form.get("host", "")).strip(),
        "port": int(port) if (port := str(form.get("port", "")).strip()).isdigit() else port,
        "description": str(form.get("description", "")),
    }
    for name in LIST_FIELDS:
        values[name] = [word.strip() for word in str(form.get(name, "")).split(",") if word.strip()]
    values["move_destination_only"] = form.get("move_destination_only") == "on"
    return values


class AdminPages:
    def __init__(
        self, archive: Archive, workers: Workers, router: Router | None, pages: Pages
    ) -> None:
        self.archive = archive
        self.remotes = archive.remotes
        self.workers = workers
        self.router = router
        self.pages = pages
        self.dialer = scu.Dialer(archive.settings, archive.remotes.get)
        self.journal = Journal(archive.settings.data_dir / "audit")

    # remote AEs

    def remotes_page(self, request: Request) -> Response:
        """The remote AE table, with a form to add or change an entry."""
        entries = [entry.as_json() for entry in self.remotes.entries()]
        return self.pages.render(request, "remotes.html", entries=entries)

    async def save_remote(self, request: Request) -> Response:
        """Add or replace a run-time entry (as ``PUT /api/remote/{ae}``)."""
        values = _remote_form(await request.form())
        try:
            remote = remote_from_json(values)
            created = await run_in_threadpool(self.remotes.put, remote)
        except RemoteError as exc:
            return self._message(request, str(exc), error=True)
        what = "added" if created else "changed"
        audit.configuration_change(
            actor(request), f"remote AE {remote.ae_title} {what}", kind="network"
        )
        response = self._message(request, f"remote AE {remote.ae_title} {what}")
        response.headers["HX-Refresh"] = "true"
        return response

    def delete_remote(self, request: Request) -> Response:
        """Delete a run-time entry."""
        title = request.path_params["ae"]
        try:
            self.remotes.delete(title)
        except (RemoteNotFound, RemoteError) as exc:
            return self._message(request, str(exc), error=True)
        audit.configuration_change(actor(request), f"remote AE {title} deleted", kind="network")
        response = self._message(request, f"remote AE {title} deleted")
        response.headers["HX-Refresh"] = "true"
        return response

    def echo(self, request: Request) -> Response:
        """C-ECHO the remote now."""
        title = request.path_params["ae"]
        remote = self.remotes.get(title)
        if remote is None:
            return self._message(request, f"no remote AE {title!r}", error=True)
        started = time.monotonic()
        try:
            status = scu.echo(self.dialer.peer(remote))
        except scu.AssociationFailed as exc:
            return self._message(request, f"{title}: {exc}", error=True)
        took = round((time.monotonic() - started) * 1000)
        ok = status == 0
        text = f"{title}: echo {'succeeded' if ok else 'failed'}, status 0x{status:04X}, {took} ms"
        return self._message(request, text, error=not ok)

    def query_page(self, request: Request) -> Response:
        """A study search on a remote AE."""
        title = request.path_params["ae"]
        if self.remotes.get(title) is None:
            return self.pages.render(request, "missing.html", 404, what=f"remote AE {title}")
        return self.pages.render(request, "query.html", ae=title, keys=QUERY_KEYS)

    async def query(self, request: Request) -> Response:
        """Study Root C-FIND on the remote; the matches with a Retrieve button each."""
        title = request.path_params["ae"]
        form = await request.form()
        keys = {key: str(form.get(key, "")).strip() for key in RETURNED}
        remote = self.remotes.get(title)
        if remote is None or not remote.offers_service("find"):
            return self._message(request, f"{title} does not offer find", error=True)
        try:
            found = await run_in_threadpool(self._find, remote, keys)
        except (scu.AssociationFailed, query_scu.QueryFailed, ValueError) as exc:
            return self._message(request, f"{title}: {exc}", error=True)
        return self.pages.render(request, "_matches.html", ae=title, matches=found)

    def _find(self, remote: Any, keys: dict[str, str]) -> list[dict[str, Any]]:
        peer = self.dialer.peer(remote)
        return [keyword_json(found) for found in query_scu.find(peer, "study", "STUDY", keys)]

    async def retrieve(self, request: Request) -> Response:
        """Queue a retrieve of a study from the remote into the archive."""
        title = request.path_params["ae"]
        form = await request.form()
        try:
            wanted = RetrieveRequest.from_json(title, {"study": str(form.get("study", ""))})
            payload, description = await run_in_threadpool(plan_retrieve, self.remotes, wanted)
        except (RemoteNotFound, RetrieveError) as exc:
            return self._message(request, str(exc), error=True)
        pk = await run_in_threadpool(self.workers.enqueue, RETRIEVE_JOB, payload, description)
        return self._message(request, f"job {pk} queued: {description}", job=pk)

    # routing rules

    def routes_page(self, request: Request) -> Response:
        """The routing rules; run-time ones can be removed, and rules added."""
        rules = (
            [rule_json(rule, source) for rule, source in self.router.rules()] if self.router else []
        )
        titles = [remote.ae_title for remote in self.remotes.all()]
        return self.pages.render(request, "routes.html", rules=rules, titles=titles)

    async def add_route(self, request: Request) -> Response:
        """Add a rule (as ``POST /api/routes``): name, destinations, modality."""
        if self.router is None:
            return self._message(request, "routing is not running here", error=True)
        form = await request.form()
        table: dict[str, Any] = {
            "name": str(form.get("name", "")).strip(),
            "destinations": [str(value) for value in form.getlist("destinations")],
        }
        modality = [
            word.strip() for word in str(form.get("modality", "")).split(",") if word.strip()
        ]
        if modality:
            table["modality"] = modality
        try:
            rule = await run_in_threadpool(self.router.add, table)
        except RuleError as exc:
            return self._message(request, str(exc), error=True)
        audit.configuration_change(actor(request), f"route {rule.name} added")
        response = self._message(request, f"route {rule.name} added")
        response.headers["HX-Refresh"] = "true"
        return response

    def remove_route(self, request: Request) -> Response:
        name = request.path_params["name"]
        if self.router is None:
            return self._message(request, "routing is not running here", error=True)
        try:
            self.router.remove(name)
        except RuleError as exc:
            return self._message(request, str(exc), error=True)
        audit.configuration_change(actor(request), f"route {name} removed")
        response = self._message(request, f"route {name} removed")
        response.headers["HX-Refresh"] = "true"
        return response

    # jobs

    def jobs_page(self, request: Request) -> Response:
        """The job queue; its table refreshes itself while the page is open."""
        status = request.query_params.get("status") or None
        if status not in (None, *JobStatus):
            status = None
        jobs = self.workers.queue.list(status, 200)
        name = "_jobs.html" if request.headers.get("hx-request") else "jobs.html"
        return self.pages.render(
            request, name, jobs=jobs, current=status or "", statuses=list(JobStatus)
        )

    def retry(self, request: Request) -> Response:
        return self._change_job(request, self.workers.queue.retry, "queued again")

    def cancel(self, request: Request) -> Response:
        return self._change_job(request, self.workers.queue.cancel, "cancelled")

    def _change_job(self, request: Request, change: Any, done: str) -> Response:
        pk = int(request.path_params["id"])
        try:
            change(pk)
        except JobError as exc:
            return self._message(request, str(exc), error=True)
        self.workers.wake()
        return self._message(request, f"job {pk} {done}", job=pk)

    # workflow records

    def worklist(self, request: Request) -> Response:
        """Scheduled procedure steps, as modalities find them."""
        settings = self.archive.settings
        items = Worklist(self.archive.database, settings.worklist_hide_finished).items(500)
        return self.pages.render(request, "worklist.html", items=[i.as_json() for i in items])

    def mpps(self, request: Request) -> Response:
        """Performed procedure steps the modalities reported."""
        steps = MppsStore(self.archive.database).list(None, 500)
        return self.pages.render(request, "mpps.html", steps=[s.as_json() for s in steps])

    def commitments(self, request: Request) -> Response:
        """Storage commitment: reports we owe on new associations, and sends whose rule
        asked for commitment, with their outcome."""
        jobs = [
            job
            for job in self.workers.queue.list(None, 500)
            if job.kind == REPORT_JOB or job.payload.get("commit")
        ]
        return self.pages.render(request, "commitments.html", jobs=jobs)

    def audit_page(self, request: Request) -> Response:
        """Search the local audit log."""
        params = {k: v for k, v in request.query_params.items() if v}
        try:
            found = self.journal.search(Search.from_params(params))
            problem = ""
        except ValueError as exc:
            found, problem = [], str(exc)
        return self.pages.render(
            request, "audit.html", params=params, entries=found, problem=problem
        )

    def _message(
        self, request: Request, text: str, error: bool = False, job: int | None = None
    ) -> Response:
        return self.pages.render(request, "_message.html", text=text, error=error, job=job)

    def routes(self) -> list[Route]:
        post = ["POST"]
        return [
            page("/remotes", self.remotes_page),
            page("/remotes", self.save_remote, methods=post),
            page("/remotes/{ae}/delete", self.delete_remote, methods=post),
            page("/remotes/{ae}/echo", self.echo, methods=post),
            page("/remotes/{ae}/query", self.query_page),
            page("/remotes/{ae}/query", self.query, methods=post),
            page("/remotes/{ae}/retrieve", self.retrieve, methods=post),
            page("/routes", self.routes_page),
            page("/routes", self.add_route, methods=post),
            page("/routes/{name}/delete", self.remove_route, methods=post),
            page("/jobs", self.jobs_page),
            page("/jobs/{id:int}/retry", self.retry, methods=post),
            page("/jobs/{id:int}/cancel", self.cancel, methods=post),
            page("/worklist", self.worklist),
            page("/mpps", self.mpps),
            page("/commitments", self.commitments),
            page("/audit", self.audit_page),
        ]
