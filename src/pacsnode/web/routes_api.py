"""``/api/routes``: the routing rules, and adding or removing rules at run time.

Rules from the config file are listed but cannot be removed here (the file is the
administrator's); rules added here are kept in the index, apply on every node of a
cluster within seconds and survive a restart (see :mod:`pacsnode.workflows.routing`).
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pacsnode import audit
from pacsnode.web.audit_api import actor as audit_actor
from pacsnode.web.replies import error, json_object
from pacsnode.workflows.routing import Router, RuleError, rule_json


def rule_status(exc: RuleError) -> int:
    """404 for no such rule, 409 for a name taken or a rule of the config file, else 400."""
    text = str(exc)
    if text.startswith("no route"):
        return 404
    return 409 if "exists" in text or "in the config file" in text else 400


class RoutesApi:
    def __init__(self, router: Router) -> None:
        self.router = router

    def index(self, _request: Request) -> JSONResponse:
        """List the routing rules, from the config file and added at run time."""
        return JSONResponse([rule_json(rule, source) for rule, source in self.router.rules()])

    async def add(self, request: Request) -> JSONResponse:
        """Add a routing rule at run time (kept in the index, for every node)."""
        table = await json_object(request)
        if isinstance(table, JSONResponse):
            return table
        try:
            rule = await run_in_threadpool(self.router.add, table)
        except RuleError as exc:
            return error(rule_status(exc), str(exc))
        audit.configuration_change(audit_actor(request), f"route {rule.name} added")
        return JSONResponse(rule_json(rule, "api"), status_code=201)

    async def replace(self, request: Request) -> JSONResponse:
        """Change a routing rule added at run time, its name too."""
        name = request.path_params["name"]
        table = await json_object(request)
        if isinstance(table, JSONResponse):
            return table
        try:
            rule = await run_in_threadpool(self.router.replace, name, table)
        except RuleError as exc:
            return error(rule_status(exc), str(exc))
        audit.configuration_change(audit_actor(request), f"route {name} changed")
        return JSONResponse(rule_json(rule, "api"))

    def remove(self, request: Request) -> Response:
        """Remove a routing rule added at run time."""
        name = request.path_params["name"]
        try:
            self.router.remove(name)
        except RuleError as exc:
            return error(rule_status(exc), str(exc))
        audit.configuration_change(audit_actor(request), f"route {name} removed")
        return Response(status_code=204)

    def routes(self) -> list[Route]:
        return [
            Route("/routes", self.index),
            Route("/routes", self.add, methods=["POST"]),
            Route("/routes/{name}", self.replace, methods=["PUT"]),
            Route("/routes/{name}", self.remove, methods=["DELETE"]),
        ]
