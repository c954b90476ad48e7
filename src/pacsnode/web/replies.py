"""What every REST resource answers a bad request with, so that clients read one shape:
``{"error": "…", "field": "…"}``, the field naming what to correct when there is one."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse


def error(status: int, message: str, field: str | None = None) -> JSONResponse:
    body = {"error": message} if field is None else {"error": message, "field": field}
    return JSONResponse(body, status_code=status)


async def json_object(request: Request) -> dict[str, Any] | JSONResponse:
    """The request's JSON object body (an empty body is ``{}``), or the 400 to answer."""
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        return error(400, "the body is not JSON")
    if not isinstance(body, dict):
        return error(400, "the body must be a JSON object")
    return body
