"""The ``pacsnode`` command: the server, and the tools an administrator reaches for."""

import logging
import sys

from sqlalchemy.exc import SQLAlchemyError

from pacsnode.cli import (
    archive,
    audit,
    conformance,
    deletion,
    doctor,
    jobs,
    media,
    network,
    patients,
    print_,
    query,
    rejected,
    remotes,
    security,
    tls,
    users,
    viewer,
    worklist,
)
from pacsnode.cli.common import app, fail

__all__ = [
    "app",
    "archive",
    "audit",
    "conformance",
    "deletion",
    "doctor",
    "jobs",
    "main",
    "media",
    "network",
    "patients",
    "print_",
    "query",
    "rejected",
    "remotes",
    "security",
    "tls",
    "users",
    "viewer",
    "worklist",
]


def main() -> None:
    """Run the command; a file or database failure no command foresaw still ends in one
    line and exit code 2, its traceback in the log at DEBUG."""
    try:
        app()
    except OSError as exc:
        logging.getLogger("pacsnode.cli").debug("failed", exc_info=True)
        where = f" {exc.filename}" if exc.filename else ""
        fail(f"error{where}: {exc.strerror or exc}")
        sys.exit(2)
    except SQLAlchemyError as exc:
        logging.getLogger("pacsnode.cli").debug("failed", exc_info=True)
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        fail(f"index database error: {reason}")
        sys.exit(2)
