"""Statements of the ingest hot path, compiled once and run on the DBAPI cursor.

Indexing an instance that joins an existing series runs six short statements. Run
through SQLAlchemy's ``Connection`` each cost about 80 µs of Python (statement cache
lookup, execution context, result object) where SQLite needs about 15 µs to run it:
together most of an instance's index time, and a sixth of its CPU on the server.

They stay Core statements, checked against the schema like every other, and are
compiled once per dialect with SQLAlchemy's public compiler. They run on the cursor of
the transaction's own connection, inside the transaction SQLAlchemy began; bind values
go through the column types' own bind processors, and errors come out as SQLAlchemy's
(``IntegrityError``, ``OperationalError``) as from ``Connection.execute``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement


class PreparedStatement:
    """One statement compiled for one dialect."""

    def __init__(
        self, statement: ClauseElement, dialect: Dialect, column_keys: Sequence[str] = ()
    ) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=list(column_keys) or None)
        assert isinstance(compiled, SQLCompiler)
        self.sql = compiled.string
        self._defaults = {  # values built into the statement, such as a LIMIT
            name: bind.value
            for name, bind in compiled.binds.items()
            if not bind.required and bind.value is not None
        }
        self._positions: Sequence[str] | None = (
            tuple(compiled.positiontup or ()) if dialect.positional else None
        )
        self._processors: dict[str, Callable[[Any], Any]] = {}
        for name, bind in compiled.binds.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                self._processors[name] = processor
        self._error = dialect.loaded_dbapi.Error

    def run(self, cursor: Any, params: Mapping[str, Any]) -> Any:
        """Execute on a DBAPI cursor; returns the cursor, to fetch from."""
        values = {**self._defaults, **params} if self._defaults else dict(params)
        for name, processor in self._processors.items():
            if name in values:
                values[name] = processor(values[name])
        bound: Any = values
        if self._positions is not None:
            bound = tuple(values[name] for name in self._positions)
        try:
            cursor.execute(self.sql, bound)
        except self._error as exc:
            raise sa.exc.DBAPIError.instance(self.sql, bound, exc, self._error) from exc
        return cursor


class PreparedStatements:
    """The compiled statements of one database, made on first use."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._compiled: dict[tuple[int, tuple[str, ...]], PreparedStatement] = {}

    def __call__(
        self, statement: ClauseElement, column_keys: Sequence[str] = ()
    ) -> PreparedStatement:
        """``statement`` compiled; ``column_keys`` are the columns an INSERT sets.

        Statements are looked up by identity: pass module-level constants.
        """
        key = (id(statement), tuple(column_keys))
        prepared = self._compiled.get(key)
        if prepared is None:
            prepared = PreparedStatement(statement, self.dialect, column_keys)
            self._compiled[key] = prepared
        return prepared


def cursor_of(connection: Connection) -> Any:
    """The DBAPI cursor of a connection's current transaction."""
    return connection.connection.cursor()
