"""Scheduled journeys on Temporal Schedules, and ``touchpoint audience``.

Each deployed journey whose active version has a ``schedule`` gets one Temporal Schedule, id
``touchpoint-broadcast/<journey>`` (after the project's queue prefix), visible in the Temporal
UI and in ``temporal schedule list``. Its action starts a
:class:`~workflows.broadcast.BroadcastWorkflow` with the journey id and active version, on the
broadcast queue; the workflow id is the schedule id, to which Temporal appends the scheduled
time.

* **Spec**: ``every`` becomes a calendar (weekdays, hour, minute), ``cron`` a cron expression,
  both in the journey's time zone (Temporal handles daylight saving); ``start`` is the first
  moment (a date: its midnight in that zone), ``end`` the last (a date: the whole day).
* **Overlap** (:func:`overlap_policy`): a broadcast's occurrence that comes while the
  previous one still starts runs is skipped (``SKIP``: the previous one reaches everybody
  anyway). A date journey's occurrences each reach other time zones, so none is skipped:
  ``BUFFER_ALL`` starts it when the one before has finished (the run ids, one per customer and
  local date, keep a late occurrence from starting anybody twice).
* **Catchup window one hour** (:data:`CATCHUP_WINDOW`): an occurrence missed while the
  Temporal server was down still goes out if it comes back within the hour; one missed longer
  ago is dropped rather than sent late (a Monday newsletter on Thursday).

:func:`sync_broadcasts` makes the schedules match the store's deployments — active: created or
updated to the active version; paused: paused; stopped (or no longer scheduled): deleted. It
runs when a worker starts (as the retention schedule does), after ``touchpoint deploy``, and
after ``touchpoint journeys pause|resume|stop``; it is idempotent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.service import RPCError, RPCStatusCode

from config.errors import UserError
from config.settings import Settings
from language.schedules import describe_date, describe_schedule
from store.deployments import Deployments
from store.plans import PlanStore
from workflows.broadcast_models import (
    BROADCAST_QUEUE,
    BROADCAST_SCHEDULE,
    BROADCAST_WORKFLOW,
    BroadcastInput,
)
from workflows.dates import firing_minutes, next_occurrence
from workflows.plan import DateRule, Plan

log = logging.getLogger("touchpoint.broadcasts")
CATCHUP_WINDOW = timedelta(hours=1)


def schedule_id(journey_id: str, queue_prefix: str = "") -> str:
    return f"{queue_prefix}{BROADCAST_SCHEDULE}{journey_id}"


def _date_spec(rule: DateRule) -> ScheduleSpec:
    """A date journey's schedule: every hour of every day, at ``at``'s minute and the three
    other quarter hours (UTC; :mod:`workflows.dates` finds the zones where it is ``at``)."""
    return ScheduleSpec(
        calendars=[
            ScheduleCalendarSpec(
                hour=[ScheduleRange(0, 23)],
                minute=[ScheduleRange(minute) for minute in firing_minutes(rule.time)],
            )
        ],
        time_zone_name="UTC",
    )


def is_calendar_journey(plan: Plan) -> bool:
    """Started by a Temporal Schedule: a scheduled journey or a date journey (profile date)."""
    return plan.schedule is not None or plan.date_entry is not None


def describe_entry(plan: Plan) -> str:
    """The schedule, or the date rule, of a calendar journey, for people."""
    if plan.date_entry is not None:
        return describe_date(plan.date_entry)
    assert plan.schedule is not None
    return describe_schedule(plan.schedule)


def overlap_policy(plan: Plan) -> ScheduleOverlapPolicy:
    """``SKIP`` for a broadcast; ``BUFFER_ALL`` for a date journey, whose quarter-hourly
    occurrences each cover different time zones: skipping one would skip those customers'
    day."""
    if plan.date_entry is not None:
        return ScheduleOverlapPolicy.BUFFER_ALL
    return ScheduleOverlapPolicy.SKIP


def broadcast_schedule(plan: Plan, queue_prefix: str = "", *, paused: bool = False) -> Schedule:
    """The Temporal Schedule of a scheduled (or date) journey's active version."""
    rule = plan.schedule
    if rule is None and plan.date_entry is not None:
        return _schedule(plan, _date_spec(plan.date_entry), None, queue_prefix, paused)
    if rule is None:
        raise ValueError(f"journey {plan.journey_id} has no schedule")
    zone = ZoneInfo(rule.timezone)
    calendars = []
    if rule.weekdays is not None and rule.time is not None:
        hour, minute = (int(part) for part in rule.time.split(":"))
        calendars.append(
            ScheduleCalendarSpec(
                day_of_week=[ScheduleRange((day + 1) % 7) for day in rule.weekdays],  # 0: Sunday
                hour=[ScheduleRange(hour)],
                minute=[ScheduleRange(minute)],
            )
        )
    spec = ScheduleSpec(
        calendars=calendars,
        cron_expressions=[rule.cron] if rule.cron else [],
        time_zone_name=rule.timezone,
        start_at=schedule_bound(rule.start, zone, end=False),
        end_at=schedule_bound(rule.end, zone, end=True),
    )
    return _schedule(plan, spec, rule.starts_per_second, queue_prefix, paused)


