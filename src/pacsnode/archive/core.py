"""The archive as one object: index, storage and ingest behind the network doors."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import sqlalchemy as sa

from pacsnode.archive.attributes import Level
from pacsnode.archive.authorities import Authorities, Issuers, NoMatch
from pacsnode.archive.coercion import Coercions
from pacsnode.archive.database import Database, has_schema, migrate, open_database
from pacsnode.archive.deletion import Deletion
from pacsnode.archive.index import Index
from pacsnode.archive.ingest import (
    CANNOT_UNDERSTAND,
    REJECTED_WARNING,
    Ingest,
    IngestResult,
    Received,
)
from pacsnode.archive.matching import Query, build, retrieve_selection, search
from pacsnode.archive.metadata import MetadataCache
from pacsnode.archive.outgoing import Outgoing
from pacsnode.archive.patients import PatientRecords
from pacsnode.archive.receiving import Origin, Receiving
from pacsnode.archive.remotes import Remotes
from pacsnode.archive.retrieve import Selected
from pacsnode.archive.storage import Storage
from pacsnode.config import CONFIG_ENV, SYSTEM_CONFIG, Settings

log = logging.getLogger("pacsnode.archive")

QUICK_ROWS = 1000
"""Rows a PostgreSQL search reads in one go (about 1 MB) before it streams them instead
(:meth:`Archive._found`): a search that matches more is read twice."""
ARCHIVE_NEIGHBOURS = frozenset({"viewer"})
"""What may be in a data directory before its archive is made: the OHIF viewer, which
'make run' installs before the first 'pacsnode serve'."""


class ArchiveError(Exception):
    """The archive cannot be opened; the message is one line naming the path or URL."""


def display_url(url: str) -> str:
    """A database URL with its password hidden, for messages."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url


class Archive:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.database: Database = open_database(settings.resolved_database_url)
        migrate(self.database.writer)
        self.storage = Storage.of(settings)
        self.index = Index(self.database)
        warn = settings.rejected_store_answer == "warning"
        self.ingest = Ingest(
            self.storage, self.index, REJECTED_WARNING if warn else CANNOT_UNDERSTAND
        )
        self.rejections = self.ingest.rejections
        self.remotes = Remotes(settings, self.database)
        self.authorities = Authorities(settings, self.database)
        self.issuers = Issuers(settings, self.authorities, self.remotes)
        self.coercions = Coercions(settings)
        self.outgoing = Outgoing(self.database, self.coercions, settings.ae_title)
        self.metadata = MetadataCache(self.database, self.storage, self.outgoing)
        self.receiving = Receiving(self)
        self.deletion = Deletion(self.index, self.storage)
        self.patients = PatientRecords(self.index, self.issuers)

    def receive(self, received: Received, origin: Origin) -> IngestResult:
        """Take in an object from any door (see :mod:`pacsnode.archive.receiving`)."""
        return self.receiving.receive(received, origin)

    def find(
        self,
        query: Query,
        offset: int | None = None,
        limit: int | None = None,
        requestor: str | None = None,
    ) -> Iterator[sa.RowMapping]:
        """The matches of a C-FIND, QIDO-RS or REST search, by one engine. The query is
        checked now (:class:`QueryError`); its rows stream from the index as iterated.
        ``requestor`` is a C-FIND's calling AE title, for the issuer heuristic."""
        if requestor is not None:
            try:
                query = replace(query, keys=self.issuers.patient_keys(query.keys, requestor))
            except NoMatch as exc:
                build(query)  # still refused if it does not fit the model
                log.info("C-FIND from %s matches nothing: %s", requestor, exc)
                return iter(())
        statement = build(query).offset(offset)
        if limit is not None:
            statement = statement.limit(limit)
        return self._found(statement, limit)

    def select(
        self,
        level: Level,
        keys: dict[str, str],
        patient_root: bool,
        visible: tuple[tuple[str, str], ...] = (),
        deleted: bool = False,
        requestor: str = "",
    ) -> list[Selected]:
        """The instances a C-MOVE or C-GET identifier names, as stored (with ``deleted``
        the hidden ones too); raises :class:`QueryError` for an identifier that names
        nothing unambiguously. ``requestor`` is the calling AE title, for the issuer
        heuristic."""
        issuer = None
        if self.issuers.enabled and keys.get("PatientID"):
            try:
                issuer = self.issuers.patient_keys(keys, requestor).get("IssuerOfPatientID")
            except NoMatch as exc:
                retrieve_selection(level, keys, patient_root)  # still refused if malformed
                log.info("retrieve by %s selects nothing: %s", requestor, exc)
                return []
        statement = retrieve_selection(
            level,
            keys,
            patient_root,
            visible,
            self.settings.case_insensitive_matching,
            deleted,
            issuer,
        )
        return [
            Selected(
                self.storage.absolute(row["instance.file_path"]),
                row["instance.sop_class_uid"],
                row["instance.sop_instance_uid"],
                row["instance.transfer_syntax_uid"],
                bool(row["patient.edited"] or row["study.edited"]),
            )
            for row in self._rows(statement)
        ]

    def _rows(self, statement: sa.Select[Any]) -> Iterator[sa.RowMapping]:
        with self.database.reader.connect() as connection:
            yield from search(connection, statement)

    def _found(self, statement: sa.Select[Any], limit: int | None) -> Iterator[sa.RowMapping]:
        """The rows of a search, read in autocommit. On PostgreSQL first up to
        :data:`QUICK_ROWS` of them in one round trip, streamed again only when there
        are more (most searches match a few)."""
        quick = self.database.quick_reader
        if quick is None:
            yield from self._rows(statement)
            return
        if quick.dialect.name == "sqlite":  # no round trips to save: streamed
            with quick.connect() as connection:
                yield from connection.execute(statement).mappings()
            return
        bounded = limit is not None and limit <= QUICK_ROWS
        first = statement if bounded else statement.limit(QUICK_ROWS + 1)
        try:
            rows = _read(quick, first)
        except sa.exc.DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            rows = _read(quick, first)  # the pool has let its stale connections go
        if bounded or len(rows) <= QUICK_ROWS:
            yield from rows
        else:
            yield from self._rows(statement)

    @classmethod
    def open(cls, settings: Settings, create: bool = False) -> Archive:
        """The archive the settings name, as the doors open it: an existing one, or with
        ``create`` a new one in an empty or new data directory (``serve``, ``import``).

        Anything else is an :class:`ArchiveError`, so that a command run without its
        config file never quietly makes a second archive where it happens to run.
        """
        url = settings.resolved_database_url
        try:
            exists = has_schema(url)
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            raise _database_error(url, exc) from exc
        if not exists:
            _check_new(settings, create)
        try:
            return cls(settings)
        except OSError as exc:
            log.debug("data directory %s unusable", settings.data_dir, exc_info=True)
            where = exc.filename or settings.data_dir
            raise ArchiveError(f"cannot use the data directory {where}: {exc.strerror}") from exc
        except sa.exc.SQLAlchemyError as exc:
            raise _database_error(url, exc) from exc

    def close(self) -> None:
        self.database.dispose()


