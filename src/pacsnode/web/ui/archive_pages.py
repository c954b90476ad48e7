"""The UI's pages of what the archive holds: dashboard, studies, a study, patients, an
instance's attributes, upload; and the study actions (send, delete, export
de-identified).

Reading goes through :class:`~pacsnode.archive.browse.Browser` (the C-FIND matching
engine, as the REST API); deleting through the core's deletion, sending through the
same job as ``POST /api/remote/{ae}/store``; thumbnails, downloads, uploads and the
de-identified export (``POST /api/studies/{uid}/export``, a ZIP or a job) are the
DICOMweb and REST resources themselves, fetched by the browser.
"""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from typing import Any

from pydicom.datadict import keyword_for_tag
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pacsnode.archive.attributes import Level
from pacsnode.archive.browse import Browser, FilterError
from pacsnode.archive.core import Archive
from pacsnode.archive.database import now
from pacsnode.archive.deidentify import Options
from pacsnode.archive.deletion import AmbiguousPatient, NothingToDelete, Target
from pacsnode.archive.matching import QueryError, check_value
from pacsnode.archive.remotes import RemoteNotFound
from pacsnode.audit.journal import Journal, Search
from pacsnode.jobs.workers import Workers
from pacsnode.web.audit_api import actor
from pacsnode.web.dicomweb.common import DicomWebError, located
from pacsnode.web.ui.render import Pages, page
from pacsnode.workflows.sending import STORE_JOB, NothingToSend, SendError, SendRequest, plan

PAGE_SIZE = 25
SORTS = {
    "-StudyDate": "newest first",
    "StudyDate": "oldest first",
    "PatientName": "patient name",
    "PatientID": "patient ID",
    "AccessionNumber": "accession",
    "-NumberOfStudyRelatedInstances": "most instances",
}
TRANSFERS = "110104"
"""DICOM Instances Transferred: one audit entry per association that stored or sent."""


def study_keys(params: dict[str, str]) -> dict[str, str]:
    """The search form as matching keys: names and descriptions match as typed
    anywhere after their start, the dates as a range; a value its attribute cannot
    hold (a date that is none) is refused, naming both."""
    keys: dict[str, str] = {}
    if name := params.get("name", "").strip():
        keys["PatientName"] = name if any(c in name for c in "*?") else f"{name}*"
    if description := params.get("description", "").strip():
        keys["StudyDescription"] = f"*{description}*"
    for field, keyword in (
        ("patient_id", "PatientID"),
        ("birth_date", "PatientBirthDate"),
        ("modality", "ModalitiesInStudy"),
        ("accession", "AccessionNumber"),
    ):
        if value := params.get(field, "").strip():
            keys[keyword] = value.replace("-", "") if field == "birth_date" else value
    since = params.get("from", "").replace("-", "").strip()
    until = params.get("to", "").replace("-", "").strip()
    if since or until:
        keys["StudyDate"] = f"{since}-{until}"
    for keyword, value in keys.items():
        try:
            check_value(keyword, value)
        except QueryError as exc:
            raise FilterError(str(exc), keyword) from None
    return keys


def tag_tree(document: dict[str, Any]) -> list[dict[str, Any]]:
    """A DICOM JSON data set as nodes for the tag tree: tag, keyword, VR, a value in
    words, and the items of a sequence as their own trees."""
    nodes = []
    for tag, element in sorted(document.items()):
        vr = element.get("vr", "")
        node: dict[str, Any] = {
            "tag": f"({tag[:4]},{tag[4:]})",
            "keyword": keyword_for_tag(int(tag, 16)) or "",
            "vr": vr,
            "items": [],
            "value": "",
        }
        if vr == "SQ":
            node["items"] = [tag_tree(item) for item in element.get("Value", [])]
        elif "BulkDataURI" in element or "InlineBinary" in element:
            node["value"] = "(binary data)"
        else:
            node["value"] = "\\".join(_word(value) for value in element.get("Value", []))
        nodes.append(node)
    return nodes


def _word(value: Any) -> str:
    if isinstance(value, dict):  # a person name's groups
        return "=".join(
            str(value[group])
            for group in ("Alphabetic", "Ideographic", "Phonetic")
            if group in value
        )
    return str(value)


