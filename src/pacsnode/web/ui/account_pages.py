"""The UI's login form, logout, users (admin) and one's own API tokens.

Logging in checks the name and password exactly as HTTP Basic does
(:meth:`Users.check_password`: config file and database users), audits the outcome,
and answers with a new session cookie, so that a session fixed before the login is
never the logged-in one.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlparse

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from pacsnode import audit
from pacsnode.archive.users import LoginRefused, UserError, UserNotFound, Users, expiry
from pacsnode.web.audit_api import actor
from pacsnode.web.ui.render import Pages, caller_of, page, role_of
from pacsnode.web.ui.sessions import COOKIE, CSRF_FIELD


def _next(value: str) -> str:
    """Where to go after logging in: a path of this site, never another site."""
    parsed = urlparse(value)
    if not value.startswith("/") or value.startswith("//") or parsed.scheme or parsed.netloc:
        return "/"
    return value


class AccountPages:
    def __init__(self, users: Users, pages: Pages) -> None:
        self.users = users
        self.pages = pages
        self.sessions = pages.sessions

    def login_form(self, request: Request) -> Response:
        if self.pages.auth == "none":
            return RedirectResponse("/", 303)
        return self.pages.render(
            request, "login.html", next=_next(request.query_params.get("next", "/"))
        )

    async def login(self, request: Request) -> Response:
        """Check the form's CSRF token (from the cookie the form came with), then the
        name and password."""
        form = await request.form()
        name, password = str(form.get("username", "")), str(form.get("password", ""))
        target = _next(str(form.get("next", "/")))
        session = self.sessions.read(request)
        given = str(form.get(CSRF_FIELD, ""))
        if session is None or not hmac.compare_digest(given, session.csrf):
            return self.pages.render(
                request, "login.html", 403, next=target, problem="the form expired: try again"
            )
        address = request.client.host if request.client else ""
        try:
            user = await run_in_threadpool(self.users.check_password, name, password)
        except LoginRefused:
            audit.user_authentication(audit.Actor(name, address, requestor=True), False)
            return self.pages.render(
                request, "login.html", 401, next=target, problem="wrong user name or password"
            )
        audit.user_authentication(audit.Actor(user.name, address, requestor=True), True)
        _session, cookie = self.sessions.issue(user.name)
        response = RedirectResponse(target, 303)
        response.set_cookie(**self.sessions.cookie(cookie))  # type: ignore[arg-type]
        return response

    def logout(self, request: Request) -> Response:
        caller = caller_of(request)
        if caller is not None:
            address = request.client.host if request.client else ""
            who = audit.Actor(caller.username, address, requestor=True)
            audit.user_authentication(who, True, logout=True)
        response = Response(status_code=204, headers={"HX-Redirect": "/login"})
        response.delete_cookie(COOKIE, path="/")
        return response

    def users_page(self, request: Request) -> Response:
        return self.pages.render(request, "users.html", users=self.users.all())

    async def add_user(self, request: Request) -> Response:
        form = await request.form()
        name, role = str(form.get("name", "")).strip(), str(form.get("role", "viewer"))
        try:
            user = await run_in_threadpool(
                self.users.add, name, str(form.get("password", "")), role
            )
        except UserError as exc:
            return self._message(request, str(exc), error=True)
        self._audit(request, f"user {user.name} added as {user.role}")
        response = self._message(request, f"user {user.name} added as {user.role}")
        response.headers["HX-Refresh"] = "true"
        return response

    async def change_user(self, request: Request) -> Response:
        """Change a user's role, or disable or enable them."""
        name = request.path_params["name"]
        form = await request.form()
        role = str(form.get("role", "")) or None
        disabled = {"disable": True, "enable": False}.get(str(form.get("state", "")))
        try:
            user = await run_in_threadpool(self.users.change, name, role=role, disabled=disabled)
        except (UserNotFound, UserError) as exc:
            return self._message(request, str(exc), error=True)
        state = "disabled" if user.disabled else "enabled"
        self._audit(request, f"user {name} changed: {user.role}, {state}")
        response = self._message(request, f"user {name}: {user.role}, {state}")
        response.headers["HX-Refresh"] = "true"
        return response

    def delete_user(self, request: Request) -> Response:
        name = request.path_params["name"]
        try:
            self.users.delete(name)
        except (UserNotFound, UserError) as exc:
            return self._message(request, str(exc), error=True)
        self._audit(request, f"user {name} deleted")
        response = self._message(request, f"user {name} deleted")
        response.headers["HX-Refresh"] = "true"
        return response

    def tokens_page(self, request: Request) -> Response:
        """One's own API tokens (an admin's: everyone's)."""
        caller = caller_of(request)
        owner = None if caller is None or role_of(request) == "admin" else caller.username
        return self.pages.render(request, "tokens.html", tokens=self.users.tokens(owner))

    async def create_token(self, request: Request) -> Response:
        """A token for the caller; its secret is shown in this answer only."""
        caller = caller_of(request)
        if caller is None:
            return self._message(request, "tokens belong to users, and http_auth is none", True)
        form = await request.form()
        days = str(form.get("expires_days", "")).strip()
        try:
            lifetime = expiry(float(days) if days else None)
            token, secret = await run_in_threadpool(
                self.users.create_token, caller.username, str(form.get("label", "")), lifetime
            )
        except (UserError, ValueError) as exc:
            return self._message(request, str(exc), error=True)
        except UserNotFound:
            return self._message(request, f"{caller.username} is not a user of the database", True)
        self._audit(request, f"API token {token.id} made for {token.user}")
        return self.pages.render(request, "_token.html", token=token, secret=secret)

    def revoke(self, request: Request) -> Response:
        caller = caller_of(request)
        owner = None if caller is None or role_of(request) == "admin" else caller.username
        pk = int(request.path_params["id"])
        try:
            self.users.revoke(pk, owner)
        except UserNotFound as exc:
            return self._message(request, str(exc), error=True)
        self._audit(request, f"API token {pk} revoked")
        response = self._message(request, f"API token {pk} revoked")
        response.headers["HX-Refresh"] = "true"
        return response

    def _audit(self, request: Request, description: str) -> None:
        audit.configuration_change(actor(request), description, kind="user")

    def _message(self, request: Request, text: str, error: bool = False) -> Response:
        return self.pages.render(request, "_message.html", text=text, error=error, job=None)

    def routes(self) -> list[Route]:
        post = ["POST"]
        return [
            page("/login", self.login_form),
            page("/login", self.login, methods=post),
            page("/logout", self.logout, methods=post),
            page("/users", self.users_page),
            page("/users", self.add_user, methods=post),
            page("/users/{name}", self.change_user, methods=post),
            page("/users/{name}/delete", self.delete_user, methods=post),
            page("/tokens", self.tokens_page),
            page("/tokens", self.create_token, methods=post),
            page("/tokens/{id:int}/revoke", self.revoke, methods=post),
        ]
