"""The data lifecycle in the admin REST API: undelete and retention.

``POST /api/{patients|studies|series|instances}/{id}/restore`` shows again what a soft
deletion hid (operator), through the same core call as ``pacsnode restore``; ``POST
/api/retention/run`` queues a run of the retention rules now (admin), whose job reports
what it removed.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pacsnode.archive.core import Archive
from pacsnode.archive.deletion import AmbiguousPatient, NothingToRestore, Target
from pacsnode.archive.retention import enabled
from pacsnode.web.audit_api import actor as audit_actor
from pacsnode.web.browse_api import DELETION_WORDS
from pacsnode.web.replies import error
from pacsnode.workflows.retention import RetentionJobs


class LifecycleApi:
    def __init__(self, archive: Archive, retention: RetentionJobs | None) -> None:
        self.archive = archive
        self.retention = retention

    def _restore(self, request: Request, resource: str) -> JSONResponse:
        level = DELETION_WORDS[resource]
        issuer = request.query_params.get("issuer") if level == "patient" else None
        target = Target(level, request.path_params["id"], issuer)
        try:
            restored = self.archive.deletion.restore(target, audit_actor(request))
        except NothingToRestore as exc:
            return error(404, str(exc))
        except AmbiguousPatient as exc:
            return error(409, str(exc), "issuer")
        return JSONResponse(restored.as_json())

    def restore_patient(self, request: Request) -> JSONResponse:
        """Undelete what a soft deletion hid of a patient."""
        return self._restore(request, "patients")

    def restore_study(self, request: Request) -> JSONResponse:
        """Undelete a softly deleted study (or what was deleted of it)."""
        return self._restore(request, "studies")

    def restore_series(self, request: Request) -> JSONResponse:
        """Undelete a softly deleted series (or what was deleted of it)."""
        return self._restore(request, "series")

    def restore_instance(self, request: Request) -> JSONResponse:
        """Undelete a softly deleted instance."""
        return self._restore(request, "instances")

    def run_retention(self, _request: Request) -> JSONResponse:
        """Queue a run of the retention rules now (202; the job's result lists what went)."""
        if self.retention is None or not enabled(self.archive.settings):
            return error(409, "no retention rule is on (retention_days, retention_disk_percent)")
        pk = self.retention.request("asked over REST")
        if pk is None:
            return error(409, "a retention run is already waiting")
        description = "retention (asked over REST)"
        return JSONResponse(
            {"id": pk, "description": description},
            status_code=202,
            headers={"Location": f"/api/jobs/{pk}"},
        )

    def routes(self) -> list[Route]:
        post = ["POST"]
        return [
            Route("/patients/{id}/restore", self.restore_patient, methods=post),
            Route("/studies/{id}/restore", self.restore_study, methods=post),
            Route("/series/{id}/restore", self.restore_series, methods=post),
            Route("/instances/{id}/restore", self.restore_instance, methods=post),
            Route("/retention/run", self.run_retention, methods=post),
        ]
