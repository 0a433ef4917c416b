"""A date journey's schedule loses no occurrence (on the real Temporal dev server).

Its quarter-hourly occurrences each reach other time zones: one that comes while the one
before still runs is buffered (``BUFFER_ALL``), not skipped — a skipped occurrence would skip
those customers' birthday. A schedule created before, with ``SKIP``, gets the new policy at
the next sync (a worker's start, a deploy). Broadcasts keep ``SKIP``."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine
from temporalio.client import ScheduleBackfill, ScheduleOverlapPolicy, WorkflowExecutionStatus
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from activities.audience import AudienceActivities
from ops.broadcasts import broadcast_schedule, schedule_id, sync_broadcasts
from simulation.recording import RecordingActivities
from store.database import connect
from store.deployments import Deployments
from store.plans import PlanStore
from store.profiles import ProfileStore
from tests.temporal import plan_from, running_workers
from tests.test_date_entry import birthday_journey, deployed
from workflows.models import RunSettings
from workflows.timing import zone

OCCURRENCES = 5  # 09:00 in Berlin to 09:00 in London, every quarter hour


def nine_local(day: datetime, name: str) -> datetime:
    local = datetime.combine(day.date(), datetime.min.time(), tzinfo=zone(name))
    return local.replace(hour=9).astimezone(UTC)


async def test_a_date_journeys_occurrences_queue_behind_a_running_one_and_none_is_lost(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    client = dev_env.client
    engine: Engine = connect(f"sqlite:///{tmp_path / 'touchpoint.db'}")
    yesterday = datetime.now(UTC) - timedelta(days=1)
    birthday = f"1990-{yesterday:%m-%d}"
    store = ProfileStore(engine)
    store.upsert("in-berlin", {"birthday": birthday, "vip": True}, timezone="Europe/Berlin")
    store.upsert("in-london", {"birthday": birthday, "vip": True}, timezone="Europe/London")
    plan = deployed(engine)
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    sid = schedule_id(plan.journey_id, prefix)
    recorder = RecordingActivities()
    audience = AudienceActivities(
        client, engine, RunSettings(queue_prefix=prefix, index_runs=False)
    )
    before = broadcast_schedule(plan, prefix)  # as a sync before this change created it
    before.policy = dataclasses.replace(before.policy, overlap=ScheduleOverlapPolicy.SKIP)
    try:
        await client.create_schedule(sid, before)
        lines = await sync_broadcasts(client, Deployments(engine), PlanStore(engine), prefix)
        assert f"{plan.journey_id}: schedule updated" in "".join(lines)
        policy = (await client.get_schedule_handle(sid).describe()).schedule.policy
        assert policy.overlap == ScheduleOverlapPolicy.BUFFER_ALL

        # no worker yet: the first occurrence keeps running while the next four come
        await client.get_schedule_handle(sid).backfill(
            ScheduleBackfill(
                start_at=nine_local(yesterday, "Europe/Berlin") - timedelta(minutes=1),
                end_at=nine_local(yesterday, "Europe/London") + timedelta(minutes=1),
            )
        )
        async with running_workers(client, [*recorder.all(), *audience.all()], prefix):
            finished = await finished_occurrences(dev_env, sid, OCCURRENCES)
            for _ in range(100):
                if len(recorder.sent) >= 2:
                    break
                await asyncio.sleep(0.1)
        info = (await client.get_schedule_handle(sid).describe()).info
        assert info.num_actions_skipped_overlap == 0
        assert finished == OCCURRENCES, "every quarter hour went out, one after the other"
        assert sorted(m.customer_id for m in recorder.sent) == ["in-berlin", "in-london"]
    finally:
        with contextlib.suppress(RPCError):
            await client.get_schedule_handle(sid).delete()


async def finished_occurrences(env: WorkflowEnvironment, sid: str, count: int) -> int:
    """How many of the schedule's broadcasts completed, once ``count`` did (or 60 s passed)."""
    done = 0
    for _ in range(600):
        recent = (await env.client.get_schedule_handle(sid).describe()).info.recent_actions
        done = 0
        for action in recent:
            handle = env.client.get_workflow_handle(action.action.workflow_id)
            if (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED:
                done += 1
        if done >= count:
            return done
        await asyncio.sleep(0.1)
    return done


def test_broadcasts_keep_skip_and_date_journeys_buffer() -> None:
    weekly = plan_from(
        "id: weekly\nname: W\ncategory: marketing\ntrigger:\n  schedule:\n"
        "    every: monday 09:00\nsteps:\n  - send: email\n    template: newsletter-welcome\n"
    )
    assert broadcast_schedule(weekly).policy.overlap == ScheduleOverlapPolicy.SKIP
    dates = plan_from(birthday_journey())
    assert broadcast_schedule(dates).policy.overlap == ScheduleOverlapPolicy.BUFFER_ALL
