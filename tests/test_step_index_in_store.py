"""Runs of input version 4 keep where they are and how they ended in the analytics store, not
in search attributes: no step, stage or outcome upsert (each was a history event and a
visibility write), while runs of version 3 still upsert theirs — on every replay too. The store
answers what the upserts answered: the step a run waits at, its outcome, the running runs per
step. Real dev server (search attributes registered), real SQLite store."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import pytest
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from simulation.recording import RecordingActivities
from store.analytics import Analytics
from store.database import connect
from store.plans import PlanStore
from tests import corpus
from tests.temporal import event, plan_from, running_workers, start_run
from tests.test_analytics_runs import eventually
from workflows.models import RunResult, RunSettings
from workflows.registry import Deployment
from workflows.search import JOURNEY_OUTCOME, JOURNEY_STEP

JOURNEY = """
id: where-{tag}
name: Where
category: marketing
trigger:
  event: Signed Up
steps:
  - id: hello
    send: email
    template: newsletter-welcome
  - id: pause
    wait: 1d
  - id: again
    send: email
    template: free-shipping
"""
DAY_A_SECOND = 1 / 86_400


@pytest.fixture
def store(tmp_path: Path) -> Analytics:
    return Analytics(connect(f"sqlite:///{tmp_path / 'touchpoint.db'}"))


async def test_version_4_runs_upsert_nothing_and_the_store_says_where_they_are(
    dev_env: WorkflowEnvironment, store: Analytics
) -> None:
    plan = plan_from(JOURNEY.format(tag=uuid.uuid4().hex[:6]))
    PlanStore(store.engine).publish([plan])
    recorder = RecordingActivities()
    handles: dict[int, WorkflowHandle] = {}
    async with running_workers(
        dev_env.client, recorder.all(), recorder=store, index_runs=True
    ) as prefix:
        slow = RunSettings(queue_prefix=prefix, time_scale=1.0)  # the wait lasts a real day
        for version in (3, 4):
            handles[version] = await start_run(
                dev_env.client,
                plan,
                prefix,
                event("Signed Up", customer=f"c{version}-{uuid.uuid4().hex[:6]}"),
                settings=slow,
                by_reference=True,
                input_version=version,
            )
        ids = [h.id for h in handles.values()]
        await eventually(
            lambda: [r.current_step for r in store.latest_runs(ids).values()] == 2 * ["pause"],
            seconds=20,
        )
        assert store.running_by_step(plan.journey_id) == {(plan.version, "pause"): 2}
        for handle in handles.values():
            await handle.signal("cancel", {"reason": "test over"})
        results = {v: RunResult.model_validate(await h.result()) for v, h in handles.items()}
        await eventually(
            lambda: [r.outcome for r in store.latest_runs(ids).values()] == 2 * ["cancelled"],
            seconds=20,
        )
    assert {r.outcome.kind for r in results.values()} == {"cancelled"}
    ended = store.latest_runs(ids)
    assert {(r.current_step, r.outcome) for r in ended.values()} == {("pause", "cancelled")}
    assert store.running_by_step(plan.journey_id) == {}

    old, new = [await handles[v].fetch_history() for v in (3, 4)]
    assert sorted(corpus.upserted(old)) == [
        "TouchpointOutcome",
        "TouchpointStage",
        "TouchpointStep",
    ]
    assert corpus.upserted(new) == []
    old_attributes = (await handles[3].describe()).typed_search_attributes
    new_attributes = (await handles[4].describe()).typed_search_attributes
    assert old_attributes.get(JOURNEY_OUTCOME) == "cancelled"
    assert new_attributes.get(JOURNEY_STEP) is None and new_attributes.get(JOURNEY_OUTCOME) is None
    worker = corpus.Recording(
        story="a run of input version 3 and one of version 4",
        workflow_id="",
        run_id="",
        recorded_on=corpus.DEV_SERVER,
        deployment=dataclasses.asdict(
            Deployment(index_runs=True, default_timezone="Europe/Berlin")
        ),
    )
    for history in (old, new):  # each replays as it ran (the version decides, not the worker)
        replayed = await corpus.replay(history, worker, plans=[plan])
        assert replayed.replay_failure is None, replayed.replay_failure


def test_the_latest_entry_of_a_workflow_id_is_the_one_shown(store: Analytics) -> None:
    """A customer's later entries use the workflow id again (stored as ``<id>#<entry>``)."""
    from datetime import UTC, datetime

    from workflows.analytics import RunEnded, RunEntered, StepPassed

    plan = plan_from(JOURNEY.format(tag="entries"))
    PlanStore(store.engine).publish([plan])
    at = datetime(2026, 12, 1, tzinfo=UTC)
    first = dict(journey_id=plan.journey_id, version=plan.version, customer="h", at=at)
    store.record(
        [
            RunEntered(workflow_id="journey/w/abc", **first),
            RunEnded(workflow_id="journey/w/abc", outcome="completed", at=at),
            RunEntered(workflow_id="journey/w/abc#2", **first),
            StepPassed(
                workflow_id="journey/w/abc#2",
                journey_id=plan.journey_id,
                version=plan.version,
                step_id="hello",
                visit=1,
                next_step="pause",
                at=at,
            ),
            RunEntered(workflow_id="journey/w/abcd", **first),  # another id, same prefix
        ]
    )
    found = store.latest_runs(["journey/w/abc", "journey/w/abcd", "journey/w/none"])
    assert set(found) == {"journey/w/abc", "journey/w/abcd"}
    assert (found["journey/w/abc"].entry, found["journey/w/abc"].current_step) == (2, "pause")
    assert found["journey/w/abc"].outcome is None
    assert found["journey/w/abcd"].current_step == "hello", "not passed a step: at the start"
