"""Statements run on the driver's cursor (store/prepared.py) on SQLite and PostgreSQL: they
write and read values as SQLAlchemy's own execution does, share the transaction of the
statements around them, and fail with SQLAlchemy's exceptions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import bindparam, insert, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from store.atomic import insert_new
from store.database import deliveries, profiles, utc
from store.prepared import Prepared, literal_in
from store.profiles import ProfileStore
from tests.conftest import Database
from workflows.models import Profile

COUNTED_AT = datetime(2027, 1, 4, 10, 30, 15, 123456, tzinfo=UTC)

_READ = Prepared(
    select(deliveries.c.message_id, deliveries.c.counted_at, deliveries.c.status)
    .where(
        deliveries.c.customer == bindparam("customer"),
        literal_in(deliveries.c.status, ("pending", "sent")),
    )
    .order_by(deliveries.c.message_id)
)
_COUNT = Prepared(
    update(deliveries)
    .where(deliveries.c.message_id == bindparam("message"))
    .values(counted_at=bindparam("at"), category=bindparam("kind"))
)


def add(database: Database, message_id: str, status: str) -> None:
    now = datetime.now(UTC)
    row = {
        "message_id": message_id,
        "journey_id": "j",
        "step_id": "s",
        "channel": "email",
        "customer": "c1",
        "status": status,
        "attempts": 1,
        "created_at": now,
        "updated_at": now,
    }
    with database.connect().begin() as db:
        db.execute(insert(deliveries).values(**row))


def test_values_go_in_and_come_out_as_sqlalchemy_writes_and_reads_them(
    database: Database,
) -> None:
    engine = database.connect()
    for message_id, status in (("m1", "pending"), ("m2", "sent"), ("m3", "skipped")):
        add(database, message_id, status)
    with engine.begin() as db:
        assert _COUNT.run(db, {"message": "m1", "at": COUNTED_AT, "kind": "marketing"}) == []
    with engine.connect() as db:  # read back by Core: the same value
        core = db.execute(select(deliveries.c.counted_at).where(deliveries.c.message_id == "m1"))
        stored = core.scalar_one()
    assert stored.replace(tzinfo=stored.tzinfo or UTC) == COUNTED_AT
    with engine.begin() as db:
        rows = _READ.run(db, {"customer": "c1"})
    assert [(m, s) for m, _, s in rows] == [("m1", "pending"), ("m2", "sent")]  # not skipped
    counted = rows[0][1]
    assert isinstance(counted, datetime)  # a datetime on SQLite too, not its stored string
    assert counted.replace(tzinfo=counted.tzinfo or UTC) == COUNTED_AT
    assert rows[1][1] is None


def test_it_runs_in_the_transaction_of_the_statements_around_it(database: Database) -> None:
    engine = database.connect()
    add(database, "m1", "pending")
    with pytest.raises(RuntimeError), engine.begin() as db:
        _COUNT.run(db, {"message": "m1", "at": COUNTED_AT, "kind": "marketing"})
        seen = db.execute(select(deliveries.c.category).where(deliveries.c.message_id == "m1"))
        assert seen.scalar_one() == "marketing"  # its write, seen by Core in the transaction
        raise RuntimeError("roll back")
    with engine.connect() as db:
        kept = db.execute(select(deliveries.c.category).where(deliveries.c.message_id == "m1"))
        assert kept.scalar_one() is None  # rolled back with the transaction


def test_a_driver_error_is_sqlalchemys_exception_naming_the_statement(database: Database) -> None:
    add(database, "m1", "pending")
    duplicate = Prepared(
        update(deliveries)
        .where(deliveries.c.message_id == bindparam("message"))
        .values(message_id=bindparam("other"))
    )
    add(database, "m2", "pending")
    with pytest.raises(IntegrityError, match="UPDATE deliveries"), database.connect().begin() as db:
        duplicate.run(db, {"message": "m2", "other": "m1"})
    broken = Prepared(text("SELECT no_such_column FROM deliveries"))
    with pytest.raises(DBAPIError, match="no_such_column"), database.connect().begin() as db:
        broken.run(db, {})  # OperationalError on SQLite, ProgrammingError on PostgreSQL


def test_only_plain_names_are_written_as_literals() -> None:
    with pytest.raises(ValueError, match="plain names"):
        literal_in(deliveries.c.status, ("sent' OR '1'='1",))


def test_insert_new_writes_what_core_writes_with_the_defaults_and_inserts_once(
    database: Database,
) -> None:
    engine = database.connect()
    row = {"message_id": "m9", "journey_id": "j", "step_id": "s", "channel": "email"}
    row |= {"customer": "c1", "status": "pending", "created_at": COUNTED_AT}
    row |= {"updated_at": COUNTED_AT}  # no attempts: the column's default (0) goes in
    with engine.begin() as db:
        assert insert_new(db, deliveries, row) is True
        assert insert_new(db, deliveries, {**row, "status": "sent"}) is False  # the key exists
    with engine.connect() as db:
        stored = db.execute(select(deliveries).where(deliveries.c.message_id == "m9")).one()
    assert (stored.status, stored.attempts) == ("pending", 0)
    assert utc(stored.created_at) == COUNTED_AT  # a datetime written as SQLAlchemy writes it
    profile = {"customer_id": "c1", "traits": {"first_name": "Zoë", "vip": True}}
    profile |= {"created_at": COUNTED_AT, "updated_at": COUNTED_AT}
    with engine.begin() as db:
        assert insert_new(db, profiles, profile) is True
    assert ProfileStore(engine).get("c1") == Profile(id="c1", traits=profile["traits"])


def test_first_gives_the_first_row_by_column_names_or_none(database: Database) -> None:
    add(database, "m1", "pending")
    add(database, "m2", "sent")
    with database.connect().connect() as db:
        assert _READ.first(db, {"customer": "c1"}) == {
            "message_id": "m1",
            "counted_at": None,
            "status": "pending",
        }
        assert _READ.first(db, {"customer": "nobody"}) is None
