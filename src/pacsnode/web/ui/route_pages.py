"""The UI's routing rules: every field a rule has, added, changed and removed through
the router that ``/api/routes`` calls, with the same checks and the same answers.

The form is the REST API's JSON rule written for people: lists separated by commas,
one ``Keyword=value`` condition a line, the target transfer syntax chosen among those
the archive can send in, de-identification and its PS3.15 options as checkboxes.
"""

from __future__ import annotations

import math
from typing import Any

from pydicom.uid import JPEG2000, UID
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pacsnode import audit
from pacsnode.archive.deidentify import Options
from pacsnode.archive.remotes import Remotes
from pacsnode.archive.transcoding import DECODED, LOSSLESS_TARGETS
from pacsnode.web.audit_api import actor
from pacsnode.web.routes_api import rule_status
from pacsnode.web.ui.render import Pages, page
from pacsnode.workflows.routing import Router, RuleError, rule_json

SYNTAXES = tuple(UID(uid) for uid in (*DECODED, *LOSSLESS_TARGETS, JPEG2000))
"""What a rule may send in: the archive decodes to these or encodes them."""
LISTS = ("calling_ae", "called_ae", "modality", "sop_class")


def _words(text: str) -> list[str]:
    return [word.strip() for word in text.replace("\n", ",").split(",") if word.strip()]


def _conditions(text: str) -> dict[str, str]:
    """``Keyword=value`` lines as the rule's ``match`` table."""
    match = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        keyword, equals, value = line.partition("=")
        if not equals or not keyword.strip():
            raise RuleError(f"match line {number} {line.strip()!r}: write Keyword=value")
        match[keyword.strip()] = value.strip()
    return match


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if seconds < 0 or not math.isfinite(seconds):
        raise RuleError(f"wait_for_stable_study {text!r}: must be a number of seconds, 0 or more")
    return seconds


def rule_table(form: FormData) -> dict[str, Any]:
    """The form as the JSON rule ``POST /api/routes`` takes."""
    table: dict[str, Any] = {
        "name": str(form.get("name", "")).strip(),
        "destinations": [str(value) for value in form.getlist("destinations")],
        "allow_lossy": form.get("allow_lossy") == "on",
        "commit": form.get("commit") == "on",
        "deidentify": form.get("deidentify") == "on",
        "deidentify_options": [str(value) for value in form.getlist("deidentify_options")],
    }
    for name in LISTS:
        if words := _words(str(form.get(name, ""))):
            table[name] = words
    if match := _conditions(str(form.get("match", ""))):
        table["match"] = match
    if syntax := str(form.get("transfer_syntax", "")).strip():
        table["transfer_syntax"] = syntax
    if wait := str(form.get("wait_for_stable_study", "")).strip():
        table["wait_for_stable_study"] = _seconds(wait)
    return table


class RoutePages:
    def __init__(self, router: Router | None, remotes: Remotes, pages: Pages) -> None:
        self.router = router
        self.remotes = remotes
        self.pages = pages

    def routes_page(self, request: Request) -> Response:
        """The routing rules; those added at run time can be changed and removed."""
        rules = (
            [rule_json(rule, source) for rule, source in self.router.rules()] if self.router else []
        )
        return self.pages.render(
            request, "routes.html", rules=rules, running=self.router is not None, **self._form()
        )

    def edit_form(self, request: Request) -> Response:
        """The form filled with a rule added at run time, to change it."""
        name = request.path_params["name"]
        found = [
            rule_json(rule, source)
            for rule, source in (self.router.rules() if self.router else [])
            if rule.name == name and source == "api"
        ]
        if not found:
            return self.pages.message(request, f"no route {name!r} added here to change", 404)
        return self.pages.render(request, "_route_form.html", **self._form(found[0]))

    def _form(self, rule: dict[str, Any] | None = None) -> dict[str, Any]:
        titles = [
            remote.ae_title for remote in self.remotes.all() if not remote.move_destination_only
        ]
        return {
            "rule": rule,
            "titles": titles,
            "syntaxes": SYNTAXES,
            "deidentify_options": Options.choices(),
        }

    async def add(self, request: Request) -> Response:
        """Add a rule (as ``POST /api/routes``)."""
        return await self._save(request, None)

    async def change(self, request: Request) -> Response:
        """Change a rule added at run time (as ``PUT /api/routes/{name}``)."""
        return await self._save(request, request.path_params["name"])

    async def _save(self, request: Request, name: str | None) -> Response:
        if self.router is None:
            return self.pages.message(request, "routing is not running here", 409)
        try:
            table = rule_table(await request.form())
            if name is None:
                rule = await run_in_threadpool(self.router.add, table)
            else:
                rule = await run_in_threadpool(self.router.replace, name, table)
        except RuleError as exc:
            return self.pages.message(request, str(exc), rule_status(exc))
        done = "added" if name is None else "changed"
        audit.configuration_change(actor(request), f"route {name or rule.name} {done}")
        return self.pages.message(request, f"route {rule.name} {done}", refresh=True)

    def remove(self, request: Request) -> Response:
        name = request.path_params["name"]
        if self.router is None:
            return self.pages.message(request, "routing is not running here", 409)
        try:
            self.router.remove(name)
        except RuleError as exc:
            return self.pages.message(request, str(exc), rule_status(exc))
        audit.configuration_change(actor(request), f"route {name} removed")
        return self.pages.message(request, f"route {name} removed", refresh=True)

    def routes(self) -> list[Route]:
        post = ["POST"]
        return [
            page("/routes", self.routes_page),
            page("/routes", self.add, methods=post),
            page("/routes/{name}/edit", self.edit_form),
            page("/routes/{name}", self.change, methods=post),
            page("/routes/{name}/delete", self.remove, methods=post),
        ]
