"""The stories the replay corpus holds, run on real Temporal servers: a customer held out of an
offer, an exit, an operator's cancel, an erasure, a cancel requested in Temporal,
continue-as-new between steps and inside a long wait, a provider outage of hours, and the
welcome series as a run of input version 3 (no patch markers). Runs start the way the router
starts them (input version 3 since 2026-12: a reference to the plan; the stories recorded
before were version 2 runs).

Each story checks what happened, then that its history replays against today's interpreter;
with ``RECORD_HISTORIES=1`` (``make histories``) it also stores the history in
``tests/histories`` (see ``tests/corpus.py``). The end-to-end stories of the example journeys
are recorded by ``tests/test_devserver.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.testing import WorkflowEnvironment

from activities.delivery import DeliveryActivities
from activities.email.sendgrid import SendGridProvider
from activities.http import make_client
from activities.rendering import Renderer
from config.project import SendGridSettings
from ingestion.router import Router
from language.validator import validate
from simulation.recording import RecordingActivities
from store.database import connect
from store.entries import EntryStore
from store.ledger import Ledger
from store.profiles import ProfileStore
from tests import corpus
from tests.conftest import ROOT
from tests.sendgrid_standin import SendGridStandIn
from tests.temporal import event, finish, plan_from, running_workers
from workflows.models import CancelRequest, Profile, RunResult, RunSettings, RunView
from workflows.plan import Plan
from workflows.privacy_models import erasure_cancel
from workflows.search import JOURNEY_OUTCOME

pytestmark = pytest.mark.records_history

DAY_A_SECOND = 1 / 86_400
HOUR_A_SECOND = 1 / 3_600  # a 2-day wait lasts 48 s: the test acts while the run waits
EXAMPLES = validate((), root=ROOT).plans

LONG_WAIT = plan_from("""
id: long-wait
name: A long wait for an order
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
""")
THREE_NOTES = plan_from("""
id: three-notes
name: Three notes in a row
category: transactional
trigger:
  event: Order Completed
steps:
  - id: confirm
    send: email
    template: newsletter-welcome
  - id: invoice
    send: email
    template: newsletter-welcome
  - id: tips
    send: email
    template: newsletter-recommendations
""")
WEEKLY_NEWS = plan_from("""
id: weekly-news
name: Weekly news on the newsletter topic
category: marketing
topic: newsletter
trigger:
  event: Weekly News Joined
steps:
  - id: welcome
    send: email
    template: newsletter-welcome
  - id: wait-2
    wait: 2d
  - id: news
    send: email
    template: free-shipping
""")
ORDER_NOTE = plan_from("""
id: order-note
name: One order note
category: transactional
trigger:
  event: Order Completed
steps:
  - id: confirm
    send: email
    template: newsletter-welcome
