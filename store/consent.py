"""Consent withdrawn by a customer (unsubscribe, opt-out) or on their behalf (bounce)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from store.database import consent

MARKETING = "marketing"  # marketing email: the one-click unsubscribe, bounces, spam reports
SMS = "sms"  # every SMS: the customer replied STOP (Twilio's 21610)
CATEGORIES = (MARKETING, SMS)


class ConsentStore:
    """Who withdrew consent, for what (``marketing`` email, or ``sms``), and why."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def withdraw(
        self,
        customer_id: str,
        reason: str,
        status: str = "unsubscribed",
        category: str = MARKETING,
    ) -> bool:
        """Record it; ``True`` if it is new (idempotent: a second click changes nothing)."""
        now = datetime.now(UTC)
        try:
            with self.engine.begin() as db:
                db.execute(
                    insert(consent).values(
                        customer_id=customer_id,
                        category=category,
                        status=status,
                        reason=reason,
                        updated_at=now,
                    )
                )
        except IntegrityError:
            return False
        return True

    def blocked(self, customer_id: str, category: str = MARKETING) -> str | None:
        """Why ``customer_id`` must not get ``category`` messages, or ``None``."""
        with self.engine.connect() as db:
            row = db.execute(
                select(consent.c.status, consent.c.reason).where(
                    consent.c.customer_id == customer_id, consent.c.category == category
                )
            ).first()
        return None if row is None else f"{row.status} ({row.reason})"
