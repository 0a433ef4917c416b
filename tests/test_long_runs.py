"""Runs that live long: a provider outage far longer than the old ten attempts (~17 minutes) is
waited out and every message is sent once; a long wait that receives many events continues as
new from inside the wait and keeps its deadline; a payload from a newer version decodes, and
an input version this worker does not know is left for a newer worker. On the time-skipping
server, with the real delivery activity and the SendGrid stand-in."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from activities.delivery import DeliveryActivities
from activities.email.sendgrid import SendGridProvider
from activities.http import make_client
from activities.rendering import Renderer
from config.project import SendGridSettings
from language.validator import validate
from ops.operations import retrying
from simulation.recording import RecordingActivities
from store.database import connect
from store.ledger import Ledger
from tests.conftest import ROOT
from tests.sendgrid_standin import SendGridStandIn
from tests.temporal import event, plan_from, running_workers, start_run
from workflows.models import INPUT_VERSION, JourneyInput, RunResult, RunView

NOTE = """
id: note-{tag}
name: One note
category: transactional
trigger:
  event: Order Completed
steps:
  - id: confirm
    send: email
    template: newsletter-welcome
"""
WAITING = """
id: waiting-{tag}
name: A long wait
category: marketing
trigger:
  event: Signed Up
steps:
  - id: order
    wait_for: Order Completed
    timeout: 30d
    on_timeout: end
  - id: thanks
    send: email
    template: newsletter-welcome
"""


def tag() -> str:
    return uuid.uuid4().hex[:8]


async def test_a_provider_outage_of_hours_is_waited_out_and_sends_once(
    time_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """SendGrid answers 503 for 25 attempts (~3 hours of backoff, capped at 10 minutes) — the
    old policy gave up after 10. Then it recovers: one email, one ledger row, and while it was
    down ``touchpoint show`` said what was going on."""
    config = validate((), root=ROOT).config
    with SendGridStandIn() as sendgrid:
        for _ in range(25):
            sendgrid.answer(503, {"errors": [{"message": "try later"}]})
        delivery = DeliveryActivities(
            config=config,
            ledger=Ledger(connect(f"sqlite:///{tmp_path / 'touchpoint.db'}")),
            renderer=Renderer.for_project(ROOT, config),
            email=SendGridProvider(SendGridSettings(host=sendgrid.url, timeout="2s"), "SG.k"),
            http=make_client(),
            environ={},
        )
        async with running_workers(time_env.client, delivery.all()) as prefix:
            handle = await start_run(
                time_env.client, plan_from(NOTE.replace("{tag}", tag())), prefix,
                event("Order Completed"), workflow_id=f"outage-{uuid.uuid4()}",
            )  # fmt: skip
            while len(sendgrid.requests) < 3:
                await asyncio.sleep(0.05)
            view = RunView.model_validate(await handle.query("state"))
            [line] = retrying(await handle.describe(), view)
            assert line.startswith("retrying send_email since ")
            assert ", attempt " in line and "last error: provider error 503" in line
            result = RunResult.model_validate(await handle.result())
    assert result.outcome.kind == "completed"
    [confirm] = [e for e in result.timeline if e.step == "confirm"]
    assert confirm.kind == "sent"
    assert len(sendgrid.requests) == 26, "25 refusals, then once"
    [row] = delivery.ledger.list()
    assert (row.status, row.attempts) == ("sent", 26)


async def test_a_long_wait_that_receives_many_events_continues_as_new_and_keeps_its_deadline(
    time_env: WorkflowEnvironment,
) -> None:
    recorder = RecordingActivities()
    async with running_workers(time_env.client, recorder.all(), history_limit=60) as prefix:
        handle = await start_run(
            time_env.client, plan_from(WAITING.replace("{tag}", tag())), prefix,
            event("Signed Up"), workflow_id=f"waiting-{uuid.uuid4()}",
        )  # fmt: skip
        started = await handle.describe()
        for n in range(80):  # each signal is history; none is the event waited for
            await handle.signal("event", event("Page Viewed", n=n))
        await time_env.sleep(timedelta(days=10))
        result = RunResult.model_validate(await handle.result())
        described = await handle.describe()
    assert described.run_id != started.run_id, "it continued as new while waiting"
    assert result.outcome.kind == "completed" and recorder.sent == []
    [timed_out] = [e for e in result.timeline if e.step == "order"]
    assert timed_out.kind == "timeout"
    waited = timed_out.at - started.start_time
    assert timedelta(days=30) <= waited < timedelta(days=30, hours=1), "the first deadline held"
    history = await handle.fetch_history()
    assert len(history.events) < 60 + 10, "each run stayed under its limit"


def test_a_payload_from_a_newer_version_decodes() -> None:
    """Rolling deploys: a newer worker or router wrote fields this version does not know."""
    plan = plan_from(NOTE.replace("{tag}", "newer"))
    document = {
        "input_version": 2,
        "journey_id": plan.journey_id,
        "plan_version": plan.version,
        "plan": {
            **plan.model_dump(mode="json"),
            "audience": "everyone",  # a future plan field
            "nodes": {
                node_id: {**node, "policy": {"max": "3d"}}  # a future node field
                for node_id, node in plan.model_dump(mode="json")["nodes"].items()
            },
        },
        "customer_id": "max",
        "trigger": event("Order Completed").model_dump(mode="json"),
        "clock": {"time_scale": 1, "clock_offset_seconds": 0, "calendar": "gregorian"},
        "tenant": "eu-1",  # a future input field
    }
    decoded = JourneyInput.model_validate(document)
    assert decoded.plan == plan and decoded.customer_id == "max"


async def test_an_input_newer_than_this_worker_is_left_for_a_newer_worker(
    dev_env: WorkflowEnvironment,
) -> None:
    """On the real dev server: the workflow task fails (and would be retried, by a newer worker
    too); the run itself does not fail."""
    plan = plan_from(NOTE.replace("{tag}", tag()))
    async with running_workers(dev_env.client, RecordingActivities().all()) as prefix:
        run_input = JourneyInput(
            input_version=INPUT_VERSION + 1,
            plan=plan,
            customer_id="max",
            trigger=event("Order Completed"),
        )
        handle = await dev_env.client.start_workflow(
            "JourneyWorkflow",
            run_input,
            id=f"newer-{uuid.uuid4()}",
            task_queue=f"{prefix}touchpoint-journeys",
        )
        for _ in range(100):
            kinds = [e.event_type async for e in handle.fetch_history_events()]
            if EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED in kinds:
                break
            await asyncio.sleep(0.05)
        description = await handle.describe()
        await handle.terminate("test done")
    assert EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED in kinds
    assert description.status == WorkflowExecutionStatus.RUNNING, "not failed: left to retry"
