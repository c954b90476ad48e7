"""``GET /api/stats`` (what the archive holds, and its disk) and ``GET /api/system``
(what is running: version, ports, storage, counts of configured entries; never a
password, key or user)."""

from __future__ import annotations

import platform
import shutil
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pacsnode import __version__
from pacsnode.archive.core import Archive, display_url


class SystemApi:
    def __init__(self, archive: Archive) -> None:
        self.archive = archive

    def stats(self, request: Request) -> JSONResponse:
        """Patients, studies, series and instances held, and the disk they use."""
        numbers = self.archive.index.stats().as_json()
        disk = shutil.disk_usage(self.archive.storage.root)
        return JSONResponse(
            {**numbers, "disk_free_bytes": disk.free, "disk_total_bytes": disk.total}
        )

    def system(self, request: Request) -> JSONResponse:
        """Version and a summary of the configuration (no secrets)."""
        return JSONResponse(summary(self.archive))

    def routes(self) -> list[Route]:
        return [
            Route("/stats", self.stats, methods=["GET"]),
            Route("/system", self.system, methods=["GET"]),
        ]


def summary(archive: Archive) -> dict[str, Any]:
    settings = archive.settings
    url = settings.resolved_database_url
    return {
        "name": "pacsnode",
        "version": __version__,
        "node": settings.node_name,
        "python": platform.python_version(),
        "ae_title": settings.ae_title,
        "dicom_port": settings.dicom_port,
        "tls_port": settings.tls_port,
        "http_port": settings.http_port,
        "hl7_port": settings.hl7_port,
        "http_auth": settings.http_auth,
        "config_file": str(settings.config_file) if settings.config_file else None,
        "data_dir": str(settings.data_dir.absolute()),
        "database": display_url(url),
        "database_backend": archive.database.writer.dialect.name,
        "remote_aes": len(archive.remotes.all()),
        "routes": len(settings.routes),
        "printers": len(settings.printers),
    }