def _schedule(
    plan: Plan, spec: ScheduleSpec, rate: float | None, queue_prefix: str, paused: bool
) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            BROADCAST_WORKFLOW,
            BroadcastInput(
                journey_id=plan.journey_id,
                plan_version=plan.version,
                starts_per_second=rate,  # also bounds how long a page may take
            ),
            id=schedule_id(plan.journey_id, queue_prefix),
            task_queue=queue_prefix + BROADCAST_QUEUE,
        ),
        spec=spec,
        policy=SchedulePolicy(overlap=overlap_policy(plan), catchup_window=CATCHUP_WINDOW),
        state=ScheduleState(
            paused=paused,
            note=f"journey {plan.journey_id} version {plan.version}"
            + (" (paused with the journey)" if paused else ""),
        ),
    )


def schedule_bound(value: str | None, zone: ZoneInfo, *, end: bool) -> datetime | None:
    """A schedule's ``start`` or ``end`` as a moment: a date is its midnight in ``zone`` (an
    end: the last second of that day); a time without offset is read in ``zone``."""
    if value is None:
        return None
    if "T" not in value and len(value) == 10:
        day = date.fromisoformat(value) + timedelta(days=1 if end else 0)
        return datetime.combine(day, time(), zone) - timedelta(seconds=1 if end else 0)
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=zone)


async def put_schedule(client: Client, plan: Plan, queue_prefix: str, *, paused: bool) -> str:
    """Create the journey's schedule, or bring the existing one to ``plan`` and ``paused``."""
    sid = schedule_id(plan.journey_id, queue_prefix)
    schedule = broadcast_schedule(plan, queue_prefix, paused=paused)
    try:
        await client.create_schedule(sid, schedule)
        return "created"
    except ScheduleAlreadyRunningError:
        pass
    handle = client.get_schedule_handle(sid)
    was_paused = (await handle.describe()).schedule.state.paused

    def update(_: ScheduleUpdateInput) -> ScheduleUpdate:
        return ScheduleUpdate(schedule=schedule)

    await handle.update(update)
    if paused and not was_paused:
        await handle.pause(note=schedule.state.note)
        return "paused"
    if was_paused and not paused:
        await handle.unpause(note=schedule.state.note)
        return "resumed"
    return "updated"


