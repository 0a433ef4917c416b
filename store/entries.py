"""Who entered which journey, and when: what re-entry rules need beyond Temporal's memory.

Temporal forgets closed runs after the namespace's retention period, so "once ever" and
cooldowns are decided from this record.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Connection, Engine, bindparam, literal_column, select, update

from store.atomic import insert_for
from store.database import journey_entries as entries
from store.database import utc
from store.prepared import Prepared


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
    resumed: bool = False  # the entry an earlier attempt of this occurrence took (see enter)


class EntryStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record_entry(self, journey_id: str, subject: str, at: datetime) -> None:
        key = (entries.c.journey_id == journey_id) & (entries.c.subject == subject)
        with self.engine.begin() as db:
            db.execute(
                update(entries).where(key).values(entered=entries.c.entered + 1, last_entered_at=at)
            )

    def enter(
        self,
        journey_id: str,
        subject: str,
        at: datetime,
        *,
        once: bool,
        cooldown_seconds: int,
        refuse: Callable[[Connection], str | None] | None = None,
        per_occurrence: bool = False,
    ) -> Entry:
        """Everything the router asks of the store before it starts a run, in one transaction:
        may this customer (and key) enter now, and under which entry number? For ``once`` and
        cooldowns the entry is taken too (undo with :meth:`undo_entry`).

        Its first statement hands out the entry number with ``INSERT … ON CONFLICT DO UPDATE
        SET reserved = reserved + 1 … RETURNING``: the row is created or locked by the database
        in one step (PostgreSQL's row lock, SQLite's write lock), and what it returns is the
        latest committed state. Any other router entering the same customer and journey waits
        at that statement until this transaction ends, so the check below and the claim that
        follows it cannot interleave with theirs; other customers are not held up (on
        PostgreSQL).

        ``refuse``, if given, is asked first on the same connection (the router: is the
        journey paused or stopped?); a reason it gives refuses the entry.

        ``per_occurrence``: the caller's run belongs to the occurrence ``at`` (a broadcast's or
        a date journey's: its workflow id names the occurrence and is started with
        ``REJECT_DUPLICATE``). An entry taken at ``at`` itself is then this occurrence's own,
        taken by an attempt that died (a worker killed) between the claim and the start, or
        after the start: it is not refused but *resumed* — nothing is taken again, and the
        start decides (Temporal refuses a run that already started)."""
        try:
            with self.engine.begin() as db:
                refusal = refuse(db) if refuse is not None else None
                if refusal is not None:
                    return Entry(refused=refusal)
                names = {"journey_id": journey_id, "subject": subject}
                [(reserved, entered, last_entered_at)] = _reserve(db.dialect.name).run(db, names)
                before = EntryRecord(int(entered), _aware(last_entered_at))
                claiming = once or bool(cooldown_seconds)
                if per_occurrence and claiming and before.last_entered_at == at:
                    return Entry(sequence=int(reserved), resumed=True)
                refusal = _refusal(before, at, once, cooldown_seconds)
                if refusal is not None:
                    raise _Refused(refusal)  # rolls the entry number back
                if not once and not cooldown_seconds:
                    return Entry(sequence=int(reserved))
                _CLAIM.run(db, {**names, "at": at})
                return Entry(sequence=int(reserved), claimed=before)
        except _Refused as refused:
            return Entry(refused=refused.reason)

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
        return EntryRecord(int(row.entered), _aware(row.last_entered_at))


class _Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _refusal(before: EntryRecord, at: datetime, once: bool, cooldown_seconds: int) -> str | None:
    if once and before.entered > 0:
        return "already entered once"
    if (
        cooldown_seconds
        and before.last_entered_at is not None
        and at - before.last_entered_at < timedelta(seconds=cooldown_seconds)
    ):
        return "within the re-entry cooldown"
    return None


def _aware(moment: datetime | None) -> datetime | None:
    return None if moment is None else utc(moment)


# Run at every entry: compiled once (store/prepared.py). The first hands out the entry number
# (creating or locking the row), the second takes the entry (``once`` and cooldowns).
_ONE: ColumnElement[int] = literal_column("1")


@functools.cache
def _reserve(dialect: str) -> Prepared:
    return Prepared(
        insert_for(dialect)(entries)
        .values(
            journey_id=bindparam("journey_id"),
            subject=bindparam("subject"),
            reserved=_ONE,
            entered=literal_column("0"),
        )
        .on_conflict_do_update(
            index_elements=[entries.c.journey_id, entries.c.subject],
            set_={"reserved": entries.c.reserved + _ONE},
        )
        .returning(entries.c.reserved, entries.c.entered, entries.c.last_entered_at)
    )


_CLAIM = Prepared(
    update(entries)
    .where(
        entries.c.journey_id == bindparam("journey_id"), entries.c.subject == bindparam("subject")
    )
    .values(
        entered=entries.c.entered + _ONE,
        last_entered_at=bindparam("at", type_=entries.c.last_entered_at.type),
    )
)
