"""The two moves every store write is built from, correct with many processes on one database.

The store runs on SQLite or PostgreSQL, and their concurrency differs:

* **SQLite** has one writer at a time. A transaction takes the database's write lock at its
  first write (``INSERT``, ``UPDATE``, ``DELETE``) and keeps it until it commits; a ``SELECT``
  before that reads without any lock (the driver begins the transaction at the first write).
* **PostgreSQL** (READ COMMITTED, its default and ours) runs writers side by side: each
  statement sees what was committed when it began, and only rows a transaction has written or
  locked keep the others waiting. Two transactions can read "no row" at the same moment.

So a write never relies on what an unlocked read saw:

* :func:`insert_new` — ``INSERT … ON CONFLICT DO NOTHING`` on the table's primary key. The
  database decides who is first: a concurrent insert of the same key waits for the first to
  commit, then inserts nothing. No error and no aborted transaction on either backend.
* :func:`read_for_update` — read a row so that nobody else changes it until this transaction
  ends: ``SELECT … FOR UPDATE`` on PostgreSQL (other writers of *that row* wait), the write
  lock on SQLite (taken by a write that changes nothing, since SQLite has no row locks).
* :func:`lock_subject` — hold a name (a customer) for the rest of the transaction, when what
  must not change is a set of rows rather than one: a transaction-level advisory lock on
  PostgreSQL, the write lock on SQLite. It runs on every send a frequency cap covers, so its
  statement is :class:`store.prepared.Prepared` (compiled once, run on the driver's cursor).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Connection, Engine, Row, Select, Table, bindparam, false, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import ClauseElement

from store.prepared import Prepared

Insert = postgresql.Insert | sqlite.Insert


def dialect_insert(bind: Engine | Connection) -> Callable[[Table], Insert]:
    """``insert`` with the ``ON CONFLICT`` clauses, for the database of ``bind``."""
    return insert_for(bind.dialect.name)


def insert_for(dialect: str) -> Callable[[Table], Insert]:
    """``insert`` with the ``ON CONFLICT`` clauses, for the database named ``dialect``."""
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def insert_new(db: Connection, table: Table, values: Mapping[str, Any]) -> bool:
    """Insert ``values`` unless a row with the same key exists; ``True`` if this call did.
    Plain values (the claims every event and send makes) go through a statement compiled once
    per table and columns (:mod:`store.prepared`); a SQL expression among them is built anew."""
    if any(isinstance(value, ClauseElement) for value in values.values()):
        key = table.primary_key.columns.values()[0]
        statement = dialect_insert(db)(table).values(**values).on_conflict_do_nothing()
        return db.execute(statement.returning(key)).first() is not None  # a row if inserted
    filled = {**_scalar_defaults(table), **values}  # what SQLAlchemy would add, added here
    prepared = _insert_new(db.dialect.name, table, tuple(filled))
    return bool(prepared.run(db, filled))  # a row only if inserted


@functools.cache
def _scalar_defaults(table: Table) -> dict[str, Any]:
    """The columns' Python-side defaults (the store's are all constants)."""
    defaults: dict[str, Any] = {}
    for column in table.columns:
        if column.default is not None:
            if not column.default.is_scalar:
                raise TypeError(f"{table.name}.{column.name}: only constant defaults are prepared")
            defaults[column.name] = column.default.arg  # type: ignore[attr-defined]
    return defaults


@functools.cache
def _insert_new(dialect: str, table: Table, columns: tuple[str, ...]) -> Prepared:
    key = table.primary_key.columns.values()[0]
    binds = {name: bindparam(name, type_=table.c[name].type) for name in columns}
    return Prepared(
        insert_for(dialect)(table).values(binds).on_conflict_do_nothing().returning(key)
    )


def read_for_update(db: Connection, query: Select[Any]) -> Row[Any] | None:
    """The first row of ``query`` (on one table), locked against other writers until the
    transaction ends; ``None`` if there is none (then nothing is locked on PostgreSQL: insert
    with :func:`insert_new` and read again if someone else was first)."""
    if db.dialect.name == "sqlite":
        [table] = query.get_final_froms()
        assert isinstance(table, Table)
        key = table.primary_key.columns.values()[0]
        db.execute(update(table).where(false()).values({key.name: key}))  # the write lock
        return db.execute(query).first()
    return db.execute(query.with_for_update()).first()


def lock_subject(db: Connection, table: Table, subject: str) -> None:
    """Hold ``subject`` until the transaction ends: another transaction that locks the same
    subject waits (``pg_advisory_xact_lock`` on PostgreSQL; on SQLite the database's write lock,
    taken by a write to ``table`` that changes nothing)."""
    if db.dialect.name == "sqlite":
        _write_nothing(table).run(db, {})
        return
    number = int.from_bytes(hashlib.sha256(subject.encode()).digest()[:8], "big", signed=True)
    _ADVISORY_LOCK.run(db, {"key": number})


_ADVISORY_LOCK = Prepared(text("SELECT pg_advisory_xact_lock(:key)"))


@functools.cache
def _write_nothing(table: Table) -> Prepared:
    """A write to ``table`` that changes no row (it takes SQLite's write lock), built once."""
    key = table.primary_key.columns.values()[0]
    return Prepared(update(table).where(false()).values({key.name: key}))
