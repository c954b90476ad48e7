"""The OpenAPI 3.1 description of the HTTP door, and Swagger UI at ``/docs/`` to read
and try it.

Paths, methods and path parameters come from the routes themselves, each summary from
the first line of its endpoint's docstring, and what each operation takes and answers
from :data:`pacsnode.web.schemas.OPERATIONS`; a route missing there is an error, which
the tests catch. Swagger UI's files are shipped in the package (``web/static``), so the
page works on a machine without internet access.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from pacsnode import __version__
from pacsnode.config import Settings
from pacsnode.web.schemas import COMPONENTS, OPERATIONS, Operation, ref

_PARAMETER = re.compile(r"{(\w+)(?::(\w+))?}")
STATIC = Path(__file__).with_name("static")
PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>pacsnode API</title>
<link rel="stylesheet" href="swagger-ui/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="swagger-ui/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({url: "../openapi.json", dom_id: "#swagger-ui", deepLinking: true});
</script>
</body>
</html>
"""


def _walk(routes: Sequence[BaseRoute], prefix: str = "") -> Iterator[tuple[str, Route]]:
    for route in routes:
        if isinstance(route, Mount):
            yield from _walk(route.routes, prefix + route.path)
        elif isinstance(route, Route) and route.include_in_schema:
            yield prefix + route.path, route


def _operation(method: str, path: str, route: Route, described: Operation) -> dict[str, Any]:
    doc = (route.endpoint.__doc__ or "").strip()
    if not doc:
        raise LookupError(f"{method} {path}: the endpoint has no docstring")
    parameters: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": {"type": "integer" if kind == "int" else "string"},
        }
        for name, kind in _PARAMETER.findall(path)
    ]
    operation: dict[str, Any] = {
        "summary": doc.splitlines()[0],
        "tags": [described.tag],
        "parameters": parameters + list(described.query),
        "responses": _responses(described),
    }
    if described.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {media: {"schema": described.body} for media in described.body_types},
        }
    return operation


def _responses(described: Operation) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, (schema, types) in described.responses.items():
        answer: dict[str, Any] = {"description": "No content" if schema is None else "OK"}
        if schema is not None:
            answer["content"] = {media: {"schema": schema} for media in types}
        responses[status] = answer
    error = ref("Error") if described.errors == ("application/json",) else {"type": "string"}
    for status, text in (("4XX", "A bad request, or not allowed"), ("5XX", "The server failed")):
        responses[status] = {
            "description": text,
            "content": {media: {"schema": error} for media in described.errors},
        }
    return responses


def _security(settings: Settings) -> tuple[dict[str, Any], list[dict[str, list[str]]]]:
    """The schemes the HTTP door checks: API tokens and passwords or OAuth2 tokens."""
    if settings.http_auth == "none":
        return {}, []
    schemes: dict[str, Any] = {"bearer": {"type": "http", "scheme": "bearer"}}
    if settings.http_auth == "basic":
        schemes["basic"] = {"type": "http", "scheme": "basic"}
    return schemes, [{name: []} for name in schemes]


def describe(routes: Sequence[BaseRoute], settings: Settings) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for path, route in _walk(routes):
        clean = _PARAMETER.sub(r"{\1}", path).replace("{tag_path:path}", "{tag_path}")
        for method in sorted((route.methods or set()) - {"HEAD"}):
            described = OPERATIONS.get((method, clean))
            if described is None:
                raise LookupError(f"{method} {clean} is not described in web/schemas.py")
            paths.setdefault(clean, {})[method.lower()] = _operation(method, path, route, described)
    schemes, security = _security(settings)
    components: dict[str, Any] = {"schemas": COMPONENTS}
    if schemes:
        components["securitySchemes"] = schemes
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "pacsnode",
            "version": __version__,
            "description": "DICOMweb, WADO-URI and the REST API of a pacsnode archive.",
        },
        "paths": paths,
        "components": components,
        "security": security,
    }


def docs_routes(routes: Sequence[BaseRoute], settings: Settings) -> list[BaseRoute]:
    """``/openapi.json``, and Swagger UI at ``/docs/`` with its files."""

    def openapi(request: Request) -> JSONResponse:
        """The OpenAPI description of this server."""
        return JSONResponse(described)

    def page(request: Request) -> HTMLResponse:
        """Swagger UI: read and try the API in a browser."""
        return HTMLResponse(PAGE)

    def to_page(request: Request) -> RedirectResponse:
        """To the page, whose files are found relative to it."""
        return RedirectResponse("/docs/")

    served: list[BaseRoute] = [
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/docs/", page, methods=["GET"]),
        Route("/docs", to_page, methods=["GET"], include_in_schema=False),
        Mount("/docs/swagger-ui", StaticFiles(directory=STATIC / "swagger-ui")),
    ]
    described = describe([*routes, *served], settings)
    return served
