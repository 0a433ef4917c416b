"""Date-based entry end to end on Temporal's time-skipping server, over a real SQLite store.

A date in the profile: each quarter-hour occurrence (a BroadcastWorkflow, as its Temporal
Schedule would start it) starts runs for exactly the customers whose local time is ``at`` and
whose date is their local today — once per customer and date, whatever the occurrence is run
again — and reads the date from the profile as it is then (a changed date is honoured).
A date in the event: the run waits until 30 days before it at 09:00 local time, or ends at
once (exited, with the reason) when that moment had passed."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from activities.audience import AudienceActivities
from ops.broadcasts import broadcast_schedule
from simulation.recording import RecordingActivities
from store.database import connect, profiles
from store.deployments import Deployments
from store.plans import PlanStore
from store.profiles import ProfileStore
from tests.temporal import deployed_from, event, plan_from, running_workers, start_run
from workflows.broadcast_models import BROADCAST_QUEUE, BroadcastInput, BroadcastResult
from workflows.models import Profile, RunResult, RunSettings, workflow_id
from workflows.plan import Plan
from workflows.timing import moment_from, zone

BERLIN_NINE = datetime(2027, 3, 1, 8, 0, tzinfo=UTC)  # 09:00 in Berlin (CET), 03-01
KOLKATA_NINE = datetime(2027, 3, 1, 3, 30, tzinfo=UTC)  # 09:00 in India (+05:30), 03-01
LEAP_NINE = datetime(2027, 2, 28, 8, 0, tzinfo=UTC)  # 09:00 in Berlin, Feb 28 of a common year

PEOPLE: dict[str, tuple[str | None, Any, bool]] = {
    # customer: (time zone, birthday, vip)
    "berlin-today": ("Europe/Berlin", "1990-03-01", True),
    "nozone-today": (None, "1985-03-01", True),  # the project's default zone: Berlin
    "berlin-tomorrow": ("Europe/Berlin", "1990-03-02", True),
    "berlin-not-vip": ("Europe/Berlin", "1990-03-01", False),
    "berlin-unreadable": ("Europe/Berlin", "01.03.1990", True),
    "berlin-leap": ("Europe/Berlin", "2000-02-29", True),
    "kolkata-today": ("Asia/Kolkata", "1992-03-01", True),
    "newyork-today": ("America/New_York", "1991-03-01", True),
    "berlin-no-birthday": ("Europe/Berlin", None, True),
}


def birthday_journey() -> str:
    return f"""
id: birthday-{uuid.uuid4().hex[:8]}
name: Birthday
category: marketing
trigger:
  date:
    profile: traits.birthday
    every: year
    at: "09:00"
  audience: profile.traits.vip
entry:
  reentry: every_time
steps:
  - id: greeting
    send: email
    template: newsletter-welcome
