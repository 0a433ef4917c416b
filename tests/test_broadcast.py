"""Scheduled journeys (broadcasts): one occurrence on Temporal's time-skipping server over a
real SQLite store of 1,200 profiles — exactly the audience gets a run, once, across pages
(continue-as-new); the same occurrence run again starts nobody; re-entry rules hold from one
occurrence to the next; a retried page resumes where it stopped."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert
from temporalio import activity
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.audience import AudienceActivities, count_audience, in_audience
from simulation.recording import RecordingActivities
from store.database import connect, profiles
from store.deployments import Deployments
from store.profiles import ProfileStore
from tests.temporal import deployed_from, plan_from, running_workers
from workflows.broadcast_models import (
    BROADCAST_QUEUE,
    BroadcastInput,
    BroadcastResult,
    PageRequest,
    occurrence_tag,
)
from workflows.models import Profile, RunSettings, workflow_id
from workflows.plan import Plan

PROFILES = 1_200
MONDAY = datetime(2027, 1, 4, 8, 0, tzinfo=UTC)  # 09:00 in Berlin


def newsletter(reentry: str = "every_time") -> str:
    """A journey of its own for each test: run ids are per journey, customer and occurrence,
    and the tests share one server."""
    return f"""
id: news-{uuid.uuid4().hex[:8]}
name: Laptop news
category: marketing
trigger:
  schedule:
    every: monday 09:00
    timezone: Europe/Berlin
    rate: 100000/s
  audience: "'laptops' in profile.traits.interests | default([]) and profile.traits.opted_in"
entry:
  reentry: {reentry}
steps:
  - id: issue
    send: email
    template: newsletter-welcome
"""


def fans(index: int) -> bool:
    return index % 3 == 0


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    """1,200 profiles: every third is a laptop fan, some of those have not opted in (every
    fifth), and one's interests are a number (the audience cannot be evaluated on it)."""
    engine = connect(f"sqlite:///{tmp_path / 'touchpoint.db'}")
    rows = []
    now = datetime.now(UTC)
    for i in range(PROFILES):
        traits: dict[str, Any] = {"interests": ["laptops"] if fans(i) else ["phones"]}
        traits["opted_in"] = i % 5 != 0
        if i == 3:
            traits["interests"] = 5  # "'laptops' in 5" cannot be evaluated
        rows.append(
            {
                "customer_id": f"c{i:05d}",
                "email": f"c{i}@example.com",
                "traits": traits,
                "created_at": now,
                "updated_at": now,
            }
        )
    with engine.begin() as db:  # one transaction: the store's own upsert is one per profile
        db.execute(insert(profiles), rows)
    return engine


def expected() -> set[str]:
    return {f"c{i:05d}" for i in range(PROFILES) if fans(i) and i % 5 != 0 and i != 3}


def deployed(engine: Engine, reentry: str = "every_time") -> Plan:
    return deployed_from(engine, newsletter(reentry))


async def broadcast(
    env: WorkflowEnvironment, prefix: str, plan: Plan, occurrence: datetime
) -> tuple[BroadcastResult, str]:
    """Run one occurrence to its end; the result and the first run's id."""
    handle = await env.client.start_workflow(
        "BroadcastWorkflow",
        BroadcastInput(
            journey_id=plan.journey_id, plan_version=plan.version, occurrence=occurrence
        ),
        id=f"broadcast-{uuid.uuid4()}",
        task_queue=prefix + BROADCAST_QUEUE,
    )
    result = BroadcastResult.model_validate(await handle.result())
    return result, handle.result_run_id or ""


async def sent_to(recorder: RecordingActivities, count: int) -> list[str]:
    """The customers the recorder sent to, once ``count`` messages went out (or 60 s passed)."""
    for _ in range(600):
        if len(recorder.sent) >= count:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)  # any extra message would show up meanwhile
    return [m.customer_id for m in recorder.sent]


def workers(env: WorkflowEnvironment, engine: Engine, recorder: RecordingActivities, prefix: str):  # type: ignore[no-untyped-def]
    audience = AudienceActivities(
        env.client, engine, RunSettings(queue_prefix=prefix, index_runs=False)
    )
    return running_workers(env.client, [*recorder.all(), *audience.all()], prefix)


