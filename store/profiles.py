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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Row,
    bindparam,
    delete,
    func,
    or_,
    select,
    update,
)

from config.errors import UserError
from store.atomic import insert_new, read_for_update
from store.database import aliases, profiles
from store.prepared import Prepared
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


@dataclass(frozen=True)
class ProfileChange:
    """A profile just before and just after one change (``before``: ``None`` when new)."""

    before: Profile | None
    after: Profile


class ProfileStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, customer_id: str) -> Profile | None:
        with self.engine.connect() as db:  # before every send: compiled once
            row = _BY_ID.first(db, {"customer_id": customer_id})
        return None if row is None else _profile(row)

    def page(
        self,
        after: str | None,
        limit: int,
        zones: Sequence[str] | None = None,
        *,
        without_zone: bool = False,
    ) -> list[Profile]:
        """Up to ``limit`` profiles in customer id order, after ``after`` (``None``: from the
        first): a broadcast's audience is read page by page along the primary key's index, so
        neither the store nor the reader ever holds more than one page.

        ``zones``: only profiles whose time zone is one of these (the timezone index), and with
        ``without_zone`` those that have none too (a date journey's occurrence)."""
        query = select(profiles).order_by(profiles.c.customer_id).limit(limit)
        if after is not None:
            query = query.where(profiles.c.customer_id > after)
        if zones is not None:
            wanted: ColumnElement[bool] = profiles.c.timezone.in_(list(zones))
            if without_zone:
                wanted = or_(wanted, profiles.c.timezone.is_(None), profiles.c.timezone == "")
            query = query.where(wanted)
        with self.engine.connect() as db:
            return [_profile(row) for row in db.execute(query)]

    def many(self, customer_ids: Sequence[str], chunk: int = 500) -> dict[str, Profile]:
        """The profiles of ``customer_ids`` that exist, read ``chunk`` ids per query (a replay
        reads every customer of a month's event log)."""
        ids = sorted(set(customer_ids))
        found: dict[str, Profile] = {}
        for first in range(0, len(ids), chunk):
            query = select(profiles).where(profiles.c.customer_id.in_(ids[first : first + chunk]))
            with self.engine.connect() as db:
                found.update((row.customer_id, _profile(row)) for row in db.execute(query))
        return found

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
        keep_existing: bool = False,
        max_bytes: int | None = None,
    ) -> Profile:
        """Merge ``traits`` into the profile (creating it) and return it: see :meth:`change`."""
        return self.change(
            customer_id,
            traits,
            locale=locale,
            timezone=timezone,
            keep_existing=keep_existing,
            max_bytes=max_bytes,
        ).after

    def change(
        self,
        customer_id: str,
        traits: dict[str, Any],
        *,
        locale: str | None = None,
        timezone: str | None = None,
        keep_existing: bool = False,
        max_bytes: int | None = None,
    ) -> ProfileChange:
        """Merge ``traits`` into the profile (creating it); email and phone come from traits.
        With ``keep_existing``, what the profile already says wins over what is given.
        ``max_bytes``: the cap on the merged traits (:class:`ProfileTooLarge`, nothing written).

        Read, merge and write are one step: the profile is read locked (``SELECT … FOR
        UPDATE`` on PostgreSQL, the write lock on SQLite), so of two calls for one customer at
        the same moment (on two API processes) the second merges into the first's result —
        neither overwrites the other's traits. The profile before and after are those of the
        same locked step, so whether a segment condition turned true is decided once per
        change (:mod:`ingestion.segments`), also with concurrent identifies."""
        now = datetime.now(UTC)
        key = profiles.c.customer_id == customer_id
        with self.engine.begin() as db:
            while True:
                row = read_for_update(db, select(profiles).where(key))
                current = None if row is None else _profile(row)
                profile = _merged(
                    customer_id, current, traits, locale, timezone, keep_existing=keep_existing
                )
                if max_bytes is not None:  # checked on what would be written, under the lock
                    require_fits(profile.traits, max_bytes, traits)
                values = {
                    "email": profile.email,
                    "phone": profile.phone,
                    "locale": profile.locale,
                    "timezone": profile.timezone,
                    "traits": profile.traits,
                    "updated_at": now,
                }
                if current is not None:
                    db.execute(update(profiles).where(key).values(**values))
                    return ProfileChange(current, profile)
                new = {"customer_id": customer_id, "created_at": now, **values}
                if insert_new(db, profiles, new):
                    return ProfileChange(None, profile)
                # created a moment ago by another call (PostgreSQL): lock it, merge into it

    def undo(self, change: ProfileChange) -> bool:
        """Put the profile back as it was before ``change``, if it is still as ``change`` left
        it (a call whose processing failed; its sender retries it). ``False``: another call
        changed it since, and it is kept."""
        key = profiles.c.customer_id == change.after.id
        with self.engine.begin() as db:
            row = read_for_update(db, select(profiles).where(key))
            if row is None or _profile(row) != change.after:
                return False
            before = change.before
            if before is None:
                db.execute(delete(profiles).where(key))
                return True
            db.execute(
                update(profiles)
                .where(key)
                .values(
                    email=before.email,
                    phone=before.phone,
                    locale=before.locale,
                    timezone=before.timezone,
                    traits=before.traits,
                    updated_at=datetime.now(UTC),
                )
            )
            return True

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
        latest login wins); its profile is merged only the first time. The alias is read
        locked, or created with ``ON CONFLICT DO NOTHING`` and then read locked if another
        call created it a moment ago, so concurrent calls take turns and the last one wins.
        """
        if anonymous_id == customer_id:
            return False
        now = datetime.now(UTC)
        key = aliases.c.anonymous_id == anonymous_id
        with self.engine.begin() as db:
            row = read_for_update(db, select(aliases.c.customer_id).where(key))
            if row is None:
                new = {"anonymous_id": anonymous_id, "customer_id": customer_id, "created_at": now}
                first = insert_new(db, aliases, new)
                if not first:  # linked a moment ago by another call: relink after it
                    row = read_for_update(db, select(aliases.c.customer_id).where(key))
            else:
                first = False
            if row is not None:
                if row.customer_id == customer_id:
                    return False
                db.execute(
                    update(aliases).where(key).values(customer_id=customer_id, created_at=now)
                )
        if first:
            anonymous = self.get(anonymous_id)
            if anonymous is not None:
                self.upsert(
                    customer_id,
                    anonymous.traits,
                    locale=anonymous.locale,
                    timezone=anonymous.timezone,
                    keep_existing=True,
                )
        return True

    def linked_ids(self, customer_id: str) -> list[str]:
        """The anonymous ids linked to ``customer_id`` (runs may have started under them)."""
        with self.engine.connect() as db:
            return _linked_ids(db, customer_id)

    def get_with_links(self, customer_id: str) -> tuple[Profile | None, list[str]]:
        """:meth:`get` and :meth:`linked_ids` on one connection: what the router needs for
        each event, for one pool checkout (on PostgreSQL each checkout is a ping, a ``BEGIN``
        and a ``ROLLBACK`` besides the reads)."""
        with self.engine.connect() as db:
            row = _BY_ID.first(db, {"customer_id": customer_id})
            return (None if row is None else _profile(row)), _linked_ids(db, customer_id)


_BY_ID = Prepared(select(profiles).where(profiles.c.customer_id == bindparam("customer_id")))
_LINKED = Prepared(
    select(aliases.c.anonymous_id)
    .where(aliases.c.customer_id == bindparam("customer_id"))
    .order_by(aliases.c.anonymous_id)
)


def _linked_ids(db: Connection, customer_id: str) -> list[str]:
    return [str(anonymous_id) for (anonymous_id,) in _LINKED.run(db, {"customer_id": customer_id})]


def _profile(row: Row[Any] | Mapping[str, Any]) -> Profile:
    values = row if isinstance(row, Mapping) else row._mapping
    return Profile(
        id=values["customer_id"],
        email=values["email"],
        phone=values["phone"],
        locale=values["locale"],
        timezone=values["timezone"],
        traits=dict(values["traits"] or {}),
    )


def _merged(
    customer_id: str,
    current: Profile | None,
    traits: dict[str, Any],
    locale: str | None,
    timezone: str | None,
    *,
    keep_existing: bool,
) -> Profile:
    if current is None:
        merged, old_locale, old_timezone = dict(traits), None, None
    else:
        first, second = (traits, current.traits) if keep_existing else (current.traits, traits)
        merged, old_locale, old_timezone = {**first, **second}, current.locale, current.timezone
    email, phone = merged.get("email"), merged.get("phone")
    return Profile(
        id=customer_id,
        email=email if isinstance(email, str) else None,
        phone=phone if isinstance(phone, str) else None,
        locale=(old_locale or locale) if keep_existing else (locale or old_locale),
        timezone=(old_timezone or timezone) if keep_existing else (timezone or old_timezone),
        traits=merged,
    )
