"""Pages from Jinja2 templates, each told who is looking and what they may do.

Templates ask ``can("POST", "/remotes")`` before showing an action: the answer comes
from the same table (:mod:`pacsnode.web.roles`) that refuses the request, so a button
is shown exactly when pressing it would be allowed.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydicom.uid import UID
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from pacsnode.archive.users import Role, allows
from pacsnode.web.roles import Caller, required_role
from pacsnode.web.ui.sessions import Session, Sessions

TEMPLATES = Path(__file__).parent / "templates"


def caller_of(request: Request) -> Caller | None:
    user = request.scope.get("user")
    return user if isinstance(user, Caller) else None


def role_of(request: Request) -> Role:
    """The caller's role; everything is allowed on a door without authentication."""
    caller = caller_of(request)
    return caller.role if caller is not None else "admin"


def size(value: int | None) -> str:
    """Bytes for people: 1.2 GB."""
    number = float(value or 0)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if number < 1000 or unit == "TB":
            return f"{number:.0f} {unit}" if unit == "B" else f"{number:.1f} {unit}"
        number /= 1000
    return ""


def dicom_date(value: Any) -> str:
    """A DA value as 2026-01-15."""
    text = str(value or "")
    return f"{text[:4]}-{text[4:6]}-{text[6:8]}" if len(text) == 8 and text.isdigit() else text


def person(value: Any) -> str:
    """A PN value as people read it: DOE, JOHN."""
    if isinstance(value, list):
        value = value[0] if value else ""
    family, _, rest = str(value or "").split("=")[0].partition("^")
    given = rest.split("^")[0]
    return f"{family}, {given}" if given else family


def moment(value: Any) -> str:
    """An ISO time as 2026-01-15 10:15:00."""
    if not value:
        return ""
    try:
        return datetime.fromisoformat(str(value)).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return str(value)


def syntax(value: Any) -> str:
    """A transfer syntax UID by its name: RLE Lossless."""
    return UID(str(value)).name if value else ""


def page(path: str, endpoint: Any, methods: list[str] | None = None) -> Route:
    """A route of the UI: for people, so not in the REST API's OpenAPI description."""
    return Route(path, endpoint, methods=methods, include_in_schema=False)


class Pages:
    def __init__(self, sessions: Sessions, auth: str) -> None:
        self.sessions = sessions
        self.auth = auth
        self.environment = Environment(
            loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"])
        )
        self.environment.filters.update(
            size=size, date=dicom_date, person=person, moment=moment, syntax=syntax
        )

    def render(
        self, request: Request, name: str, status: int = 200, **context: Any
    ) -> HTMLResponse:
        """A template with the caller, their role, ``can`` and the CSRF token; a
        browser without a session gets one (it carries the token)."""
        session = self.sessions.read(request)
        cookie = None
        if session is None:
            session, cookie = self.sessions.issue()
        role = role_of(request)
        caller = caller_of(request)
        html = self.environment.get_template(name).render(
            request=request,
            user=caller.username if caller else None,
            role=role,
            login=self.auth != "none",
            csrf=session.csrf,
            can=lambda method, path: allows(role, required_role(method, path)),
            **context,
        )
        response = HTMLResponse(html, status_code=status)
        if cookie is not None:
            response.set_cookie(**self.sessions.cookie(cookie))  # type: ignore[arg-type]
        return response

    def message(
        self,
        request: Request,
        text: str,
        status: int = 200,
        job: int | None = None,
        refresh: bool = False,
    ) -> HTMLResponse:
        """The one-line answer to an action, shown beside the form that asked (which
        keeps what was typed): an error with its status (400, 404, 409, 502) as an
        alert, a success as a status line, a queued job with a link; ``refresh``
        reloads the page to show what changed."""
        response = self.render(
            request, "_message.html", status, text=text, error=status >= 400, job=job
        )
        if refresh:
            response.headers["HX-Refresh"] = "true"
        return response

    def session(self, request: Request) -> Session | None:
        return self.sessions.read(request)
