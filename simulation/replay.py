"""``touchpoint replay``: journeys from the folder against the events the API recorded.

The event log (:mod:`store.event_log`) holds the calls the ingestion service applied, per
customer, in order. A replay turns a window of it into a :class:`Scenario` — its customers with
their profiles **as they are today**, its calls at the moments they were received, in the order
they were applied — and runs it on a simulator whose delivery records instead of sending. What
a replay can and cannot know (today's profiles, fixtures for lookups, nothing before the
retention window, runs in flight not continued): docs/simulate.md, "Replay".

The simulator is chosen in one place, :func:`simulator_for`: the fast in-process one when it
is there, the exact one (Temporal's time-skipping server) with ``--exact`` or without it.
``touchpoint plan`` (:mod:`ops.planning`) replays with the same pieces under two versions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from config.errors import StoreUnavailable, UserError
from config.project import ProjectConfig
from simulation.entry import entry_moments
from simulation.fast import FastSimulator
from simulation.report import Funnel, funnel, funnel_text, held, iso, run_lines
from simulation.scenario import EventSpec, ProfileSpec
from simulation.setup import UsageError
from simulation.simulator import Progress, Scenario, SimulationResult, Simulator
from store.database import metadata as store_metadata
from store.event_log import EventLog, LoggedEvent
from store.profiles import ProfileStore
from store.suppressions import normalise
from workflows.durations import parse_duration
from workflows.models import Profile
from workflows.plan import Plan

JSON_FORMAT = 1
"""Bumped when a key of ``touchpoint replay --json`` changes meaning or goes away."""

SINCE_HINT = "a duration such as 30d, 7d, 2w or 36h"


class NothingToReplay(UserError):
    """No store, or no recorded events in the window: there is nothing to run the journeys on."""


class Runs(Protocol):
    """What runs a scenario: :class:`Simulator`, or the fast simulator."""

    async def run(
        self, scenario: Scenario, progress: Progress | None = None
    ) -> SimulationResult: ...


@dataclass(frozen=True)
class ReplaySimulator:
    """The simulator a replay runs on, and its name for the report (``fast`` or ``exact``)."""

    name: str
    simulator: Runs
    render: str = "all"  # what of the messages the simulator renders

    async def run(self, scenario: Scenario, progress: Progress | None = None) -> SimulationResult:
        return await self.simulator.run(scenario, progress)


def simulator_for(root: Path, config: ProjectConfig, exact: bool) -> ReplaySimulator:
    """The fast in-process simulator unless ``exact`` (then the exact one on Temporal's
    time-skipping server). A replay counts messages per template, so the fast one renders
    subjects only."""
    if not exact:
        return ReplaySimulator("fast", FastSimulator(root, config, render="subjects"), "subjects")
    return ReplaySimulator("exact", Simulator(root, config))


# --- the window and the scenario ---------------------------------------------------------------


def window_start(since: str, now: datetime) -> datetime:
    """The start of the window ``since`` long that ends ``now``; :class:`UsageError` if
    ``since`` is not a positive duration."""
    try:
        seconds = parse_duration(since.strip())
    except ValueError:
        raise UsageError(f"--since {since!r}: expected {SINCE_HINT}") from None
    if seconds <= 0:
        raise UsageError(f"--since {since!r}: expected {SINCE_HINT}, longer than nothing")
    return now - timedelta(seconds=seconds)


@dataclass(frozen=True)
class Recorded:
    """A window of the event log, ready to be replayed under any journeys' plans."""

    start: datetime
    end: datetime
    customers: list[ProfileSpec]  # everyone with a call in the window, as they are today
    events: list[tuple[datetime, EventSpec]]  # every call, in the order it was applied
    without_profile: int = 0  # customers the log names who have no profile (any more)
    consent: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # as it is today

    def scenario(self, plans: Sequence[Plan], lookups: dict[str, Any] | None = None) -> Scenario:
        """The window under ``plans``; journeys that start without an event (schedules, dates
        in the profile) enter the window's customers at their moments.

        Only what can matter to ``plans`` is played: the tracks of the events they start on or
        react to (trigger, ``wait_for``, exits, goal) and every identify; and when no journey
        enters customers without such an event (a schedule, a date, a segment), only the
        customers with one of those tracks. The rest would be routed to no journey."""
        listened = {plan.trigger.event for plan in plans}
        for plan in plans:
            listened |= plan.listened_events()
        events = [
            (moment, spec)
            for moment, spec in self.events
            if spec.type == "identify" or spec.event in listened
        ]
        customers = self.customers
        if not any(p.schedule or p.date_entry or p.segment for p in plans):
            wanted = {spec.user for _, spec in events if spec.type == "track"}
            customers = [customer for customer in customers if customer.id in wanted]
            events = [(moment, spec) for moment, spec in events if spec.user in wanted]
        zones = [(customer.id, customer.timezone) for customer in customers]
        return Scenario(
            plans=list(plans),
            customers=customers,
            events=events,
            start=self.start,
            until=self.end - self.start,
            lookups=lookups or {},
            entries=entry_moments(plans, self.start, self.end, zones=zones),
            consent=self.consent,
        )


