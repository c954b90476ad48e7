"""One ``pacsnode serve`` for a whole test module, on SQLite or on PostgreSQL.

Starting a server takes a second or two; modules whose tests only read what they share
start it once per backend (``@pytest.fixture(scope="module", params=BACKENDS)``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from conftest import RunningServer, free_port, postgres_database, write_config

BACKENDS = ["sqlite", "postgresql"]


@contextmanager
def module_server(
    root: Path,
    backend: str,
    server: dict[str, Any],
    remotes: list[dict[str, Any]] | None = None,
    tables: dict[str, list[dict[str, Any]]] | None = None,
) -> Iterator[RunningServer]:
    """A started server in ``root`` on ``backend``, killed (and its database dropped)
    at the end."""
    with postgres_database() if backend == "postgresql" else _sqlite(root) as database_url:
        settings = {
            "ae_title": "PACSNODE",
            "dicom_port": free_port(),
            "http_port": free_port(),
            "data_dir": str(root / "data"),
            "database_url": database_url,
            "bind_address": "127.0.0.1",
            "log_level": "INFO",
            "workers": 1,
            **server,
        }
        config = write_config(root / "server.toml", settings, remotes or [], tables)
        running = RunningServer(
            config,
            root / "data",
            settings["dicom_port"],
            "PACSNODE",
            root / "server.log",
            database_url,
            settings["http_port"],
        )
        running.start()
        try:
            yield running
        finally:
            running.kill()


@contextmanager
def _sqlite(root: Path) -> Iterator[str]:
    yield f"sqlite:///{(root / 'data' / 'index.sqlite').resolve()}"
