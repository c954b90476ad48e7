"""File-sets for download in the admin REST API: the File-set Creator over HTTP.

``GET /api/studies/{study}/media`` and ``POST /api/media`` (a selection of studies and
series) answer a ZIP of what ``pacsnode export-media`` would write: a DICOMDIR at the
root and the files it names, in the transfer syntaxes the media profile allows (and,
asked with ``pdi``, IHE PDI's README.TXT and INDEX.HTM). The
file-set is written into the data directory's ``tmp`` (emptied at start-up should the
server stop mid-download), streamed, then removed.

``POST /api/studies/{study}/export`` is the way out for research and teaching: the
study de-identified by default (PS3.15 Basic Application Level Confidentiality
Profile with the options asked for, see :mod:`pacsnode.archive.deidentify`), as such a
ZIP, or sent to a remote AE by a ``store`` job (202) that de-identifies as it sends.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from pacsnode import audit
from pacsnode.archive.core import Archive
from pacsnode.archive.deidentify import Deidentifier, OptionError, Options, pseudonym_key
from pacsnode.archive.remotes import RemoteNotFound
from pacsnode.jobs.workers import Workers
from pacsnode.media.dicomdir import ExportError, ExportReport, NothingSelected, export
from pacsnode.media.zipped import tree, zip_stream
from pacsnode.web.audit_api import actor as audit_actor
from pacsnode.web.replies import error, json_object
from pacsnode.workflows.sending import STORE_JOB, NothingToSend, SendError, SendRequest, plan

EXPORT_TARGETS = ("zip", "remote")

DEFAULT_PROFILE = "STD-GEN-CD"
log = logging.getLogger("pacsnode.http.media")


def _uids(body: dict[str, object], key: str) -> list[str] | None:
    """A list of UIDs from the body; None if it is something else."""
    value = body.get(key, [])
    if isinstance(value, list) and all(isinstance(uid, str) for uid in value):
        return value
    return None


def _warnings(report: ExportReport) -> str | None:
    """What the client should know of a download that is not all as stored."""
    said = []
    if report.converted:
        said.append(f"{len(report.converted)} instances converted to Explicit VR Little Endian")
    if report.skipped:
        said.append(f"{len(report.skipped)} instances left out, see the server log")
    return ", ".join(f'299 pacsnode: "{text}"' for text in said) or None


def _export_request(body: dict[str, object]) -> tuple[bool, Options, str, list[str]]:
    """Whether to de-identify, with which options, where to, which series; ValueError
    names what is wrong."""
    deidentify = body.get("deidentify", True)
    words = body.get("options", [])
    target = body.get("to", "zip")
    series = _uids(body, "series")
    if not isinstance(deidentify, bool):
        raise ValueError('"deidentify" must be true or false')
    if not isinstance(words, list) or not all(isinstance(word, str) for word in words):
        raise ValueError('"options" must be a list of PS3.15 option names')
    if target not in EXPORT_TARGETS:
        raise ValueError(f'"to" must be one of {", ".join(EXPORT_TARGETS)}')
    if series is None:
        raise ValueError('"series" must be a list of Series Instance UIDs')
    try:
        return deidentify, Options.from_words(words), str(target), series
    except OptionError as exc:
        raise ValueError(str(exc)) from exc


class MediaApi:
    def __init__(self, archive: Archive, workers: Workers | None = None) -> None:
        self.archive = archive
        self.workers = workers

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/studies/{study}/media", self.study, methods=["GET"]),
            Route("/media", self.selection, methods=["POST"]),
            Route("/studies/{study}/export", self.export_study, methods=["POST"]),
        ]

    async def export_study(self, request: Request) -> Response:
        """Export a study, de-identified unless asked otherwise: a ZIP of a file-set, or
        sent to a remote AE (202, a job)."""
        body = await json_object(request)
        if isinstance(body, JSONResponse):
            return body
        try:
            deidentify, options, target, series = _export_request(body)
        except ValueError as exc:
            return error(400, str(exc))
        study = request.path_params["study"]
        if target == "remote":
            remote = body.get("remote")
            if not isinstance(remote, str) or not remote:
                return error(400, '"remote" must name the remote AE to send to', "remote")
            send = self._send
            return await run_in_threadpool(send, remote, study, series, deidentify, options)
        key = pseudonym_key(self.archive.settings.data_dir)
        deidentifier = Deidentifier(options, key) if deidentify else None
        profile = body.get("profile", DEFAULT_PROFILE)
        if not isinstance(profile, str):
            return error(400, '"profile" must be a string')
        download = self._download
        return await run_in_threadpool(
            download, request, [study], series, profile, None, False, deidentifier
        )

    def _send(
        self, remote: str, study: str, series: list[str], deidentify: bool, options: Options
    ) -> JSONResponse:
        if self.workers is None:
            return error(503, "this server sends nothing")
        try:
            payload, description = plan(self.archive, SendRequest(remote, study, tuple(series)))
        except (RemoteNotFound, NothingToSend) as exc:
            return error(404, str(exc))
        except SendError as exc:
            return error(400, str(exc), exc.field)
        if deidentify:
            payload["deidentify"] = options.words()
            description += " de-identified"
        pk = self.workers.enqueue(STORE_JOB, payload, description)
        return JSONResponse(
            {"id": pk, "description": description},
            status_code=202,
            headers={"Location": f"/api/jobs/{pk}"},
        )

    def study(self, request: Request) -> Response:
        """Download a study as a ZIP of a file-set with a DICOMDIR."""
        query = request.query_params
        return self._download(
            request,
            [request.path_params["study"]],
            [],
            query.get("profile", DEFAULT_PROFILE),
            query.get("fileset_id"),
            query.get("pdi", "").lower() in ("1", "true", "yes"),
        )

    async def selection(self, request: Request) -> Response:
        """Download studies or series as a ZIP of a file-set with a DICOMDIR."""
        body = await json_object(request)
        if isinstance(body, JSONResponse):
            return body
        studies, series = _uids(body, "studies"), _uids(body, "series")
        if not studies or series is None:
            return error(400, '"studies" must be a list of Study Instance UIDs, "series" too')
        profile, fileset_id = body.get("profile", DEFAULT_PROFILE), body.get("fileset_id")
        if not isinstance(profile, str) or not isinstance(fileset_id, str | None):
            return error(400, '"profile" and "fileset_id" must be strings')
        if not isinstance(pdi := body.get("pdi", False), bool):
            return error(400, '"pdi" must be true or false')
        download = self._download
        return await run_in_threadpool(download, request, studies, series, profile, fileset_id, pdi)

    def _download(
        self,
        request: Request,
        studies: Sequence[str],
        series: Sequence[str],
        profile: str,
        fileset_id: str | None,
        pdi: bool,
        deidentifier: Deidentifier | None = None,
    ) -> Response:
        work = Path(tempfile.mkdtemp(prefix="media-", dir=self.archive.storage.tmp))
        root = work / "fileset"
        try:
            report = export(
                self.archive,
                studies,
                root,
                series=series,
                profile=profile,
                fileset_id=fileset_id,
                pdi=pdi,
                deidentifier=deidentifier,
            )
        except ExportError as exc:
            shutil.rmtree(work, ignore_errors=True)
            return error(404 if isinstance(exc, NothingSelected) else 400, str(exc))
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        for sop, why in report.skipped:
            log.warning("media download left out %s: %s", sop, why)
        if not report.exported:
            shutil.rmtree(work, ignore_errors=True)
            return error(500, "no selected instance could be put on the medium")
        failed = len(report.skipped)
        audit.media_exported(audit_actor(request), str(request.url), report.exported, failed=failed)
        headers = {"Content-Disposition": f'attachment; filename="{report.fileset_id}.zip"'}
        if warning := _warnings(report):
            headers["Warning"] = warning
        return StreamingResponse(
            zip_stream(tree(root)),
            media_type="application/zip",
            headers=headers,
            background=BackgroundTask(shutil.rmtree, work, ignore_errors=True),
        )
