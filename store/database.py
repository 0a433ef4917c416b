"""Tables and the engine. SQLAlchemy Core with portable SQL, so a URL is all PostgreSQL needs.

The tables below are the model; ``store/migrations`` holds the Alembic revisions that create
them, applied on every start (``connect``). A change to a table needs a new revision; a test
compares the migrated database with this model.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    make_url,
    text,
)
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from config.errors import StoreUnavailable

DEFAULT_URL = "sqlite:///.touchpoint/touchpoint.db"

metadata = MetaData()

journey_entries = Table(
    "journey_entries",
    metadata,
    Column("journey_id", String(200), primary_key=True),
    Column("subject", String(64), primary_key=True),  # hash of customer id (and key): no PII
    Column("reserved", Integer, nullable=False, default=0),  # entry numbers handed out
    Column("entered", Integer, nullable=False, default=0),  # runs actually started
    Column("last_entered_at", DateTime(timezone=True), nullable=True),
)


deliveries = Table(
    "deliveries",
    metadata,
    Column("message_id", String(64), primary_key=True),
    Column("journey_id", String(200), nullable=False),
    Column("step_id", String(200), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("customer", String(64), nullable=False),  # hash of the customer id: no PII
    Column("status", String(16), nullable=False),  # pending, sent, failed, skipped
    Column("provider", String(32), nullable=True),
    Column("provider_id", String(200), nullable=True),
    Column("reason", String(1000), nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


profiles = Table(
    "profiles",
    metadata,
    Column("customer_id", String(200), primary_key=True),
    Column("email", String(320), nullable=True),
    Column("phone", String(64), nullable=True),
    Column("locale", String(35), nullable=True),
    Column("timezone", String(64), nullable=True),
    Column("traits", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

processed_messages = Table(
    "processed_messages",
    metadata,
    # the source a message id is unique in: a write key's hash, or "sendgrid", "cli", …
    Column("scope", String(64), primary_key=True),
    Column("message_id", String(200), primary_key=True),
    Column("received_at", DateTime(timezone=True), nullable=False, index=True),
)

aliases = Table(
    "aliases",
    metadata,
    Column("anonymous_id", String(200), primary_key=True),  # Segment's previousId
    Column("customer_id", String(200), nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

suppressions = Table(
    "suppressions",
    metadata,
    Column("address", String(320), primary_key=True),  # lower-cased email address
    Column("reason", String(64), nullable=False),  # bounce, spamreport, manual, …
    Column("detail", String(500), nullable=True),  # the provider's words, when given
    Column("source", String(64), nullable=False),  # sendgrid, cli, …
    Column("created_at", DateTime(timezone=True), nullable=False),
)

plans = Table(
    "plans",
    metadata,
    Column("version", String(64), primary_key=True),  # the plan's content hash
    Column("journey_id", String(200), nullable=False, index=True),
    Column("plan", JSON, nullable=False),  # the compiled plan, as JSON
    Column("published_at", DateTime(timezone=True), nullable=False, index=True),
)

suppression_audit = Table(
    "suppression_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("address", String(320), nullable=False, index=True),
    Column("action", String(16), nullable=False),  # added, removed
    Column("reason", String(500), nullable=True),  # why (the operator's words on removal)
    Column("actor", String(200), nullable=False),  # who: sendgrid, or the operator's name
    Column("at", DateTime(timezone=True), nullable=False),
)

consent = Table(
    "consent",
    metadata,
    Column("customer_id", String(200), primary_key=True),
    Column("category", String(32), primary_key=True),  # "marketing" (email) or "sms"
    Column("status", String(16), nullable=False),  # "unsubscribed" or "suppressed"
    Column("reason", String(200), nullable=True),  # one-click, bounce, spamreport, …
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

write_keys = Table(
    "write_keys",
    metadata,
    Column("key_hash", String(64), primary_key=True),  # sha256: the key itself is never stored
    Column("name", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

journeys = Table(
    "journeys",
    metadata,
    Column("journey_id", String(200), primary_key=True),
    Column("active_version", String(64), nullable=False),  # the plan new entries start on
    Column("state", String(16), nullable=False),  # active, paused, stopped
    Column("changed_at", DateTime(timezone=True), nullable=False),
)

journey_audit = Table(
    "journey_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("journey_id", String(200), nullable=False, index=True),
    Column("action", String(16), nullable=False),  # deployed, paused, resumed, stopped
    Column("version", String(64), nullable=True),  # deployed: the version made active
    Column("previous", String(64), nullable=True),  # deployed: the version it replaced
    Column("actor", String(200), nullable=False),  # who: an operator's name, or a process
    Column("reason", String(500), nullable=True),  # why, in their words
    Column("at", DateTime(timezone=True), nullable=False),
)


DRIVER_PACKAGES = {
    "psycopg": "'psycopg[binary]'",
    "psycopg2": "psycopg2-binary",
    "pymysql": "PyMySQL",
    "MySQLdb": "mysqlclient",
    "asyncpg": "asyncpg",
    "oracledb": "oracledb",
    "pyodbc": "pyodbc",
}
"""The pip package that provides a database driver module, where its name differs."""

WHERE = "set TOUCHPOINT_DATABASE_URL (or database_url in touchpoint.yaml)"


def connect(url: str = DEFAULT_URL) -> Engine:
    """An engine for ``url``, migrated; a SQLite file gets its folder, WAL and a busy timeout.

    A URL that cannot work — no driver, a folder that cannot be created, a database that cannot
    be opened or written — is :class:`StoreUnavailable`, naming the URL (without its password).
    """
    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        raise StoreUnavailable(
            f"the database URL {url!r} is not a URL; {WHERE}, "
            "e.g. sqlite:///.touchpoint/touchpoint.db or postgresql+psycopg://user@host/db"
        ) from None
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        folder = Path(url.removeprefix("sqlite:///")).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise StoreUnavailable(
                f"cannot create the folder {folder} for the database {shown}: a file is in the "
                f"way; {WHERE} to a path under a folder"
            ) from None
        except OSError as error:
            raise StoreUnavailable(
                f"cannot create the folder {folder} for the database {shown} ({error.strerror}); "
                f"{WHERE} to a writable place"
            ) from None
    try:
        engine = create_engine(url, future=True)
    except ModuleNotFoundError as missing:
        module = missing.name or "its driver"
        package = DRIVER_PACKAGES.get(module.split(".")[0], module)
        raise StoreUnavailable(
            f"the database URL {shown} needs the driver {module}, which is not installed: "
            f"pip install {package}"
        ) from None
    except NoSuchModuleError as error:
        raise StoreUnavailable(
            f"the database URL {shown} names no known database ({error})"
        ) from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        migrate(engine)
    except OperationalError as error:  # the database's own words: cannot open, read-only, …
        reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        raise StoreUnavailable(
            f"cannot open and write the database {shown} ({reason}); make it writable, or "
            f"{WHERE} to one this process can write"
        ) from None
    except OSError as error:  # the migration lock file beside the database
        raise StoreUnavailable(
            f"cannot open and write the database {shown} ({error.strerror}); make it writable, "
            f"or {WHERE} to one this process can write"
        ) from None
    return engine


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (a no-op when it is there already).

    Processes starting together (worker and API under ``touchpoint dev``) take turns: the
    first migrates, the others find the schema current.
    """
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with _migration_lock(engine), engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


MIGRATION_LOCK_ID = 7_305_201_817  # PostgreSQL advisory lock key: "one migration at a time"


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """Hold a lock every process migrating this database must take: a lock file beside a
    SQLite database (SQLite runs DDL outside its transactions), an advisory lock on
    PostgreSQL."""
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        with open(f"{database}.migrate.lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    elif engine.dialect.name == "postgresql":
        with engine.connect() as holder:
            holder.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_ID})
            try:
                yield
            finally:
                holder.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_ID})
    else:
        yield


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