""")


@dataclass
class Shop:
    """Workers on the dev server (search attributes on, as in production) and a router."""

    client: Client
    prefix: str
    recorder: RecordingActivities
    entries: EntryStore
    plans: dict[str, Plan]

    def router(self, time_scale: float) -> Router:
        settings = RunSettings(queue_prefix=self.prefix, time_scale=time_scale)
        return Router(self.client, self.plans, self.entries, settings)

    async def start(self, router: Router, name: str, customer: str, **properties: Any) -> str:
        profile = self.recorder.profiles.setdefault(
            customer, Profile(id=customer, email=f"{customer}@example.com")
        )
        started = [
            r for r in await router.route(event(name, customer, **properties), profile)
            if r.action == "started"
        ]  # fmt: skip
        assert len(started) == 1 and started[0].workflow_id is not None, started
        return started[0].workflow_id

    async def until_step(self, workflow_id: str, step: str) -> None:
        handle = self.client.get_workflow_handle(workflow_id)
        for _ in range(600):
            view = RunView.model_validate(await handle.query("state"))
            if view.current == step and view.waiting_until is not None:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{workflow_id} never waited at {step}")

    async def result(self, workflow_id: str) -> RunResult:
        handle = self.client.get_workflow_handle(workflow_id)
        return RunResult.model_validate(await asyncio.wait_for(handle.result(), 90))


@pytest.fixture
async def workers(
    dev_env: WorkflowEnvironment, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Shop]:
    """``@pytest.mark.parametrize("workers", [{"history_limit": 40}], indirect=True)`` sets
    what the worker gives its runs."""
    deployment = getattr(request, "param", {})
    recorder = RecordingActivities()
    plans = {**EXAMPLES, **{p.journey_id: p for p in (LONG_WAIT, THREE_NOTES, WEEKLY_NEWS)}}
    async with running_workers(
        dev_env.client, recorder.all(), index_runs=True, **deployment
    ) as prefix:
        entries = EntryStore(connect(f"sqlite:///{tmp_path / 'touchpoint.db'}"))
        yield Shop(dev_env.client, prefix, recorder, entries, plans)


def customer(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def held_out_customer() -> str:
    """A customer the newsletter's ``incentive`` split puts in its 10 % control group (the
    interpreter's split: a hash of journey, step, customer and key)."""
    for n in range(1000):
        candidate = f"held-out-{uuid.uuid4().hex[:6]}-{n}"
        source = f"newsletter-welcome|incentive|{candidate}|None"
        point = int.from_bytes(hashlib.sha256(source.encode()).digest()[:8], "big") / 2**64 * 100
        if point >= 90:
            return candidate
    raise AssertionError("no customer in the control group")


async def test_a_customer_in_the_control_group_is_held_out_of_the_offer(workers: Shop) -> None:
    router = workers.router(DAY_A_SECOND)
    who = held_out_customer()
    run = await workers.start(router, "Newsletter Subscribed", who)
    result = await workers.result(run)
    assert result.outcome.kind == "completed"
    steps = [(e.step, e.kind, e.detail) for e in result.timeline]
    assert ("incentive", "split", "control (holdout)") in steps
    assert ("discount-offer", "held out", "email: first-order-discount") in steps
    assert [s.template for s in workers.recorder.sent] == [
        "newsletter-welcome",
        "newsletter-recommendations",
    ], "nothing is sent on the holdout path"
    await corpus.record(
        workers.client, run, "held-out-of-the-offer",
        "A subscriber lands in the control group of the incentive split: the offer is held "
        "out (recorded, not sent)",
        recorded_on=corpus.DEV_SERVER, plans=workers.plans.values(),
    )  # fmt: skip


async def test_a_run_of_input_version_4_takes_its_patches_and_upserts_nothing(
    workers: Shop,
) -> None:
    """The whole welcome series as the router starts it today (input version 4): every
    patched branch it passes (bounded expressions, long send retries, continue-as-new in
    waits) taken without a marker or a ``TemporalChangeVersion`` upsert, and no step, stage or
    outcome upsert either — the run keeps where it is and how it ended in the analytics store
    (``tests/test_step_index_in_store.py``). The version 3 history stays in the corpus."""
    router = workers.router(DAY_A_SECOND)
    who = customer("subscriber")
    workers.recorder.profiles[who] = Profile(
        id=who, email=f"{who}@example.com", traits={"interests": ["laptops"]}
    )
    run = await workers.start(router, "Newsletter Subscribed", who)
    result = await workers.result(run)
    assert result.outcome.kind == "completed"
    assert [s.template for s in workers.recorder.sent][:2] == [
        "newsletter-welcome",
        "newsletter-recommendations",
    ]
    history = await workers.client.get_workflow_handle(run).fetch_history()
    assert corpus.run_input(history).input_version == 4
    assert corpus.patches(history) == []
    assert corpus.upserted(history) == []
    started = history.events[0].workflow_execution_started_event_attributes
    assert set(started.search_attributes.indexed_fields) == {
        "TouchpointJourney",
        "TouchpointVersion",
        "TouchpointCustomer",
    }
    await corpus.record(
        workers.client, run, "whole-series-input-v4",
        "A subscriber interested in laptops gets the whole welcome series, started as input "
        "version 4: the patched branches taken without markers, no search-attribute upserts",
        recorded_on=corpus.DEV_SERVER, plans=workers.plans.values(),
    )  # fmt: skip


