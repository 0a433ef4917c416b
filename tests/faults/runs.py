"""Starting journey runs for a fault test's project and reading back what they did."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.client import Client, WorkflowHandle

from language.validator import validate
from store.ledger import Delivery
from tests.faults.stack import WorkerProcess, ledger_of
from tests.temporal import event, start_run
from workflows.models import Profile, RunResult, RunSettings
from workflows.plan import Plan

Handle = WorkflowHandle[Any, Any]


def plan_of(project: Path, journey_id: str) -> Plan:
    """The compiled plan, exactly as the worker and the router of ``project`` see it."""
    report = validate((), root=project)
    assert report.ok, [p.format() for p in report.problems]
    return report.plans[journey_id]


async def start_runs(
    client: Client, plan: Plan, prefix: str, count: int, trigger: str = "Fault Started"
) -> list[Handle]:
    """``count`` runs of ``plan``, one per customer ``c0`` … (each with an email address)."""
    settings = RunSettings(queue_prefix=prefix, index_runs=False)

    async def one(number: int) -> Handle:
        customer = f"c{number}"
        profile = Profile(id=customer, email=f"{customer}@faults.example")
        return await start_run(
            client,
            plan,
            prefix,
            event(trigger, customer=customer),
            profile=profile,
            settings=settings,
        )

    return list(await asyncio.gather(*(one(n) for n in range(count))))


async def results_of(handles: Sequence[Handle], seconds: float) -> list[RunResult]:
    """Every run's result, waiting at most ``seconds`` for all of them together."""
    raw = await asyncio.wait_for(asyncio.gather(*(h.result() for h in handles)), seconds)
    return [RunResult.model_validate(result) for result in raw]


async def finished(handles: Sequence[Handle]) -> int:
    """How many of the runs have closed."""
    descriptions = await asyncio.gather(*(h.describe() for h in handles))
    return sum(1 for d in descriptions if d.close_time is not None)


@dataclass(frozen=True)
class ActivityStart:
    """One attempt of an activity, as the run's history recorded it."""

    workflow_id: str
    identity: str
    attempt: int


async def activity_starts(handles: Sequence[Handle]) -> list[ActivityStart]:
    """The started attempts of every activity of the runs (only completed or failed attempts
    are in a history: Temporal writes the start event when the attempt ends)."""
    starts = []
    for handle in handles:
        history = await handle.fetch_history()
        for history_event in history.events:
            if history_event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                attributes = history_event.activity_task_started_event_attributes
                starts.append(ActivityStart(handle.id, attributes.identity, attributes.attempt))
    return starts


async def activities_in_flight(handles: Sequence[Handle]) -> int:
    """Activities a worker has taken and not yet finished, by Temporal's account."""
    descriptions = await asyncio.gather(*(h.describe() for h in handles))
    return sum(
        1
        for d in descriptions
        for pending in d.raw_description.pending_activities
        if pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
    )


async def kill_mid_send(
    worker: WorkerProcess,
    project: Path,
    messages: int,
    *,
    claimed: bool,
    held: Callable[[], Awaitable[object]] | None = None,
    seconds: float = 60,
    poll: float = 0.005,
) -> list[Delivery]:
    """``kill -9`` the worker at a moment when some of the ``messages`` are sent (a quarter or
    more, not all), and (``claimed``) at least one is claimed in the ledger, or (not
    ``claimed``) none is; with ``held``, only while it answers something true (e.g. Temporal
    says the worker holds activities). The worker is frozen (SIGSTOP) while the ledger is read,
    so the ledger returned is the one it died with."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sent = sum(1 for row in await asyncio.to_thread(ledger_of, project) if row.status == "sent")
        if messages // 4 <= sent < messages:
            worker.send(signal.SIGSTOP)
            rows = await asyncio.to_thread(ledger_of, project)
            pending = any(row.status == "pending" for row in rows)
            if pending == claimed and (held is None or await held()):
                worker.kill()
                return rows
            worker.send(signal.SIGCONT)
        await asyncio.sleep(poll)
    raise AssertionError("never caught the worker mid-send")


async def activities_held_by(client: Client, identity: str) -> list[str]:
    """The open runs (as visibility lists them) with an activity that the worker
    ``identity`` has taken and not finished, by Temporal's account."""
    running = [run.id async for run in client.list_workflows("ExecutionStatus = 'Running'")]
    descriptions = await asyncio.gather(
        *(client.get_workflow_handle(run).describe() for run in running)
    )
    return [
        d.id
        for d in descriptions
        if any(
            pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
            and pending.last_worker_identity == identity
            for pending in d.raw_description.pending_activities
        )
    ]
