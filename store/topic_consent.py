"""Consent per subscription topic and channel: who left (or joined again) which topic, where.

Topics are opt-out: a customer is subscribed to every topic of the project until they leave
it. A choice is recorded per channel (``email``, ``sms``) or for :data:`ALL` channels, and the
most specific one decides: a choice for the channel itself, else the one for all channels,
else subscribed. Leaving or joining on all channels replaces the topic's channel choices, so
"leave newsletter everywhere" is not undone by an older "join newsletter on email".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, NamedTuple

from sqlalchemy import Engine, bindparam, delete, or_, select

from store.atomic import dialect_insert
from store.database import topic_consent, utc
from store.prepared import Prepared, literal_in

ALL = "all"  # the channel of a choice that holds on every channel
Status = Literal["subscribed", "unsubscribed"]
SUBSCRIBED: Final = "subscribed"
UNSUBSCRIBED: Final = "unsubscribed"


@dataclass(frozen=True)
class TopicChoice:
    topic: str
    channel: str  # a channel name, or ALL
    status: Status
    reason: str | None
    updated_at: datetime


class TopicConsent:
    """The customer's recorded topic choices (none recorded: subscribed)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def choose(
        self, customer_id: str, topic: str, channel: str, status: Status, reason: str
    ) -> None:
        """Record ``status`` for ``topic`` on ``channel`` (:data:`ALL`: on every channel,
        replacing the channel choices). Idempotent; the last choice wins."""
        values = {
            "customer_id": customer_id,
            "topic": topic,
            "channel": channel,
            "status": status,
            "reason": reason,
            "updated_at": datetime.now(UTC),
        }
        with self.engine.begin() as db:
            if channel == ALL:
                db.execute(
                    delete(topic_consent).where(
                        topic_consent.c.customer_id == customer_id,
                        topic_consent.c.topic == topic,
                        topic_consent.c.channel != ALL,
                    )
                )
            insert = dialect_insert(db)(topic_consent).values(**values)
            db.execute(
                insert.on_conflict_do_update(
                    index_elements=["customer_id", "topic", "channel"],
                    set_={k: values[k] for k in ("status", "reason", "updated_at")},
                )
            )

    def choices(self, customer_id: str) -> list[TopicChoice]:
        """Every recorded choice of ``customer_id``, by topic and channel."""
        with self.engine.connect() as db:
            rows = db.execute(
                select(topic_consent)
                .where(topic_consent.c.customer_id == customer_id)
                .order_by(topic_consent.c.topic, topic_consent.c.channel)
            ).all()
        return [
            TopicChoice(r.topic, r.channel, r.status, r.reason, utc(r.updated_at)) for r in rows
        ]

    def left(self, customer_id: str, topic: str, channel: str) -> str | None:
        """Why ``customer_id`` must not get ``topic`` on ``channel`` (the reason a message is
        skipped with), or ``None``: subscribed."""
        with self.engine.connect() as db:  # before every send: compiled once
            rows = _CHOICES.run(
                db, {"customer_id": customer_id, "topic": topic, "channel": channel}
            )
        decides = _most_specific([_Choice(*row) for row in rows], channel)
        if decides is None or decides.status != UNSUBSCRIBED:
            return None
        where = "all channels" if decides.channel == ALL else channel
        because = f" ({decides.reason})" if decides.reason else ""
        return f"unsubscribed from topic {topic!r} on {where}{because}"


def status_on(choices: Iterable[TopicChoice], topic: str, channel: str) -> Status:
    """The status that holds for ``topic`` on ``channel`` given the recorded ``choices``."""
    decides = _most_specific([c for c in choices if c.topic == topic], channel)
    return UNSUBSCRIBED if decides is not None and decides.status == UNSUBSCRIBED else SUBSCRIBED


def _most_specific(rows: Iterable[Any], channel: str) -> Any:
    """The choice for ``channel`` itself, else the one for all channels, else ``None``."""
    by_channel = {row.channel: row for row in rows}
    return by_channel.get(channel) or by_channel.get(ALL)


class _Choice(NamedTuple):
    channel: str
    status: str
    reason: str | None


_CHOICES = Prepared(
    select(topic_consent.c.channel, topic_consent.c.status, topic_consent.c.reason).where(
        topic_consent.c.customer_id == bindparam("customer_id"),
        topic_consent.c.topic == bindparam("topic"),
        or_(
            topic_consent.c.channel == bindparam("channel"),
            literal_in(topic_consent.c.channel, [ALL]),
        ),
    )
)
