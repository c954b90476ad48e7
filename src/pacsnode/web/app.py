"""The HTTP application: the admin REST API now, DICOMweb and the UI beside it later."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Mount

from pacsnode.archive.core import Archive
from pacsnode.archive.mpps import MppsStore
from pacsnode.archive.worklist import Worklist
from pacsnode.jobs.workers import Workers
from pacsnode.web.api import JobsApi, MppsApi, RejectedApi, WorklistApi


def create_app(archive: Archive, workers: Workers) -> Starlette:
    settings = archive.settings
    worklist = Worklist(archive.database, settings.worklist_hide_finished)
    api = [
        *JobsApi(workers).routes(),
        *MppsApi(MppsStore(archive.database)).routes(),
        *WorklistApi(worklist).routes(),
        *RejectedApi(archive.rejections).routes(),
    ]
    return Starlette(routes=[Mount("/api", routes=api)])
