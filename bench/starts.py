"""Starting runs for benchmarks: a Touchpoint run exactly as the router starts it
(signal-with-start, search attributes, memo), and the hand-written baseline's run."""

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
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
)

from language.compiler import ProjectContext
from language.validator import compile_text, validate
from workflows.models import (
    JOURNEY_QUEUE,
    Event,
    JourneyInput,
    Profile,
    RunSettings,
    customer_hash,
)
from workflows.plan import Plan
from workflows.search import CUSTOMER, JOURNEY_ID, JOURNEY_STEP, JOURNEY_VERSION

DAY_IN_SECONDS = 1 / 86_400


def project_context() -> ProjectContext:
    return ProjectContext(config=validate((), root=ROOT).config)


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
    client: Client, plan: Plan, customer: str, settings: RunSettings
) -> WorkflowHandle[Any, Any]:
    """Signal-with-start, as ``Router._trigger`` does it (without the entry store)."""
    event = trigger(plan, customer)
    attributes = None
    if settings.index_runs:
        attributes = TypedSearchAttributes(
            [
                SearchAttributePair(JOURNEY_ID, plan.journey_id),
                SearchAttributePair(JOURNEY_VERSION, plan.version),
                SearchAttributePair(CUSTOMER, customer_hash(customer)),
                SearchAttributePair(JOURNEY_STEP, plan.start),
            ]
        )
    return await client.start_workflow(
        "JourneyWorkflow",
        JourneyInput(
            plan=plan,
            customer_id=customer,
            trigger=event,
            profile=profile(customer),
            settings=settings,
        ),
        id=f"journey/{plan.journey_id}/{customer}",
        task_queue=settings.queue(JOURNEY_QUEUE),
        start_signal="event",
        start_signal_args=[event],
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=attributes,
        memo={"touchpoint_entry": 1},
    )


async def start_raw(
    client: Client, queue: str, customer: str, steps: Sequence[str]
) -> WorkflowHandle[Any, Any]:
    return await client.start_workflow(
        "RawJourney",
        RawInput(customer_id=customer, profile=profile(customer), steps=list(steps)),
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