async def test_an_exit_event_ends_a_waiting_run(workers: Shop) -> None:
    router = workers.router(HOUR_A_SECOND)
    who = customer("leaver")
    run = await workers.start(router, "Newsletter Subscribed", who)
    await workers.until_step(run, "wait-2")
    await router.route(event("Newsletter Unsubscribed", who), Profile(id=who))
    result = await workers.result(run)
    assert (result.outcome.kind, result.outcome.reason) == ("exited", "unsubscribed")
    assert [s.template for s in workers.recorder.sent] == ["newsletter-welcome"]
    await corpus.record(
        workers.client, run, "unsubscribed-while-waiting",
        "A subscriber unsubscribes during the two-day wait: the exit event ends the run",
        recorded_on=corpus.DEV_SERVER, plans=workers.plans.values(),
    )  # fmt: skip


async def test_leaving_the_runs_topic_ends_it_and_leaving_another_does_not(workers: Shop) -> None:
    """The ``unsubscribed`` signal with a topic (the preferences page, a topic's one-click
    link, ``touchpoint consent``): only a run of that topic ends."""
    router = workers.router(HOUR_A_SECOND)
    run = await workers.start(router, "Weekly News Joined", customer("topic-leaver"))
    await workers.until_step(run, "wait-2")
    handle = workers.client.get_workflow_handle(run)
    other = CancelRequest(reason="preferences page", topic="recommendations", channel=None)
    await handle.signal("unsubscribed", other)
    await handle.signal(
        "unsubscribed", CancelRequest(reason="one-click", topic="newsletter", channel="email")
    )
    result = await workers.result(run)
    assert (result.outcome.kind, result.outcome.reason) == (
        "exited",
        "unsubscribed from newsletter",
    )
    assert [s.template for s in workers.recorder.sent] == ["newsletter-welcome"]
    await corpus.record(
        workers.client, run, "left-the-newsletter-topic",
        "A subscriber leaves the recommendations topic (the run goes on), then the newsletter "
        "topic on email, the only channel the journey sends it on: the run exits",
        recorded_on=corpus.DEV_SERVER, plans=workers.plans.values(),
    )  # fmt: skip


async def test_an_operator_cancels_a_waiting_run(workers: Shop) -> None:
    """``touchpoint cancel`` sends the run the ``cancel`` signal."""
    router = workers.router(HOUR_A_SECOND)
    run = await workers.start(router, "Newsletter Subscribed", customer("cancelled"))
    await workers.until_step(run, "wait-2")
    handle = workers.client.get_workflow_handle(run)
    await handle.signal("cancel", CancelRequest(reason="support ticket 42"))
    result = await workers.result(run)
    assert (result.outcome.kind, result.outcome.reason) == ("cancelled", "support ticket 42")
    await corpus.record(
        workers.client, run, "cancelled-by-an-operator",
        "An operator cancels the run during the two-day wait (touchpoint cancel)",
        recorded_on=corpus.DEV_SERVER, plans=workers.plans.values(),
    )  # fmt: skip


