"""The store calls on the ingestion hot path: one entry decision per trigger, cached write keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete

from store.database import connect, write_keys
from store.entries import EntryStore
from store.keys import WriteKeys

NOW = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)


def test_once_enters_a_single_time(tmp_path: Path) -> None:
    entries = EntryStore(connect(f"sqlite:///{tmp_path}/store.db"))
    first = entries.enter("j", "s", NOW, once=True, cooldown_seconds=0)
    assert first.refused is None and first.sequence == 1 and first.claimed is not None
    again = entries.enter("j", "s", NOW + timedelta(days=400), once=True, cooldown_seconds=0)
    assert again.refused == "already entered once"
    entries.undo_entry("j", "s", first.claimed)  # the run did not start after all
    retry = entries.enter("j", "s", NOW, once=True, cooldown_seconds=0)
    assert retry.refused is None and retry.sequence == 2  # entry numbers are never reused


def test_cooldown_and_every_time(tmp_path: Path) -> None:
    entries = EntryStore(connect(f"sqlite:///{tmp_path}/store.db"))
    day = 86_400
    assert entries.enter("j", "s", NOW, once=False, cooldown_seconds=30 * day).refused is None
    later = NOW + timedelta(days=29)
    assert (
        entries.enter("j", "s", later, once=False, cooldown_seconds=30 * day).refused
        == "within the re-entry cooldown"
    )
    after = entries.enter("j", "s", NOW + timedelta(days=30), once=False, cooldown_seconds=30 * day)
    assert after.refused is None and after.sequence == 2
    free = [entries.enter("k", "s", NOW, once=False, cooldown_seconds=0) for _ in range(3)]
    assert [e.sequence for e in free] == [1, 2, 3] and all(e.claimed is None for e in free)


def test_known_write_keys_are_remembered_unknown_ones_asked_for(tmp_path: Path) -> None:
    engine = connect(f"sqlite:///{tmp_path}/store.db")
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


def test_routers_racing_for_the_same_customer_enter_them_once(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    url = f"sqlite:///{tmp_path}/store.db"
    stores = [EntryStore(connect(url)) for _ in range(4)]  # four routers, one file

    def enter(i: int, subject: str) -> str | None:
        return stores[i % 4].enter("j", subject, NOW, once=True, cooldown_seconds=0).refused

    with ThreadPoolExecutor(16) as pool:
        same = list(pool.map(lambda i: enter(i, "s"), range(32)))
        distinct = list(pool.map(lambda i: enter(i, f"s{i}"), range(32)))
    assert same.count(None) == 1 and set(same) == {None, "already entered once"}
    assert distinct == [None] * 32  # no "database is locked" under contention either