def open_recorded(url: str) -> Engine:
    """The store the API records into; a SQLite file that does not exist is not created
    (:class:`NothingToReplay`: nothing was recorded there)."""
    from store.database import connect

    shown = make_url(url).render_as_string(hide_password=True) if "://" in url else url
    sqlite_file = url.startswith("sqlite:///") and ":memory:" not in url
    if sqlite_file and not Path(url.removeprefix("sqlite:///")).is_file():
        raise NothingToReplay(
            f"no store at {shown}, so no recorded events; point TOUCHPOINT_DATABASE_URL "
            "at the store the API writes (read access is enough)"
        )
    return connect(url)


def read_recorded(engine: Engine, start: datetime, end: datetime) -> Recorded:
    """The calls received in ``[start, end)`` and the current profiles of their customers;
    :class:`NothingToReplay` when there are none."""
    try:
        logged = list(EventLog(engine).read(since=start, until=end))
        ids = list(dict.fromkeys(event.customer_id for event in logged))
        profiles = ProfileStore(engine).many(ids)
        consent = _consent_today(engine, ids, profiles)
    except SQLAlchemyError as error:
        raise StoreUnavailable(
            f"cannot read the event log: {type(error).__name__}; is the store reachable?"
        ) from None
    if not logged:
        raise NothingToReplay(
            f"no recorded events from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC in the "
            "event log; a longer --since, or check that event_log.enabled is on "
            "(touchpoint events count --since 30d)"
        )
    customers = [_customer(customer_id, profiles.get(customer_id)) for customer_id in ids]
    return Recorded(
        start=start,
        end=end,
        customers=customers,
        events=list(_timed(logged, start)),
        without_profile=sum(customer_id not in profiles for customer_id in ids),
        consent=consent,
    )


CONSENT_BATCH = 500


def _consent_today(
    engine: Engine, ids: Sequence[str], profiles: Mapping[str, Profile]
) -> dict[str, list[dict[str, Any]]]:
    """The customers' consent, topic consent and address suppressions as the store has them
    now: a replay honours today's unsubscribes (it cannot know when they were made)."""
    addresses = sorted({normalise(p.email) for p in profiles.values() if p.email})
    found: dict[str, list[dict[str, Any]]] = {
        "consent": [],
        "topic_consent": [],
        "suppressions": [],
    }
    with engine.connect() as db:
        for name in ("consent", "topic_consent"):
            table = store_metadata.tables[name]
            for at in range(0, len(ids), CONSENT_BATCH):
                chosen = table.select().where(table.c.customer_id.in_(ids[at : at + CONSENT_BATCH]))
                found[name] += [dict(row._mapping) for row in db.execute(chosen)]
        table = store_metadata.tables["suppressions"]
        for at in range(0, len(addresses), CONSENT_BATCH):
            chosen = table.select().where(table.c.address.in_(addresses[at : at + CONSENT_BATCH]))
            found["suppressions"] += [dict(row._mapping) for row in db.execute(chosen)]
    return found


