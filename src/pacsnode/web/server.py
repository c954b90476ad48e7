"""The HTTP door: one uvicorn server in the archive's process, on its own thread."""

from __future__ import annotations

import logging
import threading
import time

import uvicorn
from starlette.applications import Starlette

log = logging.getLogger("pacsnode.http")


class HttpServer:
    def __init__(self, app: Starlette, host: str, port: int) -> None:
        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", access_log=False, lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="http", daemon=True)
        self.host, self.port = host, port

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise OSError(f"HTTP server did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        log.info("HTTP server listening on %s:%d", self.host, self.port)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
