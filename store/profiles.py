"""Customer profiles, and the anonymous ids linked to them (Segment's ``alias``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from store.database import aliases, profiles
from workflows.models import Profile


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
