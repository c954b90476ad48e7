"""An OpenAPI 3.1 description of the HTTP door, made from the routes themselves.

Each operation's summary is the first line of its endpoint's docstring, so the
description cannot drift from what the server serves.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount, Route

from pacsnode import __version__

_PARAMETER = re.compile(r"{(\w+)(?::\w+)?}")
_QIDO_PARAMETERS = [
    {"name": name, "in": "query", "required": False, "schema": schema, "description": text}
    for name, schema, text in (
        ("includefield", {"type": "string"}, "Attributes to return besides the defaults, or all"),
        ("limit", {"type": "integer", "minimum": 0}, "At most this many results"),
        ("offset", {"type": "integer", "minimum": 0}, "Skip this many results"),
        ("fuzzymatching", {"type": "boolean"}, "Accepted; only literal matching is done"),
    )
]


def _walk(routes: Sequence[BaseRoute], prefix: str = "") -> Iterator[tuple[str, Route]]:
    for route in routes:
        if isinstance(route, Mount):
            yield from _walk(route.routes, prefix + route.path)
        elif isinstance(route, Route):
            yield prefix + route.path, route


def _operation(path: str, route: Route) -> dict[str, Any]:
    doc = (route.endpoint.__doc__ or route.name).strip().splitlines()[0]
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PARAMETER.findall(path)
    ]
    if doc.startswith("Search for"):
        parameters += _QIDO_PARAMETERS
    return {"summary": doc, "parameters": parameters, "responses": {"200": {"description": "OK"}}}


def describe(routes: Sequence[BaseRoute]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for path, route in _walk(routes):
        clean = _PARAMETER.sub(r"{\1}", path)
        for method in sorted((route.methods or set()) - {"HEAD"}):
            paths.setdefault(clean, {})[method.lower()] = _operation(path, route)
    return {
        "openapi": "3.1.0",
        "info": {"title": "pacsnode", "version": __version__},
        "paths": paths,
    }


def openapi_route(routes: Sequence[BaseRoute]) -> Route:
    def openapi(request: Request) -> JSONResponse:
        """This description."""
        return JSONResponse(describe(routes))

    return Route("/openapi.json", openapi, methods=["GET"])
