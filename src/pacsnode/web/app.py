"""The HTTP application: DICOMweb under ``/dicom-web``, WADO-URI at ``/wado``, the admin
REST API under ``/api``, all thin doors onto the same archive core."""

from __future__ import annotations

import logging

from sqlalchemy.exc import DBAPIError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount

from pacsnode.archive.core import Archive
from pacsnode.archive.mpps import MppsStore
from pacsnode.archive.users import Users
from pacsnode.archive.worklist import Worklist
from pacsnode.config import Settings
from pacsnode.jobs.workers import Workers
from pacsnode.web.access_log import AccessLog
from pacsnode.web.api import JobsApi, MppsApi, RejectedApi, WorklistApi
from pacsnode.web.audit_api import AuditApi
from pacsnode.web.auth import authentication
from pacsnode.web.browse_api import BrowseApi
from pacsnode.web.cluster_api import ClusterApi
from pacsnode.web.dicomweb.common import DicomWebError, error_response
from pacsnode.web.dicomweb.qido import Qido
from pacsnode.web.dicomweb.rendered import Rendered
from pacsnode.web.dicomweb.stow import Stow
from pacsnode.web.dicomweb.wado import Wado
from pacsnode.web.media_api import MediaApi
from pacsnode.web.openapi import docs_routes
from pacsnode.web.print_api import PrintApi
from pacsnode.web.remotes_api import RemotesApi
from pacsnode.web.replies import error
from pacsnode.web.routes_api import RoutesApi
from pacsnode.web.system_api import SystemApi
from pacsnode.web.users_api import UsersApi
from pacsnode.web.wado_uri import WadoUri
from pacsnode.workflows.prefetch import on_scheduled
from pacsnode.workflows.routing import Router

log = logging.getLogger("pacsnode.http")


def _dicomweb(archive: Archive) -> list[BaseRoute]:
    return [
        *Qido(archive).routes(),
        *Wado(archive).routes(),
        *Stow(archive).routes(),
        *Rendered(archive).routes(),
    ]


def _api(
    archive: Archive, workers: Workers, router: Router | None, users: Users
) -> list[BaseRoute]:
    settings = archive.settings
    prefetch = on_scheduled(workers.queue, settings)
    worklist = Worklist(archive.database, settings.worklist_hide_finished, prefetch)
    return [
        *BrowseApi(archive).routes(),
        *SystemApi(archive).routes(),
        *ClusterApi(archive).routes(),
        *JobsApi(workers).routes(),
        *MppsApi(MppsStore(archive.database)).routes(),
        *WorklistApi(worklist).routes(),
        *RejectedApi(archive.rejections).routes(),
        *RemotesApi(archive, workers).routes(),
        *MediaApi(archive).routes(),
        *PrintApi(archive, workers).routes(),
        *(RoutesApi(router).routes() if router is not None else []),
        *UsersApi(users).routes(),
        *AuditApi(settings.data_dir).routes(),
    ]


def _middleware(settings: Settings, users: Users) -> list[Middleware]:
    """CORS comes first, so that a browser's preflight is answered without credentials."""
    middleware = []
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
                allow_headers=["*"],
                expose_headers=["Warning", "Content-Type", "Content-Location"],
            )
        )
    access = [Middleware(AccessLog)] if settings.http_access_log else []
    return [*access, *middleware, *authentication(settings, users)]


def create_app(archive: Archive, workers: Workers, router: Router | None = None) -> Starlette:
    users = Users(archive.database, archive.settings.http_users)
    routes: list[BaseRoute] = [
        Mount("/dicom-web", routes=_dicomweb(archive)),
        Mount("/api", routes=_api(archive, workers, router, users)),
        *WadoUri(archive).routes(),
    ]
    routes += docs_routes(routes, archive.settings)
    return Starlette(
        routes=routes,
        middleware=_middleware(archive.settings, users),
        exception_handlers={DicomWebError: error_response, DBAPIError: _index_unavailable},
    )


def _index_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    log.error("index unavailable: %s", exc)
    return error(503, "index unavailable")
