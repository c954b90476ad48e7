"""The ``pacsnode`` command: the server, and the tools an administrator reaches for."""

from pacsnode.cli import (
    archive,
    jobs,
    media,
    network,
    print_,
    query,
    rejected,
    remotes,
    security,
    worklist,
)
from pacsnode.cli.common import app

__all__ = [
    "app",
    "archive",
    "jobs",
    "main",
    "media",
    "network",
    "print_",
    "query",
    "rejected",
    "remotes",
    "security",
    "worklist",
]


def main() -> None:
    app()