"""


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = connect(f"sqlite:///{tmp_path / 'touchpoint.db'}")
    now = datetime.now(UTC)
    rows = [
        {
            "customer_id": customer,
            "email": f"{customer}@example.com",
            "timezone": timezone,
            "traits": {"vip": vip, **({"birthday": birthday} if birthday else {})},
            "created_at": now,
            "updated_at": now,
        }
        for customer, (timezone, birthday, vip) in PEOPLE.items()
    ]
    with engine.begin() as db:
        db.execute(insert(profiles), rows)
    return engine


def deployed(engine: Engine) -> Plan:
    return deployed_from(engine, birthday_journey())


async def occurrence(
    env: WorkflowEnvironment, prefix: str, plan: Plan, at: datetime
) -> BroadcastResult:
    """One occurrence of the date journey's schedule, to its end (two profiles a page, so the
    zone-filtered pages continue as new)."""
    handle = await env.client.start_workflow(
        "BroadcastWorkflow",
        BroadcastInput(
            journey_id=plan.journey_id,
            plan_version=plan.version,
            occurrence=at,
            page_size=2,
            starts_per_second=100_000,
        ),
        id=f"dates-{uuid.uuid4()}",
        task_queue=prefix + BROADCAST_QUEUE,
    )
    return BroadcastResult.model_validate(await handle.result())


async def sent_to(recorder: RecordingActivities, count: int) -> list[str]:
    for _ in range(300):
        if len(recorder.sent) >= count:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)  # any extra message would show up meanwhile
    return sorted(m.customer_id for m in recorder.sent)


def workers(env: WorkflowEnvironment, engine: Engine, recorder: RecordingActivities, prefix: str):  # type: ignore[no-untyped-def]
    audience = AudienceActivities(
        env.client, engine, RunSettings(queue_prefix=prefix, index_runs=False)
    )
    return running_workers(env.client, [*recorder.all(), *audience.all()], prefix)


async def test_runs_start_for_exactly_the_customers_whose_date_is_today_at_nine_local(
    time_env: WorkflowEnvironment, engine: Engine
) -> None:
    plan = deployed(engine)
    recorder = RecordingActivities()
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    async with workers(time_env, engine, recorder, prefix):
        berlin = await occurrence(time_env, prefix, plan, BERLIN_NINE)
        berlin_sent = await sent_to(recorder, 2)
        kolkata = await occurrence(time_env, prefix, plan, KOLKATA_NINE)
        all_sent = await sent_to(recorder, 3)
        quiet = await occurrence(time_env, prefix, plan, BERLIN_NINE + timedelta(minutes=15))
    assert berlin_sent == ["berlin-today", "nozone-today"]
    # read: only the Berlin (and zone-less) profiles, whose local time is 09:00
    c = berlin.counts
    assert (c.read, c.matched, c.started, c.unreadable_dates, c.failed) == (7, 2, 2, 1, 0)
    assert berlin.pages == 4, "two profiles a page"
    assert (kolkata.counts.read, kolkata.counts.started) == (1, 1)
    assert all_sent == ["berlin-today", "kolkata-today", "nozone-today"]
    assert (quiet.counts.read, quiet.pages) == (0, 1), "09:15 in Berlin: nobody is read"


async def test_once_per_date_and_a_changed_date_is_read_at_each_occurrence(
    time_env: WorkflowEnvironment, engine: Engine
) -> None:
    plan = deployed(engine)
    recorder = RecordingActivities()
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    store = ProfileStore(engine)
    async with workers(time_env, engine, recorder, prefix):
        first = await occurrence(time_env, prefix, plan, BERLIN_NINE)
        await sent_to(recorder, 2)
        # berlin-tomorrow corrects the birthday to today; berlin-today moves theirs to tomorrow
        store.upsert("berlin-tomorrow", {"birthday": "1990-03-01"})
        store.upsert("berlin-today", {"birthday": "1990-03-02"})
        again = await occurrence(time_env, prefix, plan, BERLIN_NINE)  # replayed occurrence
        on_the_1st = await sent_to(recorder, 3)
        next_day = await occurrence(time_env, prefix, plan, BERLIN_NINE + timedelta(days=1))
        everything = await sent_to(recorder, 4)
        run = time_env.client.get_workflow_handle(
            workflow_id(plan.journey_id, "berlin-tomorrow", None, "d20270301")
        )
        described = await run.describe()
    assert first.counts.started == 2
    assert (again.counts.matched, again.counts.started, again.counts.already_started) == (
        2,
        1,
        1,
    ), "nozone-today already had their run today; berlin-tomorrow's new date is today"
    assert on_the_1st == ["berlin-today", "berlin-tomorrow", "nozone-today"]
    assert (next_day.counts.matched, next_day.counts.started) == (1, 1)
    assert everything == ["berlin-today", "berlin-today", "berlin-tomorrow", "nozone-today"]
    assert described.id.endswith("/d20270301"), "the run's id names the customer's local date"


async def test_a_feb_29_birthday_is_greeted_on_feb_28_of_a_common_year(
    time_env: WorkflowEnvironment, engine: Engine
) -> None:
    plan = deployed(engine)
    recorder = RecordingActivities()
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    async with workers(time_env, engine, recorder, prefix):
        result = await occurrence(time_env, prefix, plan, LEAP_NINE)
        sent = await sent_to(recorder, 1)
    assert sent == ["berlin-leap"]
    assert result.counts.started == 1


def test_the_schedule_fires_every_quarter_hour_in_utc() -> None:
    plan = plan_from(birthday_journey())
    spec = broadcast_schedule(plan).spec
    [calendar] = spec.calendars
    assert [(r.start, r.end) for r in calendar.hour] == [(0, 23)]
    assert [r.start for r in calendar.minute] == [0, 15, 30, 45]
    assert spec.time_zone_name == "UTC"


WARRANTY = """
id: warranty-{suffix}
name: Warranty
category: marketing
trigger:
  event: Laptop Delivered
  key: event.properties.order_id
  date:
    property: warranty_ends
    offset: -30d
    at: "09:00"
