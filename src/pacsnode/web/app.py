"""The HTTP application: DICOMweb under ``/dicom-web``, WADO-URI at ``/wado``, the admin
REST API under ``/api``, the OHIF viewer at ``/viewer`` and the web UI at ``/``, all
thin doors onto the same archive core."""

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
from pacsnode.web.conformance_api import ConformanceApi
from pacsnode.web.dicomweb.common import DicomWebError, error_response
from pacsnode.web.dicomweb.qido import Qido
from pacsnode.web.dicomweb.rendered import Rendered
from pacsnode.web.dicomweb.stow import Stow
from pacsnode.web.dicomweb.wado import Wado
from pacsnode.web.lifecycle_api import LifecycleApi
from pacsnode.web.media_api import MediaApi
from pacsnode.web.openapi import docs_routes
from pacsnode.web.patients_api import PatientsApi
from pacsnode.web.print_api import PrintApi
from pacsnode.web.remotes_api import RemotesApi
from pacsnode.web.replies import error
from pacsnode.web.routes_api import RoutesApi
from pacsnode.web.system_api import SystemApi
from pacsnode.web.ui import ui_routes
from pacsnode.web.ui.sessions import CsrfMiddleware, SessionBackend, Sessions
from pacsnode.web.users_api import UsersApi
from pacsnode.web.viewer import Viewer
from pacsnode.web.wado_uri import WadoUri
from pacsnode.workflows.prefetch import on_scheduled
from pacsnode.workflows.retention import RetentionJobs
from pacsnode.workflows.routing import Router

log = logging.getLogger("pacsnode.http")


def _as_remote_ae(archive: Archive) -> list[BaseRoute]:
    """QIDO-RS and WADO-RS as a remote AE sees the archive by DIMSE (``visible``,
    ``show_deleted``), under ``/dicom-web/aets/{ae_title}``."""
    return [*Qido(archive).routes(), *Wado(archive).routes()]


def _dicomweb(archive: Archive) -> list[BaseRoute]:
    return [
        *Qido(archive).routes(),
        *Wado(archive).routes(),
        *Stow(archive).routes(),
        *Rendered(archive).routes(),
    ]


def _api(
    archive: Archive,
    workers: Workers,
    router: Router | None,
    users: Users,
    retention: RetentionJobs | None,
    worklist: Worklist,
) -> list[BaseRoute]:
    settings = archive.settings
    return [
        *BrowseApi(archive).routes(),
        *PatientsApi(archive).routes(),
        *LifecycleApi(archive, retention).routes(),
        *SystemApi(archive).routes(),
        *ConformanceApi(archive).routes(),
        *ClusterApi(archive).routes(),
        *JobsApi(workers).routes(),
        *MppsApi(MppsStore(archive.database)).routes(),
        *WorklistApi(worklist).routes(),
        *RejectedApi(archive.rejections).routes(),
        *RemotesApi(archive, workers).routes(),
        *MediaApi(archive, workers).routes(),
        *PrintApi(archive, workers).routes(),
        *(RoutesApi(router).routes() if router is not None else []),
        *UsersApi(users).routes(),
        *AuditApi(settings.data_dir).routes(),
    ]


def _middleware(settings: Settings, users: Users, sessions: Sessions) -> list[Middleware]:
    """CORS comes first, so that a browser's preflight is answered without credentials;
    the UI's session cookies are checked before the door's own credentials, and the
    CSRF token once the caller is known."""
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
    guard = authentication(settings, users, lambda inner: SessionBackend(inner, sessions, users))
    return [*access, *middleware, *guard, Middleware(CsrfMiddleware, sessions=sessions)]


def create_app(
    archive: Archive,
    workers: Workers,
    router: Router | None = None,
    retention: RetentionJobs | None = None,
) -> Starlette:
    settings = archive.settings
    users = Users(archive.database, settings.http_users)
    sessions = Sessions(settings.data_dir, secure=settings.http_tls)
    prefetch = on_scheduled(workers.queue, settings)
    worklist = Worklist(
        archive.database, settings.worklist_hide_finished, prefetch, archive.issuers
    )
    routes: list[BaseRoute] = [
        Mount("/dicom-web/aets/{ae_title}", routes=_as_remote_ae(archive)),
        Mount("/dicom-web", routes=_dicomweb(archive)),
        Mount("/api", routes=_api(archive, workers, router, users, retention, worklist)),
        *WadoUri(archive).routes(),
    ]
    routes += docs_routes(routes, settings)
    routes += Viewer(settings.data_dir).routes()
    routes += ui_routes(archive, workers, router, users, sessions, worklist)
    return Starlette(
        routes=routes,
        middleware=_middleware(settings, users, sessions),
        exception_handlers={DicomWebError: error_response, DBAPIError: _index_unavailable},
    )


def _index_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    log.error("index unavailable: %s", exc)
    return error(503, "index unavailable")
