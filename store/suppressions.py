"""Addresses no email may go to: hard bounces, spam reports and what support staff add.

A suppression belongs to the **address**, not the customer, and stops **all** email to it,
transactional included — as the providers themselves do: mail to an address that bounced hard
or reported spam harms the sender's reputation whatever it says. (A customer who unsubscribed
from marketing is a different thing: :class:`store.consent.ConsentStore`.)

Every change is audited: ``suppression_audit`` keeps who added or removed a suppression, when
and why, and keeps it after the suppression itself is gone.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import Engine, bindparam, delete, func, insert, select

from store.atomic import insert_new
from store.database import suppression_audit, suppressions, utc
from store.prepared import Prepared

MAX_ADDRESS = 320  # RFC 5321: 64 for the local part, @, 255 for the domain


@dataclass(frozen=True)
class Suppression:
    address: str  # normalised: stripped, lower-cased
    reason: str  # bounce, spamreport, manual, …
    detail: str | None  # the provider's or the operator's words
    source: str  # sendgrid, cli, …
    since: datetime  # UTC


@dataclass(frozen=True)
class AuditEntry:
    address: str
    action: Literal["added", "removed"]
    why: str | None
    actor: str  # sendgrid, or the operator's name
    at: datetime  # UTC


def normalise(address: str) -> str:
    """The form an address is stored and looked up in: stripped and lower-cased.

    ``ValueError`` when it cannot be an email address (empty, no ``@``, spaces, too long).
    """
    text = address.strip().lower()
    local, at, domain = text.rpartition("@")
    if not (at and local and domain) or any(c.isspace() for c in text):
        raise ValueError(f"{address.strip()!r} is not an email address")
    if len(text) > MAX_ADDRESS:
        raise ValueError(f"an email address has at most {MAX_ADDRESS} characters")
    return text


class Suppressions:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(
        self,
        address: str,
        reason: str,
        *,
        detail: str | None = None,
        source: str,
        actor: str,
    ) -> bool:
        """Suppress ``address``; ``True`` if it is new. Idempotent: a repeated bounce changes
        nothing and writes no second audit row, even when two bounces for it arrive at once
        (the primary key lets one insert the address; only that one writes the audit row)."""
        key = normalise(address)
        now = datetime.now(UTC)
        with self.engine.begin() as db:
            new = {
                "address": key,
                "reason": reason[:64],
                "detail": _clip(detail, 500),
                "source": source[:64],
                "created_at": now,
            }
            if not insert_new(db, suppressions, new):
                return False  # suppressed already (perhaps a moment ago by another request)
            db.execute(
                insert(suppression_audit).values(
                    address=key,
                    action="added",
                    reason=_clip(f"{reason}: {detail}" if detail else reason, 500),
                    actor=actor[:200],
                    at=now,
                )
            )
        return True

    def remove(self, address: str, *, actor: str, why: str) -> bool:
        """Lift the suppression of ``address``, recording who and why; ``False`` if it was
        not suppressed (nothing is recorded then). Of two removals at once, the second waits
        for the first's ``DELETE`` and then deletes nothing: one audit row."""
        key = normalise(address)
        with self.engine.begin() as db:
            removed = db.execute(delete(suppressions).where(suppressions.c.address == key))
            if removed.rowcount == 0:
                return False
            db.execute(
                insert(suppression_audit).values(
                    address=key,
                    action="removed",
                    reason=_clip(why, 500),
                    actor=actor[:200],
                    at=datetime.now(UTC),
                )
            )
        return True

    def get(self, address: str) -> Suppression | None:
        try:
            key = normalise(address)
        except ValueError:
            return None  # what is not an address was never suppressed
        with self.engine.connect() as db:  # before every email: compiled once
            row = _BY_ADDRESS.first(db, {"address": key})
        return None if row is None else _suppression(row)

    def blocked(self, address: str) -> str | None:
        """Why no email may go to ``address`` (``the address is suppressed (bounce)``), or
        ``None``. Names no address: the reason goes into the ledger and the run's history."""
        found = self.get(address)
        return None if found is None else f"the address is suppressed ({found.reason})"

    def list(self, limit: int = 100) -> builtins.list[Suppression]:
        """The newest ``limit`` suppressions, newest first."""
        query = (
            select(suppressions)
            .order_by(suppressions.c.created_at.desc(), suppressions.c.address)
            .limit(limit)
        )
        with self.engine.connect() as db:
            return [_suppression(row) for row in db.execute(query)]

    def count(self) -> int:
        with self.engine.connect() as db:
            return int(db.execute(select(func.count()).select_from(suppressions)).scalar_one())

    def audit(self, address: str) -> builtins.list[AuditEntry]:
        """Every change to ``address``'s suppression, oldest first."""
        key = normalise(address)
        query = (
            select(suppression_audit)
            .where(suppression_audit.c.address == key)
            .order_by(suppression_audit.c.id)
        )
        with self.engine.connect() as db:
            return [
                AuditEntry(
                    address=row.address,
                    action=row.action,
                    why=row.reason,
                    actor=row.actor,
                    at=utc(row.at),
                )
                for row in db.execute(query)
            ]


_BY_ADDRESS = Prepared(select(suppressions).where(suppressions.c.address == bindparam("address")))


def _suppression(row: object) -> Suppression:
    values = row if isinstance(row, dict) else row._mapping  # type: ignore[attr-defined]
    return Suppression(
        address=values["address"],
        reason=values["reason"],
        detail=values["detail"],
        source=values["source"],
        since=utc(values["created_at"]),
    )


def _clip(text: str | None, length: int) -> str | None:
    return None if text is None else text[:length]
