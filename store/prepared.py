"""Statements compiled once per database and run on the driver's own cursor.

For the few statements a send runs every time (a frequency cap's lock, read and write), where
SQLAlchemy's work around each execution — the compiled-statement cache lookup, the execution
context, the result object — costs several times what SQLite spends answering. A
:class:`Prepared` statement is an ordinary Core statement; it is compiled once for each kind
of database that runs it and then handed straight to the DBAPI cursor of the transaction's
connection (the same connection, so the same transaction as the statements around it).

Values go through the column types' own bind and result processors, so a datetime is written
and read exactly as SQLAlchemy writes and reads it (a string on SQLite). A driver error is
raised as SQLAlchemy's exception for it (``OperationalError``, ``IntegrityError`` …), as
``Connection.execute`` would raise it — though, unlike ``Connection.execute``, a connection
lost in the middle is not marked invalid here: the pool's check on the next checkout (PostgreSQL's
``pool_pre_ping``) finds it.

Write a ``Prepared`` statement without expanding parameters: an ``IN`` list of constants as
literals (:func:`literal_in`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Dialect, literal_column
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.expression import Select, TextClause, UpdateBase

Processor = Callable[[Any], Any]


def literal_in(column: ColumnElement[str], values: Iterable[str]) -> ColumnElement[bool]:
    """``column IN ('a', 'b')`` with the constants written into the SQL (no parameter)."""
    quoted: list[ColumnElement[str]] = []
    for value in values:
        if not value.isidentifier():
            raise ValueError(f"{value!r}: only plain names are written as literals")
        quoted.append(literal_column(f"'{value}'"))
    return column.in_(quoted)


@dataclass(frozen=True)
class _Compiled:
    sql: str
    order: tuple[str, ...] | None  # the parameters' names in order, for positional drivers
    binds: dict[str, Processor]  # by parameter name, where the type converts the value
    results: tuple[Processor | None, ...]  # by selected column


class Prepared:
    def __init__(self, statement: Select[Any] | UpdateBase | TextClause) -> None:
        self.statement = statement
        self._compiled: dict[str, _Compiled] = {}  # by dialect and driver
        self._columns = _returned(statement)
        self._names = tuple(str(column.key) for column in self._columns)

    def first(self, db: Connection, values: Mapping[str, Any]) -> dict[str, Any] | None:
        """The first row a read returns, by its columns' names; ``None``: no row."""
        rows = self.run(db, values)
        return dict(zip(self._names, rows[0], strict=True)) if rows else None

    def run(self, db: Connection, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Execute with ``values`` (by parameter name) in ``db``'s transaction; the rows it
        returns (none for a write)."""
        compiled = self._for(db.dialect)
        named = {
            name: (process(value) if (process := compiled.binds.get(name)) else value)
            for name, value in values.items()
        }
        params: Mapping[str, Any] | tuple[Any, ...] = named
        if compiled.order is not None:
            params = tuple(named[name] for name in compiled.order)
        cursor = db.connection.cursor()
        try:
            cursor.execute(compiled.sql, params)
            rows: list[tuple[Any, ...]] = list(cursor.fetchall()) if cursor.description else []
        except db.dialect.loaded_dbapi.Error as error:
            raise DBAPIError.instance(
                compiled.sql, params, error, db.dialect.loaded_dbapi.Error, dialect=db.dialect
            ) from error
        finally:
            cursor.close()
        if not any(compiled.results):
            return rows
        return [
            tuple(
                process(value) if process else value
                for process, value in zip(compiled.results, row, strict=True)
            )
            for row in rows
        ]

    def _for(self, dialect: Dialect) -> _Compiled:
        key = f"{dialect.name}+{dialect.driver}"
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = self._compile(dialect)
        return compiled

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self.statement.compile(dialect=dialect)
        binds: dict[str, Processor] = {}
        for name, bind in compiled.binds.items():
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                binds[name] = process
        results = tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in self._columns
        )
        order = tuple(compiled.positiontup or ()) if compiled.positional else None
        return _Compiled(compiled.string, order, binds, results)


def _returned(statement: Select[Any] | UpdateBase | TextClause) -> tuple[ColumnElement[Any], ...]:
    """The columns a statement gives back: a read's, or a write's ``RETURNING``."""
    if isinstance(statement, Select):
        return tuple(statement.selected_columns)
    if isinstance(statement, UpdateBase):
        return tuple(statement.exported_columns)
    return ()