class ArchivePages:
    def __init__(self, archive: Archive, workers: Workers, pages: Pages) -> None:
        self.archive = archive
        self.workers = workers
        self.pages = pages
        self.browser = Browser(archive.database, archive.settings.case_insensitive_matching)
        self.journal = Journal(archive.settings.data_dir / "audit")

    def dashboard(self, request: Request) -> Response:
        """Counts, disk, ingest rate and the latest associations."""
        name = "_dashboard.html" if request.headers.get("hx-request") else "dashboard.html"
        return self.pages.render(request, name, **self._dashboard())

    def _dashboard(self) -> dict[str, Any]:
        disk = shutil.disk_usage(self.archive.storage.root)
        moment = now()
        return {
            "stats": self.archive.index.stats(),
            "disk": disk,
            "last_minute": self.archive.index.received_since(moment - timedelta(minutes=1)),
            "last_hour": self.archive.index.received_since(moment - timedelta(hours=1)),
            "transfers": self.journal.search(Search(event=TRANSFERS, limit=10)),
        }

    def studies(self, request: Request) -> Response:
        """Search studies; htmx asks for the result table alone."""
        params = dict(request.query_params)
        order = params.get("sort") or "-StudyDate"
        number = max(1, int(params["page"])) if params.get("page", "").isdigit() else 1
        try:
            found = self.browser.page(
                Level.STUDY, study_keys(params), PAGE_SIZE, (number - 1) * PAGE_SIZE, order
            )
            problem = ""
        except FilterError as exc:
            found, problem = None, str(exc)
        name = "_studies.html" if request.headers.get("hx-target") == "results" else "studies.html"
        return self.pages.render(
            request,
            name,
            status=400 if problem else 200,
            params=params,
            found=found,
            problem=problem,
            number=number,
            pages=max(1, -(-found.total // PAGE_SIZE)) if found else 1,
            order=order,
            sorts=SORTS,
        )

    def study(self, request: Request) -> Response:
        """A study: its patient, series with thumbnails and counts, and its actions."""
        uid = request.path_params["uid"]
        found = self.browser.entity(Level.STUDY, uid)
        if not found:
            return self.pages.render(request, "missing.html", 404, what=f"study {uid}")
        series = self.browser.page(
            Level.SERIES, {"StudyInstanceUID": uid}, 1000, 0, "SeriesNumber"
        ).items
        remotes = [
            remote.ae_title
            for remote in self.archive.remotes.all()
            if remote.offers_service("store") and not remote.move_destination_only
        ]
        return self.pages.render(
            request,
            "study.html",
            study=found[0],
            series=series,
            remotes=remotes,
            deidentify_options=Options.choices(),
        )

    def instances(self, request: Request) -> Response:
        """A series' instances, asked for when the series is opened."""
        keys = {"SeriesInstanceUID": request.path_params["series"]}
        items = self.browser.page(Level.IMAGE, keys, 1000, 0, "InstanceNumber").items
        return self.pages.render(request, "_instances.html", instances=items)

    def tags(self, request: Request) -> Response:
        """An instance's attributes as a tree, from the metadata the index keeps."""
        params = request.path_params
        try:
            found = located(self.archive, params["uid"], params["series"], params["sop"])
        except DicomWebError:
            return self.pages.render(request, "missing.html", 404, what="instance")
        document = json.loads(self.archive.metadata.documents(found)[0])
        return self.pages.render(request, "_tags.html", nodes=tag_tree(document))

    async def send(self, request: Request) -> Response:
        """Queue a send of the study to a remote AE (the REST API's store job)."""
        form = await request.form()
        remote, study = str(form.get("remote", "")), request.path_params["uid"]
        try:
            wanted = SendRequest.from_json(remote, {"study": study})
            payload, description = await run_in_threadpool(plan, self.archive, wanted)
        except (RemoteNotFound, NothingToSend) as exc:
            return self.pages.message(request, str(exc), 404)
        except SendError as exc:
            return self.pages.message(request, str(exc), 400)
        pk = await run_in_threadpool(self.workers.enqueue, STORE_JOB, payload, description)
        return self.pages.message(request, f"job {pk} queued: {description}", job=pk)

    def delete(self, request: Request) -> Response:
        """Delete the study softly (hidden, restorable)."""
        return self._delete(request, hard=False)

    def delete_hard(self, request: Request) -> Response:
        """Delete the study with its rows and files."""
        return self._delete(request, hard=True)

    def _delete(self, request: Request, hard: bool) -> Response:
        uid = request.path_params["uid"]
        try:
            deleted = self.archive.deletion.delete(Target("study", uid), hard, actor(request))
        except NothingToDelete as exc:
            return self.pages.message(request, str(exc), 404)
        except AmbiguousPatient as exc:
            return self.pages.message(request, str(exc), 409)
        kind = "rows and files" if hard else "soft, restorable"
        text = f"study {uid} deleted ({kind}): {deleted.instances} instances"
        response = self.pages.message(request, text)
        response.headers["HX-Redirect"] = "/studies?deleted=" + uid
        return response

    def patients(self, request: Request) -> Response:
        """Search patients by name, ID or birth date."""
        params = dict(request.query_params)
        number = max(1, int(params["page"])) if params.get("page", "").isdigit() else 1
        try:
            keys = study_keys({k: params.get(k, "") for k in ("name", "patient_id", "birth_date")})
            found = self.browser.page(
                Level.PATIENT, keys, PAGE_SIZE, (number - 1) * PAGE_SIZE, "PatientName"
            )
        except FilterError as exc:
            return self.pages.render(
                request, "patients.html", 400, params=params, found=None, problem=str(exc)
            )
        pages = max(1, -(-found.total // PAGE_SIZE))
        return self.pages.render(
            request, "patients.html", params=params, found=found, number=number, pages=pages
        )

    def upload(self, request: Request) -> Response:
        """Drop files or a folder: the browser sends each to STOW-RS."""
        return self.pages.render(request, "upload.html")

    def routes(self) -> list[Route]:
        post = ["POST"]
        return [
            page("/", self.dashboard),
            page("/studies", self.studies),
            page("/studies/{uid}", self.study),
            page("/studies/{uid}/series/{series}/instances", self.instances),
            page("/studies/{uid}/series/{series}/instances/{sop}/tags", self.tags),
            page("/studies/{uid}/send", self.send, methods=post),
            page("/studies/{uid}/delete", self.delete, methods=post),
            page("/studies/{uid}/delete/hard", self.delete_hard, methods=post),
            page("/patients", self.patients),
            page("/upload", self.upload),
        ]
