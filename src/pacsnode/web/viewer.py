"""``/viewer``: the OHIF viewer installed by ``pacsnode viewer install``, served from the
same origin as DICOMweb, so it needs no CORS and carries the UI's session.

OHIF is a single-page application: a path that names no file (``/viewer/viewer``,
``/viewer/segmentation``) gets its ``index.html``, and its router takes over; a missing
file (a path with an extension) is a 404, not a page that would fail to parse as a
script. Every answer carries the cross-origin isolation headers, which give OHIF
``SharedArrayBuffer`` for its volume (MPR) loading; everything it loads comes from this
origin, so they cost nothing.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from pacsnode import ohif

ISOLATION = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}
MEDIA_TYPES = {
    ".wasm": "application/wasm",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".json": "application/json",
    ".woff2": "font/woff2",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}
MISSING = """<!doctype html><title>Viewer not installed</title>
<p>The OHIF viewer is not installed in this archive's data directory.
Run <code>pacsnode viewer install</code> (with the server's <code>--config</code>).</p>"""


class Viewer:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def enter(self, request: Request) -> Response:
        """``/viewer?StudyInstanceUIDs=…`` opens the studies in OHIF's viewer route;
        ``/viewer`` alone its study list."""
        query = request.url.query
        target = f"{ohif.PREFIX}/viewer?{query}" if query else f"{ohif.PREFIX}/"
        return RedirectResponse(target, status_code=307)

    def file(self, request: Request) -> Response:
        """A file of OHIF's ``dist/``, or its ``index.html`` for the routes of its SPA."""
        root = ohif.installed(self.data_dir)
        if root is None:
            return HTMLResponse(MISSING, status_code=404)
        root = root.resolve()
        relative = request.path_params["path"]
        path = (root / relative).resolve()
        if relative and path.is_relative_to(root) and path.is_file():
            kind = MEDIA_TYPES.get(path.suffix)
            cache = {"Cache-Control": "no-cache"} if path.name == "app-config.js" else {}
            return FileResponse(path, media_type=kind, headers={**ISOLATION, **cache})
        if "." in relative.rsplit("/", 1)[-1]:
            return Response(f"no {relative} in the viewer\n", 404, media_type="text/plain")
        headers = {**ISOLATION, "Cache-Control": "no-cache"}
        return FileResponse(root / "index.html", media_type="text/html", headers=headers)

    def routes(self) -> list[Route]:
        return [
            Route(ohif.PREFIX, self.enter, methods=["GET", "HEAD"], include_in_schema=False),
            Route(
                ohif.PREFIX + "/{path:path}",
                self.file,
                methods=["GET", "HEAD"],
                include_in_schema=False,
            ),
        ]