async def delete_schedule(client: Client, journey_id: str, queue_prefix: str) -> bool:
    """Delete the journey's schedule; ``False`` if it had none."""
    try:
        await client.get_schedule_handle(schedule_id(journey_id, queue_prefix)).delete()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def sync_broadcasts(
    client: Client, deployments: Deployments, plans: PlanStore, queue_prefix: str = ""
) -> list[str]:
    """Make the schedules match the deployed journeys; one line per journey touched."""
    journeys = await asyncio.to_thread(deployments.journeys)
    lines = []
    scheduled: set[str] = set()
    for journey_id, journey in sorted(journeys.items()):
        plan = await asyncio.to_thread(plans.get, journey.active_version)
        if plan is None or not is_calendar_journey(plan):
            continue
        if journey.state == "stopped":
            if await delete_schedule(client, journey_id, queue_prefix):
                lines.append(f"{journey_id}: schedule deleted (the journey is stopped)")
            continue
        scheduled.add(journey_id)
        done = await put_schedule(client, plan, queue_prefix, paused=journey.state == "paused")
        lines.append(
            f"{journey_id}: schedule {done}, {describe_entry(plan)}, "
            f"version {plan.version}" + (", paused" if journey.state == "paused" else "")
        )
    prefix = schedule_id("", queue_prefix)
    async for listed in await client.list_schedules():
        journey_id = listed.id.removeprefix(prefix)
        stale = listed.id.startswith(prefix) and journey_id not in scheduled
        if stale and await delete_schedule(client, journey_id, queue_prefix):
            lines.append(f"{journey_id}: schedule deleted (no longer scheduled)")
    return lines


async def sync_after_change(settings: Settings, deployments: Deployments) -> list[str]:
    """``touchpoint deploy`` and ``journeys pause|resume|stop``: sync the schedules now. With
    Temporal down, say so: the next worker start syncs them."""
    from config.errors import TemporalUnreachable
    from config.settings import connect

    try:
        client = await connect(settings)
    except TemporalUnreachable:
        return [
            f"note: Temporal at {settings.address} is not reachable; scheduled journeys' "
            "schedules are brought up to date when a worker starts"
        ]
    return await sync_broadcasts(
        client, deployments, PlanStore(deployments.engine), settings.queue_prefix
    )


# --- touchpoint audience -------------------------------------------------------------------


@dataclass(frozen=True)
class AudienceReport:
    journey_id: str
    schedule: str
    matched: int
    read: int
    failed: int
    sample: list[str]
    at: datetime | None = None  # the occurrence counted for (a date journey: the next one)
    unreadable_dates: int = 0


def audience_report(plan: Plan, settings: Settings, sample: int, now: datetime) -> AudienceReport:
    """Who ``plan`` would reach if it went out at ``now``, from the project's store."""
    from activities.audience import count_audience
    from store.database import connect as connect_store
    from store.profiles import ProfileStore

    if not is_calendar_journey(plan) and plan.segment is None:
        raise UserError(
            f"journey {plan.journey_id} is started by the event {plan.trigger.event!r}, not by "
            "a schedule: it has no audience to count (trigger.schedule and trigger.audience "
            "make a scheduled journey, trigger.segment a segment journey, trigger.date with "
            "profile a date journey)"
        )
    if plan.date_entry is not None:  # who enters at the next quarter hour with any zone at `at`
        now = next_occurrence(now, plan.date_entry.time)
    engine = connect_store(settings.database_url)
    try:
        counted = count_audience(ProfileStore(engine), plan, now, sample)
    finally:
        engine.dispose()
    return AudienceReport(
        plan.journey_id,
        describe_entry(plan) if is_calendar_journey(plan) else f"segment: {plan.segment}",
        counted.matched,
        counted.read,
        counted.failed,
        counted.sample,
        now,
        counted.unreadable_dates,
    )


def sync_if_scheduled(
    settings: Settings, deployments: Deployments, versions: Iterable[str | None]
) -> list[str]:
    """After a deploy or a change of state: sync the schedules when any of these plan
    versions (the new and the replaced ones) is scheduled — other journeys never wait for
    Temporal here."""
    plans = PlanStore(deployments.engine)
    found = [plans.get(version) for version in versions if version]
    if not any(plan is not None and is_calendar_journey(plan) for plan in found):
        return []
    return asyncio.run(sync_after_change(settings, deployments))
