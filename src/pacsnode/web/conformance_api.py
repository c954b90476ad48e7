"""``GET /api/conformance``: the node's DICOM Conformance Statement, made from its running
configuration and remote AE table at each request, as JSON, Markdown or HTML."""

from __future__ import annotations

import dataclasses

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pacsnode.archive.core import Archive
from pacsnode.conformance.build import statement
from pacsnode.conformance.render import FORMATS, MEDIA_TYPES, render
from pacsnode.web.replies import error


class ConformanceApi:
    def __init__(self, archive: Archive) -> None:
        self.archive = archive

    def conformance(self, request: Request) -> Response:
        """The DICOM Conformance Statement of this node, from its running configuration."""
        form = request.query_params.get("format", "json")
        if form not in FORMATS:
            return error(400, f"format must be one of {', '.join(FORMATS)}", "format")
        made = statement(self.archive.settings, self.archive.remotes.all())
        if form == "json":
            return JSONResponse(dataclasses.asdict(made))
        return Response(render(made, form), media_type=MEDIA_TYPES[form])

    def routes(self) -> list[Route]:
        return [Route("/conformance", self.conformance, methods=["GET"])]
