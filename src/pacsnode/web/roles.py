"""Which role each request needs, in one table, enforced in one place.

A viewer reads (GET and HEAD anywhere but the admin-only resources); an operator also
does the daily work (STOW-RS, retrieves and sends, echo and query of remote AEs, job
retry and cancel, worklist and MPPS changes, print, restoring rejected instances, soft
deletion and its undoing, exports, patient and study corrections and merges); an admin
does everything, including hard deletion, the configuration (remote AEs, routes,
authorities, users), retention runs and the audit log. What the table does not name
needs viewer to read and admin to change, so a new route is safe before anyone thinks
about it.

The web UI's pages and actions are in the same table, by the measure of the REST
routes they mirror, and its templates ask it before showing an action.

The check runs right after authentication, before routing, so no endpoint can forget
it. A caller who is known but not allowed gets 403 and a security alert in the audit
trail; one who is not known never gets this far (401).
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qs

from starlette.authentication import SimpleUser
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from pacsnode import audit
from pacsnode.archive.users import Role, allows

log = logging.getLogger("pacsnode.http.auth")

READ = frozenset({"GET", "HEAD", "OPTIONS"})
ANY = frozenset({"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"})
POST = frozenset({"POST"})
CHANGE = ANY - READ
DELETE = frozenset({"DELETE"})
DELETABLE = re.compile(r"/api/(patients|studies|series|instances)/[^/]+")
_RULES: tuple[tuple[frozenset[str], re.Pattern[str], Role], ...] = (
    (ANY, re.compile(r"/api/(me|tokens)(/.*)?"), "viewer"),
    (ANY, re.compile(r"/api/media"), "viewer"),  # a download, POSTed for its selection
    (ANY, re.compile(r"/api/(users|audit)(/.*)?"), "admin"),
    (POST, re.compile(r"/dicom-web/studies(/[^/]+)?"), "operator"),
    (POST, re.compile(r"/api/jobs/\d+/(retry|cancel)"), "operator"),
    (POST, re.compile(r"/api/remote/[^/]+/(retrieve|store|echo|query)"), "operator"),
    (CHANGE, re.compile(r"/api/(worklist|mpps)(/.*)?"), "operator"),
    (POST, re.compile(r"/api/print"), "operator"),
    (POST, re.compile(r"/api/rejected/[^/]+/restore"), "operator"),
    (POST, re.compile(r"/api/(patients|studies|series|instances)/[^/]+/restore"), "operator"),
    (POST, re.compile(r"/api/studies/[^/]+/export"), "operator"),
    (DELETE, DELETABLE, "operator"),
    (frozenset({"PATCH"}), re.compile(r"/api/(patients|studies)/[^/]+"), "operator"),
    (POST, re.compile(r"/api/patients/[^/]+/merge"), "operator"),
    # the web UI's pages and actions, by the same measure as their REST routes
    (POST, re.compile(r"/logout"), "viewer"),
    (ANY, re.compile(r"/(tokens|account)(/.*)?"), "viewer"),
    (ANY, re.compile(r"/(users|audit)(/.*)?"), "admin"),
    (POST, re.compile(r"/studies/[^/]+/(send|delete)"), "operator"),
    (POST, re.compile(r"/jobs/\d+/(retry|cancel)"), "operator"),
    (POST, re.compile(r"/remotes/[^/]+/(echo|query|retrieve)"), "operator"),
    (POST, re.compile(r"/worklist(/.*)?"), "operator"),
    (READ, re.compile(r".*"), "viewer"),
)
"""Methods, path, the role they need; the first match wins, and what none matches
needs admin. A deletion with ``hard`` in its query (rows and files) needs admin too."""


class Caller(SimpleUser):
    """An authenticated caller: a name for logs and the audit trail, and a role."""

    def __init__(self, name: str, role: Role) -> None:
        super().__init__(name)
        self.role: Role = role


def required_role(method: str, path: str, query: str = "") -> Role:
    """The weakest role that may send ``method`` to ``path`` with ``query``."""
    if (
        method == "DELETE"
        and DELETABLE.fullmatch(path)
        and "hard" in parse_qs(query, keep_blank_values=True)
    ):
        return "admin"  # whatever its value: the endpoint judges that
    for methods, pattern, role in _RULES:
        if method in methods and pattern.fullmatch(path):
            return role
    return "admin"


class RoleMiddleware:
    """Turns away, with 403, a caller whose role is too weak for the request.

    Requests without a :class:`Caller` pass: only CORS preflights get past the
    authentication middleware unauthenticated, and they carry no action.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        caller = scope.get("user")
        if scope["type"] != "http" or not isinstance(caller, Caller):
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        needed = required_role(method, path, scope.get("query_string", b"").decode("latin-1"))
        if allows(caller.role, needed):
            await self.app(scope, receive, send)
            return
        address = scope["client"][0] if scope.get("client") else ""
        message = f"{method} {path} needs the {needed} role; {caller.username} is {caller.role}"
        log.warning("refused %s from %s", message, address or "an unknown address")
        who = audit.Actor(caller.username, address, requestor=True)
        audit.security_alert(who, message, kind="restricted-function", subject=path)
        await JSONResponse({"error": message}, status_code=403)(scope, receive, send)
