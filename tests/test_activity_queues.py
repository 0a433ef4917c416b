"""Where a run's sends and lookups are scheduled: on the run's own journey queue (the journey
worker runs them and the server hands each over with the workflow task's answer), except a
rate-limited channel's, which keep their channel's queue — the server enforces the limit there.
Real time-skipping server; the queue of every activity is read from the run's history."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from ops.workers import Role, WorkerOptions, build_workers
from simulation.recording import RecordingActivities
from tests.temporal import event, plan_from, start_run
from workflows.models import RunResult
from workflows.registry import Deployment

JOURNEY = """
id: t
name: T
category: marketing
trigger:
  event: Signed Up
steps:
  - id: picks
    lookup: shop-api
    path: /customers/{{ profile.id }}/recommendations
    save_as: picks
  - id: hello
    send: email
    template: newsletter-welcome
  - wait: 1d
  - id: tell-crm
    send: webhook
    to: crm
    template: crm-detractor
"""


async def scheduled_queues(handle: WorkflowHandle[Any, Any]) -> dict[str, str]:
    """Activity type → the task queue it was scheduled on, from the run's history."""
    history = await handle.fetch_history()
    return {
        e.activity_task_scheduled_event_attributes.activity_type.name: (
            e.activity_task_scheduled_event_attributes.task_queue.name
        )
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    }


async def run_with(
    env: WorkflowEnvironment,
    prefix: str,
    rate_limits: dict[str, float] | None = None,
    roles: tuple[tuple[Client, Role], ...] | None = None,
    runs: int = 1,
) -> tuple[RunResult, dict[str, str], RecordingActivities]:
    """``runs`` runs of the journey; the first one's result and queues (all must complete)."""
    recorder = RecordingActivities(lookups={"shop-api": {"products": []}})
    options = WorkerOptions(
        queue_prefix=prefix,
        rate_limits=rate_limits or {},
        deployment=Deployment(index_runs=False),
    )
    async with AsyncExitStack() as stack:
        for client, role in roles or ((env.client, "all"),):
            for worker in build_workers(client, recorder.all(), options, role):
                await stack.enter_async_context(worker)
        plan = plan_from(JOURNEY)
        handles = [
            await start_run(env.client, plan, prefix, event("Signed Up", customer=f"c{n}"))
            for n in range(runs)
        ]
        results = [RunResult.model_validate(await h.result()) for h in handles]
        for other in results[1:]:
            assert other.outcome.kind == "completed", other.outcome
        return results[0], await scheduled_queues(handles[0]), recorder


async def test_sends_and_lookups_go_on_the_runs_own_queue(time_env: WorkflowEnvironment) -> None:
    result, queues, recorder = await run_with(time_env, "own-")
    assert result.outcome.kind == "completed", result.outcome
    assert queues == {
        "lookup": "own-touchpoint-journeys",
        "send_email": "own-touchpoint-journeys",
        "send_webhook": "own-touchpoint-journeys",
    }
    assert [m.step_id for m in recorder.sent] == ["hello", "tell-crm"]
    assert len(recorder.looked_up) == 1


async def test_a_rate_limited_channel_keeps_its_own_queue(time_env: WorkflowEnvironment) -> None:
    result, queues, recorder = await run_with(time_env, "limited-", rate_limits={"email": 50})
    assert result.outcome.kind == "completed", result.outcome
    assert queues == {
        "lookup": "limited-touchpoint-journeys",
        "send_email": "limited-touchpoint-email",  # the server's rate limit is per queue
        "send_webhook": "limited-touchpoint-journeys",
    }
    assert [m.step_id for m in recorder.sent] == ["hello", "tell-crm"]


async def test_split_roles_run_the_journey_queues_activities(
    time_env: WorkflowEnvironment,
) -> None:
    """Workflows in one worker, activities in another (two connections, as two processes
    have): the activity worker polls the journey queue for the sends and lookups, and the
    workflow worker does not (it has only the local profile read: taking a send, it failed it
    with "Activity function send_email … is not registered" — several runs, so that a worker
    taking what it cannot run would show)."""
    other = await Client.connect(
        time_env.client.service_client.config.target_host,
        namespace=time_env.client.namespace,
        data_converter=pydantic_data_converter,
    )
    result, queues, recorder = await run_with(
        time_env,
        "split-",
        roles=((time_env.client, "workflows"), (other, "activities")),
        runs=8,
    )
    assert result.outcome.kind == "completed", result.outcome
    assert set(queues.values()) == {"split-touchpoint-journeys"}
    assert len(recorder.sent) == 8 * 2 and len(recorder.looked_up) == 8
