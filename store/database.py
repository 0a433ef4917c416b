"""Tables and the engine: SQLite (one file, the default) or PostgreSQL, chosen by URL.

The tables below are the model; ``store/migrations`` holds the Alembic revisions that create
them, applied on every start (``connect``). A change to a table needs a new revision; a test
compares the migrated database with this model. How the store's writes stay correct with many
processes on one database: ``store/atomic.py``.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    URL,
    Boolean,
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    func,
    make_url,
    text,
)
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, ProgrammingError

from config.errors import ConfigurationError, StoreUnavailable

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
    Column("category", String(16), nullable=True),  # marketing, transactional
    Column("counted_at", DateTime(timezone=True), nullable=True),  # took a cap's slot (run clock)
    Column("deferred_since", DateTime(timezone=True), nullable=True),  # first deferral (run clock)
)
# `touchpoint messages` lists a customer's or a journey's sends (or all), newest first
Index("ix_deliveries_customer_created_at", deliveries.c.customer, deliveries.c.created_at)
Index("ix_deliveries_journey_id_created_at", deliveries.c.journey_id, deliveries.c.created_at)
Index("ix_deliveries_created_at", deliveries.c.created_at)
# a frequency cap reads a customer's counted messages of its window
Index("ix_deliveries_customer_counted_at", deliveries.c.customer, deliveries.c.counted_at)


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
# the SendGrid event webhook finds the customer by address, case-insensitively, for each event
Index("ix_profiles_email_lower", func.lower(profiles.c.email))
# a date journey's occurrence pages through the profiles of the zones where it is `at` now
Index("ix_profiles_timezone_customer", profiles.c.timezone, profiles.c.customer_id)

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
Index("ix_suppressions_created_at", suppressions.c.created_at)  # the list, newest first

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

topic_consent = Table(
    "topic_consent",
    metadata,
    Column("customer_id", String(200), primary_key=True),
    Column("topic", String(64), primary_key=True),  # a slug from touchpoint.yaml topics:
    Column("channel", String(32), primary_key=True),  # a channel name, or "all"
    Column("status", String(16), nullable=False),  # "subscribed" or "unsubscribed"
    Column("reason", String(200), nullable=True),  # one-click, preferences page, support, …
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

write_keys = Table(
    "write_keys",
    metadata,
    Column("key_hash", String(64), primary_key=True),  # sha256: the key itself is never stored
    Column("name", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # "write": ingestion calls; "admin": the privacy endpoints (export), never ingestion
    Column("kind", String(16), nullable=False, server_default="write"),
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


erasures = Table(
    "erasures",
    metadata,
    # a keyed hash (HMAC) of the customer id: proves the erasure without naming the customer
    Column("customer", String(64), primary_key=True),
    Column("request_id", String(200), primary_key=True),  # the request's reference (a ticket, …)
    Column("actor", String(200), nullable=False),  # who asked for it: the operator's name
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("completed_at", DateTime(timezone=True), nullable=True),  # none: still in progress
)

erased_addresses = Table(
    "erased_addresses",
    metadata,
    Column("address", String(64), primary_key=True),  # keyed hash (HMAC) of the address
    # "erased": no marketing email without new consent; "bounce", "spamreport", …: a
    # suppression the address had when it was erased (no email at all)
    Column("reason", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)


# --- journey analytics (store/analytics.py): written by the worker as runs go, read by
# `touchpoint stats` and the dashboard. Keyed by workflow id (a hash: no personal data).
journey_runs = Table(
    "journey_runs",
    metadata,
    Column("workflow_id", String(300), primary_key=True),
    Column("journey_id", String(200), nullable=False),
    Column("version", String(64), nullable=False),
    Column("customer", String(64), nullable=True),  # customer_hash, as the ledger; none: erased
    Column("holdout", Boolean, nullable=False, default=False),  # took a split's holdout path
    Column("entered_at", DateTime(timezone=True), nullable=False),  # the run's clock
    Column("entered_day", String(10), nullable=False),  # YYYY-MM-DD (UTC) of entered_at
    Column("current_step", String(200), nullable=True),  # the step it is at (waits: waiting)
    Column("step_since", DateTime(timezone=True), nullable=True),
    Column("outcome", String(16), nullable=True),  # none while running; else OutcomeKind
    Column("reason", String(500), nullable=True),  # exit reason, goal event, failure's error
    Column("failed_step", String(200), nullable=True),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Column("ended_day", String(10), nullable=True),
)
Index("ix_journey_runs_journey_entered", journey_runs.c.journey_id, journey_runs.c.entered_at)
Index("ix_journey_runs_journey_outcome", journey_runs.c.journey_id, journey_runs.c.outcome)
Index("ix_journey_runs_customer", journey_runs.c.customer)

step_passes = Table(
    "step_passes",
    metadata,
    # one row per step a run left: the same (run, step, visit) written twice is one pass
    Column("workflow_id", String(300), primary_key=True),
    Column("step_id", String(200), primary_key=True),
    Column("visit", Integer, primary_key=True),
    Column("journey_id", String(200), nullable=False),
    Column("version", String(64), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),  # left the step (run clock)
    Column("day", String(10), nullable=False),
    Column("next_step", String(200), nullable=True),  # where it went
    Column("edge", String(200), nullable=True),  # branch case, split path, "event"/"timeout"
)
Index("ix_step_passes_journey_day", step_passes.c.journey_id, step_passes.c.day)

message_events = Table(
    "message_events",
    metadata,
    # what the provider said about a message after it left (SendGrid Event Webhook)
    Column("event_id", String(200), primary_key=True),  # the provider's id: replays are one
    Column("message_id", String(64), nullable=False, index=True),  # the ledger's message id
    Column("event", String(32), nullable=False),  # delivered, open, click, bounce, …
    Column("provider", String(32), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("day", String(10), nullable=False),
)

# --- the event log (store/event_log.py): the calls the ingestion API accepted, per customer,
# in order — the raw material for replaying journeys. Personal data, like the profile: kept
# ``retention.event_log_days``, erased with the customer, exported.
event_log = Table(
    "event_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),  # the order they were applied
    Column("customer_id", String(200), nullable=False),  # the shop's id, as the profile's
    Column("kind", String(16), nullable=False),  # track (track, page, screen) or identify
    Column("event", String(200), nullable=True),  # a track's event name
    Column("data", JSON, nullable=False),  # a track's properties, an identify's traits
    Column("context", JSON, nullable=True),  # an identify's locale, timezone, linked id
    Column("truncated", Boolean, nullable=False, default=False),  # data cut to the size cap
    Column("timestamp", DateTime(timezone=True), nullable=False),  # the event's own time
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("message_id", String(300), nullable=False),  # "scope/message id", as the router's
)
Index("ix_event_log_customer_id_id", event_log.c.customer_id, event_log.c.id)
Index("ix_event_log_received_at", event_log.c.received_at)

DRIVER_PACKAGES = {
    "psycopg": "'psycopg[binary]'",
    "psycopg2": "psycopg2-binary",
}
"""The pip package that provides a database driver module, where its name differs."""

WHERE = "set TOUCHPOINT_DATABASE_URL (or database_url in touchpoint.yaml)"

BACKENDS = ("sqlite", "postgresql")
"""The databases the store's writes are built for (``store/atomic.py``) and tested on."""

