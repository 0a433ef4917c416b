"""The store calls on the ingestion hot path: one entry decision per trigger, cached write keys —
on SQLite and PostgreSQL, with routers racing from several processes' engines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial

from sqlalchemy import delete

from store.database import write_keys
from store.entries import EntryStore
from store.keys import WriteKeys
from tests.conftest import Database, at_once

NOW = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
DAY = 86_400


def test_once_enters_a_single_time(database: Database) -> None:
    entries = EntryStore(database.connect())
    first = entries.enter("j", "s", NOW, once=True, cooldown_seconds=0)
    assert first.refused is None and first.sequence == 1 and first.claimed is not None
    again = entries.enter("j", "s", NOW + timedelta(days=400), once=True, cooldown_seconds=0)
    assert again.refused == "already entered once"
    entries.undo_entry("j", "s", first.claimed)  # the run did not start after all
    retry = entries.enter("j", "s", NOW, once=True, cooldown_seconds=0)
    assert retry.refused is None and retry.sequence == 2  # entry numbers are never reused


def test_cooldown_and_every_time(database: Database) -> None:
    entries = EntryStore(database.connect())
    assert entries.enter("j", "s", NOW, once=False, cooldown_seconds=30 * DAY).refused is None
    later = NOW + timedelta(days=29)
    assert (
        entries.enter("j", "s", later, once=False, cooldown_seconds=30 * DAY).refused
        == "within the re-entry cooldown"
    )
    after = entries.enter("j", "s", NOW + timedelta(days=30), once=False, cooldown_seconds=30 * DAY)
    assert after.refused is None and after.sequence == 2
    free = [entries.enter("k", "s", NOW, once=False, cooldown_seconds=0) for _ in range(3)]
    assert [e.sequence for e in free] == [1, 2, 3] and all(e.claimed is None for e in free)
    entries.record_entry("k", "s", NOW)
    assert entries.record("k", "s").entered == 1


def test_known_write_keys_are_remembered_unknown_ones_asked_for(database: Database) -> None:
    engine = database.connect()
    keys = WriteKeys(engine)
    assert keys.source("tp_unknown") is None
    key = keys.create("web-shop")
    assert keys.source(key) == "web-shop"  # created a moment ago: works at once
    with engine.begin() as db:
        db.execute(delete(write_keys))
    assert keys.source(key) == "web-shop"  # remembered
    keys.KNOWN_KEY_SECONDS = 0.0
    keys._known.clear()
    assert keys.source(key) is None  # asked again: gone


def test_keys_created_at_once_on_two_processes_all_work(database: Database) -> None:
    keys = [WriteKeys(database.connect()) for _ in range(2)]
    created = at_once([lambda i=i: keys[i % 2].create(f"shop-{i}") for i in range(16)])
    assert len(set(created)) == 16
    assert [keys[1].source(key) for key in created] == [f"shop-{i}" for i in range(16)]


def routers(database: Database) -> list[EntryStore]:
    return [EntryStore(database.connect()) for _ in range(4)]  # four API processes, one store


def test_routers_racing_for_the_same_customer_enter_them_once(database: Database) -> None:
    stores = routers(database)

    def enter(i: int, subject: str) -> str | None:
        return stores[i % 4].enter("j", subject, NOW, once=True, cooldown_seconds=0).refused

    same = at_once([lambda i=i: enter(i, "s") for i in range(32)])
    distinct = at_once([lambda i=i: enter(i, f"s{i}") for i in range(32)])
    assert same.count(None) == 1 and set(same) == {None, "already entered once"}
    assert distinct == [None] * 32  # no "database is locked" under contention either
    assert stores[0].record("j", "s").entered == 1


def test_routers_racing_within_a_cooldown_enter_them_once(database: Database) -> None:
    stores = routers(database)
    for round in range(3):  # each round after the last one's cooldown
        at = NOW + timedelta(days=2 * round)
        refusals = at_once(
            [
                partial(stores[i % 4].enter, "j", "s", at, once=False, cooldown_seconds=DAY)
                for i in range(24)
            ]
        )
        assert [e.refused for e in refusals].count(None) == 1
        assert stores[0].record("j", "s").entered == round + 1


def test_racing_entries_get_distinct_numbers(database: Database) -> None:
    """every_time and one_at_a_time: the store hands out entry numbers (Temporal's workflow id
    keeps one run at a time); no two racing triggers get the same number, none is skipped."""
    stores = routers(database)
    for subject in ("customer", "customer|order-1"):  # without and with a correlation key
        entries = at_once(
            [
                partial(stores[i % 4].enter, "j", subject, NOW, once=False, cooldown_seconds=0)
                for i in range(32)
            ]
        )
        assert sorted(e.sequence for e in entries) == list(range(1, 33))
        assert all(e.refused is None and e.claimed is None for e in entries)
