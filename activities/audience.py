"""The audience of a scheduled journey: who matches now, and one page of a broadcast.

``broadcast_page`` (the activity of :class:`~workflows.broadcast.BroadcastWorkflow`) reads one
page of profiles in customer id order, evaluates the journey's audience (and entry condition)
on each, and enters every match as a trigger would (:mod:`ingestion.router`): the journey's
state and the re-entry rules are asked of the entry store first, then the run starts. Consent
and the delivery policies are checked when the run sends, as for every run.

**Once per occurrence.** A run's workflow id is ``journey/<journey>/<customer hash>/b<occurrence>``
and it is started with ``REJECT_DUPLICATE``: a page retried after a crash, or the occurrence
run a second time, finds the run there (closed or not) and counts the customer as *already
started*. An entry the store claimed (``once``, cooldowns) at the occurrence's moment is the
occurrence's own (``EntryStore.enter(per_occurrence=True)``): a retry after a worker died
between the claim and the start resumes it instead of refusing the customer.
``one_at_a_time`` (each occurrence has its own ids) is kept by asking Temporal's
visibility, once per page, which of the page's customers still have a run of the journey
running (needs the run index, ``worker.index_runs``; without it, each occurrence enters them).

**Bounded.** One page of profiles in memory; starts paced to ``starts_per_second``; a heartbeat
after each customer carries the position and counts, so a retried page resumes where it
stopped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine
from temporalio import activity
from temporalio.client import Client
from temporalio.common import (
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

from activities.metrics import count_run_started
from store.deployments import journey_state
from store.entries import EntryStore
from store.plans import PlanStore
from store.profiles import ProfileStore
from workflows import dates, evaluation, timing
from workflows.broadcast_models import (
    BROADCAST_PAGE,
    DEFAULT_STARTS_PER_SECOND,
    BroadcastCounts,
    PageRequest,
    PageResult,
    broadcast_message_id,
    occurrence_tag,
)
from workflows.models import (
    JOURNEY_QUEUE,
    Event,
    JourneyInput,
    Profile,
    RunSettings,
    customer_hash,
    workflow_id,
)
from workflows.plan import BROADCAST_EVENT, DateRule, Plan
from workflows.search import CUSTOMER, JOURNEY_ID, at_start

log = logging.getLogger("touchpoint.broadcasts")


class DateUnreadable(ValueError):
    """A date journey's date in a profile is not a date: that customer is skipped and counted,
    the page goes on."""


def in_audience(plan: Plan, profile: Profile, now: datetime) -> bool:
    """Does ``profile`` enter ``plan``'s occurrence at ``now``: its date (a date journey), its
    audience (a segment journey's: its segment condition), then its entry condition
    (``evaluation.ExpressionFailed`` when the profile's data breaks an expression,
    :class:`DateUnreadable` when its date is not one)."""
    names: dict[str, Any] = {"profile": profile.model_dump(), "now": now}
    schedule = plan.schedule
    audience = schedule.audience if schedule is not None else plan.segment
    if plan.date_entry is not None:
        if not date_is_today(plan.date_entry, profile, now, names["profile"]):
            return False
        audience = plan.date_entry.audience
    if audience and not evaluation.is_true(audience, names):
        return False
    if plan.entry.condition:
        event = _trigger(plan, profile.id, now).names()
        return evaluation.is_true(plan.entry.condition, {**names, "event": event})
    return True


def date_is_today(
    rule: DateRule, profile: Profile, now: datetime, seen: dict[str, Any] | None = None
) -> bool:
    """Is ``profile``'s date (moved by the offset) its local day at ``now``? The date is read
    from the profile as it is now, so a changed date counts from the next occurrence on."""
    value = dates.profile_value(seen or profile.model_dump(), rule.path)
    if value is None or value == "":
        return False
    tz = timing.zone(profile.timezone, rule.timezone)
    try:
        day = dates.local_date(value, tz)
    except ValueError as error:
        raise DateUnreadable(str(error)) from None
    return dates.is_due(day, rule.every, rule.offset_days, dates.occurrence_day(now, tz))


def date_zones(rule: DateRule, occurrence: datetime) -> tuple[tuple[str, ...], bool]:
    """The zones where it is ``rule.time`` at ``occurrence``, and whether profiles without a
    zone (who live in the default one) are among them."""
    zones = dates.zones_at(occurrence, rule.time)
    return zones, rule.timezone in zones


def run_tag(plan: Plan, profile: Profile, occurrence: datetime) -> str:
    """The run id's tag: per occurrence for a broadcast, per customer's local date for a date
    journey (so a replayed or overlapping occurrence starts nobody twice on a day)."""
    if plan.date_entry is None:
        return occurrence_tag(occurrence)
    tz = timing.zone(profile.timezone, plan.date_entry.timezone)
    return dates.date_tag(dates.occurrence_day(occurrence, tz))


def read_page(
    profiles: ProfileStore, plan: Plan, occurrence: datetime, after: str | None, size: int
) -> list[Profile]:
    """One page of the profiles an occurrence considers: every profile for a broadcast; for a
    date journey only those in the zones where it is ``at`` now (none: an empty page)."""
    if plan.date_entry is None:
        return profiles.page(after, size)
    zones, default_here = date_zones(plan.date_entry, occurrence)
    if not zones:
        return []
    return profiles.page(after, size, zones, without_zone=default_here)


@dataclass(frozen=True)
class AudienceCount:
    """``touchpoint audience``: who would enter now."""

    read: int
    matched: int
    failed: int  # profiles whose data the audience could not be evaluated on
    sample: list[str] = field(default_factory=list)
    unreadable_dates: int = 0  # a date journey: profiles whose date is not a date


def count_audience(
    profiles: ProfileStore, plan: Plan, now: datetime, sample: int = 0, page_size: int = 500
) -> AudienceCount:
    """Count the profiles ``plan``'s audience matches at ``now``, a page at a time; the first
    ``sample`` matches' customer ids too."""
    read = matched = failed = unreadable = 0
    found: list[str] = []
    after: str | None = None
    while True:
        page = read_page(profiles, plan, now, after, page_size)
        for profile in page:
            read += 1
            try:
                if not in_audience(plan, profile, now):
                    continue
            except evaluation.ExpressionFailed:
                failed += 1
                continue
            except DateUnreadable:
                unreadable += 1
                continue
            matched += 1
            if len(found) < sample:
                found.append(profile.id)
        if len(page) < page_size:
            return AudienceCount(read, matched, failed, found, unreadable)
        after = page[-1].id


@dataclass
class AudienceActivities:
    """The broadcast's activity, with the clients it needs (one of each per worker)."""

    client: Client
    engine: Engine
    settings: RunSettings
    starts_per_second: float = DEFAULT_STARTS_PER_SECOND  # the project's default
    _plans: dict[str, Plan] = field(default_factory=dict)

    def all(self) -> list[Any]:
        return [self.broadcast_page]

    @activity.defn(name=BROADCAST_PAGE)
    async def broadcast_page(self, request: PageRequest) -> PageResult:
        plan = await self._plan(request.plan_version)
        counts, after = BroadcastCounts(), request.after
        details = activity.info().heartbeat_details
        if details:  # a retried page: resume after the last customer the failed attempt did
            after, counts = details[0], BroadcastCounts.model_validate(details[1])
        page = await asyncio.to_thread(
            read_page,
            ProfileStore(self.engine),
            plan,
            request.occurrence,
            after,
            request.page_size,
        )
        rate = (
            request.starts_per_second
            or (plan.schedule and plan.schedule.starts_per_second)
            or self.starts_per_second
        )
        verdicts: list[tuple[Profile, str]] = []  # (profile, "matched" | "no" | "failed" …)
        for profile in page:
            try:
                verdict = "matched" if in_audience(plan, profile, request.occurrence) else "no"
            except evaluation.ExpressionFailed:
                verdict = "failed"
            except DateUnreadable:
                verdict = "unreadable_dates"
            verdicts.append((profile, verdict))
        busy = await self._running(plan, [p.id for p, v in verdicts if v == "matched"])
        paced = time.monotonic()
        for profile, verdict in verdicts:
            counts.read += 1
            if verdict in ("failed", "unreadable_dates"):
                setattr(counts, verdict, getattr(counts, verdict) + 1)
            elif verdict == "matched":
                counts.matched += 1
                tag = run_tag(plan, profile, request.occurrence)
                outcome = await self._enter(plan, profile.id, request.occurrence, busy, tag)
                setattr(counts, outcome, getattr(counts, outcome) + 1)
                if outcome == "started":
                    paced += 1.0 / rate
                    await asyncio.sleep(max(0.0, paced - time.monotonic()))
            activity.heartbeat(profile.id, counts.model_dump())
        last = page[-1].id if page else None
        full = len(page) == request.page_size
        return PageResult(counts=counts, cursor=last if full else None)

    async def _plan(self, version: str) -> Plan:
        if version not in self._plans:
            plan = await asyncio.to_thread(PlanStore(self.engine).get, version)
            if plan is None or (plan.schedule is None and plan.date_entry is None):
                raise ApplicationError(
                    f"plan version {version} is not a scheduled or date journey in the store; "
                    "deploy the journey (touchpoint deploy) and let the schedule fire again",
                    non_retryable=True,
                )
            self._plans[version] = plan
        return self._plans[version]

    async def _running(self, plan: Plan, customers: Iterable[str]) -> set[str]:
        """Customer hashes among ``customers`` with a run of ``plan``'s journey running
        (``one_at_a_time`` with the run index on; else nobody)."""
        hashes = sorted({customer_hash(c) for c in customers})
        if plan.entry.policy != "one_at_a_time" or not self.settings.index_runs or not hashes:
            return set()
        listed = ", ".join(f"'{h}'" for h in hashes)
        query = (
            f"{JOURNEY_ID.name} = '{plan.journey_id}' AND {CUSTOMER.name} IN ({listed}) "
            "AND ExecutionStatus = 'Running'"
        )
        busy: set[str] = set()
        async for run in self.client.list_workflows(query):
            found = run.typed_search_attributes.get(CUSTOMER)
            if found:
                busy.add(found)
        return busy

    async def _enter(
        self,
        plan: Plan,
        customer_id: str,
        occurrence: datetime,
        busy: set[str],
        tag: str | None = None,
    ) -> str:
        """Start ``customer_id``'s run of this occurrence (its id tagged ``tag``, by default
        the occurrence's); the name of the count it adds to."""
        tag = tag or occurrence_tag(occurrence)
        journey, subject = plan.journey_id, customer_hash(customer_id)
        if subject in busy:
            return "refused"
        entries = EntryStore(self.engine)

        def held(db: Connection) -> str | None:
            state = journey_state(db, journey)
            return f"the journey is {state}" if state in ("paused", "stopped") else None

        entry = await asyncio.to_thread(
            entries.enter,
            journey,
            subject,
            occurrence,
            once=plan.entry.policy == "once",
            cooldown_seconds=plan.entry.cooldown_seconds or 0,
            refuse=held,
            per_occurrence=True,  # the run's id names the occurrence: a retry resumes its entry
        )
        if entry.refused is not None:
            return "refused"
        trigger = _trigger(plan, customer_id, occurrence, tag)
        try:
            await self.client.start_workflow(
                "JourneyWorkflow",
                JourneyInput(
                    journey_id=journey,
                    plan_version=plan.version,
                    customer_id=customer_id,
                    trigger=trigger,
                    entry_sequence=entry.sequence,
                    clock=self.settings.clock(),
                ),
                id=workflow_id(journey, customer_id, None, tag),
                task_queue=self.settings.queue(JOURNEY_QUEUE),
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                search_attributes=self._search_attributes(plan, customer_id),
            )
        except WorkflowAlreadyStartedError:
            if entry.claimed is not None:
                await asyncio.to_thread(entries.undo_entry, journey, subject, entry.claimed)
            return "already_started"
        except BaseException:
            if entry.claimed is not None:
                await asyncio.to_thread(entries.undo_entry, journey, subject, entry.claimed)
            raise
        if entry.claimed is None and not entry.resumed:
            await asyncio.to_thread(entries.record_entry, journey, subject, occurrence)
        count_run_started(journey)
        return "started"

    def _search_attributes(self, plan: Plan, customer_id: str) -> TypedSearchAttributes | None:
        if not self.settings.index_runs:
            return None
        return at_start(plan.journey_id, plan.version, customer_hash(customer_id))


def _trigger(plan: Plan, customer_id: str, occurrence: datetime, tag: str | None = None) -> Event:
    """The run's trigger: the occurrence itself (no properties; ``event.timestamp`` is when
    the schedule meant to fire)."""
    message_id = broadcast_message_id(plan.journey_id, occurrence, customer_id)
    if tag is not None and plan.date_entry is not None:  # one trigger per customer and date
        message_id = broadcast_message_id(plan.journey_id, tag, customer_id)
    return Event(
        message_id=message_id,
        event=BROADCAST_EVENT,
        customer_id=customer_id,
        timestamp=occurrence,
    )