POOL_SETTINGS = ("pool_size", "max_overflow", "pool_timeout", "pool_recycle")
"""Settings of the engine's connection pool a URL may carry in its query, e.g.
``postgresql://touchpoint@db/touchpoint?pool_size=10&max_overflow=20`` (SQLAlchemy's
``QueuePool``: 5 connections kept, up to 10 more at busy moments, 30 s to wait for one)."""

CONNECT_TIMEOUT_SECONDS = 10  # PostgreSQL: a server that does not answer is an error, not a hang


def connect(url: str = DEFAULT_URL) -> Engine:
    """An engine for ``url``, migrated. ``postgresql://`` (or ``postgres://``) uses psycopg 3,
    its pooled connections checked before each use (a restarted server costs no errors); a
    SQLite file gets its folder, WAL and a busy timeout.

    A URL that cannot work — no driver, a folder that cannot be created, a database that cannot
    be reached, opened or written — is :class:`StoreUnavailable`, naming the URL (without its
    password).
    """
    try:
        given = make_url(url)
    except ArgumentError:
        raise StoreUnavailable(
            f"the database URL {url!r} is not a URL; {WHERE}, "
            "e.g. sqlite:///.touchpoint/touchpoint.db or postgresql://user@host/db"
        ) from None
    shown = given.render_as_string(hide_password=True)
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        _make_folder(Path(url.removeprefix("sqlite:///")).parent, shown)
    engine_url, options = _engine_options(given, shown)
    try:
        engine = create_engine(engine_url, **options)
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
    except (OperationalError, ProgrammingError) as error:  # the database's own words
        if isinstance(error, ProgrammingError) and _sqlstate(error) != "42501":
            raise  # not "permission denied": a bug, not the operator's to fix
        reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        if engine.dialect.name == "postgresql" and isinstance(error, OperationalError):
            raise StoreUnavailable(
                f"cannot connect to the database {shown} ({reason}); check that it runs and "
                f"takes connections from here, or {WHERE} to one that does"
            ) from None
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


