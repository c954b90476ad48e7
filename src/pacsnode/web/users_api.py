"""Users and API tokens in the admin REST API.

``/api/users`` (admin only, see :mod:`pacsnode.web.roles`) lists, adds, changes and
deletes the database's users; config file users are listed but read-only.
``/api/tokens`` lets every user make, list and revoke their own API tokens (an admin
sees and revokes everyone's); the secret is in the answer to POST and nowhere else.
``/api/me`` tells a caller whom the archive takes them for.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pacsnode import audit
from pacsnode.archive.users import UserConflict, UserError, UserNotFound, Users, expiry
from pacsnode.web.audit_api import actor
from pacsnode.web.replies import error, json_object
from pacsnode.web.roles import Caller


def _user_error(exc: UserError) -> JSONResponse:
    return error(409 if isinstance(exc, UserConflict) else 400, str(exc), exc.field)


def _changed(request: Request, description: str) -> None:
    audit.configuration_change(actor(request), description, kind="user")


def _caller(request: Request) -> Caller | None:
    """The authenticated caller; None when the door has no authentication."""
    user = request.scope.get("user")
    return user if isinstance(user, Caller) else None


def _optional(body: dict[str, Any], name: str, kind: type) -> Any:
    value = body.get(name)
    if value is not None and type(value) is not kind:
        raise UserError(f"{name} must be a {'boolean' if kind is bool else 'string'}", name)
    return value


class UsersApi:
    def __init__(self, users: Users) -> None:
        self.users = users

    def me(self, request: Request) -> JSONResponse:
        """Who the archive takes the caller for, and their role."""
        caller = _caller(request)
        if caller is None:
            return JSONResponse({"name": None, "role": "admin", "authenticated": False})
        return JSONResponse({"name": caller.username, "role": caller.role, "authenticated": True})

    def index(self, request: Request) -> JSONResponse:
        """List the users, from the config file and from the database."""
        return JSONResponse([user.as_json() for user in self.users.all()])

    def show(self, request: Request) -> JSONResponse:
        """One user."""
        try:
            return JSONResponse(self.users.get(request.path_params["name"]).as_json())
        except UserNotFound as exc:
            return error(404, str(exc))

    async def create(self, request: Request) -> JSONResponse:
        """Add a user: name, password and role (viewer unless given)."""
        body = await json_object(request)
        if isinstance(body, JSONResponse):
            return body
        try:
            name = _optional(body, "name", str) or ""
            password = _optional(body, "password", str) or ""
            role = _optional(body, "role", str) or "viewer"
            user = await run_in_threadpool(self.users.add, name, password, role)
        except UserError as exc:
            return _user_error(exc)
        _changed(request, f"user {user.name} added as {user.role}")
        headers = {"Location": f"/api/users/{user.name}"}
        return JSONResponse(user.as_json(), status_code=201, headers=headers)

    async def change(self, request: Request) -> JSONResponse:
        """Change a user's role, password, or whether they are disabled."""
        body = await json_object(request)
        if isinstance(body, JSONResponse):
            return body
        name = request.path_params["name"]
        unknown = set(body) - {"role", "password", "disabled"}
        if unknown:
            return error(400, f"cannot change {', '.join(sorted(unknown))}", sorted(unknown)[0])
        try:
            values = {
                "role": _optional(body, "role", str),
                "password": _optional(body, "password", str),
                "disabled": _optional(body, "disabled", bool),
            }
            user = await run_in_threadpool(partial(self.users.change, name, **values))
        except UserNotFound as exc:
            return error(404, str(exc))
        except UserError as exc:
            return _user_error(exc)
        what = ", ".join(key for key, value in values.items() if value is not None)
        _changed(request, f"user {name} changed: {what or 'nothing'}")
        return JSONResponse(user.as_json())

    def delete(self, request: Request) -> Response:
        """Delete a user and their API tokens."""
        name = request.path_params["name"]
        try:
            self.users.delete(name)
        except UserNotFound as exc:
            return error(404, str(exc))
        except UserError as exc:
            return _user_error(exc)
        _changed(request, f"user {name} deleted")
        return Response(status_code=204)

    async def create_token(self, request: Request) -> JSONResponse:
        """Make an API token for yourself: label, expires_days; the secret is shown once."""
        caller = _caller(request)
        if caller is None:
            return error(409, "tokens belong to users, and http_auth is none")
        body = await json_object(request)
        if isinstance(body, JSONResponse):
            return body
        try:
            label = _optional(body, "label", str) or ""
            lifetime = expiry(body.get("expires_days"))
            token, secret = await run_in_threadpool(
                self.users.create_token, caller.username, label, lifetime
            )
        except UserNotFound:
            return error(409, f"{caller.username} is not a user of the database")
        except UserError as exc:
            return _user_error(exc)
        _changed(request, f"API token {token.id} made for {token.user}")
        headers = {"Location": f"/api/tokens/{token.id}"}
        return JSONResponse({**token.as_json(), "token": secret}, status_code=201, headers=headers)

    def tokens(self, request: Request) -> JSONResponse:
        """List your API tokens (an admin: everyone's), without their secrets."""
        owner = self._owner(request)
        return JSONResponse([token.as_json() for token in self.users.tokens(owner)])

    def revoke(self, request: Request) -> Response:
        """Revoke one of your API tokens (an admin: anyone's)."""
        pk = int(request.path_params["id"])
        try:
            self.users.revoke(pk, self._owner(request))
        except UserNotFound as exc:
            return error(404, str(exc))
        _changed(request, f"API token {pk} revoked")
        return Response(status_code=204)

    @staticmethod
    def _owner(request: Request) -> str | None:
        """Whose tokens the caller may see: their own, or (admin, no auth) everyone's."""
        caller = _caller(request)
        return None if caller is None or caller.role == "admin" else caller.username

    def routes(self) -> list[Route]:
        return [
            Route("/me", self.me),
            Route("/users", self.index),
            Route("/users", self.create, methods=["POST"]),
            Route("/users/{name}", self.show),
            Route("/users/{name}", self.change, methods=["PUT"]),
            Route("/users/{name}", self.delete, methods=["DELETE"]),
            Route("/tokens", self.tokens),
            Route("/tokens", self.create_token, methods=["POST"]),
            Route("/tokens/{id:int}", self.revoke, methods=["DELETE"]),
        ]
