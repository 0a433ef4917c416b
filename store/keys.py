"""Keys for the API: write keys (ingestion) and admin keys (privacy requests); only their
hashes are stored."""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import Engine, insert, select

from store.database import write_keys

KeyKind = Literal["write", "admin"]
WRITE: KeyKind = "write"
ADMIN: KeyKind = "admin"


class WriteKeys:
    """Write keys as Segment's SDKs send them (HTTP Basic user name); only hashes are stored.

    The same table holds admin keys (``kind`` ``admin``): they open the admin endpoints
    (:mod:`ingestion.admin`) and are not write keys — :meth:`source` does not know them.

    A known key is remembered for ``KNOWN_KEY_SECONDS`` (every event carries one: the lookup
    was a tenth of the API's time); an unknown key is asked for every time, so a key created
    a moment ago works at once.
    """

    KNOWN_KEY_SECONDS = 60.0

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # key hash → (until, name, kind)
        self._known: dict[str, tuple[float, str, KeyKind]] = {}

    def create(self, name: str, kind: KeyKind = WRITE) -> str:
        """A new key of ``kind``; returned once, only its hash is stored. Admin keys start
        ``tpa_`` so that one pasted into an SDK's config is recognisable."""
        key = ("tpa_" if kind == ADMIN else "tp_") + secrets.token_urlsafe(24)
        with self.engine.begin() as db:
            db.execute(
                insert(write_keys).values(
                    key_hash=_hash(key), name=name, created_at=datetime.now(UTC), kind=kind
                )
            )
        return key

    def source(self, key: str) -> str | None:
        """The name of the source the write key ``key`` belongs to, or ``None`` (also for an
        admin key: it does not send events)."""
        found = self.lookup(key)
        return found[0] if found is not None and found[1] == WRITE else None

    def lookup(self, key: str) -> tuple[str, KeyKind] | None:
        """The name and kind of ``key``, or ``None`` for a key never created."""
        digest = _hash(key)
        now = time.monotonic()
        known = self._known.get(digest)
        if known is not None and known[0] > now:
            return known[1], known[2]
        with self.engine.connect() as db:
            row = db.execute(
                select(write_keys.c.name, write_keys.c.kind).where(write_keys.c.key_hash == digest)
            ).first()
        if row is None:
            return None
        if len(self._known) > 10_000:
            self._known.clear()
        kind: KeyKind = ADMIN if row.kind == ADMIN else WRITE
        self._known[digest] = (now + self.KNOWN_KEY_SECONDS, str(row.name), kind)
        return str(row.name), kind


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_scope(key: str) -> str:
    """The dedupe scope of a write key: a prefix of its hash (the key itself is never stored)."""
    return "key:" + _hash(key)[:16]
