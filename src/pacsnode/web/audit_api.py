"""``GET /api/audit``: search the local audit log; and who an HTTP request comes from.

Query parameters: ``event`` (name, code or type: ``Query``, ``110112``, ``Login``),
``user``, ``patient`` (Patient ID), ``study`` (Study Instance UID), ``since`` and
``until`` (ISO 8601; without a zone, UTC), ``limit`` (default 100, at most 1000).
Answers are newest first, each with its XML message.
"""

from __future__ import annotations

from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pacsnode import audit
from pacsnode.audit.journal import Journal, Search


def actor(request: HTTPConnection) -> audit.Actor:
    """The requesting participant: the authenticated user, else ``anonymous``."""
    user = request.scope.get("user")
    name = user.display_name if user is not None and user.is_authenticated else "anonymous"
    address = request.client.host if request.client else ""
    return audit.Actor(name, address, requestor=True)


class AuditApi:
    def __init__(self, data_dir: Path) -> None:
        self.journal = Journal(data_dir / "audit")

    async def search(self, request: Request) -> JSONResponse:
        """Search the local audit log."""
        try:
            search = Search.from_params(dict(request.query_params))
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        found = await run_in_threadpool(self.journal.search, search)
        return JSONResponse(found)

    def routes(self) -> list[Route]:
        return [Route("/audit", self.search)]