async def test_an_erasure_ends_a_waiting_run_as_erased(workers: Shop) -> None:
    """``touchpoint forget`` sends each running run the ``cancel`` signal flagged ``erased``
    (then deletes it; here the run is kept for the corpus): the patched branch."""
    router = workers.router(HOUR_A_SECOND)
    run = await workers.start(router, "Newsletter Subscribed", customer("erased"))
    await workers.until_step(run, "wait-2")
    handle = workers.client.get_workflow_handle(run)
    await handle.signal("cancel", erasure_cancel())
    result = await workers.result(run)
    assert (result.outcome.kind, result.outcome.reason) == ("erased", None)
    assert [s.template for s in workers.recorder.sent] == ["newsletter-welcome"]
    # input version 4: the outcome is kept in the analytics store, not upserted
    assert (await handle.describe()).typed_search_attributes.get(JOURNEY_OUTCOME) is None
    await corpus.record(
        workers.client, run, "erased-while-waiting",
        "The customer is erased (touchpoint forget) during the two-day wait: the run ends as "
        "erased and sends nothing more",
        recorded_on=corpus.DEV_SERVER, plans=workers.plans.values(),
    )  # fmt: skip


async def test_a_cancel_requested_in_temporal_cancels_the_workflow(workers: Shop) -> None:
    """Cancelling the workflow itself (Temporal UI, ``temporal workflow cancel``)."""
    router = workers.router(HOUR_A_SECOND)
    run = await workers.start(router, "Newsletter Subscribed", customer("temporal-cancel"))
    await workers.until_step(run, "wait-2")
    handle = workers.client.get_workflow_handle(run)
    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await asyncio.wait_for(handle.result(), 60)
    assert (await handle.describe()).status == WorkflowExecutionStatus.CANCELED
    await corpus.record(
        workers.client, run, "cancel-requested-in-temporal",
        "The workflow is cancelled in Temporal during the two-day wait",
        recorded_on=corpus.DEV_SERVER, plans=workers.plans.values(),
    )  # fmt: skip


@pytest.mark.parametrize("workers", [{"history_limit": 12}], indirect=True)
async def test_a_run_continues_as_new_between_steps(workers: Shop) -> None:
    router = workers.router(1.0)
    run = await workers.start(router, "Order Completed", customer("notes"), categories=[])
    result = await workers.result(run)
    assert result.outcome.kind == "completed"
    assert [s.step_id for s in workers.recorder.sent] == ["confirm", "invoice", "tips"]
    names = await corpus.record(
        workers.client, run, "continued-between-sends",
        "Three sends in a row with a history limit of 12: the run continues as new between "
        "steps and sends each message once",
        recorded_on=corpus.DEV_SERVER, plans=workers.plans.values(),
    )  # fmt: skip
    assert len(names) >= 2, "it continued as new"


@pytest.mark.parametrize("workers", [{"history_limit": 40}], indirect=True)
async def test_a_run_continues_as_new_inside_a_long_wait(workers: Shop) -> None:
    router = workers.router(1.0)
    who = customer("waiting")
    run = await workers.start(router, "Signed Up", who)
    await workers.until_step(run, "order")
    handle = workers.client.get_workflow_handle(run)
    first = (await handle.describe()).run_id
    for n in range(200):  # events the run does not wait for, each one history
        await handle.signal("event", event("Page Viewed", who, n=n))
        if (await handle.describe()).run_id != first:
            break
    else:
        raise AssertionError("the run never continued as new")
    await workers.until_step(run, "order")
    await router.route(event("Order Completed", who), Profile(id=who))
    result = await workers.result(run)
    assert [(e.step, e.kind) for e in result.timeline] == [("order", "event"), ("thanks", "sent")]
    names = await corpus.record(
        workers.client, run, "many-events-while-waiting",
        "Events the run does not wait for pile up during a 30-day wait (history limit 40): it "
        "continues as new inside the wait, then the order arrives",
        recorded_on=corpus.DEV_SERVER, plans=workers.plans.values(),
    )  # fmt: skip
    assert len(names) == 2


