"""Where log lines go: standard error, and for the server an optional rotated file.

One format everywhere, so that a line reads the same in a terminal, a journal or the
file. Libraries that talk a lot at INFO (pynetdicom, alembic) are held to WARNING.
"""

from __future__ import annotations

import logging
import sys
import warnings
from logging.handlers import RotatingFileHandler

from pacsnode.config import Settings

FORMAT = "%(asctime)s %(levelname)-7s [%(process)d] %(name)s: %(message)s"
"""With the process ID: worker processes of one node write the same log."""
CLUSTER_FORMAT = "%(asctime)s %(levelname)-7s [{node}:%(process)d] %(name)s: %(message)s"
"""A cluster node's lines also name it, so that the logs of all nodes can be merged."""


def configure_logging(
    level: str, handlers: list[logging.Handler] | None = None, node: str = ""
) -> None:
    logging.basicConfig(
        level=level.upper(),
        format=CLUSTER_FORMAT.format(node=node) if node else FORMAT,
        handlers=handlers or [logging.StreamHandler(sys.stderr)],
    )
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    # pydicom both logs and warns about odd values: keep the log line, drop the echo.
    warnings.filterwarnings("ignore", module="pydicom")
    logging.getLogger("alembic").setLevel(logging.WARNING)


def configure_server_logging(settings: Settings) -> None:
    """Standard error and, with ``log_file``, that file, rotated at ``log_file_max_mb``
    with ``log_file_backups`` old ones kept; an unwritable file is an OSError."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if settings.log_file:
        handlers.append(
            RotatingFileHandler(
                settings.log_file,
                maxBytes=settings.log_file_max_mb * 1024 * 1024,
                backupCount=settings.log_file_backups,
                encoding="utf-8",
            )
        )
    node = settings.cluster.node if settings.cluster is not None else ""
    configure_logging(settings.log_level, handlers, node)
