"""Entry without an event, for the simulator: when a journey looks for customers to enter, and
whether a customer's profile lets them in at that moment.

A scheduled journey looks at each occurrence of its schedule in the simulated window, at every
customer of the population; its audience (and entry condition) decides, as in production
(:func:`activities.audience.in_audience`); the re-entry rules are the simulator's, as for every
entry. A journey on a date in the profile (``trigger.date.profile``) looks, on every local day
of the window, at the customers of each time zone when their clock shows its ``at`` — the
moments at which production's quarter-hourly schedule reaches that zone — and the date rule
decides (:mod:`workflows.dates`). A customer's zone is the one they start with (a population's
``timezone``, else the journey's default); one that is not an IANA name is never reached, as in
production. Segment journeys need no moment: the identifies of the events enter them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from activities.audience import DateUnreadable, date_is_today, in_audience
from simulation.occurrences import occurrences
from workflows import evaluation
from workflows.models import Profile
from workflows.plan import DateRule, Plan

SCHEDULE = "the schedule"  # how reports name what a scheduled journey enters by
DATE = "the date"  # … and a journey on a date in the profile
NOT_THEIR_DAY = "not their day"
"""A date journey looked at a customer whose date is another day: not worth a report line
(every customer but the few of the day, every day)."""


@dataclass(frozen=True)
class EntryMoment:
    """At ``at``, ``journey_id`` looks at ``customers`` (``None``: the whole population)."""

    at: datetime
    journey_id: str
    label: str = SCHEDULE
    customers: tuple[str, ...] | None = None


def entry_moments(
    plans: Iterable[Plan],
    start: datetime,
    end: datetime,
    *,
    only: datetime | None = None,
    zones: Sequence[tuple[str, str | None]] = (),
) -> list[EntryMoment]:
    """Every moment from ``start`` to ``end`` at which one of ``plans`` enters customers
    without an event, in time order. ``only``: just that moment (a journey test's ``at``).
    ``zones``: each customer's id and time zone (``None``: none), for date journeys."""
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
    for plan in plans:
        if plan.date_entry is not None:
            moments += [
                moment
                for moment in _date_moments(plan.journey_id, plan.date_entry, start, end, zones)
                if only is None or moment.at == only
            ]
    return sorted(moments, key=lambda moment: (moment.at, moment.journey_id))


def _date_moments(
    journey_id: str,
    rule: DateRule,
    start: datetime,
    end: datetime,
    zones: Sequence[tuple[str, str | None]],
) -> list[EntryMoment]:
    """For each time zone among the customers, each local day's ``rule.time`` in the window:
    the customers of that zone are looked at then (a time the clocks skip is the moment they
    jump past it, as production's :func:`workflows.dates.zones_at` counts it)."""
    by_zone: dict[str, list[str]] = {}
    for customer_id, name in zones:
        by_zone.setdefault(name or rule.timezone, []).append(customer_id)
    hour, minute = (int(part) for part in rule.time.split(":"))
    moments = []
    for name, customers in sorted(by_zone.items()):
        try:
            tz = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            continue  # never in production's zones either
        day = start.astimezone(tz).date() - timedelta(days=1)
        while day <= end.astimezone(tz).date():
            at = datetime.combine(day, time(hour, minute), tzinfo=tz).astimezone(UTC)
            if start <= at <= end:
                moments.append(EntryMoment(at, journey_id, DATE, tuple(customers)))
            day += timedelta(days=1)
    return moments


def without_event(plans: Sequence[Plan]) -> list[Plan]:
    """The journeys among ``plans`` that no event starts: scheduled ones and those on a date in
    the profile (segment journeys are started by the events' identifies)."""
    return [plan for plan in plans if plan.schedule is not None or plan.date_entry is not None]


def refusal(plan: Plan, profile: Profile | None, at: datetime) -> str | None:
    """Why ``profile`` does not enter ``plan`` at ``at`` before the re-entry rules are asked;
    ``None`` when it does."""
    if profile is None:
        return "no profile"
    try:
        if plan.date_entry is not None and not date_is_today(plan.date_entry, profile, at):
            return NOT_THEIR_DAY
        return None if in_audience(plan, profile, at) else "not in the audience"
    except evaluation.ExpressionFailed as error:
        return f"cannot evaluate: {error}"
    except DateUnreadable:
        return "the date in the profile cannot be read"
