"""Write keys for the ingestion API; only their hashes are stored."""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import UTC, datetime

from sqlalchemy import Engine, insert, select

from store.database import write_keys


class WriteKeys:
    """Write keys as Segment's SDKs send them (HTTP Basic user name); only hashes are stored.

    A known key is remembered for ``KNOWN_KEY_SECONDS`` (every event carries one: the lookup
    was a tenth of the API's time); an unknown key is asked for every time, so a key created
    a moment ago works at once.
    """

    KNOWN_KEY_SECONDS = 60.0

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._known: dict[str, tuple[float, str]] = {}  # key hash → (until, source name)

    def create(self, name: str) -> str:
        key = "tp_" + secrets.token_urlsafe(24)
        with self.engine.begin() as db:
            db.execute(
                insert(write_keys).values(
                    key_hash=_hash(key), name=name, created_at=datetime.now(UTC)
                )
            )
        return key

    def source(self, key: str) -> str | None:
        """The name of the source ``key`` belongs to, or ``None``."""
        digest = _hash(key)
        now = time.monotonic()
        known = self._known.get(digest)
        if known is not None and known[0] > now:
            return known[1]
        with self.engine.connect() as db:
            row = db.execute(
                select(write_keys.c.name).where(write_keys.c.key_hash == digest)
            ).first()
        if row is None:
            return None
        if len(self._known) > 10_000:
            self._known.clear()
        self._known[digest] = (now + self.KNOWN_KEY_SECONDS, str(row.name))
        return str(row.name)


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_scope(key: str) -> str:
    """The dedupe scope of a write key: a prefix of its hash (the key itself is never stored)."""
    return "key:" + _hash(key)[:16]