async def test_an_occurrence_starts_one_run_for_each_customer_in_the_audience(
    time_env: WorkflowEnvironment, engine: Engine
) -> None:
    plan = deployed(engine)
    recorder = RecordingActivities()
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    async with workers(time_env, engine, recorder, prefix):
        result, _ = await broadcast(time_env, prefix, plan, MONDAY)
        customers = await sent_to(recorder, len(expected()))
    want = expected()
    assert sorted(customers) == sorted(want), "exactly the audience, each once"
    assert len(customers) == len(set(customers)) == 319
    counts = result.counts
    assert (counts.read, counts.matched, counts.started, counts.failed) == (1_200, 319, 319, 1)
    assert (counts.already_started, counts.refused) == (0, 0)
    assert result.pages == 3, "500 profiles a page"
    assert result.occurrence == MONDAY


async def test_pages_continue_as_new_and_the_same_occurrence_again_starts_nobody(
    time_env: WorkflowEnvironment, engine: Engine
) -> None:
    plan = deployed(engine)
    recorder = RecordingActivities()
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    async with workers(time_env, engine, recorder, prefix):
        handle = await time_env.client.start_workflow(
            "BroadcastWorkflow",
            BroadcastInput(
                journey_id=plan.journey_id,
                plan_version=plan.version,
                occurrence=MONDAY,
                pages_per_execution=2,  # 3 pages: two in the first execution, one in the next
            ),
            id=f"broadcast-{uuid.uuid4()}",
            task_queue=prefix + BROADCAST_QUEUE,
        )
        first_run = handle.result_run_id
        once = BroadcastResult.model_validate(await handle.result())
        first = time_env.client.get_workflow_handle(handle.id, run_id=first_run)
        status = (await first.describe()).status
        again, _ = await broadcast(time_env, prefix, plan, MONDAY)
        customers = await sent_to(recorder, 319)
        run = time_env.client.get_workflow_handle(
            workflow_id(plan.journey_id, "c00006", None, occurrence_tag(MONDAY))
        )
        run_status = (await run.describe()).status
    assert status == WorkflowExecutionStatus.CONTINUED_AS_NEW
    assert once.counts.started == 319
    assert (again.counts.matched, again.counts.started, again.counts.already_started) == (
        319,
        0,
        319,
    )
    assert len(customers) == 319, "nobody twice"
    assert run_status == WorkflowExecutionStatus.COMPLETED, "one run per customer and occurrence"


async def test_reentry_once_holds_from_one_occurrence_to_the_next(
    time_env: WorkflowEnvironment, engine: Engine
) -> None:
    plan = deployed(engine, reentry="once")
    recorder = RecordingActivities()
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    async with workers(time_env, engine, recorder, prefix):
        monday, _ = await broadcast(time_env, prefix, plan, MONDAY)
        next_monday, _ = await broadcast(time_env, prefix, plan, MONDAY + timedelta(days=7))
        customers = await sent_to(recorder, 319)
    assert monday.counts.started == 319
    assert (next_monday.counts.started, next_monday.counts.refused) == (0, 319)
    assert len(customers) == 319


async def test_a_paused_journey_starts_nobody(
    time_env: WorkflowEnvironment, engine: Engine
) -> None:
    plan = deployed(engine)
    Deployments(engine).set_state(plan.journey_id, "paused", actor="test", reason="hold")
    recorder = RecordingActivities()
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    async with workers(time_env, engine, recorder, prefix):
        result, _ = await broadcast(time_env, prefix, plan, MONDAY)
    assert (result.counts.matched, result.counts.started, result.counts.refused) == (319, 0, 319)
    assert recorder.sent == []


