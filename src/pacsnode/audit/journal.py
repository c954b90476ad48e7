"""The local audit log: one JSON line per message, one file per day (UTC).

Files are only ever appended to (``O_APPEND``, one ``write`` per line), so a line is
never half-overwritten by a concurrent writer and an administrator can archive old
days by moving their files away. Searching reads the files of the days asked for.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from pacsnode.audit.messages import Message

_PREFIX, _SUFFIX = "audit-", ".log"
MAX_LIMIT = 1000


@dataclass(frozen=True)
class Search:
    """What ``GET /api/audit`` and ``pacsnode audit search`` filter on; empty is any."""

    event: str = ""
    """Event name (``Query``), its code (``110112``) or event type (``Login``)."""
    user: str = ""
    patient: str = ""
    study: str = ""
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100

    @classmethod
    def from_params(cls, params: dict[str, str]) -> Search:
        """A search from query parameters or CLI options; ValueError names a bad one."""
        limit = params.get("limit") or "100"
        if not limit.isdigit() or not 0 < int(limit) <= MAX_LIMIT:
            raise ValueError(f"limit: want a number from 1 to {MAX_LIMIT}")
        return cls(
            event=params.get("event", ""),
            user=params.get("user", ""),
            patient=params.get("patient", ""),
            study=params.get("study", ""),
            since=_time(params.get("since"), "since"),
            until=_time(params.get("until"), "until"),
            limit=int(limit),
        )

    def matches(self, entry: dict[str, Any]) -> bool:
        if self.event and self.event.lower() not in (
            str(entry.get("event", "")).lower(),
            str(entry.get("event_id", "")).lower(),
            str(entry.get("event_type", "")).lower(),
        ):
            return False
        if self.user and entry.get("user") != self.user:
            return False
        if self.patient and self.patient not in entry.get("patients", []):
            return False
        if self.study and self.study not in entry.get("studies", []):
            return False
        when = datetime.fromisoformat(str(entry["time"]))
        if self.since and when < self.since:
            return False
        return not (self.until and when > self.until)


class Journal:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()

    def append(self, messages: Iterable[Message]) -> None:
        """Add messages to their days' files, each day's lines in one write."""
        days: dict[Path, list[str]] = {}
        for message in messages:
            path = self.directory / f"{_PREFIX}{message.time.date().isoformat()}{_SUFFIX}"
            days.setdefault(path, []).append(
                json.dumps(message.as_json(), ensure_ascii=False, separators=(",", ":")) + "\n"
            )
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            for path, lines in days.items():
                descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    data = memoryview("".join(lines).encode())
                    while data:
                        data = data[os.write(descriptor, data) :]
                finally:
                    os.close(descriptor)

    def search(self, search: Search) -> list[dict[str, Any]]:
        """Matching entries, newest first, at most ``search.limit``."""
        found: list[dict[str, Any]] = []
        for path in self._days(search):
            entries = [entry for entry in _read(path) if search.matches(entry)]
            found.extend(reversed(entries))
            if len(found) >= search.limit:
                break
        return found[: search.limit]

    def _days(self, search: Search) -> list[Path]:
        """The day files that can hold matches, newest first."""
        if not self.directory.is_dir():
            return []
        days: list[tuple[date, Path]] = []
        for path in self.directory.glob(f"{_PREFIX}*{_SUFFIX}"):
            try:
                day = date.fromisoformat(path.name[len(_PREFIX) : -len(_SUFFIX)])
            except ValueError:
                continue
            if search.since and day < search.since.date():
                continue
            if search.until and day > search.until.date():
                continue
            days.append((day, path))
        return [path for _day, path in sorted(days, reverse=True)]


def _time(text: str | None, name: str) -> datetime | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"{name}: {text!r} is not an ISO 8601 date and time") from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _read(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                yield json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash
