"""The store's schema comes from Alembic migrations, applied on start, matching the model."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from store.database import connect, metadata


def test_a_new_database_is_migrated_to_the_newest_revision(tmp_path: Path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'touchpoint.db'}")
    with engine.connect() as db:
        assert db.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "0005"
    assert set(inspect(engine).get_table_names()) >= {
        "journey_entries",
        "deliveries",
        "profiles",
        "processed_messages",
        "consent",
        "write_keys",
    }


def test_the_migrated_schema_is_the_model(tmp_path: Path) -> None:
    """A table changed in store/database.py without a new migration fails here."""
    engine = connect(f"sqlite:///{tmp_path / 'touchpoint.db'}")
    with engine.connect() as db:
        differences = compare_metadata(MigrationContext.configure(db), metadata)
    assert differences == []


def test_starting_again_keeps_the_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'touchpoint.db'}"
    with connect(url).begin() as db:
        db.execute(text("INSERT INTO write_keys VALUES ('h', 'shop', '2026-11-27 10:00:00')"))
    with connect(url).connect() as db:  # migrations run again: a no-op
        assert db.execute(text("SELECT name FROM write_keys")).scalar_one() == "shop"
    with connect(url).connect() as db:
        assert db.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"


def test_upgrading_from_0001_keeps_processed_ids_under_the_empty_scope(tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine

    url = f"sqlite:///{tmp_path / 'touchpoint.db'}"
    config = Config()
    config.set_main_option(
        "script_location", str(Path(__file__).parent.parent / "store" / "migrations")
    )
    with create_engine(url).begin() as db:
        config.attributes["connection"] = db
        command.upgrade(config, "0001")
        db.execute(text("INSERT INTO processed_messages VALUES ('m-1', '2026-11-27 10:00:00')"))
    with connect(url).connect() as db:
        rows = db.execute(text("SELECT scope, message_id FROM processed_messages")).all()
    assert [tuple(row) for row in rows] == [("", "m-1")]


def test_processes_starting_together_migrate_once(tmp_path: Path) -> None:
    """The worker and the API start at the same moment on a new database: no one trips over
    the other's CREATE TABLE."""
    import subprocess
    import sys
    import time

    url = f"sqlite:///{tmp_path / 'touchpoint.db'}"
    start_at = time.time() + 3  # every process imported, then all at once
    code = (
        "import time; from store.database import connect; "
        f"time.sleep(max(0, {start_at} - time.time())); connect({url!r})"
    )
    root = Path(__file__).resolve().parent.parent
    starts = [
        subprocess.Popen([sys.executable, "-c", code], cwd=root, stderr=subprocess.PIPE)
        for _ in range(6)
    ]
    failures = [err.decode() for _, err in (p.communicate(timeout=60) for p in starts) if err]
    assert failures == []
    assert [p.returncode for p in starts] == [0] * 6
    with connect(url).connect() as db:
        assert db.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "0005"
