"""The ``pacsnode`` command: the server, and the tools an administrator reaches for."""

from pacsnode.cli import (
    archive,
    audit,
    jobs,
    media,
    network,
    print_,
    query,
    rejected,
    remotes,
    security,
    tls,
    users,
    worklist,
)
from pacsnode.cli.common import app

__all__ = [
    "app",
    "archive",
    "audit",
    "jobs",
    "main",
    "media",
    "network",
    "print_",
    "query",
    "rejected",
    "remotes",
    "security",
    "tls",
    "users",
    "worklist",
]


def main() -> None:
    app()