def _make_folder(folder: Path, shown: str) -> None:
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


def _engine_options(given: URL, shown: str) -> tuple[URL, dict[str, Any]]:
    """The URL SQLAlchemy gets (``postgresql://`` means psycopg 3, not SQLAlchemy's default
    psycopg2; pool settings taken out of the query) and the engine's options."""
    backend = given.get_backend_name()
    if backend == "postgres":  # Heroku's and libpq's spelling
        backend = "postgresql"
    if backend not in BACKENDS:
        raise StoreUnavailable(
            f"the database URL {shown} names {backend}, but the store runs on SQLite or "
            f"PostgreSQL; {WHERE}, e.g. sqlite:///.touchpoint/touchpoint.db or "
            "postgresql://user@host/db"
        )
    options: dict[str, Any] = {}
    for name in POOL_SETTINGS:
        if name in given.query:
            value = given.query[name]
            if not (isinstance(value, str) and value.isdigit()):
                raise ConfigurationError(
                    f"the database URL {shown} sets {name}={value!r}, which is not a whole "
                    f"number; write e.g. ?{name}=10"
                )
            options[name] = int(value)
    engine_url = given.difference_update_query(POOL_SETTINGS)
    if backend == "postgresql":
        driver = given.drivername.partition("+")[2] or "psycopg"
        engine_url = engine_url.set(drivername=f"postgresql+{driver}")
        options["pool_pre_ping"] = True
        defaults = {"connect_timeout": CONNECT_TIMEOUT_SECONDS, "application_name": "touchpoint"}
        options["connect_args"] = {k: v for k, v in defaults.items() if k not in given.query}
    return engine_url, options


def _sqlstate(error: ProgrammingError) -> str | None:
    return getattr(error.orig, "sqlstate", None)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (a no-op when it is there already).

    Processes starting together (workers and APIs, on one machine or many) take turns: the
    first migrates, the others wait, then find the schema current.
    """
    from alembic import command  # here: a simulation's scratch store runs without Alembic
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with _sqlite_migration_lock(engine), engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Held until this transaction ends: PostgreSQL's DDL is transactional, so the next
            # process reads the version table only after this one's tables are committed.
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_ID}
            )
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def scratch_store(path: Path) -> Engine:
    """A new, throw-away SQLite store at ``path`` for a simulation: the model's tables created
    straight from :data:`metadata`, which is the schema the migrations make
    (tests/test_store_migrations.py holds the two equal), without loading Alembic and
    replaying every revision — a cost ``touchpoint simulate`` would pay on each run. Not for a
    store that outlives the process: only :func:`connect` migrates."""
    engine = create_engine(f"sqlite:///{path}")
    event.listen(engine, "connect", _sqlite_pragmas)
    metadata.create_all(engine)
    return engine


MIGRATION_LOCK_ID = 7_305_201_817  # PostgreSQL advisory lock key: "one migration at a time"


@contextmanager
def _sqlite_migration_lock(engine: Engine) -> Iterator[None]:
    """A lock file beside a SQLite database, which every process migrating it takes (SQLite
    runs DDL outside its transactions: its own locks cannot make migrations take turns)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def utc(moment: datetime) -> datetime:
    """A time read from the store, in UTC: SQLite gives naive UTC back, PostgreSQL the time in
    its session's time zone."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
