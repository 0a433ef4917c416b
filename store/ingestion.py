"""What the ingestion API keeps: customer profiles, message ids it has processed (dedupe), and
hashed write keys."""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from store.database import aliases, consent, processed_messages, profiles, write_keys
from workflows.models import Profile

DEDUPE_WINDOW = timedelta(hours=48)


class ProfileStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, customer_id: str) -> Profile | None:
        with self.engine.connect() as db:
            row = db.execute(select(profiles).where(profiles.c.customer_id == customer_id)).first()
        if row is None:
            return None
        return Profile(
            id=row.customer_id,
            email=row.email,
            phone=row.phone,
            locale=row.locale,
            timezone=row.timezone,
            traits=dict(row.traits or {}),
        )

    def by_email(self, email: str) -> str | None:
        """The customer id with this email address (case-insensitive), if any."""
        with self.engine.connect() as db:
            row = db.execute(
                select(profiles.c.customer_id).where(
                    func.lower(profiles.c.email) == email.strip().lower()
                )
            ).first()
        return None if row is None else str(row.customer_id)

    def upsert(
        self,
        customer_id: str,
        traits: dict[str, Any],
        *,
        locale: str | None = None,
        timezone: str | None = None,
    ) -> Profile:
        """Merge ``traits`` into the profile (creating it); email and phone come from traits."""
        now = datetime.now(UTC)
        current = self.get(customer_id)
        merged = {**(current.traits if current else {}), **traits}
        values = {
            "email": merged.get("email") if isinstance(merged.get("email"), str) else None,
            "phone": merged.get("phone") if isinstance(merged.get("phone"), str) else None,
            "locale": locale or (current.locale if current else None),
            "timezone": timezone or (current.timezone if current else None),
            "traits": merged,
            "updated_at": now,
        }
        with self.engine.begin() as db:
            if current is None:
                try:
                    db.execute(
                        insert(profiles).values(customer_id=customer_id, created_at=now, **values)
                    )
                except IntegrityError:  # created meanwhile by another request: update instead
                    db.rollback()
                    return self.upsert(customer_id, traits, locale=locale, timezone=timezone)
            else:
                db.execute(
                    update(profiles).where(profiles.c.customer_id == customer_id).values(**values)
                )
        profile = self.get(customer_id)
        assert profile is not None
        return profile

    # --- identity: anonymous ids linked to users ------------------------------------------

    def resolve(self, user_id: str | None, anonymous_id: str | None) -> str:
        """Who a call is about: the user, else the user the anonymous id is linked to, else
        the anonymous visitor."""
        if user_id:
            return user_id
        assert anonymous_id, "a call names a user or an anonymous id"
        with self.engine.connect() as db:
            linked = db.execute(
                select(aliases.c.customer_id).where(aliases.c.anonymous_id == anonymous_id)
            ).scalar()
        return str(linked) if linked is not None else anonymous_id

    def link(self, anonymous_id: str, customer_id: str) -> bool:
        """Link ``anonymous_id`` to ``customer_id`` and merge its profile into theirs (what the
        customer's profile already says wins). ``True`` if the link is new.

        An anonymous id linked to someone else before is linked anew (a shared device: the
        latest login wins); its profile is merged only the first time.
        """
        if anonymous_id == customer_id:
            return False
        now = datetime.now(UTC)
        with self.engine.begin() as db:
            current = db.execute(
                select(aliases.c.customer_id).where(aliases.c.anonymous_id == anonymous_id)
            ).scalar()
            if current == customer_id:
                return False
            if current is None:
                try:
                    with db.begin_nested():
                        db.execute(
                            insert(aliases).values(
                                anonymous_id=anonymous_id, customer_id=customer_id, created_at=now
                            )
                        )
                except IntegrityError:  # linked meanwhile by a concurrent call
                    return False
            else:
                db.execute(
                    update(aliases)
                    .where(aliases.c.anonymous_id == anonymous_id)
                    .values(customer_id=customer_id, created_at=now)
                )
                return True
        anonymous = self.get(anonymous_id)
        if anonymous is not None:
            known = self.get(customer_id)
            traits = {**anonymous.traits, **(known.traits if known else {})}
            self.upsert(
                customer_id,
                traits,
                locale=(known.locale if known else None) or anonymous.locale,
                timezone=(known.timezone if known else None) or anonymous.timezone,
            )
        return True

    def linked_ids(self, customer_id: str) -> list[str]:
        """The anonymous ids linked to ``customer_id`` (runs may have started under them)."""
        with self.engine.connect() as db:
            rows = db.execute(
                select(aliases.c.anonymous_id)
                .where(aliases.c.customer_id == customer_id)
                .order_by(aliases.c.anonymous_id)
            )
            return [str(row.anonymous_id) for row in rows]


class ProcessedMessages:
    """Message ids seen in the last 48 hours, per source (``scope``): a duplicate is accepted
    but not processed twice. A message id is unique within its source only (Segment's rule):
    the same id from two write keys is two messages."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def claim(self, scope: str, message_id: str) -> bool:
        """``True`` the first time ``message_id`` is seen from ``scope``."""
        try:
            with self.engine.begin() as db:
                db.execute(
                    insert(processed_messages).values(
                        scope=scope, message_id=message_id, received_at=datetime.now(UTC)
                    )
                )
        except IntegrityError:
            return False
        return True

    def release(self, scope: str, message_id: str) -> None:
        """Forget a claim whose processing failed, so the sender's retry is processed."""
        with self.engine.begin() as db:
            db.execute(
                delete(processed_messages).where(
                    processed_messages.c.scope == scope,
                    processed_messages.c.message_id == message_id,
                )
            )

    def purge(self, now: datetime | None = None) -> int:
        cutoff = (now or datetime.now(UTC)) - DEDUPE_WINDOW
        with self.engine.begin() as db:
            return db.execute(
                delete(processed_messages).where(processed_messages.c.received_at < cutoff)
            ).rowcount


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


class ConsentStore:
    """Who must not get marketing email any more, and why (unsubscribe, bounce, spam report)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def withdraw(self, customer_id: str, reason: str, status: str = "unsubscribed") -> bool:
        """Record it; ``True`` if it is new (idempotent: a second click changes nothing)."""
        now = datetime.now(UTC)
        try:
            with self.engine.begin() as db:
                db.execute(
                    insert(consent).values(
                        customer_id=customer_id,
                        category="marketing",
                        status=status,
                        reason=reason,
                        updated_at=now,
                    )
                )
        except IntegrityError:
            return False
        return True

    def blocked(self, customer_id: str, category: str = "marketing") -> str | None:
        """Why ``customer_id`` must not get ``category`` messages, or ``None``."""
        if category != "marketing":
            return None
        with self.engine.connect() as db:
            row = db.execute(
                select(consent.c.status, consent.c.reason).where(
                    consent.c.customer_id == customer_id, consent.c.category == "marketing"
                )
            ).first()
        return None if row is None else f"{row.status} ({row.reason})"
