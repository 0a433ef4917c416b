"""The store's schema comes from Alembic migrations, applied on start, matching the model —
on SQLite and on PostgreSQL."""

from __future__ import annotations

import warnings
from pathlib import Path

import psycopg
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect, text

from ops.postgres import Postgres
from store.database import connect, metadata, scratch_store
from store.profiles import ProfileStore
from tests.conftest import Database, processes_at_once

ROOT = Path(__file__).resolve().parent.parent
HEAD = "0012"


def test_a_new_database_is_migrated_to_the_newest_revision(database: Database) -> None:
    engine = database.connect()
    with engine.connect() as db:
        assert db.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == HEAD
    assert set(inspect(engine).get_table_names()) >= {
        "journey_entries",
        "deliveries",
        "profiles",
        "processed_messages",
        "consent",
        "write_keys",
        "event_log",
    }


def test_the_migrated_schema_is_the_model(database: Database) -> None:
    """A table or index changed in store/database.py without a new migration fails here."""
    engine = database.connect()
    with engine.connect() as db, warnings.catch_warnings():
        # SQLite's reflection cannot see an index on an expression: checked by name below
        warnings.filterwarnings("ignore", message=".*expression-based index")
        differences = compare_metadata(MigrationContext.configure(db), metadata)
        if database.backend == "sqlite":
            query = "SELECT sql FROM sqlite_master WHERE name = 'ix_profiles_email_lower'"
            assert "lower(email)" in db.execute(text(query)).scalar_one()
    assert differences == []


def test_starting_again_keeps_the_data(database: Database) -> None:
    with database.connect().begin() as db:
        db.execute(
            text(
                "INSERT INTO write_keys (key_hash, name, created_at) "
                "VALUES ('h', 'shop', '2026-11-27 10:00:00')"
            )
        )
    with database.connect().connect() as db:  # migrations run again: a no-op
        assert db.execute(text("SELECT name FROM write_keys")).scalar_one() == "shop"
    if database.backend == "sqlite":
        with database.connect().connect() as db:
            assert db.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"


def test_upgrading_from_0001_keeps_processed_ids_under_the_empty_scope(
    database: Database,
) -> None:
    config = Config()
    config.set_main_option("script_location", str(ROOT / "store" / "migrations"))
    old = create_engine(database.url.replace("postgresql://", "postgresql+psycopg://"))
    with old.begin() as db:
        config.attributes["connection"] = db
        command.upgrade(config, "0001")
        db.execute(text("INSERT INTO processed_messages VALUES ('m-1', '2026-11-27 10:00:00')"))
    old.dispose()
    with database.connect().connect() as db:
        rows = db.execute(text("SELECT scope, message_id FROM processed_messages")).all()
    assert [tuple(row) for row in rows] == [("", "m-1")]


def test_upgrading_from_0005_keeps_write_keys_as_write_keys(database: Database) -> None:
    """Keys made before admin keys existed stay write keys: they never open admin endpoints."""
    config = Config()
    config.set_main_option("script_location", str(ROOT / "store" / "migrations"))
    old = create_engine(database.url.replace("postgresql://", "postgresql+psycopg://"))
    with old.begin() as db:
        config.attributes["connection"] = db
        command.upgrade(config, "0005")
        db.execute(text("INSERT INTO write_keys VALUES ('h', 'shop', '2026-11-27 10:00:00')"))
    old.dispose()
    with database.connect().connect() as db:
        rows = db.execute(text("SELECT name, kind FROM write_keys")).all()
    assert [tuple(row) for row in rows] == [("shop", "write")]


def test_upgrading_from_0007_keeps_ledger_rows_and_counts_none_of_them(database: Database) -> None:
    """Messages sent before delivery policies took no frequency cap's slot: a cap counts from
    its first day, and the ledger keeps every row."""
    config = Config()
    config.set_main_option("script_location", str(ROOT / "store" / "migrations"))
    old = create_engine(database.url.replace("postgresql://", "postgresql+psycopg://"))
    with old.begin() as db:
        config.attributes["connection"] = db
        command.upgrade(config, "0007")
        db.execute(
            text(
                "INSERT INTO deliveries (message_id, journey_id, step_id, channel, customer, "
                "status, attempts, created_at, updated_at) VALUES ('m1', 'j', 's', 'email', "
                "'c', 'sent', 1, '2026-11-27 10:00:00', '2026-11-27 10:00:00')"
            )
        )
    old.dispose()
    with database.connect().connect() as db:
        rows = db.execute(
            text("SELECT message_id, status, category, counted_at, deferred_since FROM deliveries")
        ).all()
    assert [tuple(row) for row in rows] == [("m1", "sent", None, None, None)]


