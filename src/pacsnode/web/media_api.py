"""File-sets for download in the admin REST API: the File-set Creator over HTTP.

``GET /api/studies/{study}/media`` and ``POST /api/media`` (a selection of studies and
series) answer a ZIP of what ``pacsnode export-media`` would write: a DICOMDIR at the
root and the files it names, in the transfer syntaxes the media profile allows (and,
asked with ``pdi``, IHE PDI's README.TXT and INDEX.HTM). The
file-set is written into the data directory's ``tmp`` (emptied at start-up should the
server stop mid-download), streamed, then removed.
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
from pacsnode.media.dicomdir import ExportError, ExportReport, NothingSelected, export
from pacsnode.media.zipped import tree, zip_stream
from pacsnode.web.audit_api import actor as audit_actor
from pacsnode.web.replies import error, json_object

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


class MediaApi:
    def __init__(self, archive: Archive) -> None:
        self.archive = archive

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/studies/{study}/media", self.study, methods=["GET"]),
            Route("/media", self.selection, methods=["POST"]),
        ]

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
