"""Segment entry: a customer enters a journey when a profile update makes its condition true.

A segment journey (``trigger.segment``, :attr:`workflows.plan.Plan.segment`) is not polled.
Where the profile is updated — an ``identify``, or any call carrying traits, through
:meth:`ingestion.service.Ingestion.apply` — the store returns the profile just before and just
after the change, from one locked step (:meth:`store.profiles.ProfileStore.change`), and
:func:`crossed` decides whether the condition went from false to true. Only such a *crossing*
enters: a customer who stays above 1,000 on the next identify does not enter again; one who
drops below and crosses again does, if the journey's re-entry rules allow it. A new
customer's first identify is a crossing when the condition holds. Profile changes that do not
go through ingestion (erasure, ``touchpoint forget``) start nothing.

**Data that does not fit.** A condition that cannot be evaluated on the profile *before* (a
trait it reads was missing) counts as "did not match", so gaining the trait is a crossing;
one that cannot be evaluated *after* enters nobody (the router says why).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from workflows import evaluation
from workflows.models import Event, Profile
from workflows.plan import SEGMENT_EVENT


def matches(condition: str, profile: Profile, now: datetime) -> bool:
    """Does ``profile`` match the segment ``condition`` at ``now``
    (``evaluation.ExpressionFailed`` when its data breaks the expression)."""
    names: dict[str, Any] = {"profile": profile.model_dump(), "now": now}
    return evaluation.is_true(condition, names)


def crossed(condition: str, before: Profile | None, after: Profile, now: datetime) -> bool:
    """Did a change from ``before`` (``None``: a new customer) to ``after`` make ``condition``
    true? ``evaluation.ExpressionFailed`` when it cannot be evaluated on ``after``."""
    if not matches(condition, after, now):
        return False
    if before is None:
        return True
    try:
        return not matches(condition, before, now)
    except evaluation.ExpressionFailed:
        return True


def crossing_tag(message_id: str) -> str:
    """The run tag of the crossing made by the call ``message_id`` (its source's scope and
    message id): a retried call finds the run its first attempt started."""
    return hashlib.sha256(f"touchpoint-segment:{message_id}".encode()).hexdigest()[:16]


def segment_trigger(customer_id: str, message_id: str, now: datetime) -> Event:
    """The run's trigger: the crossing itself, without properties (steps read the profile
    fresh, as every run does)."""
    return Event(
        message_id=message_id,
        event=SEGMENT_EVENT,
        customer_id=customer_id,
        timestamp=now,
    )