def test_upgrading_from_0011_adds_an_empty_event_log_and_keeps_profiles(
    database: Database,
) -> None:
    """Calls accepted before the event log existed are not in it: it starts empty."""
    config = Config()
    config.set_main_option("script_location", str(ROOT / "store" / "migrations"))
    old = create_engine(database.url.replace("postgresql://", "postgresql+psycopg://"))
    with old.begin() as db:
        config.attributes["connection"] = db
        command.upgrade(config, "0011")
        db.execute(
            text(
                "INSERT INTO profiles (customer_id, traits, created_at, updated_at) "
                "VALUES ('max-1', '{}', '2026-11-27 10:00:00', '2026-11-27 10:00:00')"
            )
        )
    old.dispose()
    engine = database.connect()
    with engine.connect() as db:
        assert db.execute(text("SELECT customer_id FROM profiles")).scalar_one() == "max-1"
        assert db.execute(text("SELECT count(*) FROM event_log")).scalar_one() == 0
    indexes = {index["name"] for index in inspect(engine).get_indexes("event_log")}
    assert {"ix_event_log_customer_id_id", "ix_event_log_received_at"} <= indexes


def test_the_lookup_by_email_reads_an_index_not_the_table(database: Database) -> None:
    """The SendGrid webhook asks for every event it receives: it must not scan profiles."""
    engine = database.connect()
    profiles = ProfileStore(engine)
    for n in range(50):
        profiles.upsert(f"c-{n}", {"email": f"Customer.{n}@Example.com"})
    assert profiles.by_email("customer.7@example.COM ") == "c-7"
    query = "SELECT customer_id FROM profiles WHERE lower(email) = 'customer.7@example.com'"
    with engine.connect() as db:
        if database.backend == "sqlite":
            plan = " ".join(str(row[-1]) for row in db.execute(text(f"EXPLAIN QUERY PLAN {query}")))
        else:
            db.execute(text("ANALYZE profiles"))
            db.execute(text("SET enable_seqscan = off"))  # 50 rows: it would rather scan them
            plan = " ".join(str(row[0]) for row in db.execute(text(f"EXPLAIN {query}")))
    assert "ix_profiles_email_lower" in plan, plan


def test_processes_starting_together_migrate_once(database: Database) -> None:
    """Workers and APIs start at the same moment on a new database: no one trips over another's
    CREATE TABLE, and the migrations run once."""
    finished = processes_at_once(
        "from store.database import connect", f"connect({database.url!r})", count=6
    )
    assert [(p.returncode, p.stderr) for p in finished] == [(0, "")] * 6
    with database.connect().connect() as db:
        assert db.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == HEAD


def test_a_postgresql_url_uses_psycopg_3_with_a_checked_pool(postgres: Postgres) -> None:
    plain = postgres.create_database()  # postgresql://…: SQLAlchemy alone would want psycopg2
    for url in (plain, plain.replace("postgresql://", "postgres://")):
        engine = connect(f"{url}?pool_size=3&max_overflow=2")
        assert engine.dialect.driver == "psycopg"
        assert engine.pool.size() == 3  # type: ignore[attr-defined]
        assert engine.pool._pre_ping  # type: ignore[attr-defined]
        with engine.connect() as db:
            name = db.execute(text("SELECT current_setting('application_name')")).scalar_one()
        assert name == "touchpoint"
        engine.dispose()
    postgres.drop_database(plain)


def test_connections_the_server_dropped_are_replaced_without_an_error(postgres: Postgres) -> None:
    """A restarted or failed-over server (here: every connection terminated) costs no error:
    the pool checks a connection before handing it out."""
    url = postgres.create_database()
    engine = connect(url)
    profiles = ProfileStore(engine)
    profiles.upsert("max", {"email": "max@example.com"})
    with psycopg.connect(postgres.admin_url, autocommit=True) as admin:
        dropped = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            [url.rsplit("/", 1)[1]],
        ).fetchone()
    assert dropped is not None and dropped[0] >= 1
    assert profiles.by_email("max@example.com") == "max"
    engine.dispose()
    postgres.drop_database(url)


def test_a_simulations_scratch_store_has_the_migrated_schema(tmp_path: Path) -> None:
    """``scratch_store`` skips the migrations: its tables, columns, keys and indexes are still
    the ones the migrations make."""
    migrated = connect(f"sqlite:///{tmp_path / 'migrated.db'}")
    scratch = scratch_store(tmp_path / "scratch.db")
    try:
        assert _schema(scratch) == _schema(migrated)
    finally:
        migrated.dispose()
        scratch.dispose()


def _schema(engine: Engine) -> set[tuple[str, str, str]]:
    found = inspect(engine)
    schema = set()
    for table in set(found.get_table_names()) - {"alembic_version"}:
        schema.add(("table", table, ""))
        for column in found.get_columns(table):
            shape = f"{column['type']} nullable={column['nullable']} {column['default']}"
            schema.add(("column", f"{table}.{column['name']}", shape))
        key = found.get_pk_constraint(table)["constrained_columns"]
        schema.add(("primary key", table, ",".join(key)))
        with engine.connect() as db:
            query = "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = :t"
            for name, sql in db.execute(text(query), {"t": table}):
                schema.add(("index", name, " ".join((sql or "").split()[3:])))  # after its name
    return schema