async def test_a_provider_outage_of_hours_is_retried_until_it_ends(
    time_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """On the time-skipping server: SendGrid answers 503 twenty times (about two hours of
    backoff; the old policy gave up after ten attempts), then accepts the message."""
    config = validate((), root=ROOT).config
    engine = connect(f"sqlite:///{tmp_path / 'touchpoint.db'}")
    ProfileStore(engine).upsert("outage-customer", {"email": "outage@example.com"})
    with SendGridStandIn() as sendgrid:
        for _ in range(20):
            sendgrid.answer(503, {"errors": [{"message": "try later"}]})
        delivery = DeliveryActivities(
            config=config,
            ledger=Ledger(engine),
            renderer=Renderer.for_project(ROOT, config),
            email=SendGridProvider(SendGridSettings(host=sendgrid.url, timeout="2s"), "SG.k"),
            http=make_client(),
            environ={},
        )
        async with running_workers(time_env.client, delivery.all()) as prefix:
            router = Router(
                time_env.client,
                {ORDER_NOTE.journey_id: ORDER_NOTE},
                EntryStore(engine),
                RunSettings(queue_prefix=prefix, index_runs=False),
            )
            [routed] = await router.route(
                event("Order Completed", "outage-customer"), Profile(id="outage-customer")
            )
            assert routed.workflow_id is not None
            handle = time_env.client.get_workflow_handle(routed.workflow_id)
            result = await finish(time_env, routed.workflow_id)  # skips the backoff
            assert [(e.step, e.kind) for e in result.timeline] == [("confirm", "sent")]
            assert len(sendgrid.requests) == 21, "20 refusals, then once"
            history = await handle.fetch_history()
            [started] = corpus.events_of(history, EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED)
            assert started.activity_task_started_event_attributes.attempt == 21
            await corpus.record(
                time_env.client, routed.workflow_id, "provider-down-for-hours",
                "SendGrid answers 503 twenty times (about two hours of backoff), then accepts: "
                "the send is retried past the old ten-attempt limit and sent once",
                recorded_on=corpus.TIME_SKIPPING, plans=[ORDER_NOTE],
            )  # fmt: skip


async def test_a_corrected_warranty_date_moves_the_reminder(
    time_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """On the time-skipping server: the same laptop's ``Laptop Delivered`` again, with a later
    warranty end, moves the run's wait for the date (patch ``date-follows-trigger``); the
    reminder goes out 30 days before the corrected date and reads it."""
    plan = EXAMPLES["warranty-reminder"]
    recorder = RecordingActivities()
    engine = connect(f"sqlite:///{tmp_path / 'touchpoint.db'}")
    async with running_workers(time_env.client, recorder.all()) as prefix:
        router = Router(
            time_env.client,
            {plan.journey_id: plan},
            EntryStore(engine),
            RunSettings(queue_prefix=prefix, index_runs=False),
        )
        today = (await time_env.get_current_time()).date()
        dates = [(today + timedelta(days=days)).isoformat() for days in (60, 80)]
        profile = Profile(id="warranty-owner", timezone="Europe/Berlin")
        for warranty_ends in dates:
            delivered = event(
                "Laptop Delivered", "warranty-owner", order_id="O-7", warranty_ends=warranty_ends
            )
            [routed] = await router.route(delivered, profile)
        assert (routed.action, routed.reason) == ("signalled", "a run is already active")
        result = await finish(time_env, routed.workflow_id)
        assert [(e.step, e.kind) for e in result.timeline] == [
            ("_date", "moved"),
            ("_date", "waited"),
            ("reminder", "sent"),
        ]
        [message] = recorder.sent
        assert message.context["event"]["properties"]["warranty_ends"] == dates[1]
        assert routed.workflow_id is not None
        await corpus.record(
            time_env.client, routed.workflow_id, "warranty-date-corrected",
            "The same laptop's delivery again with a warranty end 20 days later: the run's "
            "wait for the date moves, the reminder goes out 30 days before the new date",
            recorded_on=corpus.TIME_SKIPPING, plans=[plan],
        )  # fmt: skip
