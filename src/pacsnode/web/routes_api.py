"""``/api/routes``: the routing rules, and adding or removing rules at run time.

Rules from the config file are listed but cannot be removed here (the file is the
administrator's); rules added here are kept in the index, apply on every node of a
cluster within seconds and survive a restart (see :mod:`pacsnode.workflows.routing`).
"""

from __future__ import annotations

import json

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pacsnode import audit
from pacsnode.web.audit_api import actor as audit_actor
from pacsnode.web.replies import error
from pacsnode.workflows.routing import Router, RuleError, rule_json


class RoutesApi:
    def __init__(self, router: Router) -> None:
        self.router = router

    def index(self, _request: Request) -> JSONResponse:
        """List the routing rules, from the config file and added at run time."""
        return JSONResponse([rule_json(rule, source) for rule, source in self.router.rules()])

    async def add(self, request: Request) -> JSONResponse:
        """Add a routing rule at run time, for every node (kept in the index)."""
        try:
            table = json.loads(await request.body())
        except ValueError:
            return error(400, "the body must be a JSON object")
        if not isinstance(table, dict):
            return error(400, "the body must be a JSON object")
        try:
            rule = await run_in_threadpool(self.router.add, table)
        except RuleError as exc:
            status = 409 if "exists" in str(exc) else 400
            return error(status, str(exc))
        audit.configuration_change(audit_actor(request), f"route {rule.name} added")
        return JSONResponse(rule_json(rule, "api"), status_code=201)

    def remove(self, request: Request) -> Response:
        """Remove a routing rule added at run time."""
        name = request.path_params["name"]
        try:
            self.router.remove(name)
        except RuleError as exc:
            return error(404 if str(exc).startswith("no route") else 409, str(exc))
        audit.configuration_change(audit_actor(request), f"route {name} removed")
        return Response(status_code=204)

    def routes(self) -> list[Route]:
        return [
            Route("/routes", self.index),
            Route("/routes", self.add, methods=["POST"]),
            Route("/routes/{name}", self.remove, methods=["DELETE"]),
        ]