steps:
  - id: reminder
    send: email
    template: newsletter-welcome
"""


async def test_a_date_in_the_event_waits_until_30_days_before_at_nine_local(
    time_env: WorkflowEnvironment,
) -> None:
    plan = plan_from(WARRANTY.format(suffix=uuid.uuid4().hex[:8]))
    recorder = RecordingActivities()
    now = await time_env.get_current_time()
    ends = (now + timedelta(days=75)).date().isoformat()
    async with running_workers(time_env.client, recorder.all()) as prefix:
        handle = await start_run(
            time_env.client,
            plan,
            prefix,
            event("Laptop Delivered", warranty_ends=ends, order_id="o-1"),
            profile=Profile(id="cust-1", timezone="Europe/Berlin", email="max@example.com"),
        )
        result = RunResult.model_validate(await handle.result())
    expected = moment_from(ends, zone("Europe/Berlin"), -30 * 86_400, "09:00")
    assert result.outcome.kind == "completed"
    assert [(e.step, e.kind, e.detail) for e in result.timeline[:1]] == [
        ("_date", "waited", f"until {expected.isoformat()}")
    ]
    [sent] = [e for e in result.timeline if e.kind == "sent"]
    assert expected <= sent.at < expected + timedelta(minutes=5)
    assert len(recorder.sent) == 1


async def test_the_same_keys_event_again_moves_the_date_also_across_continue_as_new(
    time_env: WorkflowEnvironment,
) -> None:
    plan = plan_from(WARRANTY.format(suffix=uuid.uuid4().hex[:8]))
    recorder = RecordingActivities()
    now = await time_env.get_current_time()
    first, corrected = ((now + timedelta(days=d)).date().isoformat() for d in (75, 95))
    berlin = Profile(id="cust-1", timezone="Europe/Berlin", email="max@example.com")
    async with running_workers(time_env.client, recorder.all(), history_limit=40) as prefix:
        handle = await start_run(
            time_env.client,
            plan,
            prefix,
            event("Laptop Delivered", warranty_ends=first, order_id="o-1"),
            profile=berlin,
        )
        moved = event("Laptop Delivered", warranty_ends=corrected, order_id="o-1")
        await handle.signal("event", moved)
        for _ in range(30):  # the same date again: no move, but history enough to continue
            again = event("Laptop Delivered", warranty_ends=corrected, order_id="o-1")
            await handle.signal("event", again)
        result = RunResult.model_validate(await handle.result())
        latest = await time_env.client.get_workflow_handle(handle.id).describe()
    expected = moment_from(corrected, zone("Europe/Berlin"), -30 * 86_400, "09:00")
    assert latest.run_id != handle.first_execution_run_id, "it continued as new in the wait"
    assert result.outcome.kind == "completed"
    assert [(e.step, e.kind) for e in result.timeline if e.step == "_date"][-2:] == [
        ("_date", "moved"),
        ("_date", "waited"),
    ]
    [sent] = [e for e in result.timeline if e.kind == "sent"]
    assert expected <= sent.at < expected + timedelta(minutes=5)
    [message] = recorder.sent
    assert message.context["event"]["properties"]["warranty_ends"] == corrected


async def test_a_date_in_the_event_already_past_ends_the_run_with_the_reason(
    time_env: WorkflowEnvironment,
) -> None:
    plan = plan_from(WARRANTY.format(suffix=uuid.uuid4().hex[:8]))
    recorder = RecordingActivities()
    now = await time_env.get_current_time()
    ends = (now + timedelta(days=10)).date().isoformat()  # 30 days before is gone
    async with running_workers(time_env.client, recorder.all()) as prefix:
        handle = await start_run(
            time_env.client,
            plan,
            prefix,
            event("Laptop Delivered", warranty_ends=ends, order_id="o-2"),
        )
        result = RunResult.model_validate(await handle.result())
    assert result.outcome.kind == "exited"
    assert result.outcome.step == "_date"
    assert result.outcome.reason is not None
    assert "had passed when the run started" in result.outcome.reason
    assert recorder.sent == []


def test_no_shop_event_starts_a_date_journey_from_the_profile() -> None:
    from ingestion.router import Routes

    plan = plan_from(birthday_journey())
    assert Routes.of({plan.journey_id: plan}).triggers == {}


async def test_on_the_dev_server_the_schedule_exists_and_a_backfilled_occurrence_enters_them(
    dev_env: WorkflowEnvironment, engine: Engine
) -> None:
    """The deploy's sync creates the quarter-hour schedule; a backfill of yesterday 08:00 UTC
    (09:00 in Berlin, December: CET) starts a broadcast with that occurrence, which reaches the
    Berlin customers whose birthday was yesterday — and nobody else."""
    from temporalio.client import ScheduleBackfill, ScheduleOverlapPolicy

    from ops.broadcasts import schedule_id, sync_broadcasts

    client = dev_env.client
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date()
    nine_in_berlin = datetime.combine(yesterday, datetime.min.time(), tzinfo=zone("Europe/Berlin"))
    nine_in_berlin = nine_in_berlin.replace(hour=9).astimezone(UTC)
    store = ProfileStore(engine)
    store.upsert("berlin-yesterday", {"birthday": f"1990-{yesterday:%m-%d}", "vip": True})
    plan = deployed(engine)
    sid = schedule_id(plan.journey_id, prefix)
    recorder = RecordingActivities()
    audience = AudienceActivities(
        client, engine, RunSettings(queue_prefix=prefix, index_runs=False)
    )
    try:
        lines = await sync_broadcasts(client, Deployments(engine), PlanStore(engine), prefix)
        assert f"{plan.journey_id}: schedule created, profile.traits.birthday every year" in (
            "".join(lines)
        )
        spec = (await client.get_schedule_handle(sid).describe()).schedule.spec
        assert [r.start for r in spec.calendars[0].minute] == [0, 15, 30, 45]
        async with running_workers(client, [*recorder.all(), *audience.all()], prefix):
            await client.get_schedule_handle(sid).backfill(
                ScheduleBackfill(
                    start_at=nine_in_berlin - timedelta(minutes=1),
                    end_at=nine_in_berlin + timedelta(minutes=1),
                    overlap=ScheduleOverlapPolicy.ALLOW_ALL,
                )
            )
            result: BroadcastResult | None = None
            for _ in range(200):
                recent = (await client.get_schedule_handle(sid).describe()).info.recent_actions
                if recent:
                    started = recent[-1].action.workflow_id
                    handle = client.get_workflow_handle(started)
                    result = BroadcastResult.model_validate(await handle.result())
                    break
                await asyncio.sleep(0.1)
            sent = await sent_to(recorder, 1)
        assert result is not None, "the backfill started a broadcast"
        assert result.occurrence == nine_in_berlin, "the occurrence Temporal scheduled"
        assert sent == ["berlin-yesterday"]
    finally:
        with contextlib.suppress(RPCError):
            await client.get_schedule_handle(sid).delete()
