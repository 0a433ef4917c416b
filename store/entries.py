"""Who entered which journey, and when: what re-entry rules need beyond Temporal's memory.

Temporal forgets closed runs after the namespace's retention period, so "once ever" and
cooldowns are decided from this record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from store.database import journey_entries as entries


@dataclass(frozen=True)
class EntryRecord:
    entered: int
    last_entered_at: datetime | None


@dataclass(frozen=True)
class Entry:
    """The store's answer to "may they enter?": an entry number, or why not."""

    sequence: int = 0
    claimed: EntryRecord | None = None  # set when a once/cooldown entry was taken
    refused: str | None = None


class EntryStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def reserve(self, journey_id: str, subject: str) -> int:
        """The next entry number for this customer (and key): unique, never reused."""
        key = (entries.c.journey_id == journey_id) & (entries.c.subject == subject)
        for _ in range(3):
            with self.engine.begin() as db:
                bumped = db.execute(
                    update(entries).where(key).values(reserved=entries.c.reserved + 1)
                )
                if bumped.rowcount == 0:
                    try:
                        db.execute(
                            insert(entries).values(
                                journey_id=journey_id, subject=subject, reserved=1, entered=0
                            )
                        )
                    except IntegrityError:  # another router inserted it first: bump instead
                        continue
                return int(db.execute(select(entries.c.reserved).where(key)).scalar_one())
        raise RuntimeError("could not reserve an entry number")  # pragma: no cover

    def record_entry(self, journey_id: str, subject: str, at: datetime) -> None:
        key = (entries.c.journey_id == journey_id) & (entries.c.subject == subject)
        with self.engine.begin() as db:
            db.execute(
                update(entries).where(key).values(entered=entries.c.entered + 1, last_entered_at=at)
            )

    def enter(
        self, journey_id: str, subject: str, at: datetime, *, once: bool, cooldown_seconds: int
    ) -> Entry:
        """Everything the router asks of the store before it starts a run, in one call: may
        this customer (and key) enter now, and under which entry number? For ``once`` and
        cooldowns the entry is claimed atomically (undo with :meth:`undo_entry`)."""
        record = self.record(journey_id, subject)
        if once and record.entered > 0:
            return Entry(refused="already entered once")
        if (
            cooldown_seconds
            and record.last_entered_at
            and at - record.last_entered_at < timedelta(seconds=cooldown_seconds)
        ):
            return Entry(refused="within the re-entry cooldown")
        sequence = self.reserve(journey_id, subject)
        if not once and not cooldown_seconds:
            return Entry(sequence=sequence)
        claimed = self.claim_entry(
            journey_id, subject, at, None if once else cooldown_seconds, before=record
        )
        if claimed is None:  # another router took it a moment ago
            reason = "already entered once" if once else "within the re-entry cooldown"
            return Entry(refused=reason)
        return Entry(sequence=sequence, claimed=claimed)

    def claim_entry(
        self,
        journey_id: str,
        subject: str,
        at: datetime,
        cooldown_seconds: int | None,
        before: EntryRecord | None = None,
    ) -> EntryRecord | None:
        """Atomically take the entry: for ``once`` (no cooldown) only if never entered, else
        only if the cooldown has passed. Returns the record as it was (to undo), or ``None``."""
        key = (entries.c.journey_id == journey_id) & (entries.c.subject == subject)
        if cooldown_seconds is None:
            allowed = entries.c.entered == 0
        else:
            threshold = at - timedelta(seconds=cooldown_seconds)
            allowed = entries.c.last_entered_at.is_(None) | (entries.c.last_entered_at <= threshold)
        before = before or self.record(journey_id, subject)
        with self.engine.begin() as db:
            taken = db.execute(
                update(entries)
                .where(key & allowed)
                .values(entered=entries.c.entered + 1, last_entered_at=at)
            )
        return before if taken.rowcount == 1 else None

    def undo_entry(self, journey_id: str, subject: str, before: EntryRecord) -> None:
        """Give back a claimed entry whose run did not start."""
        key = (entries.c.journey_id == journey_id) & (entries.c.subject == subject)
        with self.engine.begin() as db:
            db.execute(
                update(entries)
                .where(key)
                .values(entered=entries.c.entered - 1, last_entered_at=before.last_entered_at)
            )

    def record(self, journey_id: str, subject: str) -> EntryRecord:
        key = (entries.c.journey_id == journey_id) & (entries.c.subject == subject)
        with self.engine.connect() as db:
            row = db.execute(
                select(entries.c.entered, entries.c.last_entered_at).where(key)
            ).first()
        if row is None:
            return EntryRecord(0, None)
        last = row.last_entered_at
        if last is not None and last.tzinfo is None:  # SQLite returns naive UTC
            last = last.replace(tzinfo=UTC)
        return EntryRecord(int(row.entered), last)
