"""Entry without an event, for the simulator: when a journey looks for customers to enter, and
whether a customer's profile lets them in at that moment.

A scheduled journey looks at each occurrence of its schedule in the simulated window, at every
customer of the population; its audience (and entry condition) decides, as in production
(:func:`activities.audience.in_audience`); the re-entry rules are the simulator's, as for every
entry. Date-based and segment entry (issue 19) add their own kind of :class:`EntryMoment`
in :func:`entry_moments` (e.g. one customer's birthday) and, if they need it, a reason in
:func:`refusal`; the simulator plays whatever this module gives it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from activities.audience import in_audience
from simulation.occurrences import occurrences
from workflows import evaluation
from workflows.models import Profile
from workflows.plan import Plan

SCHEDULE = "the schedule"  # how reports name what a scheduled journey enters by


@dataclass(frozen=True)
class EntryMoment:
    """At ``at``, ``journey_id`` looks at ``customers`` (``None``: the whole population)."""

    at: datetime
    journey_id: str
    label: str = SCHEDULE
    customers: tuple[str, ...] | None = None


def entry_moments(
    plans: Iterable[Plan], start: datetime, end: datetime, *, only: datetime | None = None
) -> list[EntryMoment]:
    """Every moment from ``start`` to ``end`` at which one of ``plans`` enters customers
    without an event, in time order. ``only``: just that moment (a journey test's ``at``)."""
    moments = [
        EntryMoment(at, plan.journey_id)
        for plan in plans
        if plan.schedule is not None
        for at in (
            occurrences(plan.schedule, only, only)
            if only is not None
            else occurrences(plan.schedule, start, end)
        )
    ]
    return sorted(moments, key=lambda moment: (moment.at, moment.journey_id))


def without_event(plans: Sequence[Plan]) -> list[Plan]:
    """The journeys among ``plans`` that no event starts (scheduled ones, so far)."""
    return [plan for plan in plans if plan.schedule is not None]


def refusal(plan: Plan, profile: Profile | None, at: datetime) -> str | None:
    """Why ``profile`` does not enter ``plan`` at ``at`` before the re-entry rules are asked;
    ``None`` when it does."""
    if profile is None:
        return "no profile"
    try:
        return None if in_audience(plan, profile, at) else "not in the audience"
    except evaluation.ExpressionFailed as error:
        return f"cannot evaluate: {error}"
