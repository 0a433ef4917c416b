"""The delivery ledger: one row per message id, so a retried send is never sent twice.

``pending`` is written before the provider is called, ``sent`` (with the provider's id) right
after it accepted, ``failed`` or ``skipped`` with a reason. An activity attempt that finds
``sent`` returns at once. The one window left — the provider accepted, the process died before
``sent`` was written — is covered by the providers' own idempotency (the message id travels as
webhook-id and Idempotency-Key, as the Maildir file's Message-ID, in SendGrid's custom_args).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from store.database import deliveries

Status = Literal["pending", "sent", "failed", "skipped"]


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


class Ledger:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def begin(
        self, message_id: str, journey_id: str, step_id: str, channel: str, customer: str
    ) -> Delivery:
        """Record an attempt; returns the row as it stands (``sent`` means: do not send)."""
        now = datetime.now(UTC)
        with self.engine.begin() as db:
            try:
                db.execute(
                    insert(deliveries).values(
                        message_id=message_id,
                        journey_id=journey_id,
                        step_id=step_id,
                        channel=channel,
                        customer=customer,
                        status="pending",
                        attempts=1,
                        created_at=now,
                        updated_at=now,
                    )
                )
            except IntegrityError:
                db.rollback()
                with self.engine.begin() as retry:
                    retry.execute(
                        update(deliveries)
                        .where(deliveries.c.message_id == message_id, deliveries.c.status != "sent")
                        .values(attempts=deliveries.c.attempts + 1, updated_at=now)
                    )
        found = self.get(message_id)
        assert found is not None
        return found

    def mark(
        self,
        message_id: str,
        status: Status,
        *,
        provider: str | None = None,
        provider_id: str | None = None,
        reason: str | None = None,
    ) -> None:
        with self.engine.begin() as db:
            db.execute(
                update(deliveries)
                .where(deliveries.c.message_id == message_id)
                .values(
                    status=status,
                    provider=provider,
                    provider_id=provider_id,
                    reason=(reason or "")[:1000] or None,
                    updated_at=datetime.now(UTC),
                )
            )

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
    for key in ("created_at", "updated_at"):
        if values[key].tzinfo is None:  # SQLite gives naive UTC back
            values[key] = values[key].replace(tzinfo=UTC)
    return Delivery(**values)
