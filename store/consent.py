"""Consent withdrawn by a customer (unsubscribe, opt-out) or on their behalf (bounce)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, bindparam, delete, select

from store.atomic import insert_new
from store.database import consent
from store.prepared import Prepared

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
        """Record it; ``True`` if it is new (idempotent: a second click changes nothing, and
        of two at the same moment — a double click on two API processes — one is new)."""
        with self.engine.begin() as db:
            return insert_new(
                db,
                consent,
                {
                    "customer_id": customer_id,
                    "category": category,
                    "status": status,
                    "reason": reason,
                    "updated_at": datetime.now(UTC),
                },
            )

    def blocked(self, customer_id: str, category: str = MARKETING) -> str | None:
        """Why ``customer_id`` must not get ``category`` messages, or ``None``."""
        found = self.status(customer_id, category)
        return None if found is None else f"{found[0]} ({found[1]})"

    def status(self, customer_id: str, category: str = MARKETING) -> tuple[str, str | None] | None:
        """``(status, reason)`` of the withdrawal of ``category``, or ``None``: none. Read
        before every send: a statement compiled once (:mod:`store.prepared`)."""
        with self.engine.connect() as db:
            row = _STATUS.first(db, {"customer_id": customer_id, "category": category})
        return None if row is None else (row["status"], row["reason"])

    def restore(self, customer_id: str, category: str = MARKETING) -> bool:
        """Lift the customer's own withdrawal (status ``unsubscribed``) of ``category``: they
        asked for it with a signed link, or through support. A ``suppressed`` one (a bounce, a
        spam report) never lifts. ``True`` if one was lifted."""
        with self.engine.begin() as db:
            lifted = db.execute(
                delete(consent).where(
                    consent.c.customer_id == customer_id,
                    consent.c.category == category,
                    consent.c.status == "unsubscribed",
                )
            ).rowcount
        return bool(lifted)


_STATUS = Prepared(
    select(consent.c.status, consent.c.reason).where(
        consent.c.customer_id == bindparam("customer_id"),
        consent.c.category == bindparam("category"),
    )
)
