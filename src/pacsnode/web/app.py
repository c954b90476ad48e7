"""The HTTP application: the admin REST API now, DICOMweb and the UI beside it later."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Mount

from pacsnode.jobs.workers import Workers
from pacsnode.web.api import JobsApi


def create_app(workers: Workers) -> Starlette:
    return Starlette(routes=[Mount("/api", routes=JobsApi(workers).routes())])
