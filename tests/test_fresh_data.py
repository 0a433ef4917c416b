"""A run sees fresh data and carries little: started by the router with a reference to its plan
and no profile, it sends to the address the customer has *now*, branches on the traits they
have *now*, and keeps their personal data out of its history (on the time-skipping server,
with the real router, delivery activity and store)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.delivery import DeliveryActivities
from activities.email.maildir import MaildirProvider, list_messages
from activities.http import make_client
from activities.rendering import Renderer
from ingestion.router import Router
from language.validator import validate
from store.database import connect
from store.entries import EntryStore
from store.ledger import Ledger
from store.plans import PlanStore
from store.profiles import ProfileStore
from tests.conftest import ROOT
from tests.temporal import event, finish, plan_from, running_workers
from workflows import registry
from workflows.models import JourneyInput, RunResult, RunSettings, RunView

TWO_SENDS = """
id: fresh-{tag}
name: Fresh data
category: transactional
trigger:
  event: Signed Up
steps:
  - id: first
    send: email
    template: newsletter-welcome
  - wait: 2d
  - id: vip-check
    branch:
      - if: profile.traits.vip | default(false)
        goto: vip
  - id: second
    send: email
    template: newsletter-welcome
  - end
  - id: vip
    send: email
    template: newsletter-recommendations
"""


@dataclass
class Shop:
    env: WorkflowEnvironment
    router: Router
    profiles: ProfileStore
    delivery: DeliveryActivities
    outbox: Path


@pytest.fixture
async def shop(time_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Shop]:
    engine = connect(f"sqlite:///{tmp_path / 'touchpoint.db'}")
    config = validate((), root=ROOT).config
    delivery = DeliveryActivities(
        config=config,
        ledger=Ledger(engine),
        renderer=Renderer.for_project(ROOT, config),
        email=MaildirProvider(tmp_path / "outbox"),
        http=make_client(),
        environ={},
    )
    plan = plan_from(TWO_SENDS.replace("{tag}", uuid.uuid4().hex[:8]))
    async with running_workers(time_env.client, delivery.all()) as prefix:
        router = Router(
            time_env.client,
            {plan.journey_id: plan},
            EntryStore(engine),
            RunSettings(queue_prefix=prefix, index_runs=False),
        )
        yield Shop(time_env, router, ProfileStore(engine), delivery, tmp_path / "outbox")


async def start(shop: Shop, customer: str) -> WorkflowHandle:
    [routed] = await shop.router.route(
        event("Signed Up", customer=customer),
        shop.profiles.get(customer),  # type: ignore[arg-type]
    )
    assert routed.action == "started" and routed.workflow_id is not None
    return shop.env.client.get_workflow_handle(routed.workflow_id)


async def until_waiting(shop: Shop, handle: WorkflowHandle) -> None:
    for _ in range(200):
        view = RunView.model_validate(await handle.query("state"))
        if view.waiting_until is not None:
            return
        await shop.env.sleep(timedelta(seconds=1))
    raise AssertionError("the run never waited")


async def test_a_new_address_between_two_sends_gets_the_second(shop: Shop) -> None:
    shop.profiles.upsert("max", {"email": "max@old.example"})
    handle = await start(shop, "max")
    await until_waiting(shop, handle)
    shop.profiles.upsert("max", {"email": "max@new.example"})
    result = await finish(shop.env, handle.id)
    sent = [e for e in result.timeline if e.kind == "sent"]
    assert [(e.step, e.to) for e in sent] == [
        ("first", "max@old.example"),
        ("second", "max@new.example"),
    ]
    assert sorted(m.to for m in list_messages(shop.outbox)) == [
        "max@new.example",
        "max@old.example",
    ]


async def test_a_trait_change_flips_a_later_branch(shop: Shop) -> None:
    shop.profiles.upsert("erika", {"email": "erika@example.com"})
    handle = await start(shop, "erika")
    await until_waiting(shop, handle)
    shop.profiles.upsert("erika", {"vip": True})  # she became a VIP during the wait
    result = await finish(shop.env, handle.id)
    assert [e.step for e in result.timeline if e.kind == "sent"] == ["first", "vip"]


async def test_the_run_carries_a_reference_and_no_personal_data(shop: Shop) -> None:
    shop.profiles.upsert("jo", {"email": "jo.private@example.com", "first_name": "Johanna"})
    handle = await start(shop, "jo")
    await finish(shop.env, handle.id)
    history = await handle.fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    [run_input] = await pydantic_data_converter.decode(started.input.payloads, [JourneyInput])
    assert isinstance(run_input, JourneyInput)
    assert run_input.plan is None and run_input.profile is None and run_input.plan_version
    assert len(started.input.payloads[0].data) < 1024, "under 1 KB"
    scheduled = [
        e.activity_task_scheduled_event_attributes
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert len(scheduled) == 2  # the two sends
    for send in scheduled:  # no address, no name in what the run sends its activities
        data = b"".join(p.data for p in send.input.payloads)
        assert b"jo.private@example.com" not in data and b"Johanna" not in data


async def test_a_plan_version_the_worker_did_not_compile_is_loaded_from_the_store(
    time_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """A newer API process deployed a journey this worker never compiled: the run waits (its
    workflow task fails) until the worker has fetched the version from the store."""
    import asyncio

    from ops.workers import fetch_missing_plans
    from simulation.recording import RecordingActivities

    engine = connect(f"sqlite:///{tmp_path / 'touchpoint.db'}")
    plan = plan_from(TWO_SENDS.replace("{tag}", "published").replace("wait: 2d", "wait: 1h"))
    PlanStore(engine).publish([plan])
    stop = asyncio.Event()
    fetcher = asyncio.create_task(fetch_missing_plans(PlanStore(engine), stop))
    try:
        async with running_workers(time_env.client, RecordingActivities().all()) as prefix:
            registry._plans.pop(plan.version, None)  # this worker has not seen it
            run_input = JourneyInput(
                journey_id=plan.journey_id,
                plan_version=plan.version,
                customer_id="late",
                trigger=event("Signed Up", customer="late"),
            )
            handle = await time_env.client.start_workflow(
                "JourneyWorkflow",
                run_input,
                id=f"late-{uuid.uuid4()}",
                task_queue=f"{prefix}touchpoint-journeys",
            )
            result = RunResult.model_validate(await handle.result())
    finally:
        stop.set()
        await fetcher
    assert result.outcome.kind == "completed"
    assert registry.plan(plan.journey_id, plan.version) == plan
