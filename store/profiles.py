"""Customer profiles, and the anonymous ids linked to them (Segment's ``alias``).

**A profile's traits have a size cap** (``profiles.max_bytes`` in ``touchpoint.yaml``,
:data:`DEFAULT_MAX_TRAITS_BYTES` by default), measured as :func:`traits_size`: the traits as
compact JSON (no spaces), in UTF-8 bytes. A change that would leave them larger is refused
with :class:`ProfileTooLarge` before anything is written, so a profile cannot grow until it
pushes a run's data past Temporal's 2 MB payload limit. A change that leaves them within the
cap is accepted, also one that shrinks a profile that is over a lowered cap.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from config.errors import UserError
from store.database import aliases, profiles
from workflows.models import Profile

DEFAULT_MAX_TRAITS_BYTES = 64 * 1024


def traits_size(traits: Mapping[str, Any]) -> int:
    """The size the cap counts: ``traits`` as compact JSON, in UTF-8 bytes."""
    text = json.dumps(traits, ensure_ascii=False, separators=(",", ":"), default=str)
    return len(text.encode("utf-8"))


class ProfileTooLarge(UserError):
    """A change would make a profile's traits larger than the cap; nothing was changed.

    ``path`` names the field of the call to blame: the largest trait it sets
    (``traits.bio``, ``context.traits.bio``), or what merged another profile in."""

    def __init__(self, size: int, limit: int, path: str) -> None:
        self.size, self.limit, self.path = size, limit, path
        super().__init__(
            f"{path}: the profile's traits would take {size:,} bytes (as compact JSON), more "
            f"than the {limit:,} allowed (profiles.max_bytes); nothing was changed — send "
            "less, or remove traits (set them to null) first"
        )

    @property
    def reason(self) -> str:
        """The refusal without the path, for an API error's ``message`` next to its ``path``."""
        return str(self).partition(": ")[2]


def require_fits(
    traits: Mapping[str, Any],
    limit: int,
    added: Mapping[str, Any],
    fields: Mapping[str, str] | None = None,
    merged_from: str | None = None,
) -> None:
    """``ProfileTooLarge`` when ``traits`` (a profile's traits after a change) exceed ``limit``.

    ``added``: the traits the change sets; ``fields``: where each came from in the call
    (``{"bio": "context.traits.bio"}``, default ``traits.<name>``); ``merged_from``: the
    call's field naming a profile merged in (``previousId``), blamed when it adds nothing."""
    size = traits_size(traits)
    if size <= limit:
        return
    fields = fields or {}
    named = [key for key in added if key in fields] or list(added)
    if named:
        largest = max(named, key=lambda key: traits_size({key: added[key]}))
        path = fields.get(largest, f"traits.{largest}")
    else:
        path = merged_from or "traits"
    raise ProfileTooLarge(size, limit, path)


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
        max_bytes: int | None = None,
    ) -> Profile:
        """Merge ``traits`` into the profile (creating it); email and phone come from traits.
        ``max_bytes``: the cap on the merged traits (:class:`ProfileTooLarge`, nothing written)."""
        now = datetime.now(UTC)
        current = self.get(customer_id)
        merged = {**(current.traits if current else {}), **traits}
        if max_bytes is not None:
            require_fits(merged, max_bytes, traits)
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
                    return self.upsert(
                        customer_id, traits, locale=locale, timezone=timezone, max_bytes=max_bytes
                    )
            else:
                db.execute(
                    update(profiles).where(profiles.c.customer_id == customer_id).values(**values)
                )
        profile = self.get(customer_id)
        assert profile is not None
        return profile

    def traits_after(
        self, customer_id: str, traits: Mapping[str, Any], *, linking: str | None = None
    ) -> dict[str, Any]:
        """The traits ``customer_id`` would have after linking ``linking`` (whose profile is
        merged in when the link is new, as :meth:`link` does) and merging ``traits``."""
        current = self.get(customer_id)
        base = dict(current.traits) if current else {}
        if linking and linking != customer_id and self._linked_to(linking) is None:
            anonymous = self.get(linking)
            if anonymous is not None:
                base = {**anonymous.traits, **base}
        return {**base, **traits}

    def _linked_to(self, anonymous_id: str) -> str | None:
        with self.engine.connect() as db:
            linked = db.execute(
                select(aliases.c.customer_id).where(aliases.c.anonymous_id == anonymous_id)
            ).scalar()
        return None if linked is None else str(linked)

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
