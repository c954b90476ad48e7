"""The remote AE table: the DICOM nodes the archive knows by AE title.

Every door and job looks remote nodes up here rather than in the settings, so that
the table can grow beyond the config file without each caller knowing where an
entry came from.

The config file's ``[[remote_ae]]`` entries are the base; entries written at run time
(REST API, ``pacsnode remote add``) live in the index database and override or add to
them. A config entry cannot be deleted at run time, only overridden: the file would
bring it back at the next start, and a deletion that silently comes undone is worse
than a refusal. Deleting a database entry that overrides a config entry brings the
config entry back.

Lookups happen for every association and job, so the table is cached. A write in this
process clears the cache at once; writes by other processes (the CLI writes the
database directly) are seen within :data:`CACHE_SECONDS`.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, fields
from typing import Any, get_args

import sqlalchemy as sa

from pacsnode.archive.database import Database, now
from pacsnode.archive.matching import visibility_problem
from pacsnode.archive.schema import remote_ae
from pacsnode.config import (
    DUPLICATE_POLICIES,
    SERVICES,
    CommitmentReportMode,
    DuplicatePolicy,
    RemoteAE,
    Settings,
)
from pacsnode.errors import FieldError
from pacsnode.validation import did_you_mean

CACHE_SECONDS = 2.0
_TUPLES = ("offers", "allowed", "transfer_syntaxes")
_FIELDS = {f.name for f in fields(RemoteAE)}
CONFIG_ONLY = ("tls", "check_host", "visible", "show_deleted")
"""Fields the database does not store: security settings an administrator makes in the
config file. A run-time entry takes them from the config entry of the same AE title."""
_COLUMNS = _FIELDS - set(CONFIG_ONLY)


class RemoteError(FieldError):
    """An entry that cannot be written; ``field`` names the offending field, if one."""


class RemoteNotFound(LookupError):
    """No remote AE with that title."""


@dataclass(frozen=True)
class Entry:
    """A remote AE with where it comes from: "config", "database" or both."""

    remote: RemoteAE
    source: str

    def as_json(self) -> dict[str, Any]:
        return {**remote_as_json(self.remote), "source": self.source}


def remote_as_json(remote: RemoteAE) -> dict[str, Any]:
    values = asdict(remote)
    for name in _TUPLES:
        values[name] = list(values[name])
    values["visible"] = dict(remote.visible)
    return values


def _text(values: dict[str, Any], name: str, default: str = "") -> str:
    value = values.get(name, default)
    if not isinstance(value, str):
        raise RemoteError(f"{name} must be a string", name)
    return value.strip()


def _flag(values: dict[str, Any], name: str, default: bool) -> bool:
    value = values.get(name, default)
    if not isinstance(value, bool):
        raise RemoteError(f"{name} must be true or false", name)
    return value


def _words(values: dict[str, Any], name: str, allowed: tuple[str, ...] = ()) -> tuple[str, ...]:
    value = values.get(name, [])
    if isinstance(value, str):
        value = [item for item in value.split(",") if item.strip()]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise RemoteError(f"{name} must be a list of strings", name)
    words = tuple(item.strip() for item in value)
    unknown = [word for word in words if allowed and word not in allowed]
    if unknown:
        word = unknown[0]
        raise RemoteError(
            f"{name}: unknown {word!r}{did_you_mean(word, allowed)}; use {', '.join(allowed)}",
            name,
        )
    return words


def _visible(values: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """``visible`` as :func:`remote_as_json` writes it: keyword to matching value."""
    value = values.get("visible", {})
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise RemoteError("visible must be an object of keyword to matching value", "visible")
    for keyword in value:
        problem = visibility_problem(keyword)
        if problem is not None:
            raise RemoteError(f"visible: {problem}", "visible")
    return tuple(sorted(value.items()))


def _ae_title(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RemoteError("ae_title is required", "ae_title")
    title = value.strip()
    if len(title) > 16 or "\\" in title or not title.isprintable():
        raise RemoteError(
            f"ae_title {title!r} is not 1 to 16 printable characters without '\\'", "ae_title"
        )
    return title


def _port(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise RemoteError(f"port {value!r} is not a number from 1 to 65535", "port")
    return value


def _authority(values: dict[str, Any]) -> int | None:
    value = values.get("fallback_authority")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RemoteError("fallback_authority must be an authority id", "fallback_authority")
    return value


def _choice(values: dict[str, Any], name: str, choices: tuple[str, ...], default: Any) -> Any:
    value = values.get(name, default)
    if value is not None and value not in choices:
        raise RemoteError(f"{name} must be one of {', '.join(choices)}", name)
    return value


def remote_from_json(values: dict[str, Any]) -> RemoteAE:
    """Check an entry as the REST API and the CLI receive it; the error names the field."""
    unknown = set(values) - _FIELDS - {"source"}
    if unknown:
        raise RemoteError(f"unknown fields: {', '.join(sorted(unknown))}", sorted(unknown)[0])
    host = _text(values, "host")
    if not host:
        raise RemoteError("host is required", "host")
    if "port" not in values:
        raise RemoteError("port is required", "port")
    policy: DuplicatePolicy | None = _choice(values, "duplicate_policy", DUPLICATE_POLICIES, None)
    report: CommitmentReportMode = _choice(
        values, "commitment_report", get_args(CommitmentReportMode), "same_if_open"
    )
    return RemoteAE(
        ae_title=_ae_title(values.get("ae_title")),
        host=host,
        port=_port(values["port"]),
        description=_text(values, "description"),
        duplicate_policy=policy,
        commitment_report=report,
        pending_responses=_flag(values, "pending_responses", True),
        offers=_words(values, "offers", SERVICES),
        allowed=_words(values, "allowed", SERVICES),
        transfer_syntaxes=_words(values, "transfer_syntaxes"),
        move_destination_only=_flag(values, "move_destination_only", False),
        tls=_flag(values, "tls", False),
        check_host=_flag(values, "check_host", False),
        visible=_visible(values),
        show_deleted=_flag(values, "show_deleted", False),
        fallback_authority=_authority(values),
    )


def _from_row(row: Any, configured: RemoteAE | None) -> RemoteAE:
    values = {name: getattr(row, name) for name in _COLUMNS}
    if configured is not None:
        values.update({name: getattr(configured, name) for name in CONFIG_ONLY})
    for name in _TUPLES:
        values[name] = tuple(json.loads(values[name]))
    values["pending_responses"] = bool(values["pending_responses"])
    values["move_destination_only"] = bool(values["move_destination_only"])
    return RemoteAE(**values)


def _to_row(remote: RemoteAE) -> dict[str, Any]:
    values = {name: value for name, value in asdict(remote).items() if name in _COLUMNS}
    for name in _TUPLES:
        values[name] = json.dumps(list(values[name]))
    return values


class Remotes:
    def __init__(self, settings: Settings, database: Database | None = None) -> None:
        """Without a database, the table is the config file's entries only, read-only."""
        self.default_duplicate_policy = settings.duplicate_policy
        self.database = database
        self._configured = {remote.ae_title: remote for remote in settings.remote_ae}
        self._lock = threading.Lock()
        self._stored: dict[str, RemoteAE] = {}
        self._read_at: float | None = None  # monotonic time of the last read

    def get(self, ae_title: str) -> RemoteAE | None:
        title = ae_title.strip()
        return self._database_entries().get(title) or self._configured.get(title)

    def find(self, name: str) -> RemoteAE | None:
        """A remote AE by the title an administrator typed: exactly, else regardless of
        case when that names one entry only."""
        found = self.get(name)
        if found is not None:
            return found
        folded = [remote for remote in self.all() if remote.ae_title.lower() == name.lower()]
        return folded[0] if len(folded) == 1 else None

    def all(self) -> list[RemoteAE]:
        return [entry.remote for entry in self.entries()]

    def entries(self) -> list[Entry]:
        """Every remote AE with its source, by AE title."""
        stored = self._database_entries()
        titles = sorted(set(self._configured) | set(stored))
        return [self._entry(title, stored) for title in titles]

    def entry(self, ae_title: str) -> Entry:
        title = ae_title.strip()
        stored = self._database_entries()
        if title not in stored and title not in self._configured:
            raise RemoteNotFound(f"no remote AE {title!r}")
        return self._entry(title, stored)

    def put(self, remote: RemoteAE) -> bool:
        """Add or replace a run-time entry; returns whether it is new to the database."""
        self._check_config_only(remote)
        moment = now()
        values = _to_row(remote)
        with self._writer().begin() as connection:
            existing = connection.execute(
                sa.select(remote_ae.c.ae_title).where(remote_ae.c.ae_title == remote.ae_title)
            ).first()
            if existing is None:
                connection.execute(
                    sa.insert(remote_ae), {**values, "created_at": moment, "updated_at": moment}
                )
            else:
                connection.execute(
                    sa.update(remote_ae)
                    .where(remote_ae.c.ae_title == remote.ae_title)
                    .values(**values, updated_at=moment)
                )
        self._invalidate()
        return existing is None

    def delete(self, ae_title: str) -> None:
        """Remove a run-time entry; config file entries are refused (see the module doc)."""
        title = ae_title.strip()
        with self._writer().begin() as connection:
            deleted = connection.execute(
                sa.delete(remote_ae).where(remote_ae.c.ae_title == title)
            ).rowcount
        self._invalidate()
        if deleted:
            return
        if title in self._configured:
            raise RemoteError(
                f"{title} comes from the config file: remove it there and restart; "
                "at run time it can only be changed"
            )
        raise RemoteNotFound(f"no remote AE {title!r}")

    def _check_config_only(self, remote: RemoteAE) -> None:
        """A run-time entry cannot turn on what only the config file may set; what it
        leaves off is taken from the config entry (so an edit need not repeat it)."""
        base = self._configured.get(remote.ae_title) or RemoteAE(remote.ae_title, "", 0)
        for name in CONFIG_ONLY:
            value = getattr(remote, name)
            if value and value != getattr(base, name):
                raise RemoteError(f"{name} is set in the config file only ([[remote_ae]])", name)

    def visible_to(self, calling_ae: str) -> tuple[tuple[str, str], ...]:
        """The criteria limiting what this AE finds and retrieves; an unknown AE has
        none (whether it may ask at all is ``unknown_ae_allowed``'s business)."""
        remote = self.get(calling_ae)
        return remote.visible if remote is not None else ()

    def sees_deleted(self, calling_ae: str) -> bool:
        """Whether this AE also finds and retrieves hidden instances (``show_deleted``)."""
        remote = self.get(calling_ae)
        return remote is not None and remote.show_deleted

    def duplicate_policy_for(self, calling_ae: str) -> DuplicatePolicy:
        """What a SOP Instance UID sent again by this AE does (CDRClient re-sends edits)."""
        remote = self.get(calling_ae)
        if remote is not None and remote.duplicate_policy is not None:
            return remote.duplicate_policy
        return self.default_duplicate_policy

    def _entry(self, title: str, stored: dict[str, RemoteAE]) -> Entry:
        tables = (("config", self._configured), ("database", stored))
        source = "+".join(name for name, table in tables if title in table)
        return Entry(stored.get(title) or self._configured[title], source)

    def _writer(self) -> sa.Engine:
        if self.database is None:
            raise RemoteError("this remote AE table has no database to write to")
        return self.database.writer

    def _database_entries(self) -> dict[str, RemoteAE]:
        """The run-time entries, read again once the cache is older than its limit."""
        if self.database is None:
            return {}
        with self._lock:
            if self._read_at is None or time.monotonic() - self._read_at >= CACHE_SECONDS:
                with self.database.reader.connect() as connection:
                    rows = connection.execute(sa.select(remote_ae)).all()
                self._stored = {
                    row.ae_title: _from_row(row, self._configured.get(row.ae_title)) for row in rows
                }
                self._read_at = time.monotonic()
            return self._stored

    def _invalidate(self) -> None:
        with self._lock:
            self._read_at = None
