"""Erasing a customer from the store (``touchpoint forget``), and what stays to honour it.

What goes: the profile, its consent records (and topic choices), its event log rows (the
calls the API accepted about it), its aliases (and the
profiles of the anonymous ids linked to it), its journey entries, and every link from the
delivery ledger back to the customer (the ledger row stays for counts: journey, step, channel,
status and time), and from the journey analytics (``journey_runs.customer``, and a failed run's
error, which may quote an address; the run's counts stay).

What stays, as a **keyed hash** (HMAC-SHA256 with ``TOUCHPOINT_ERASURE_SECRET``, so nobody
without the secret can test a guessed address or id against it):

* ``erasures``: that the customer was erased — who asked, when, the request's reference;
* ``erased_addresses``: their email address(es), so that an address that comes back (a new
  sign-up, an import) gets no marketing email without new consent, and an address that was
  suppressed (a hard bounce, a spam report) stays suppressed for all email.

Every method is idempotent: the erasure workflow may run each step again after a crash.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, case, delete, or_, select, update

from store.atomic import insert_new
from store.database import (
    aliases,
    consent,
    deliveries,
    erased_addresses,
    erasures,
    event_log,
    journey_entries,
    journey_runs,
    profiles,
    suppression_audit,
    suppressions,
    topic_consent,
    utc,
)
from store.suppressions import normalise
from workflows.models import customer_hash

ERASED = "erased"  # what the ledger's customer column says of an erased customer's rows


def keyed_hash(key: bytes, kind: str, value: str) -> str:
    """HMAC-SHA256 of ``value`` (of ``kind``: customer, address) under ``key``, as hex."""
    return hmac.new(key, f"touchpoint-{kind}:{value}".encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class ErasureRecord:
    customer: str  # the keyed hash of the customer id
    request_id: str
    actor: str
    requested_at: datetime
    completed_at: datetime | None


class ErasureStore:
    def __init__(self, engine: Engine, key: bytes) -> None:
        self.engine = engine
        self.key = key

    def customer_key(self, customer_id: str) -> str:
        return keyed_hash(self.key, "customer", customer_id)

    def address_key(self, address: str) -> str:
        return keyed_hash(self.key, "address", normalise(address))

    # --- the audit ---------------------------------------------------------------------------

    def begin(self, customer_id: str, request_id: str, actor: str) -> ErasureRecord:
        """Record the request (once per request id: a resumed erasure keeps its first who and
        when); the record."""
        hashed = self.customer_key(customer_id)
        with self.engine.begin() as db:
            insert_new(
                db,
                erasures,
                {
                    "customer": hashed,
                    "request_id": request_id[:200],
                    "actor": actor[:200],
                    "requested_at": datetime.now(UTC),
                    "completed_at": None,
                },
            )
        [found] = [r for r in self.records(hashed) if r.request_id == request_id[:200]]
        return found

    def complete(self, hashed: str) -> None:
        """Mark the customer's open requests done."""
        with self.engine.begin() as db:
            db.execute(
                update(erasures)
                .where(erasures.c.customer == hashed, erasures.c.completed_at.is_(None))
                .values(completed_at=datetime.now(UTC))
            )

    def records(self, hashed: str) -> list[ErasureRecord]:
        """The erasure requests for the customer whose keyed hash is ``hashed``, oldest first."""
        query = select(erasures).where(erasures.c.customer == hashed)
        with self.engine.connect() as db:
            rows = db.execute(query.order_by(erasures.c.requested_at)).all()
        return [
            ErasureRecord(
                customer=row.customer,
                request_id=row.request_id,
                actor=row.actor,
                requested_at=utc(row.requested_at),
                completed_at=utc(row.completed_at) if row.completed_at else None,
            )
            for row in rows
        ]

    # --- erased addresses ----------------------------------------------------------------------

    def blocked(self, address: str, *, marketing: bool) -> str | None:
        """Why no email (or, for an address only erased, no marketing email) may go to
        ``address``; ``None`` if it may. Names no address."""
        try:
            hashed = self.address_key(address)
        except ValueError:
            return None
        with self.engine.connect() as db:
            reason = db.execute(
                select(erased_addresses.c.reason).where(erased_addresses.c.address == hashed)
            ).scalar()
        if reason is None or (reason == ERASED and not marketing):
            return None
        if reason == ERASED:
            return "the address belonged to an erased customer (no consent since)"
        return f"the address is suppressed ({reason})"

    def lift(self, address: str) -> bool:
        """Forget an erased address's hash (the person gave consent again); ``True`` if known."""
        with self.engine.begin() as db:
            removed = db.execute(
                delete(erased_addresses).where(
                    erased_addresses.c.address == self.address_key(address)
                )
            )
        return removed.rowcount > 0

    # --- what the store holds of a customer ------------------------------------------------------

    def identities(self, customer_id: str) -> list[str]:
        """The customer id and the anonymous ids linked to it (runs may have started under
        them), in a stable order."""
        with self.engine.connect() as db:
            linked = db.execute(
                select(aliases.c.anonymous_id).where(aliases.c.customer_id == customer_id)
            )
            return [customer_id, *sorted(str(row.anonymous_id) for row in linked)]

    def addresses(self, ids: Sequence[str]) -> list[str]:
        """The email addresses the profiles of ``ids`` hold, normalised."""
        with self.engine.connect() as db:
            rows = db.execute(select(profiles.c.email).where(profiles.c.customer_id.in_(ids)))
            found = set()
            for row in rows:
                try:
                    found.add(normalise(row.email or ""))
                except ValueError:
                    continue
        return sorted(found)

    def keep_addresses(self, addresses: Sequence[str]) -> None:
        """Remember each address as a keyed hash: with its suppression's reason where it was
        suppressed (no email at all), else as ``erased`` (no marketing email)."""
        now = datetime.now(UTC)
        with self.engine.begin() as db:
            for address in addresses:
                reason = db.execute(
                    select(suppressions.c.reason).where(suppressions.c.address == address)
                ).scalar()
                hashed = self.address_key(address)
                new = {"address": hashed, "reason": reason or ERASED, "created_at": now}
                if not insert_new(db, erased_addresses, new) and reason is not None:
                    db.execute(  # a suppression outranks "erased"
                        update(erased_addresses)
                        .where(erased_addresses.c.address == hashed)
                        .values(reason=reason)
                    )

    def ledger_messages(self, customer_hashes: Sequence[str]) -> list[str]:
        """The message ids of the ledger rows of ``customer_hashes`` (not yet anonymised)."""
        with self.engine.connect() as db:
            rows = db.execute(
                select(deliveries.c.message_id).where(deliveries.c.customer.in_(customer_hashes))
            )
            return [str(row.message_id) for row in rows]

    def anonymise_ledger(self, message_ids: Sequence[str]) -> int:
        """Cut each row's links to the customer: a random message id, no customer, provider id
        or reason (a provider's words may quote the address). Counts stay."""
        changed = 0
        with self.engine.begin() as db:
            for message_id in message_ids:
                changed += db.execute(
                    update(deliveries)
                    .where(deliveries.c.message_id == message_id)
                    .values(
                        message_id=f"{ERASED}-{uuid.uuid4().hex}",
                        customer=ERASED,
                        provider_id=None,
                        reason=None,
                    )
                ).rowcount
        return changed

    def delete_entries(self, subjects: Sequence[str]) -> int:
        with self.engine.begin() as db:
            return db.execute(
                delete(journey_entries).where(journey_entries.c.subject.in_(subjects))
            ).rowcount

    def forget_runs(self, ids: Sequence[str]) -> int:
        """Cut the journey analytics' runs of ``ids`` from the customer: no customer hash, no
        failure text. Their passes and outcome stay in the counts."""
        hashes = [customer_hash(i) for i in ids]
        with self.engine.begin() as db:
            return db.execute(
                update(journey_runs)
                .where(journey_runs.c.customer.in_(hashes))
                .values(
                    customer=None,
                    reason=case(
                        (journey_runs.c.outcome == "failed", None), else_=journey_runs.c.reason
                    ),
                )
            ).rowcount

    def delete_customer(self, ids: Sequence[str], addresses: Sequence[str]) -> None:
        """Delete the profiles, consent records (topic choices too), aliases and event log
        rows of ``ids``,
        and the plain suppressions of ``addresses`` (kept as hashes by :meth:`keep_addresses`
        first); the suppression audit keeps its rows, under the address's hash. The analytics'
        runs of ``ids`` lose their link to the customer (:meth:`forget_runs`)."""
        self.forget_runs(ids)
        with self.engine.begin() as db:
            db.execute(delete(consent).where(consent.c.customer_id.in_(ids)))
            db.execute(delete(topic_consent).where(topic_consent.c.customer_id.in_(ids)))
            db.execute(
                delete(aliases).where(
                    or_(aliases.c.customer_id.in_(ids), aliases.c.anonymous_id.in_(ids))
                )
            )
            db.execute(delete(profiles).where(profiles.c.customer_id.in_(ids)))
            db.execute(delete(event_log).where(event_log.c.customer_id.in_(ids)))
            db.execute(delete(suppressions).where(suppressions.c.address.in_(addresses)))
            for address in addresses:
                db.execute(
                    update(suppression_audit)
                    .where(suppression_audit.c.address == address)
                    .values(address=self.address_key(address))
                )
