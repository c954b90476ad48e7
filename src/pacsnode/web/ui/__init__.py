"""The web UI at ``/``: server-rendered pages (Jinja2) with htmx for the live parts, in
the same process and origin as DICOMweb, behind the same users and roles.

It is a door like the others: every page reads through the archive core and every
action calls what the REST API calls. Its scripts and styles are files of this
package (``web/static/ui``, htmx with its licence), so no build step and no network.
"""

from __future__ import annotations

from pathlib import Path

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from pacsnode.archive.core import Archive
from pacsnode.archive.mpps import MppsStore
from pacsnode.archive.users import Users
from pacsnode.archive.worklist import Worklist
from pacsnode.jobs.workers import Workers
from pacsnode.web.ui.account_pages import AccountPages
from pacsnode.web.ui.admin_pages import AdminPages
from pacsnode.web.ui.archive_pages import ArchivePages
from pacsnode.web.ui.render import Pages
from pacsnode.web.ui.route_pages import RoutePages
from pacsnode.web.ui.sessions import Sessions
from pacsnode.web.ui.worklist_pages import WorklistPages
from pacsnode.workflows.routing import Router

STATIC = Path(__file__).parent.parent / "static" / "ui"


def ui_routes(
    archive: Archive,
    workers: Workers,
    router: Router | None,
    users: Users,
    sessions: Sessions,
    worklist: Worklist,
) -> list[BaseRoute]:
    """The UI's pages, given the same router, users and worklist as the REST API."""
    pages = Pages(sessions, archive.settings.http_auth)
    mpps = MppsStore(archive.database)
    return [
        *ArchivePages(archive, workers, pages).routes(),
        *AdminPages(archive, workers, pages).routes(),
        *RoutePages(router, archive.remotes, pages).routes(),
        *WorklistPages(worklist, mpps, workers.queue, pages).routes(),
        *AccountPages(users, pages).routes(),
        Mount("/static/ui", StaticFiles(directory=STATIC), name="ui-static"),
    ]