def _customer(customer_id: str, profile: Profile | None) -> ProfileSpec:
    if profile is None:
        return ProfileSpec(id=customer_id)
    return ProfileSpec(
        id=customer_id,
        email=profile.email,
        phone=profile.phone,
        locale=profile.locale,
        timezone=profile.timezone,
        traits=dict(profile.traits),
    )


def _timed(logged: Iterable[LoggedEvent], start: datetime) -> Iterable[tuple[datetime, EventSpec]]:
    """Each call at the moment it was received; in the order it was applied, so a moment is
    never earlier than the one before (two API processes' clocks may disagree a little)."""
    moment = start
    for event in logged:
        moment = max(moment, event.received_at)
        context = {
            "locale": event.context.get("locale"),
            "timezone": event.context.get("timezone"),
        }
        if event.kind == "identify":
            spec = EventSpec(
                type="identify",
                user=event.customer_id,
                traits=event.data,
                message_id=event.message_id,
                **context,
            )
        else:
            spec = EventSpec(
                event=event.event,
                user=event.customer_id,
                properties=event.data,
                traits=event.context.get("traits") or {},
                message_id=event.message_id,
                **context,
            )
        yield moment, spec


# --- what a replay shows ------------------------------------------------------------------------


@dataclass
class JourneyReplay:
    """One journey's replay: its funnel, and what it sent, held back and did not start."""

    journey_id: str
    version: str
    funnel: Funnel
    goal: str | None  # the goal event, if the journey has one
    messages: Counter[tuple[str, str]] = field(default_factory=Counter)  # (channel, template)
    held: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (step, action, why)
    not_entered: Counter[tuple[str, str]] = field(default_factory=Counter)  # (event, reason)

    @property
    def converted(self) -> int:
        return self.funnel.outcomes.get("converted", 0)

    @property
    def sent(self) -> int:
        return sum(self.messages.values())

    def as_json(self) -> dict[str, Any]:
        entered = self.funnel.entered
        return {
            "journey": self.journey_id,
            "version": self.version,
            "funnel": self.funnel.as_json(),
            "conversions": {
                "goal": self.goal,
                "converted": self.converted,
                "rate": round(self.converted / entered, 4) if entered else 0.0,
            },
            "messages": [
                {"channel": channel, "template": template, "count": count}
                for (channel, template), count in sorted(self.messages.items())
            ],
            "held": [
                {"step": step, "action": action, "reason": reason, "count": count}
                for (step, action, reason), count in sorted(self.held.items())
            ],
            "not_entered": [
                {"event": event, "reason": reason, "count": count}
                for (event, reason), count in sorted(self.not_entered.items())
            ],
        }


@dataclass
class Replay:
    """What ``touchpoint replay`` reports."""

    start: datetime
    end: datetime
    simulator: str
    customers: int
    events: int
    without_profile: int
    journeys: list[JourneyReplay]
    per_day: dict[str, Counter[str]]  # local date (ISO) → template → messages sent

    @property
    def days(self) -> float:
        return (self.end - self.start).total_seconds() / 86_400

    def as_json(self) -> dict[str, Any]:
        return {
            "format": JSON_FORMAT,
            "start": iso(self.start),
            "end": iso(self.end),
            "simulator": self.simulator,
            "customers": self.customers,
            "events": self.events,
            "customers_without_profile": self.without_profile,
            "journeys": [journey.as_json() for journey in self.journeys],
            "messages_per_day": [
                {"day": day, "template": template, "count": count}
                for day, templates in sorted(self.per_day.items())
                for template, count in sorted(templates.items())
            ],
        }


def journey_replay(plan: Plan, result: SimulationResult) -> JourneyReplay:
    """``plan``'s share of a simulation's result."""
    found = JourneyReplay(
        plan.journey_id,
        plan.version,
        funnel(plan, result.runs),
        plan.goal.event if plan.goal is not None else None,
    )
    for run in result.runs:
        if run.journey_id != plan.journey_id:
            continue
        for entry in run.timeline:
            if entry.kind == "sent":
                found.messages[(entry.channel or "", entry.template or "")] += 1
        for line in run_lines(run, result):
            decision = held(line)
            if decision is not None:
                found.held[(line.step, decision.action, decision.reason)] += 1
    for miss in result.not_entered:
        if miss.journey_id == plan.journey_id:
            found.not_entered[(miss.event, miss.reason)] += 1
    return found


