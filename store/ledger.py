"""The delivery ledger: one row per message id, so a retried send is never sent twice.

An attempt *claims* the message before calling the provider: ``pending`` with a lease. Another
attempt that arrives while the lease is fresh (the first one is still talking to a slow
provider) backs off instead of sending; ``sent`` (with the provider's id) is final; a retryable
failure releases the claim (``retrying``); ``failed`` and ``skipped`` carry a reason. The window
left — the provider accepted and the process died before writing ``sent`` — is closed only
where the provider deduplicates (webhook receivers honouring ``Idempotency-Key``, the Maildir
outbox by Message-ID); for SendGrid, SMTP and chat a crash in exactly that moment can, after
the lease, send once more.

Delivery policies keep two moments on a row, both on the run's clock (the simulated date in
simulations): ``counted_at``, when the message took a slot of a frequency cap
(:meth:`Ledger.take_slot`: counted and taken in one transaction, under a per-customer lock),
and ``deferred_since``, its first deferral (:meth:`Ledger.first_deferral`, for the defer limit).
A row counts toward a cap while it is ``pending``, ``retrying`` or ``sent``; recording it
``skipped``, ``deferred`` or ``failed`` gives its slot back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, TypeVar

from sqlalchemy import Engine, and_, bindparam, delete, literal_column, null, or_, select, update

from store.atomic import insert_new, lock_subject, read_for_update
from store.database import deliveries, utc
from store.prepared import Prepared, literal_in
from workflows.models import SEND_ATTEMPT_SECONDS

Status = Literal["pending", "sent", "failed", "skipped", "retrying", "deferred"]
HOLDS_SLOT: tuple[Status, ...] = ("pending", "retrying", "sent")
"""The statuses of a message that counts toward a frequency cap (once it took a slot)."""
T = TypeVar("T")


@dataclass(frozen=True)
class Delivery:
    message_id: str
    journey_id: str
    step_id: str
    channel: str
    customer: str
    status: Status
    provider: str | None
    provider_id: str | None
    reason: str | None
    attempts: int
    created_at: datetime
    updated_at: datetime
    category: str | None = None
    counted_at: datetime | None = None  # took a frequency cap's slot at (the run's clock)
    deferred_since: datetime | None = None  # first deferred at (the run's clock)


@dataclass(frozen=True)
class Counted:
    """A message of the customer that holds a frequency cap's slot."""

    channel: str
    category: str | None
    counted_at: datetime


LEASE = timedelta(seconds=SEND_ATTEMPT_SECONDS + 30)
"""How long a ``pending`` claim keeps other attempts away: longer than a send attempt may last
(the send activity's 60 s start-to-close timeout, which bounds every provider call), and no
longer, so the retry after a worker died mid-send waits seconds, not minutes."""


@dataclass(frozen=True)
class Claim:
    """``send``: this attempt owns the send. ``sent``: it went out already. ``in_flight``:
    another attempt is sending it right now (its lease is fresh)."""

    decision: Literal["send", "sent", "in_flight"]
    delivery: Delivery | None
    retry_in: float = 0.0  # seconds until an in-flight lease expires


# Built once and run on the driver's cursor (a send asks them each time a cap covers it, and
# SQLAlchemy's work per execution cost more than SQLite's): this message's row and the
# customer's messages that hold a slot in the window; taking the slot.
_SLOT_ROWS = Prepared(
    select(
        deliveries.c.message_id,
        deliveries.c.channel,
        deliveries.c.category,
        deliveries.c.counted_at,
        deliveries.c.status,
    )
    .where(
        deliveries.c.customer == bindparam("customer"),
        or_(
            deliveries.c.message_id == bindparam("message"),
            and_(
                deliveries.c.counted_at > bindparam("since"),
                literal_in(deliveries.c.status, HOLDS_SLOT),
            ),
        ),
    )
    .order_by(deliveries.c.counted_at)
)
_TAKE_SLOT = Prepared(
    update(deliveries)
    .where(deliveries.c.message_id == bindparam("message"))
    .values(counted_at=bindparam("at"), category=bindparam("kind"))
)

_MARKED = (
    update(deliveries)
    .where(
        deliveries.c.message_id == bindparam("message"),
        deliveries.c.status != literal_column("'sent'"),
    )
    .values(
        status=bindparam("status"),
        provider=bindparam("provider"),
        provider_id=bindparam("provider_id"),
        reason=bindparam("reason"),
        updated_at=bindparam("updated_at", type_=deliveries.c.updated_at.type),
    )
)
_MARK = Prepared(_MARKED)  # an attempt's result
_MARK_GIVING_BACK = Prepared(_MARKED.values(counted_at=null()))  # … and the slot it held


