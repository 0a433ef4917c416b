"""Starting runs for benchmarks: a Touchpoint run exactly as the router starts it
(signal-with-start, search attributes, memo, an input of version 3: a reference to the plan, no
profile, the run's clock), and the hand-written baseline's run.

The worker that runs a journey must know its plan: the real worker compiles the project it is
given (:func:`stack.bench_project` adds the benchmark's journeys to a copy of the examples), an
in-process worker gets them from :func:`workflows.registry.register`."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from raw_workflow import RawInput
from stack import ROOT
from temporalio.client import Client, WorkflowHandle
from temporalio.common import (
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)

from language.compiler import ProjectContext
from language.templates import load_catalog
from language.validator import compile_text, validate
from workflows.broadcast_models import broadcast_message_id, occurrence_tag
from workflows.models import (
    INPUT_VERSION,
    JOURNEY_QUEUE,
    Event,
    JourneyInput,
    Profile,
    RunSettings,
    customer_hash,
    workflow_id,
)
from workflows.plan import BROADCAST_EVENT, Plan
from workflows.search import at_start

DAY_IN_SECONDS = 1 / 86_400


def project_context() -> ProjectContext:
    """The example project's config and templates, as the worker compiles with them (the
    templates tell each send which of the run's names it reads)."""
    return ProjectContext(
        config=validate((), root=ROOT).config,
        templates=load_catalog(ROOT / "templates", "templates"),
    )


def project_plans(project: Path = ROOT) -> dict[str, Plan]:
    """The plans of a project as its worker compiles them (same versions)."""
    report = validate((), root=project)
    if not report.ok:
        raise SystemExit("\n".join(p.format() for p in report.problems))
    return dict(report.plans)


def compile_journey(path: Path) -> Plan:
    plan, problems, _ = compile_text(path.read_text(), str(path), project_context())
    if plan is None or problems:
        raise SystemExit("\n".join(p.format() for p in problems))
    return plan


def profile(customer: str) -> Profile:
    return Profile(id=customer, email=f"{customer}@example.com", traits={"interests": ["laptops"]})


def trigger(plan: Plan, customer: str) -> Event:
    return Event(
        message_id=f"bench-{uuid.uuid4()}",
        event=plan.trigger.event,
        customer_id=customer,
        timestamp=datetime.now(UTC),
    )


async def start_journey(
    client: Client,
    plan: Plan,
    customer: str,
    settings: RunSettings,
    input_version: int = INPUT_VERSION,
) -> WorkflowHandle[Any, Any]:
    """Signal-with-start, as ``Router._trigger`` does it (without the entry store): the input
    names the plan by version; ``settings`` gives the queue prefix, the run's clock and whether
    the run starts with search attributes (the worker on that queue decides the rest);
    ``input_version`` 2 starts it as a router from before version 3 did."""
    event = trigger(plan, customer)
    attributes = (
        at_start(plan.journey_id, plan.version, customer_hash(customer))
        if settings.index_runs
        else None
    )
    return await client.start_workflow(
        "JourneyWorkflow",
        JourneyInput(
            input_version=input_version,
            journey_id=plan.journey_id,
            plan_version=plan.version,
            customer_id=customer,
            trigger=event,
            clock=settings.clock(),
        ),
        id=workflow_id(plan.journey_id, customer, None, None),
        task_queue=settings.queue(JOURNEY_QUEUE),
        start_signal="event",
        start_signal_args=[event],
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=attributes,
        memo={"touchpoint_entry": 1},
    )


async def start_broadcast_run(
    client: Client, plan: Plan, customer: str, occurrence: datetime, settings: RunSettings
) -> WorkflowHandle[Any, Any]:
    """One customer's run of a scheduled journey's occurrence, started as the broadcast's page
    starts it (``activities.audience``: the same input, workflow id, policies and search
    attributes) but directly: no profile page, no audience, no entry store, no pacing."""
    trigger = Event(
        message_id=broadcast_message_id(plan.journey_id, occurrence, customer),
        event=BROADCAST_EVENT,
        customer_id=customer,
        timestamp=occurrence,
    )
    attributes = (
        at_start(plan.journey_id, plan.version, customer_hash(customer))
        if settings.index_runs
        else None
    )
    return await client.start_workflow(
        "JourneyWorkflow",
        JourneyInput(
            journey_id=plan.journey_id,
            plan_version=plan.version,
            customer_id=customer,
            trigger=trigger,
            clock=settings.clock(),
        ),
        id=workflow_id(plan.journey_id, customer, None, occurrence_tag(occurrence)),
        task_queue=settings.queue(JOURNEY_QUEUE),
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        search_attributes=attributes,
    )


async def start_raw(
    client: Client,
    queue: str,
    customer: str,
    steps: Sequence[str],
    activity_queue: str | None = None,
) -> WorkflowHandle[Any, Any]:
    """The hand-written run; ``activity_queue``: its activities on a queue of their own (no
    eager dispatch), as Touchpoint's sends are."""
    return await client.start_workflow(
        "RawJourney",
        RawInput(
            customer_id=customer,
            profile=profile(customer),
            steps=list(steps),
            activity_queue=activity_queue,
        ),
        id=f"raw/{customer}",
        task_queue=queue,
    )


Starter = Callable[[str], Awaitable[WorkflowHandle[Any, Any]]]


async def run_batch(start: Starter, customers: Sequence[str], concurrency: int = 64) -> float:
    """Start a run for every customer (``concurrency`` starts in flight), wait until all have
    finished; the wall-clock seconds from the first start to the last result."""
    gate = asyncio.Semaphore(concurrency)

    async def one(customer: str) -> None:
        async with gate:
            handle = await start(customer)
        await handle.result()

    began = time.perf_counter()
    await asyncio.gather(*(one(c) for c in customers))
    return time.perf_counter() - began