async def test_a_retried_page_resumes_after_the_last_customer_it_did(
    time_env: WorkflowEnvironment, engine: Engine
) -> None:
    """The page activity alone: its heartbeat says where a retry goes on (counts carried)."""
    plan = deployed(engine)
    audience = AudienceActivities(time_env.client, engine, RunSettings(index_runs=False))
    beats: list[Any] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(details)
    env.info = dataclasses.replace(env.info, heartbeat_details=["c00599", {"read": 600}])
    request = PageRequest(
        journey_id=plan.journey_id,
        plan_version=plan.version,
        occurrence=MONDAY,
        after=None,
        page_size=500,
        starts_per_second=100_000,
    )
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    recorder = RecordingActivities()
    audience.settings = RunSettings(queue_prefix=prefix, index_runs=False)
    async with running_workers(time_env.client, recorder.all(), prefix):
        page = await env.run(audience.broadcast_page, request)
    assert beats[0][0] == "c00600", "it went on after the heartbeat's customer"
    assert page.counts.read == 600 + 500
    assert page.cursor == "c01099"
    assert page.counts.started == len([c for c in expected() if "c00600" <= c <= "c01099"])


def test_the_audience_is_counted_a_page_at_a_time(engine: Engine) -> None:
    plan = plan_from(newsletter())
    counted = count_audience(ProfileStore(engine), plan, MONDAY, sample=3, page_size=100)
    assert (counted.read, counted.matched, counted.failed) == (1_200, 319, 1)
    assert counted.sample == ["c00006", "c00009", "c00012"]


def test_in_audience_reads_the_profile_and_the_entry_condition() -> None:
    plan = plan_from(newsletter().replace("entry:\n", "entry:\n  if: profile.locale == 'de'\n"))
    fan = Profile(id="x", locale="de", traits={"interests": ["laptops"], "opted_in": True})
    assert in_audience(plan, fan, MONDAY)
    assert not in_audience(plan, fan.model_copy(update={"locale": "en"}), MONDAY)
    assert not in_audience(
        plan, fan.model_copy(update={"traits": {"interests": [], "opted_in": True}}), MONDAY
    )


class CrashingOnce(AudienceActivities):
    """The real page activity, whose first attempt of the first page dies after 100 starts
    (a worker killed mid-page): Temporal retries it."""

    entered = 0

    async def _enter(self, *args: Any) -> str:
        if activity.info().attempt == 1 and self.entered == 100:
            self.entered += 1
            raise RuntimeError("the worker died")
        self.entered += 1
        return await super()._enter(*args)


async def test_a_page_that_dies_half_way_is_retried_and_starts_nobody_twice(
    time_env: WorkflowEnvironment, engine: Engine
) -> None:
    plan = deployed(engine)
    recorder = RecordingActivities()
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    crashing = CrashingOnce(
        time_env.client, engine, RunSettings(queue_prefix=prefix, index_runs=False)
    )
    async with running_workers(time_env.client, [*recorder.all(), *crashing.all()], prefix):
        result, _ = await broadcast(time_env, prefix, plan, MONDAY)
        customers = await sent_to(recorder, 319)
    assert crashing.entered > 319, "the first page was attempted twice"
    assert sorted(customers) == sorted(expected()), "everybody once, nobody twice"
    counts = result.counts
    assert counts.started == 319 - counts.already_started
    assert counts.matched == 319 and counts.read == 1_200


def test_no_shop_event_starts_a_scheduled_journey() -> None:
    """Not even one named like the occurrence: the router leaves scheduled journeys'
    triggers out, and still routes what their runs wait for."""
    from ingestion.router import Routes

    plan = plan_from(
        newsletter().replace("steps:\n", "exit_when:\n  - event: Unsubscribed\nsteps:\n")
    )
    routes = Routes.of({plan.journey_id: plan})
    assert routes.triggers == {}
    assert routes.listeners == {"Unsubscribed": (plan,)}


# --- the recorded executions replay against today's workflow ----------------------------------

BROADCAST_HISTORIES = Path(__file__).parent / "broadcast_histories"


@pytest.mark.parametrize(
    "name",
    [
        "one-page-per-execution",  # recorded before broadcast-pages-per-execution: 1 page, CAN
        "pages-per-execution",  # since: the three pages of 1,200 profiles in one execution
    ],
)
async def test_recorded_broadcast_executions_replay(name: str) -> None:
    from temporalio.client import WorkflowHistory
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.worker import Replayer

    from workflows.broadcast import BroadcastWorkflow

    text = (BROADCAST_HISTORIES / f"{name}.json").read_text()
    history = WorkflowHistory.from_json(f"broadcast-{name}", text)
    replayer = Replayer(workflows=[BroadcastWorkflow], data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
