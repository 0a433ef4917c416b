"""Message ids already processed, per source: the ingestion API's deduplication."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete

from store.atomic import insert_new
from store.database import processed_messages

DEDUPE_WINDOW = timedelta(hours=48)


class ProcessedMessages:
    """Message ids seen in the last 48 hours, per source (``scope``): a duplicate is accepted
    but not processed twice. A message id is unique within its source only (Segment's rule):
    the same id from two write keys is two messages."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def claim(
        self, scope: str, message_id: str, also: Callable[[Connection], Any] | None = None
    ) -> bool:
        """``True`` the first time ``message_id`` is seen from ``scope``: of two API processes
        given the same message at once, the primary key lets exactly one insert it. ``also``
        writes in the same transaction, when the claim is won (the event log's entry)."""
        with self.engine.begin() as db:
            claimed = insert_new(
                db,
                processed_messages,
                {"scope": scope, "message_id": message_id, "received_at": datetime.now(UTC)},
            )
            if claimed and also is not None:
                also(db)
            return claimed

    def release(self, scope: str, message_id: str) -> None:
        """Forget a claim whose processing failed, so the sender's retry is processed."""
        with self.engine.begin() as db:
            db.execute(
                delete(processed_messages).where(
                    processed_messages.c.scope == scope,
                    processed_messages.c.message_id == message_id,
                )
            )

    def purge(self, now: datetime | None = None, keep: timedelta = DEDUPE_WINDOW) -> int:
        """Delete the ids received more than ``keep`` (at least the 48-hour window) ago; how
        many went. The retention job calls it (``retention.processed_ids_hours``)."""
        cutoff = (now or datetime.now(UTC)) - max(keep, DEDUPE_WINDOW)
        with self.engine.begin() as db:
            return db.execute(
                delete(processed_messages).where(processed_messages.c.received_at < cutoff)
            ).rowcount
