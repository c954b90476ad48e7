"""The HTTP access log (``http_access_log = true``): one line per request on the logger
``pacsnode.http.access``, written when the answer is complete:

``127.0.0.1 alice "GET /api/studies?limit=10" 200 1234 B 12 ms``

Outermost of the middleware, so that it times everything and sees the answer of every
layer (a 401 or 403 too); the user is whom authentication found, ``-`` for none.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("pacsnode.http.access")


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        answer = {"status": 500, "size": 0}

        async def counting(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
            elif message["type"] == "http.response.body":
                answer["size"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, counting)
        finally:
            log.info(
                '%s %s "%s %s" %d %d B %.0f ms',
                scope["client"][0] if scope.get("client") else "-",
                _user(scope),
                scope["method"],
                _target(scope),
                answer["status"],
                answer["size"],
                (time.monotonic() - started) * 1000,
            )


def _user(scope: Scope) -> str:
    user = scope.get("user")
    return str(user.display_name) if user is not None and user.is_authenticated else "-"


def _target(scope: Scope) -> str:
    query = scope.get("query_string", b"").decode("latin-1")
    return scope["path"] + (f"?{query}" if query else "")
