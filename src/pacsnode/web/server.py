"""The HTTP door: a uvicorn server in each worker process, on its own thread.

Worker processes share one listening socket, bound before they started; a single
process binds its own.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time

import uvicorn
from starlette.applications import Starlette

log = logging.getLogger("pacsnode.http")


class HttpServer:
    def __init__(
        self, app: Starlette, host: str, port: int, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        """With ``ssl_context`` it serves HTTPS; the app then sees the "https" scheme and
        the URLs it hands out (Retrieve URL, BulkDataURI) say so."""
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ssl_context_factory=(lambda _config, _default: ssl_context) if ssl_context else None,
        )
        self.scheme = "https" if ssl_context else "http"
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self.host, self.port = host, port

    def start(self, sock: socket.socket, timeout: float = 10.0) -> None:
        """Serve on ``sock``, bound by the node (once for all its worker processes)."""
        thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="http", daemon=True
        )
        self._thread = thread
        thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise OSError(f"HTTP server did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        suffix = " (HTTPS)" if self.scheme == "https" else ""
        log.info("HTTP server listening on %s:%d%s", self.host, self.port, suffix)

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
