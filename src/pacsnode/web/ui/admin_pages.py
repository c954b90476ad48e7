"""The UI's pages of the node's work: remote AEs (add, edit, echo, query, retrieve),
jobs (live status, retry, cancel), the audit log and the conformance statement.

Each action calls what its REST route calls: the remote AE table, the SCU functions,
the job queue, the audit journal; and answers with the REST route's status.
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
from pacsnode.archive.remotes import RemoteError, RemoteNotFound, remote_from_json
from pacsnode.audit.journal import Journal, Search
from pacsnode.conformance.build import statement
from pacsnode.conformance.render import html_fragment
from pacsnode.dimse import query_scu, scu
from pacsnode.jobs.queue import JobError, JobStatus
from pacsnode.jobs.workers import Workers
from pacsnode.web.audit_api import actor
from pacsnode.web.keyword_json import keyword_json
from pacsnode.web.ui.render import Pages, page
from pacsnode.workflows.retrieve import RETRIEVE_JOB, RetrieveError, RetrieveRequest
from pacsnode.workflows.retrieve import plan as plan_retrieve

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
    def __init__(self, archive: Archive, workers: Workers, pages: Pages) -> None:
        self.settings = archive.settings
        self.remotes = archive.remotes
        self.workers = workers
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
            return self.pages.message(request, str(exc), 400)
        what = "added" if created else "changed"
        audit.configuration_change(
            actor(request), f"remote AE {remote.ae_title} {what}", kind="network"
        )
        return self.pages.message(request, f"remote AE {remote.ae_title} {what}", refresh=True)

    def delete_remote(self, request: Request) -> Response:
        """Delete a run-time entry."""
        title = request.path_params["ae"]
        try:
            self.remotes.delete(title)
        except RemoteNotFound as exc:
            return self.pages.message(request, str(exc), 404)
        except RemoteError as exc:
            return self.pages.message(request, str(exc), 409)
        audit.configuration_change(actor(request), f"remote AE {title} deleted", kind="network")
        return self.pages.message(request, f"remote AE {title} deleted", refresh=True)

    def echo(self, request: Request) -> Response:
        """C-ECHO the remote now."""
        title = request.path_params["ae"]
        remote = self.remotes.get(title)
        if remote is None:
            return self.pages.message(request, f"no remote AE {title!r}", 404)
        started = time.monotonic()
        try:
            status = scu.echo(self.dialer.peer(remote))
        except scu.AssociationFailed as exc:
            return self.pages.message(request, f"{title}: {exc}", 502)
        took = round((time.monotonic() - started) * 1000)
        ok = status == 0
        text = f"{title}: echo {'succeeded' if ok else 'failed'}, status 0x{status:04X}, {took} ms"
        return self.pages.message(request, text, 200 if ok else 502)

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
        if remote is None:
            return self.pages.message(request, f"no remote AE {title!r}", 404)
        if not remote.offers_service("find"):
            return self.pages.message(request, f"{title} does not offer find", 409)
        try:
            found = await run_in_threadpool(self._find, remote, keys)
        except ValueError as exc:
            return self.pages.message(request, f"{title}: {exc}", 400)
        except (scu.AssociationFailed, query_scu.QueryFailed) as exc:
            return self.pages.message(request, f"{title}: {exc}", 502)
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
        except RemoteNotFound as exc:
            return self.pages.message(request, str(exc), 404)
        except RetrieveError as exc:
            return self.pages.message(request, str(exc), 400)
        pk = await run_in_threadpool(self.workers.enqueue, RETRIEVE_JOB, payload, description)
        return self.pages.message(request, f"job {pk} queued: {description}", job=pk)

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
            missing = str(exc).startswith("no job")
            return self.pages.message(request, str(exc), 404 if missing else 409)
        self.workers.wake()
        return self.pages.message(request, f"job {pk} {done}", job=pk)

    def audit_page(self, request: Request) -> Response:
        """Search the local audit log."""
        params = {k: v for k, v in request.query_params.items() if v}
        try:
            found = self.journal.search(Search.from_params(params))
            problem = ""
        except ValueError as exc:
            found, problem = [], str(exc)
        return self.pages.render(
            request,
            "audit.html",
            400 if problem else 200,
            params=params,
            entries=found,
            problem=problem,
        )

    def conformance_page(self, request: Request) -> Response:
        """The DICOM Conformance Statement of the running node (as ``GET
        /api/conformance`` makes it), with links to its Markdown and JSON."""
        made = statement(self.settings, self.remotes.all())
        return self.pages.render(request, "conformance.html", statement=html_fragment(made))

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
            page("/jobs", self.jobs_page),
            page("/jobs/{id:int}/retry", self.retry, methods=post),
            page("/jobs/{id:int}/cancel", self.cancel, methods=post),
            page("/audit", self.audit_page),
            page("/conformance", self.conformance_page),
        ]