def summarize(recorded: Recorded, result: SimulationResult, simulator: str, zone: tzinfo) -> Replay:
    per_day: dict[str, Counter[str]] = {}
    for run in result.runs:
        for entry in run.timeline:
            if entry.kind == "sent":
                day = entry.at.astimezone(zone).date().isoformat()
                per_day.setdefault(day, Counter())[entry.template or ""] += 1
    return Replay(
        start=recorded.start,
        end=recorded.end,
        simulator=simulator,
        customers=len(recorded.customers),
        events=len(recorded.events),
        without_profile=recorded.without_profile,
        journeys=[journey_replay(plan, result) for plan in result.plans],
        per_day=per_day,
    )


def text_lines(replay: Replay, zone: tzinfo) -> list[str]:
    """The report for people: a header, each journey's funnel, conversions, messages, what the
    policies held back and what did not start, then the messages per day."""
    start, end = replay.start.astimezone(zone), replay.end.astimezone(zone)
    journeys = ", ".join(j.journey_id for j in replay.journeys)
    lines = [
        f"Replayed {journeys} on {replay.days:g} days of recorded events "
        f"({start:%a %Y-%m-%d %H:%M} – {end:%a %Y-%m-%d %H:%M}, {zone}): "
        f"{replay.customers:,} customers, {replay.events:,} calls; {replay.simulator} simulator"
    ]
    if replay.without_profile:
        lines.append(
            f"  {replay.without_profile:,} of them have no profile any more (erased, or never "
            "identified): replayed without one"
        )
    for journey in replay.journeys:
        lines.append("")
        lines += funnel_text(journey.funnel)
        lines += _journey_extras(journey)
    lines.append("")
    lines.append(f"Messages per day ({zone})")
    if not replay.per_day:
        lines.append("  none")
    for day, templates in sorted(replay.per_day.items()):
        moment = datetime.fromisoformat(day)
        parts = ", ".join(f"{name} {count}" for name, count in sorted(templates.items()))
        lines.append(f"  {moment:%a %Y-%m-%d}  {sum(templates.values()):>6}  ({parts})")
    sent = sum(j.sent for j in replay.journeys)
    actions: Counter[str] = Counter()
    for journey in replay.journeys:
        for (_, action, _), count in journey.held.items():
            actions[action] += count
    by_policies = (
        f" ({actions['skipped']} skipped, {actions['deferred']} deferred by the delivery policies)"
        if actions
        else ""
    )
    lines.append("")
    lines.append(
        f"{sent:,} message(s) would have been sent{by_policies}; nothing left this machine."
    )
    return lines


def _journey_extras(journey: JourneyReplay) -> list[str]:
    lines: list[str] = []
    entered = journey.funnel.entered
    if journey.goal is not None:
        rate = f" ({journey.converted / entered:.1%})" if entered else ""
        lines += [
            "",
            f"  conversions: {journey.converted:,} of {entered:,} runs{rate} met the goal "
            f"({journey.goal})",
        ]
    if journey.messages:
        lines += ["", "  messages by template"]
        width = max(len(f"{c} {t}") for c, t in journey.messages)
        for (channel, template), count in sorted(journey.messages.items()):
            lines.append(f"  {channel + ' ' + template:<{width}}  {count:>6}")
    if journey.held:
        lines += ["", "  held back by the delivery policies"]
        width = max(len(step) for step, _, _ in journey.held)
        for (step, action, reason), count in sorted(
            journey.held.items(), key=lambda i: (-i[1], i[0])
        ):
            lines.append(f"  {step:<{width}}  {count:>6} × {action}: {reason}")
    if journey.not_entered:
        lines += ["", "  not entered"]
        for (event, reason), count in sorted(
            journey.not_entered.items(), key=lambda i: (-i[1], i[0])
        ):
            lines.append(f"  {count:>6} × {event} — {reason}")
    return lines
