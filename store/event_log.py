"""The event log: the calls the ingestion service applied, per customer, in order.

:meth:`Ingestion.apply <ingestion.service.Ingestion.apply>` writes one row per call it
processes — a track (track, page, screen: its event and properties) or an identify (its
traits, locale, timezone, the id it linked) — in the transaction that claims the call's
message id, and deletes it again if the call is then refused (too large a profile) or fails
and is released for the sender's retry. A duplicate is not processed, so it is logged once; a
refused call is not logged at all. The row's id is the order the calls were claimed in.

It is bounded twice: a call's data larger than ``event_log.max_bytes`` keeps its smallest
fields up to the cap and is flagged ``truncated``; rows older than
``retention.event_log_days`` are purged by the retention job. It holds the shop's customer
ids and what they did, so it is personal data: ``touchpoint forget`` deletes a customer's rows
(and those of the anonymous ids linked to them), ``touchpoint export`` includes them.

:meth:`EventLog.read` pages through a time window in order, a page at a time (bounded memory
whatever the window's size): the input of replaying journeys against real events.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import Connection, Engine, delete, func, insert, select

from store.database import event_log, utc

if TYPE_CHECKING:
    from config.project import EventLogSettings

Kind = Literal["track", "identify"]
DEFAULT_MAX_BYTES = 16_384
"""A call's data (properties or traits, as compact JSON) kept in full up to this size."""
PAGE = 1_000
"""Rows read per query by :meth:`EventLog.read`."""
_INSERT = insert(event_log)


@dataclass(frozen=True)
class LoggedEvent:
    id: int  # the order the calls were applied in
    customer_id: str
    kind: Kind
    event: str | None  # a track's event name
    data: dict[str, Any]  # a track's properties, an identify's traits
    context: dict[str, Any]  # locale, timezone, linked id, a track's traits (when given)
    truncated: bool  # data kept only up to the size cap
    timestamp: datetime  # the event's own time (when it was received, if it gave none)
    received_at: datetime
    message_id: str  # "scope/message id", as the router sees it

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "event": self.event,
            "data": self.data,
            "context": self.context,
            "truncated": self.truncated,
            "timestamp": _iso(self.timestamp),
            "received_at": _iso(self.received_at),
            "message_id": self.message_id,
        }


def bounded(data: dict[str, Any], max_bytes: int) -> tuple[dict[str, Any], bool]:
    """``data`` if it fits in ``max_bytes`` as compact JSON; else the fields that fit,
    smallest first (an id or a SKU outlives a blob), and ``True``."""
    if _size(data) <= max_bytes:
        return data, False
    kept: dict[str, Any] = {}
    used = 2  # the braces
    for name, value in sorted(data.items(), key=lambda item: _size({item[0]: item[1]})):
        cost = _size({name: value}) - 2 + (1 if kept else 0)  # its field, and a comma
        if used + cost > max_bytes:
            break
        kept[name] = value
        used += cost
    return {name: kept[name] for name in data if name in kept}, True


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode())


