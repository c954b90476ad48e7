"""Browser sessions for the web UI: a signed cookie after a login form, and the CSRF
token every change must carry.

The cookie (HttpOnly, SameSite=Strict, Secure over HTTPS) holds the user's name, a
CSRF token and when it was issued, signed with HMAC-SHA256 by a key kept in the data
directory, so that every worker process of a node accepts it and a restart logs no
one out. The user's role is read afresh on every request: a user disabled or demoted
by an admin loses their rights at once. Without ``http_auth`` the cookie carries only
the CSRF token.

:class:`SessionBackend` sits in front of the door's authentication backend: a request
with a valid session cookie and no Authorization header is that user's; a page asked
for without either is sent to the login form; anything else is for the backend.
:class:`CsrfMiddleware` refuses a change (any method but GET, HEAD, OPTIONS) made by a
session, or sent to a UI page, whose ``X-CSRF-Token`` header is not the session's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from starlette.authentication import AuthCredentials, AuthenticationBackend, BaseUser
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from pacsnode.archive.users import UserNotFound, Users
from pacsnode.web.auth import Refused
from pacsnode.web.roles import Caller

COOKIE = "pacsnode_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
LIFETIME = 12 * 3600
"""Seconds a login lasts."""
KEY_FILE = "session.key"
SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
DOORS = ("/api/", "/dicom-web", "/wado", "/openapi.json", "/docs")
"""Paths of the machine doors; every other path is the UI's (or the viewer's)."""
PUBLIC = ("/login", "/static/ui/")
"""What a browser may fetch before logging in."""


def is_page(path: str) -> bool:
    """A path of the UI or the viewer, not of DICOMweb, WADO-URI or the REST API."""
    return not any(path == door.rstrip("/") or path.startswith(door) for door in DOORS)


@dataclass(frozen=True)
class Session:
    user: str
    """Empty when no one logged in (a door without authentication, the login form)."""
    csrf: str
    issued: float


class Sessions:
    """Issues and reads the signed session cookie."""

    def __init__(self, data_dir: Path, secure: bool) -> None:
        self._key = _key(data_dir / KEY_FILE)
        self.secure = secure

    def issue(self, user: str = "") -> tuple[Session, str]:
        """A new session and its cookie value."""
        session = Session(user, secrets.token_urlsafe(24), time.time())
        body = json.dumps({"u": session.user, "c": session.csrf, "t": session.issued})
        payload = base64.urlsafe_b64encode(body.encode()).decode()
        return session, f"{payload}.{self._sign(payload)}"

    def read(self, conn: HTTPConnection) -> Session | None:
        """The request's session, if its cookie is ours, intact and not expired."""
        payload, _, signature = conn.cookies.get(COOKIE, "").partition(".")
        if not payload or not hmac.compare_digest(self._sign(payload), signature):
            return None
        try:
            values = json.loads(base64.urlsafe_b64decode(payload))
            session = Session(str(values["u"]), str(values["c"]), float(values["t"]))
        except (ValueError, KeyError, TypeError):
            return None
        if session.user and time.time() - session.issued > LIFETIME:
            return None
        return session

    def cookie(self, value: str) -> dict[str, object]:
        """Arguments of ``Response.set_cookie`` for a session cookie."""
        return {
            "key": COOKIE,
            "value": value,
            "httponly": True,
            "samesite": "strict",
            "secure": self.secure,
            "path": "/",
        }

    def _sign(self, payload: str) -> str:
        digest = hmac.new(self._key, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _key(path: Path) -> bytes:
    """The signing key of this data directory, made once (mode 0600) by whichever
    process needs it first."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(secrets.token_bytes(32))
    try:
        os.link(partial, path)  # fails if another process made it meanwhile: use theirs
    except FileExistsError:
        pass
    finally:
        partial.unlink()
    return path.read_bytes()


class SessionBackend(AuthenticationBackend):
    """Session cookies first, then the door's own backend (Basic, OAuth2, tokens)."""

    def __init__(self, inner: AuthenticationBackend, sessions: Sessions, users: Users) -> None:
        self.inner = inner
        self.sessions = sessions
        self.users = users

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        if "authorization" not in conn.headers:
            session = self.sessions.read(conn)
            if session is not None and session.user:
                caller = await run_in_threadpool(self._caller, session.user)
                if caller is not None:
                    return AuthCredentials(["authenticated", "session"]), caller
            path = conn.url.path
            if path.startswith(PUBLIC) or path == "/favicon.ico":
                return None
            if is_page(path) and conn.scope["method"] in SAFE:
                target = path + (f"?{conn.url.query}" if conn.url.query else "")
                location = f"/login?next={quote(target, safe='')}"
                raise Refused(303, "log in first", {"Location": location})
        return await self.inner.authenticate(conn)

    def _caller(self, name: str) -> Caller | None:
        try:
            user = self.users.get(name)
        except UserNotFound:
            return None
        return None if user.disabled else Caller(user.name, user.role)


class CsrfMiddleware:
    """403 for a change without the session's CSRF token in ``X-CSRF-Token``: every
    change made with a session cookie, and every change sent to a UI path (the login
    form checks its own field)."""

    def __init__(self, app: ASGIApp, sessions: Sessions) -> None:
        self.app = app
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE or scope["path"] == "/login":
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        auth = scope.get("auth")
        by_session = auth is not None and "session" in auth.scopes
        if by_session or is_page(scope["path"]):
            session = self.sessions.read(conn)
            given = conn.headers.get(CSRF_HEADER, "")
            if session is None or not hmac.compare_digest(given, session.csrf):
                answer = PlainTextResponse(
                    "missing or wrong CSRF token: reload the page and try again", 403
                )
                await answer(scope, receive, send)
                return
        await self.app(scope, receive, send)
