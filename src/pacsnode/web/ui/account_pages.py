"""The UI's login form, logout, users (admin: add, role, password, disable, delete),
one's own account (password) and one's own API tokens.

Logging in checks the name and password exactly as HTTP Basic does
(:meth:`Users.check_password`: config file and database users), audits the outcome,
and answers with a new session cookie, so that a session fixed before the login is
never the logged-in one.
"""

from __future__ import annotations

import hmac
from functools import partial
from urllib.parse import urlparse

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from pacsnode import audit
from pacsnode.archive.users import (
    LoginRefused,
    UserConflict,
    UserError,
    UserNotFound,
    Users,
    expiry,
)
from pacsnode.web.audit_api import actor
from pacsnode.web.ui.render import Pages, caller_of, page, role_of
from pacsnode.web.ui.sessions import COOKIE, CSRF_FIELD


def _status(exc: Exception) -> int:
    """As ``/api/users`` answers: 404 for no such user, 409 for a name taken or a config
    file user, 400 for a bad value."""
    if isinstance(exc, UserNotFound):
        return 404
    return 409 if isinstance(exc, UserConflict) else 400


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UserError(f"expires_days {text!r} is not a number of days", "expires_days") from None


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
            return self.pages.message(request, str(exc), _status(exc))
        self._audit(request, f"user {user.name} added as {user.role}")
        return self.pages.message(request, f"user {user.name} added as {user.role}", refresh=True)

    async def change_user(self, request: Request) -> Response:
        """Change a user's role, or disable or enable them."""
        name = request.path_params["name"]
        form = await request.form()
        role = str(form.get("role", "")) or None
        disabled = {"disable": True, "enable": False}.get(str(form.get("state", "")))
        try:
            user = await run_in_threadpool(self.users.change, name, role=role, disabled=disabled)
        except (UserNotFound, UserError) as exc:
            return self.pages.message(request, str(exc), _status(exc))
        state = "disabled" if user.disabled else "enabled"
        self._audit(request, f"user {name} changed: {user.role}, {state}")
        return self.pages.message(request, f"user {name}: {user.role}, {state}", refresh=True)

    async def set_password(self, request: Request) -> Response:
        """An admin gives a user a new password (as ``PUT /api/users/{name}``)."""
        name = request.path_params["name"]
        password = str((await request.form()).get("password", ""))
        try:
            await run_in_threadpool(partial(self.users.change, name, password=password))
        except (UserNotFound, UserError) as exc:
            return self.pages.message(request, str(exc), _status(exc))
        self._audit(request, f"user {name} changed: password")
        return self.pages.message(request, f"user {name}: password changed")

    def account_page(self, request: Request) -> Response:
        """Who one is, and a form to change one's own password."""
        caller = caller_of(request)
        try:
            user = self.users.get(caller.username) if caller is not None else None
        except UserNotFound:
            user = None
        return self.pages.render(request, "account.html", account=user)

    async def change_own_password(self, request: Request) -> Response:
        """Change one's own password, proving the current one first (a session left
        open on a shared screen must not be enough)."""
        caller = caller_of(request)
        if caller is None:
            return self.pages.message(request, "no one is logged in: http_auth is none", 409)
        form = await request.form()
        current, new = str(form.get("current_password", "")), str(form.get("new_password", ""))
        try:
            await run_in_threadpool(self.users.check_password, caller.username, current)
        except LoginRefused:
            return self.pages.message(request, "current_password: not your current password", 403)
        try:
            await run_in_threadpool(partial(self.users.change, caller.username, password=new))
        except (UserNotFound, UserError) as exc:
            return self.pages.message(request, str(exc), _status(exc))
        self._audit(request, f"user {caller.username} changed: own password")
        return self.pages.message(request, "your password is changed")

    def delete_user(self, request: Request) -> Response:
        name = request.path_params["name"]
        try:
            self.users.delete(name)
        except (UserNotFound, UserError) as exc:
            return self.pages.message(request, str(exc), _status(exc))
        self._audit(request, f"user {name} deleted")
        return self.pages.message(request, f"user {name} deleted", refresh=True)

    def tokens_page(self, request: Request) -> Response:
        """One's own API tokens (an admin's: everyone's)."""
        caller = caller_of(request)
        owner = None if caller is None or role_of(request) == "admin" else caller.username
        return self.pages.render(request, "tokens.html", tokens=self.users.tokens(owner))

    async def create_token(self, request: Request) -> Response:
        """A token for the caller; its secret is shown in this answer only."""
        caller = caller_of(request)
        if caller is None:
            return self.pages.message(request, "tokens belong to users, and http_auth is none", 409)
        form = await request.form()
        days = str(form.get("expires_days", "")).strip()
        try:
            lifetime = expiry(_number(days) if days else None)
            token, secret = await run_in_threadpool(
                self.users.create_token, caller.username, str(form.get("label", "")), lifetime
            )
        except UserError as exc:
            return self.pages.message(request, str(exc), _status(exc))
        except UserNotFound:
            text = f"{caller.username} is not a user of the database (a config file user)"
            return self.pages.message(request, text, 409)
        self._audit(request, f"API token {token.id} made for {token.user}")
        return self.pages.render(request, "_token.html", token=token, secret=secret)

    def revoke(self, request: Request) -> Response:
        caller = caller_of(request)
        owner = None if caller is None or role_of(request) == "admin" else caller.username
        pk = int(request.path_params["id"])
        try:
            self.users.revoke(pk, owner)
        except UserNotFound as exc:
            return self.pages.message(request, str(exc), 404)
        self._audit(request, f"API token {pk} revoked")
        return self.pages.message(request, f"API token {pk} revoked", refresh=True)

    def _audit(self, request: Request, description: str) -> None:
        audit.configuration_change(actor(request), description, kind="user")

    def routes(self) -> list[Route]:
        post = ["POST"]
        return [
            page("/login", self.login_form),
            page("/login", self.login, methods=post),
            page("/logout", self.logout, methods=post),
            page("/users", self.users_page),
            page("/users", self.add_user, methods=post),
            page("/users/{name}", self.change_user, methods=post),
            page("/users/{name}/password", self.set_password, methods=post),
            page("/users/{name}/delete", self.delete_user, methods=post),
            page("/account", self.account_page),
            page("/account/password", self.change_own_password, methods=post),
            page("/tokens", self.tokens_page),
            page("/tokens", self.create_token, methods=post),
            page("/tokens/{id:int}/revoke", self.revoke, methods=post),
        ]