class EventLog:
    def __init__(self, engine: Engine, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.engine = engine
        self.max_bytes = max_bytes  # event_log.max_bytes in touchpoint.yaml

    def append(
        self, customer_id: str, kind: Kind, data: dict[str, Any], message_id: str, **fields: Any
    ) -> int:
        """Log one applied call in a transaction of its own; its id (see :meth:`write`)."""
        with self.engine.begin() as db:
            return self.write(db, customer_id, kind, data, message_id, **fields)

    def write(
        self,
        db: Connection,
        customer_id: str,
        kind: Kind,
        data: dict[str, Any],
        message_id: str,
        *,
        event: str | None = None,
        context: dict[str, Any] | None = None,
        timestamp: datetime | None = None,
        received_at: datetime | None = None,
    ) -> int:
        """Log one applied call in ``db``'s transaction (the ingestion service's: the one that
        claims its message id); its id (the order). ``data`` (or a track's traits in
        ``context``) over the cap is cut (:func:`bounded`)."""
        received = received_at or datetime.now(UTC)
        kept, truncated = bounded(data, self.max_bytes)
        context = dict(context or {})
        context_truncated = False
        if isinstance(context.get("traits"), dict):  # a track's context.traits
            context["traits"], context_truncated = bounded(context["traits"], self.max_bytes)
        inserted = db.execute(
            _INSERT,  # built once: building a statement per call cost more than running it
            {
                "customer_id": customer_id,
                "kind": kind,
                "event": event,
                "data": kept,
                "context": context or None,
                "truncated": truncated or context_truncated,
                "timestamp": timestamp or received,
                "received_at": received,
                "message_id": message_id,
            },
        )
        key = inserted.inserted_primary_key
        assert key is not None, "an insert of one row has its primary key"
        return int(key[0])

    def remove(self, entry_id: int) -> None:
        """Take back an entry whose call failed or was refused (a retry logs it again)."""
        with self.engine.begin() as db:
            db.execute(delete(event_log).where(event_log.c.id == entry_id))

    def read(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        customers: Sequence[str] | None = None,
        page: int = PAGE,
    ) -> Iterator[LoggedEvent]:
        """The calls received in ``[since, until)`` (of ``customers`` only, if given), in the
        order they were applied, read ``page`` rows at a time."""
        after = 0
        while True:
            query = select(event_log).where(event_log.c.id > after)
            if since is not None:
                query = query.where(event_log.c.received_at >= since)
            if until is not None:
                query = query.where(event_log.c.received_at < until)
            if customers is not None:
                query = query.where(event_log.c.customer_id.in_(sorted(set(customers))))
            with self.engine.connect() as db:
                rows = db.execute(query.order_by(event_log.c.id).limit(page)).all()
            yield from (_logged(row) for row in rows)
            if len(rows) < page:
                return
            after = rows[-1].id

    def of_customers(self, ids: Sequence[str], limit: int) -> list[LoggedEvent]:
        """The first ``limit`` calls logged for ``ids`` (a customer and their linked ids)."""
        query = (
            select(event_log)
            .where(event_log.c.customer_id.in_(sorted(set(ids))))
            .order_by(event_log.c.id)
            .limit(limit)
        )
        with self.engine.connect() as db:
            return [_logged(row) for row in db.execute(query)]

    def tail(self, limit: int, since: datetime | None = None) -> list[LoggedEvent]:
        """The last ``limit`` calls (received since ``since``), oldest of them first."""
        query = select(event_log).order_by(event_log.c.id.desc()).limit(limit)
        if since is not None:
            query = query.where(event_log.c.received_at >= since)
        with self.engine.connect() as db:
            return [_logged(row) for row in reversed(db.execute(query).all())]

    def count(self, since: datetime | None = None, customers: Sequence[str] | None = None) -> int:
        query = select(func.count()).select_from(event_log)
        if since is not None:
            query = query.where(event_log.c.received_at >= since)
        if customers is not None:
            query = query.where(event_log.c.customer_id.in_(sorted(set(customers))))
        with self.engine.connect() as db:
            return int(db.execute(query).scalar() or 0)

    def erase(self, ids: Sequence[str]) -> int:
        """Delete the rows of ``ids`` (a customer and their linked ids); how many went."""
        with self.engine.begin() as db:
            return db.execute(delete(event_log).where(event_log.c.customer_id.in_(ids))).rowcount

    def purge(self, before: datetime) -> int:
        """Delete the rows received before ``before``; how many went. The retention job calls
        it (``retention.event_log_days``)."""
        with self.engine.begin() as db:
            return db.execute(delete(event_log).where(event_log.c.received_at < before)).rowcount


def event_log_of(engine: Engine, settings: EventLogSettings) -> EventLog | None:
    """The project's event log (``event_log:`` in touchpoint.yaml); ``None`` when turned off."""
    return EventLog(engine, settings.max_bytes) if settings.enabled else None


def _logged(row: Any) -> LoggedEvent:
    return LoggedEvent(
        id=int(row.id),
        customer_id=row.customer_id,
        kind=row.kind,
        event=row.event,
        data=dict(row.data or {}),
        context=dict(row.context or {}),
        truncated=bool(row.truncated),
        timestamp=utc(row.timestamp),
        received_at=utc(row.received_at),
        message_id=row.message_id,
    )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")
