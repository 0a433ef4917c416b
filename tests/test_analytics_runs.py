"""Runs on Temporal's time-skipping server record what they do in a real SQLite store: the
example journeys' passes, edges, outcomes and waiting runs agree with their timelines; a
continue-as-new run counts each pass once; a replay records nothing."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

import workflows.analytics
from config.project import ProjectConfig
from config.settings import load_settings
from ops.workers import WorkerOptions, analytics_recorded, worker_options
from simulation.recording import RecordingActivities
from store.analytics import Analytics, JourneyStats
from store.database import connect
from store.plans import PlanStore
from tests import corpus
from tests.conftest import ROOT
from tests.temporal import event, plan_from, running_workers, start_run
from workflows.analytics import Record, Recorder
from workflows.models import JOURNEY_QUEUE, JourneyInput, Profile, RunResult, customer_hash
from workflows.plan import Plan

LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)
VISIBLE_SECONDS = 5.0


def example(name: str) -> Plan:
    return plan_from((ROOT / "journeys" / f"{name}.yaml").read_text())


@pytest.fixture
def store(tmp_path: Path) -> Analytics:
    return Analytics(connect(f"sqlite:///{tmp_path / 'touchpoint.db'}"))


def stats_of(store: Analytics, plan: Plan) -> JourneyStats:
    PlanStore(store.engine).publish([plan])
    return store.journey(plan.journey_id, LONG_AGO)


async def result_of(handle: WorkflowHandle) -> RunResult:
    return RunResult.model_validate(await handle.result())


def passes_in(results: Sequence[RunResult]) -> Counter[str]:
    """Each timeline entry is a step the run did; a step it left is one it did."""
    return Counter(e.step for r in results for e in r.timeline if e.kind != "deferred")


async def eventually(check: object, seconds: float = VISIBLE_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"not visible within {seconds} s")
        await asyncio.sleep(0.05)


async def test_the_welcome_series_counts_every_pass_edge_and_the_holdout(
    time_env: WorkflowEnvironment, store: Analytics
) -> None:
    plan = example("newsletter-welcome")
    customers = [f"welcome-{uuid.uuid4().hex[:8]}" for _ in range(12)]
    async with running_workers(time_env.client, RecordingActivities().all(), recorder=store) as q:
        handles = [
            await start_run(
                time_env.client,
                plan,
                q,
                event("Newsletter Subscribed", customer=c),
                profile=Profile(id=c, email=f"{c}@example.com", traits={"interests": ["laptops"]}),
            )
            for c in customers
        ]
        results = [await result_of(h) for h in handles]
    stats = stats_of(store, plan)
    assert stats.entered == 12 and stats.outcomes.completed == 12
    assert stats.versions == [plan.version] and stats.conversion_rate == 0
    passed = {s.step: s.passed for s in stats.steps if s.passed}
    assert passed == dict(passes_in(results))
    assert all(s.waiting == 0 for s in stats.steps)
    edges = {(e.source, e.target, e.label): e.passed for e in stats.edges}
    assert (
        edges[("interests", "laptop-fan", "'laptops' in profile.traits.interests | default([])")]
        == 12
    )
    held = sum(
        1 for r in results for e in r.timeline if e.kind == "split" and "holdout" in e.detail
    )
    split = {label: n for (source, _, label), n in edges.items() if source == "incentive"}
    assert sum(split.values()) == 12 and split.get("control", 0) == held
    if 0 < held < 12:
        assert stats.lift is not None
        assert (stats.lift.holdout_runs, stats.lift.treatment_runs) == (held, 12 - held)
    runs = store.runs_of_customer(customer_hash(customers[0]))
    assert [(r.outcome, r.version) for r in runs] == [("completed", plan.version)]


async def test_a_waiting_run_shows_within_seconds_and_a_goal_converts_it(
    time_env: WorkflowEnvironment, store: Analytics
) -> None:
    plan = example("newsletter-welcome")
    async with running_workers(time_env.client, RecordingActivities().all(), recorder=store) as q:
        handle = await start_run(time_env.client, plan, q, event("Newsletter Subscribed"))
        [wait] = [n.id for n in plan.nodes.values() if n.type == "wait"][:1]

        def waiting_at_the_wait() -> bool:
            return {s.step: s.waiting for s in stats_of(store, plan).steps}.get(wait) == 1

        await eventually(waiting_at_the_wait)
        await handle.signal("event", event("Order Completed"))
        result = await result_of(handle)
    assert result.outcome.kind == "converted"
    stats = stats_of(store, plan)
    assert stats.outcomes.converted == 1 and stats.conversion_rate == 1.0
    assert sum(s.waiting for s in stats.steps) == 0
    [run] = store.runs_of_customer(customer_hash("cust-1"))[:1]
    assert (run.outcome, run.current_step, run.reason) == ("converted", wait, "Order Completed")


async def test_a_failed_step_and_an_exit_are_outcomes(
    time_env: WorkflowEnvironment, store: Analytics
) -> None:
    plan = plan_from(
        """
id: fails
name: Fails
category: marketing
trigger:
  event: Signed Up
exit_when:
  - event: Unsubscribed
    reason: unsubscribed
steps:
  - id: first
    wait: 1d
  - id: broken
    set:
      x: 1 / 0
