"""Helpers for tests on real Temporal servers (never downloaded: both come from PyPI packages)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from temporalio.client import Client, WorkflowHandle

from language.compiler import ProjectContext
from language.validator import compile_text, validate
from ops.binaries import find_binary
from ops.workers import WorkerOptions, build_workers
from store.deployments import Deployments
from store.plans import PlanStore
from tests.conftest import ROOT
from workflows import analytics, registry
from workflows.analytics import Recorder
from workflows.models import (
    INPUT_VERSION,
    JOURNEY_QUEUE,
    Event,
    JourneyInput,
    Profile,
    RunResult,
    RunSettings,
)
from workflows.plan import Plan
from workflows.registry import Deployment

binary = find_binary  # the server binaries pip installed into this virtualenv


CONTEXT = ProjectContext(config=validate((), root=ROOT).config)


def plan_from(text: str) -> Plan:
    plan, problems, _ = compile_text(text, "test.yaml", CONTEXT)
    assert problems == [], [p.format() for p in problems]
    assert plan is not None
    return plan


def deployed_from(engine: Engine, text: str) -> Plan:
    """The journey ``text`` compiled, published to the store, deployed (active) and registered
    with this process's workers — as ``touchpoint deploy`` and a worker's start leave it."""
    plan = plan_from(text)
    PlanStore(engine).publish([plan])
    Deployments(engine).deploy([plan], actor="test", reason=None)
    registry.register([plan])
    return plan


def event(
    name: str, customer: str = "cust-1", at: datetime | None = None, **properties: Any
) -> Event:
    return Event(
        message_id=f"m-{uuid.uuid4()}",
        event=name,
        customer_id=customer,
        properties=properties,
        timestamp=at or datetime.now(UTC),
    )


@asynccontextmanager
async def running_workers(
    client: Client,
    activities: Sequence[Any],
    prefix: str | None = None,
    recorder: Recorder | None = None,
    **deployment: Any,
) -> AsyncIterator[str]:
    """Workers for every queue under a fresh prefix; yields the prefix. ``deployment``: what
    the worker gives its runs (``history_limit``, ``default_timezone`` …; search attributes
    off unless ``index_runs=True``). ``recorder``: the runs' analytics go to it (the worker's
    is a :class:`store.analytics.RetryingRecorder`; without one, runs record nothing)."""
    prefix = prefix if prefix is not None else f"t{uuid.uuid4().hex[:8]}-"
    options = WorkerOptions(
        queue_prefix=prefix,
        deployment=Deployment(
            **{"index_runs": False, "default_timezone": "Europe/Berlin", **deployment}
        ),
    )
    async with AsyncExitStack() as stack:
        if recorder is not None:
            analytics.register(prefix + JOURNEY_QUEUE, recorder)
            stack.callback(analytics.unregister, prefix + JOURNEY_QUEUE)
        for worker in build_workers(client, activities, options):
            await stack.enter_async_context(worker)
        yield prefix


async def start_run(
    client: Client,
    plan: Plan,
    prefix: str,
    trigger: Event,
    *,
    profile: Profile | None = None,
    key: str | None = None,
    settings: RunSettings | None = None,
    workflow_id: str | None = None,
    by_reference: bool = False,
    input_version: int = INPUT_VERSION,
) -> WorkflowHandle[Any, Any]:
    """Start a run directly (the router's job in production) and return its handle. Tests
    hand the plan and a profile over; ``by_reference`` starts it as the router does (the plan
    from the worker's registry, the profile read by the steps); ``input_version`` 2 starts it
    as a router from before version 3 did (it asks ``workflow.patched`` for every patch)."""
    settings = settings or RunSettings(queue_prefix=prefix)
    if by_reference:
        registry.register([plan])
        run_input = JourneyInput(
            input_version=input_version,
            journey_id=plan.journey_id,
            plan_version=plan.version,
            customer_id=trigger.customer_id,
            key=key,
            trigger=trigger,
            clock=settings.clock(),
        )
    else:
        run_input = JourneyInput(
            input_version=input_version,
            plan=plan,
            customer_id=trigger.customer_id,
            key=key,
            trigger=trigger,
            profile=profile or Profile(id=trigger.customer_id, email="max@example.com"),
            clock=settings.clock(),
        )
    return await client.start_workflow(
        "JourneyWorkflow",
        run_input,
        id=workflow_id or f"test-{uuid.uuid4()}",
        task_queue=prefix + JOURNEY_QUEUE,
    )


async def finish(env: Any, workflow_id: str | None) -> RunResult:
    """The run's result on the time-skipping server. Handles made by id do not skip time by
    themselves, so skip it here, a few hours at a time."""
    from temporalio.client import WorkflowExecutionStatus

    assert workflow_id is not None
    handle = env.client.get_workflow_handle(workflow_id)
    for _ in range(400):
        if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
            return RunResult.model_validate(await handle.result())
        await env.sleep(timedelta(hours=6))
    raise AssertionError(f"{workflow_id} did not finish")