class Ledger:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def claim(
        self, message_id: str, journey_id: str, step_id: str, channel: str, customer: str
    ) -> Claim:
        """Decide, atomically, whether this attempt may call the provider.

        The first attempt creates the row (``INSERT … ON CONFLICT DO NOTHING``: of attempts
        racing to create it, exactly one does, the others wait for it and then find it). A later
        attempt reads the row locked (``SELECT … FOR UPDATE`` on PostgreSQL, the write lock on
        SQLite), so deciding "the lease has expired: take it" and taking it are one step — two
        attempts never both take an expired lease."""
        now = datetime.now(UTC)
        key = deliveries.c.message_id == message_id
        with self.engine.begin() as db:
            created = insert_new(
                db,
                deliveries,
                {
                    "message_id": message_id,
                    "journey_id": journey_id,
                    "step_id": step_id,
                    "channel": channel,
                    "customer": customer,
                    "status": "pending",
                    "attempts": 1,
                    "created_at": now,
                    "updated_at": now,
                },
            )
            if created:
                return Claim("send", None)
            row = read_for_update(db, select(deliveries).where(key))
            assert row is not None, "ledger rows are deleted only long after their last change"
            current = _delivery(row)
            if current.status == "sent":
                return Claim("sent", current)
            held_until = current.updated_at + LEASE
            if current.status == "pending" and held_until > now:
                return Claim("in_flight", current, (held_until - now).total_seconds())
            db.execute(
                update(deliveries)
                .where(key)
                .values(status="pending", attempts=deliveries.c.attempts + 1, updated_at=now)
            )
            return Claim("send", current)

    def mark(
        self,
        message_id: str,
        status: Status,
        *,
        provider: str | None = None,
        provider_id: str | None = None,
        reason: str | None = None,
    ) -> None:
        """Record an attempt's result; a ``sent`` row is final and never overwritten.

        One ``UPDATE … WHERE status != 'sent'``: a concurrent writer of the row makes it wait,
        and PostgreSQL then checks the condition against the row as that writer left it."""
        values = {
            "message": message_id,
            "status": status,
            "provider": provider,
            "provider_id": (provider_id or "")[:200] or None,
            "reason": (reason or "")[:1000] or None,
            "updated_at": datetime.now(UTC),
        }
        marks = _MARK if status in HOLDS_SLOT else _MARK_GIVING_BACK  # a cap's slot, given back
        with self.engine.begin() as db:
            marks.run(db, values)

    def take_slot(
        self,
        message_id: str,
        customer: str,
        category: str,
        now: datetime,
        since: datetime,
        refuse: Callable[[list[Counted]], T | None],
    ) -> T | None:
        """Count and take, as one step: under a lock on the customer, read their messages
        counted after ``since`` (this one left out) and ask ``refuse``; no refusal, and this
        message (claimed, so its row exists) takes its slot at ``now``. Two sends to one
        customer never both take the last slot. A retry of a message that holds its slot keeps
        it and is not counted again (``refuse`` is not asked)."""
        with self.engine.begin() as db:
            lock_subject(db, deliveries, customer)
            rows = _SLOT_ROWS.run(db, {"customer": customer, "message": message_id, "since": since})
            counted: list[Counted] = []
            for message, channel, kind, counted_at, status in rows:
                if message != message_id:
                    counted.append(Counted(channel, kind, utc(counted_at)))
                elif counted_at is not None and status in HOLDS_SLOT:
                    return None  # a retry that holds its slot keeps it
            refusal = refuse(counted)
            if refusal is None:
                _TAKE_SLOT.run(db, {"message": message_id, "at": now, "kind": category})
            return refusal

    def first_deferral(self, message_id: str, now: datetime) -> datetime:
        """When a policy first deferred the message (``now``, if this is the first time)."""
        own = deliveries.c.message_id == message_id
        with self.engine.begin() as db:
            db.execute(
                update(deliveries)
                .where(own, deliveries.c.deferred_since.is_(None))
                .values(deferred_since=now)
            )
            since = db.execute(select(deliveries.c.deferred_since).where(own)).scalar()
        return utc(since) if since is not None else now

    def purge(self, before: datetime) -> int:
        """Delete the rows last changed before ``before`` (retention: ``retention.ledger_days``,
        far longer than any send is retried); how many went."""
        with self.engine.begin() as db:
            return db.execute(delete(deliveries).where(deliveries.c.updated_at < before)).rowcount

    def get(self, message_id: str) -> Delivery | None:
        with self.engine.connect() as db:
            row = db.execute(
                select(deliveries).where(deliveries.c.message_id == message_id)
            ).first()
        return _delivery(row) if row is not None else None

    def list(
        self, customer: str | None = None, journey_id: str | None = None, limit: int = 100
    ) -> list[Delivery]:
        query = select(deliveries).order_by(deliveries.c.created_at.desc()).limit(limit)
        if customer is not None:
            query = query.where(deliveries.c.customer == customer)
        if journey_id is not None:
            query = query.where(deliveries.c.journey_id == journey_id)
        with self.engine.connect() as db:
            return [_delivery(row) for row in db.execute(query)]


def _delivery(row: object) -> Delivery:
    values = dict(row._mapping)  # type: ignore[attr-defined]
    for key in ("created_at", "updated_at", "counted_at", "deferred_since"):
        if values[key] is not None:
            values[key] = utc(values[key])
    return Delivery(**values)
