"""Retention: the schedule a worker registers (idempotently) runs the retention workflow on the
real dev server, which deletes processed ids, ledger rows, event log rows and outbox files
older than configured and keeps the newer ones; the namespace's retention of closed runs is
checked."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import update
from temporalio.testing import WorkflowEnvironment

from activities.email.maildir import key_for, list_messages
from activities.privacy import PrivacyActivities
from config.project import ProjectConfig, RetentionSettings
from config.settings import load_settings
from ops.retention import namespace_retention, register_schedule, retention_warning
from store.database import deliveries, event_log, processed_messages
from store.event_log import EventLog
from store.ledger import Ledger
from store.processed import ProcessedMessages
from tests.conftest import Database
from tests.temporal import running_workers

RETENTION = RetentionSettings(
    ledger_days=30, processed_ids_hours=72, outbox_days=7, event_log_days=10
)


def outbox_file(outbox: Path, message_id: str, age: timedelta) -> None:
    (outbox / "new").mkdir(parents=True, exist_ok=True)
    (outbox / "cur").mkdir(exist_ok=True)
    (outbox / "tmp").mkdir(exist_ok=True)
    path = outbox / "new" / key_for(message_id)
    path.write_text(f"To: someone@example.com\nSubject: {message_id}\n\nhello\n")
    moment = time.time() - age.total_seconds()
    os.utime(path, (moment, moment))


async def test_the_retention_schedule_deletes_what_is_older_than_configured(
    dev_env: WorkflowEnvironment, tmp_path: Path, database: Database
) -> None:
    engine = database.connect()
    now = datetime.now(UTC)
    ledger, processed = Ledger(engine), ProcessedMessages(engine)
    for message_id, age in (("old-send", timedelta(days=31)), ("new-send", timedelta(days=29))):
        ledger.claim(message_id, "welcome", "hello", "email", "c0ffee")
        ledger.mark(message_id, "sent", provider="maildir")
        with engine.begin() as db:
            db.execute(
                update(deliveries)
                .where(deliveries.c.message_id == message_id)
                .values(updated_at=now - age, created_at=now - age)
            )
    for message_id, age in (("old-call", timedelta(hours=73)), ("new-call", timedelta(hours=71))):
        processed.claim("key:test", message_id)
        with engine.begin() as db:
            db.execute(
                update(processed_messages)
                .where(processed_messages.c.message_id == message_id)
                .values(received_at=now - age)
            )
    log = EventLog(engine)
    for message_id, age in (
        ("cli/old-event", timedelta(days=11)),
        ("cli/new-event", timedelta(days=9)),
    ):
        entry = log.append("c-1", "track", {}, message_id, event="Product Viewed")
        with engine.begin() as db:
            db.execute(
                update(event_log).where(event_log.c.id == entry).values(received_at=now - age)
            )
    outbox = tmp_path / "outbox"
    outbox_file(outbox, "old-mail", timedelta(days=8))
    outbox_file(outbox, "new-mail", timedelta(days=6))

    privacy = PrivacyActivities(dev_env.client, engine, None, outbox, RETENTION)
    async with running_workers(dev_env.client, privacy.all()) as prefix:
        config = ProjectConfig(retention=RETENTION.model_copy(update={"every_hours": 12}))
        settings = load_settings(config, {"TOUCHPOINT_QUEUE_PREFIX": prefix})
        schedule_id = await register_schedule(dev_env.client, settings)
        assert schedule_id == await register_schedule(dev_env.client, settings), "idempotent"
        handle = dev_env.client.get_schedule_handle(schedule_id)
        try:
            described = await handle.describe()
            [interval] = described.schedule.spec.intervals
            assert interval.every == timedelta(hours=12)
            await handle.trigger()
            for _ in range(300):
                if ledger.get("old-send") is None and len(list_messages(outbox)) == 1:
                    break
                await asyncio.sleep(0.1)
        finally:
            await handle.delete()

    assert ledger.get("old-send") is None and ledger.get("new-send") is not None
    assert [m.subject for m in list_messages(outbox)] == ["new-mail"]
    assert [e.message_id for e in log.read()] == ["cli/new-event"]
    assert not processed.claim("key:test", "new-call"), "still within its window"
    assert processed.claim("key:test", "old-call"), "purged: a new call with the id is new"


async def test_a_namespace_keeping_closed_runs_longer_than_configured_is_named(
    dev_env: WorkflowEnvironment,
) -> None:
    kept = await namespace_retention(dev_env.client)
    assert kept is not None and kept > timedelta(0)
    settings = load_settings(ProjectConfig(retention=RetentionSettings(closed_runs_days=1)), {})
    warning = retention_warning(timedelta(days=30), settings)
    assert warning == (
        "namespace default keeps closed runs (their inputs and events) for 30 day(s), longer "
        "than retention.closed_runs_days (1); set it: temporal operator namespace update "
        "--namespace default --retention 1d"
    )
    assert retention_warning(timedelta(days=1), settings) is None
    assert retention_warning(None, settings) is None