"""
    )
    async with running_workers(time_env.client, RecordingActivities().all(), recorder=store) as q:
        failing = await start_run(time_env.client, plan, q, event("Signed Up", customer="a"))
        leaving = await start_run(time_env.client, plan, q, event("Signed Up", customer="b"))
        await leaving.signal("event", event("Unsubscribed", customer="b"))
        assert (await result_of(leaving)).outcome.kind == "exited"
        assert (await result_of(failing)).outcome.kind == "failed"
    outcomes = stats_of(store, plan).outcomes
    assert outcomes.failed == {"broken": 1} and outcomes.exited == {"unsubscribed": 1}
    [failed] = [r for r in store.failing() if r.journey_id == "fails"]
    assert failed.failed_step == "broken" and failed.reason


async def test_continue_as_new_counts_each_pass_once(
    time_env: WorkflowEnvironment, store: Analytics
) -> None:
    plan = plan_from(
        f"""
id: loops-{uuid.uuid4().hex[:6]}
name: Loops
category: marketing
trigger:
  event: Signed Up
steps:
  - set:
      n: 0
  - id: again
    set:
      n: vars.n + 1
  - id: pause
    wait: 1h
  - id: more
    branch:
      - if: vars.n < 12
        goto: again
  - id: done
    send: email
    template: newsletter-welcome
"""
    )
    activities = RecordingActivities()
    async with running_workers(
        time_env.client, activities.all(), recorder=store, history_limit=40
    ) as q:
        handle = await start_run(time_env.client, plan, q, event("Signed Up"))
        result = await result_of(handle)
        described = await handle.describe()
    assert described.run_id != handle.first_execution_run_id, "it continued as new"
    stats = stats_of(store, plan)
    passed = {s.step: s.passed for s in stats.steps}
    assert (passed["again"], passed["pause"], passed["more"], passed["done"]) == (12, 12, 12, 1)
    edges = {(e.source, e.target, e.label): e.passed for e in stats.edges}
    assert edges[("more", "again", "vars.n < 12")] == 11 and edges[("more", "done", "else")] == 1
    assert stats.entered == 1 and stats.outcomes.completed == 1
    assert result.outcome.kind == "completed"


class Spy:
    def __init__(self) -> None:
        self.records: list[Record] = []

    def record(self, records: Sequence[Record]) -> None:
        self.records.extend(records)


@pytest.mark.parametrize(
    "name",
    [
        "newsletter-welcome-whole-series",
        "newsletter-welcome-held-out-of-the-offer",
        "three-notes-continued-between-sends",
        "laptop-recommendation-bought-a-laptop-goal",
    ],
)
async def test_replaying_a_recorded_history_records_nothing(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = Spy()
    watching: Recorder = spy
    monkeypatch.setattr(workflows.analytics, "recorder_for", lambda _queue: watching)
    result = await corpus.replay_entry(corpus.entry(name))
    assert result.replay_failure is None, result.replay_failure
    assert spy.records == []


async def test_the_same_spy_sees_a_live_run(time_env: WorkflowEnvironment) -> None:
    """The control of the replay test: a run that is not a replay hands the spy its records."""
    spy = Spy()
    plan = example("newsletter-welcome")
    async with running_workers(time_env.client, RecordingActivities().all(), recorder=spy) as q:
        await result_of(await start_run(time_env.client, plan, q, event("Newsletter Subscribed")))
    kinds = Counter(type(r).__name__ for r in spy.records)
    assert kinds["RunEntered"] == 1 and kinds["RunEnded"] == 1 and kinds["StepPassed"] > 5


async def test_a_recorder_that_fails_does_not_fail_the_run(
    time_env: WorkflowEnvironment,
) -> None:
    class Broken:
        def record(self, records: Sequence[Record]) -> None:
            raise RuntimeError("the store is gone")

    plan = example("newsletter-welcome")
    async with running_workers(
        time_env.client, RecordingActivities().all(), recorder=Broken()
    ) as q:
        result = await result_of(
            await start_run(time_env.client, plan, q, event("Newsletter Subscribed"))
        )
    assert result.outcome.kind == "completed"


async def test_a_second_entry_under_the_same_workflow_id_counts_as_a_run_of_its_own(
    time_env: WorkflowEnvironment, store: Analytics
) -> None:
    plan = example("newsletter-welcome")
    workflow_id = f"journey/newsletter-welcome/{uuid.uuid4().hex[:24]}"
    async with running_workers(time_env.client, RecordingActivities().all(), recorder=store) as q:
        for entry in (1, 2):
            trigger = event("Newsletter Subscribed", customer="again")
            run_input = JourneyInput(
                plan=plan,
                customer_id="again",
                trigger=trigger,
                entry_sequence=entry,
                profile=Profile(id="again", email="again@example.com"),
            )
            handle = await time_env.client.start_workflow(
                "JourneyWorkflow", run_input, id=workflow_id, task_queue=q + JOURNEY_QUEUE
            )
            await result_of(handle)
    stats = stats_of(store, plan)
    assert stats.entered == 2 and stats.outcomes.completed == 2
    assert {s.step: s.passed for s in stats.steps}["welcome"] == 2
    runs = store.runs_of_customer(customer_hash("again"))
    assert sorted((r.workflow_id, r.entry) for r in runs) == [(workflow_id, 1), (workflow_id, 2)]


def test_the_worker_records_on_its_journey_queue_while_it_runs(store: Analytics) -> None:
    queue = f"t{uuid.uuid4().hex[:6]}-{JOURNEY_QUEUE}"
    with analytics_recorded(queue, store.engine) as recorder:
        assert workflows.analytics.recorder_for(queue) is recorder
    assert workflows.analytics.recorder_for(queue) is None


def test_worker_analytics_false_turns_recording_off() -> None:
    def options(worker: dict[str, object]) -> WorkerOptions:
        config = ProjectConfig.model_validate({"worker": worker})
        return worker_options(load_settings(config, {}))

    assert options({}).analytics is True
    assert options({"analytics": False}).analytics is False