def _read(engine: sa.Engine, statement: sa.Select[Any]) -> list[sa.RowMapping]:
    with engine.connect() as connection:
        return list(connection.execute(statement).mappings())


def remote_table(settings: Settings) -> Remotes:
    """The remote AE table a server with these settings sees: the config file's entries,
    and the archive's run-time ones when there is an archive (never made here)."""
    url = settings.resolved_database_url
    try:
        if not has_schema(url):
            return Remotes(settings)
        remotes = Remotes(settings, open_database(url))
        remotes.all()  # read now, so that an unreachable index fails here
    except (sa.exc.SQLAlchemyError, OSError) as exc:
        raise _database_error(url, exc) from exc
    return remotes


def _check_new(settings: Settings, create: bool) -> None:
    """A new archive only where asked for, and never over a folder of other files."""
    data_dir = settings.data_dir.absolute()
    if not create:
        named = settings.config_file or f"none (no --config, ${CONFIG_ENV} or {SYSTEM_CONFIG})"
        chosen = settings.database_url or settings.cluster  # not the default SQLite file
        index = f" (index {display_url(settings.resolved_database_url)})" if chosen else ""
        raise ArchiveError(
            f"no archive in {data_dir}{index}; config file: {named}. Name the archive's "
            "config file, or create an archive with 'pacsnode serve' or 'pacsnode import'"
        )
    if data_dir.is_dir() and any(p.name not in ARCHIVE_NEIGHBOURS for p in data_dir.iterdir()):
        raise ArchiveError(
            f"{data_dir} holds other files and no archive: give data_dir an empty or new directory"
        )


def _database_error(url: str, exc: Exception) -> ArchiveError:
    log.debug("index database %s unusable", display_url(url), exc_info=True)
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    return ArchiveError(f"cannot open the index database {display_url(url)}: {reason}")
