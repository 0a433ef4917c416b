"""The router on the time-skipping server: triggers, listeners, keys and re-entry policies."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import (
    Client,
    Interceptor,
    OutboundInterceptor,
    StartWorkflowInput,
    WorkflowHandle,
)
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from ingestion.router import Router
from simulation.recording import RecordingActivities
from store.database import connect
from store.entries import EntryStore
from tests.temporal import event, finish, plan_from, running_workers
from workflows.models import Profile, RunSettings

MAX = Profile(id="max-1", email="max@example.com", traits={"vip": True})


def journey(
    entry: str,
    steps: str = "  - wait: 2d\n  - send: email\n    template: apology\n",
    extra: str = "",
) -> str:
    return f"""
id: reentry
name: Re-entry
category: marketing
trigger:
  event: Signed Up
entry:
{entry}
{extra}
steps:
{steps}"""


@pytest.fixture
def entries(tmp_path: Path) -> EntryStore:
    return EntryStore(connect(f"sqlite:///{tmp_path / 'touchpoint.db'}"))


def make_router(env: WorkflowEnvironment, prefix: str, entries: EntryStore, *texts: str) -> Router:
    plans = {plan.journey_id: plan for plan in map(plan_from, texts)}
    settings = RunSettings(queue_prefix=prefix, index_runs=False, default_timezone="Europe/Berlin")
    return Router(env.client, plans, entries, settings, clock=env.get_current_time)


async def test_one_at_a_time_starts_no_second_run_while_one_is_active(
    time_env: WorkflowEnvironment, entries: EntryStore
) -> None:
    recorder = RecordingActivities()
    async with running_workers(time_env.client, recorder.all()) as prefix:
        router = make_router(time_env, prefix, entries, journey("  reentry: one_at_a_time"))
        [first] = await router.route(event("Signed Up", customer="max-1"), MAX)
        [second] = await router.route(event("Signed Up", customer="max-1"), MAX)
        await finish(time_env, first.workflow_id)
        [third] = await router.route(event("Signed Up", customer="max-1"), MAX)
        await finish(time_env, third.workflow_id)
    assert (first.action, second.action, third.action) == ("started", "signalled", "started")
    assert first.workflow_id == second.workflow_id == third.workflow_id
    assert len(recorder.sent) == 2
    assert "max" not in (first.workflow_id or "") and "@" not in (first.workflow_id or "")


async def test_every_time_runs_side_by_side(
    time_env: WorkflowEnvironment, entries: EntryStore
) -> None:
    recorder = RecordingActivities()
    async with running_workers(time_env.client, recorder.all()) as prefix:
        router = make_router(time_env, prefix, entries, journey("  reentry: every_time"))
        [first] = await router.route(event("Signed Up", customer="max-1"), MAX)
        [second] = await router.route(event("Signed Up", customer="max-1"), MAX)
        await finish(time_env, first.workflow_id)
        await finish(time_env, second.workflow_id)
    assert (first.action, second.action) == ("started", "started")
    assert first.workflow_id != second.workflow_id
    assert len({m.message_id for m in recorder.sent}) == 2


async def test_once_means_once_ever_even_for_a_new_router(
    time_env: WorkflowEnvironment, entries: EntryStore, tmp_path: Path
) -> None:
    async with running_workers(time_env.client, RecordingActivities().all()) as prefix:
        router = make_router(time_env, prefix, entries, journey("  reentry: once"))
        [first] = await router.route(event("Signed Up", customer="max-1"), MAX)
        await finish(time_env, first.workflow_id)
        reopened = EntryStore(connect(f"sqlite:///{tmp_path / 'touchpoint.db'}"))
        [again] = await make_router(time_env, prefix, reopened, journey("  reentry: once")).route(
            event("Signed Up", customer="max-1"), MAX
        )
        [other] = await router.route(event("Signed Up", customer="erika-2"), Profile(id="erika-2"))
        await finish(time_env, other.workflow_id)
    assert first.action == "started"
    assert (again.action, again.reason) == ("skipped", "already entered once")
    assert other.action == "started"


async def test_a_cooldown_blocks_re_entry_until_it_has_passed(
    time_env: WorkflowEnvironment, entries: EntryStore
) -> None:
    text = journey("  reentry: one_at_a_time\n  after: 10d", steps="  - wait: 1d\n")
    async with running_workers(time_env.client, RecordingActivities().all()) as prefix:
        router = make_router(time_env, prefix, entries, text)
        [first] = await router.route(event("Signed Up", customer="max-1"), MAX)
        await finish(time_env, first.workflow_id)
        [blocked] = await router.route(event("Signed Up", customer="max-1"), MAX)
        await time_env.sleep(timedelta(days=10))
        [later] = await router.route(event("Signed Up", customer="max-1"), MAX)
        await finish(time_env, later.workflow_id)
    assert (blocked.action, blocked.reason) == ("skipped", "within the re-entry cooldown")
    assert later.action == "started"


async def test_trigger_and_entry_conditions_are_checked_before_starting(
    time_env: WorkflowEnvironment, entries: EntryStore
) -> None:
    text = """
id: laptops
name: Laptops
category: marketing
trigger:
  event: Product Category Viewed
  if: event.properties.category == "laptops"
entry:
  if: profile.traits.vip | default(false)
steps:
  - wait: 1h
"""
    async with running_workers(time_env.client, RecordingActivities().all()) as prefix:
        router = make_router(time_env, prefix, entries, text)
        [phones] = await router.route(
            event("Product Category Viewed", customer="max-1", category="phones"), MAX
        )
        [not_vip] = await router.route(
            event("Product Category Viewed", customer="erika-2", category="laptops"),
            Profile(id="erika-2"),
        )
        [vip] = await router.route(
            event("Product Category Viewed", customer="max-1", category="laptops"), MAX
        )
        await finish(time_env, vip.workflow_id)
    assert (phones.action, phones.reason) == ("skipped", "trigger condition is false")
    assert (not_vip.action, not_vip.reason) == ("skipped", "entry condition is false")
    assert vip.action == "started"


KEYED = """
id: orders
name: One run per order
category: transactional
trigger:
  event: Order Completed
  key: event.properties.order_id
entry:
  reentry: every_time
exit_when:
  - event: Order Refunded
    key: event.properties.order_id
    reason: refunded
steps:
  - id: delivered
    wait_for: Order Delivered
    key: event.properties.order_id
    timeout: 14d
    on_timeout: end
  - send: email
    template: laptop-setup
"""


async def test_two_orders_run_side_by_side_and_events_reach_only_their_run(
    time_env: WorkflowEnvironment, entries: EntryStore
) -> None:
    recorder = RecordingActivities()
    text = KEYED.replace("  reentry: every_time", "  reentry: one_at_a_time")
    async with running_workers(time_env.client, recorder.all()) as prefix:
        router = make_router(time_env, prefix, entries, text)
        [a] = await router.route(event("Order Completed", customer="max-1", order_id="A-1"), MAX)
        [b] = await router.route(event("Order Completed", customer="max-1", order_id=2), MAX)
        [delivered] = await router.route(
            event("Order Delivered", customer="max-1", order_id="A-1"), MAX
        )
        [refunded] = await router.route(
            event("Order Refunded", customer="max-1", order_id="2"), MAX
        )
        [stray] = await router.route(
            event("Order Delivered", customer="max-1", order_id="C-3"), MAX
        )
        result_a, result_b = (
            await finish(time_env, a.workflow_id),
            await finish(time_env, b.workflow_id),
        )
    assert a.action == b.action == "started" and a.workflow_id != b.workflow_id
    assert (delivered.action, delivered.workflow_id) == ("signalled", a.workflow_id)
    assert (refunded.action, refunded.workflow_id) == ("signalled", b.workflow_id)
    assert stray.action == "not_running", "an event for no running run is a normal no-op"
    assert result_a.outcome.kind == "completed"
    assert (result_b.outcome.kind, result_b.outcome.reason) == ("exited", "refunded")
    assert [m.template for m in recorder.sent] == ["laptop-setup"]


async def test_a_trigger_without_its_key_starts_nothing(
    time_env: WorkflowEnvironment, entries: EntryStore
) -> None:
    async with running_workers(time_env.client, RecordingActivities().all()) as prefix:
        router = make_router(time_env, prefix, entries, KEYED)
        [routed] = await router.route(event("Order Completed", customer="max-1"), MAX)
    assert (routed.action, routed.reason) == ("skipped", "the event has no correlation key")


def test_the_index_knows_triggers_and_listeners(entries: EntryStore) -> None:
    router = Router(
        client=None,
        plans={"orders": plan_from(KEYED)},
        entries=entries,  # type: ignore[arg-type]
        settings=RunSettings(),
    )
    assert router.routes_for("Order Completed") == (["orders"], [])
    assert router.routes_for("Order Delivered") == ([], ["orders"])
    assert router.routes_for("Order Refunded") == ([], ["orders"])
    assert router.routes_for("Page Viewed") == ([], [])


async def test_a_redelivered_event_never_starts_a_second_every_time_run(
    time_env: WorkflowEnvironment, entries: EntryStore
) -> None:
    recorder = RecordingActivities()
    async with running_workers(time_env.client, recorder.all()) as prefix:
        router = make_router(time_env, prefix, entries, journey("  reentry: every_time"))
        signed_up = event("Signed Up", customer="max-1")
        [first] = await router.route(signed_up, MAX)
        [during] = await router.route(signed_up, MAX)  # at-least-once delivery, run still going
        await finish(time_env, first.workflow_id)
        [after] = await router.route(signed_up, MAX)  # and again after it ended
    assert first.action == "started"
    assert (during.action, during.workflow_id) == ("signalled", first.workflow_id)
    assert (after.action, after.reason) == ("skipped", "this event already started a run")
    assert len(recorder.sent) == 1


async def test_two_routers_racing_on_a_once_journey_start_one_run(
    time_env: WorkflowEnvironment, entries: EntryStore, tmp_path: Path
) -> None:
    import asyncio

    text = journey("  reentry: once", steps="  - wait: 1d\n")
    async with running_workers(time_env.client, RecordingActivities().all()) as prefix:
        other_store = EntryStore(connect(f"sqlite:///{tmp_path / 'touchpoint.db'}"))
        first, second = (
            make_router(time_env, prefix, entries, text),
            make_router(time_env, prefix, other_store, text),
        )
        results = await asyncio.gather(
            *(
                router.route(event("Signed Up", customer="max-1"), MAX)
                for router in (first, second, first, second)
            )
        )
        actions = sorted(r.action for [r] in results)
        [started] = [r for [r] in results if r.action == "started"]
        await finish(time_env, started.workflow_id)
        [later] = await first.route(event("Signed Up", customer="max-1"), MAX)
    assert actions.count("started") == 1, actions
    assert (later.action, later.reason) == ("skipped", "already entered once")
    assert entries.record("reentry", _subject("max-1")).entered == 1


class LosesTheFirstAnswer(Interceptor):
    """The server starts the run; the router hears a timeout (as under load, at the API)."""

    def __init__(self) -> None:
        self.lost = 0

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        interceptor = self

        class Outbound(OutboundInterceptor):
            async def start_workflow(self, input: StartWorkflowInput) -> WorkflowHandle[Any, Any]:
                handle = await super().start_workflow(input)
                if interceptor.lost == 0:
                    interceptor.lost += 1
                    raise RPCError(
                        "context deadline exceeded", RPCStatusCode.DEADLINE_EXCEEDED, b""
                    )
                return handle

        return Outbound(next)


async def test_a_start_whose_answer_was_lost_keeps_its_claim_and_the_retry_starts_nothing(
    time_env: WorkflowEnvironment, entries: EntryStore
) -> None:
    """Under load, signal-with-start can time out at the API after Temporal started the run.
    Giving the entry back then would let the sender's retry start (and send) a second time once
    the one-send run ended: the router sees its own run by the entry number in its memo."""
    recorder = RecordingActivities()
    text = journey("  reentry: once", steps="  - send: email\n    template: apology\n")
    lossy = LosesTheFirstAnswer()
    client = Client(**{**time_env.client.config(), "interceptors": [lossy]})
    async with running_workers(time_env.client, recorder.all()) as prefix:
        router = make_router(time_env, prefix, entries, text)
        router.client = client
        signed_up = event("Signed Up", customer="lost-1")  # a workflow id no other test uses
        [first] = await router.route(signed_up, Profile(id="lost-1", email="l@example.com"))
        await finish(time_env, first.workflow_id)
        [retry] = await router.route(signed_up, Profile(id="lost-1", email="l@example.com"))
    assert lossy.lost == 1
    assert first.action == "started"
    assert (retry.action, retry.reason) == ("skipped", "already entered once")
    assert len(recorder.sent) == 1
    assert entries.record("reentry", _subject("lost-1")).entered == 1


def _subject(customer: str) -> str:
    from workflows.models import customer_hash

    return customer_hash(customer)


async def test_keyed_every_time_runs_are_reached_by_id_at_once(
    time_env: WorkflowEnvironment, entries: EntryStore
) -> None:
    """The example post-purchase journey: every order its own run, and the delivery event that
    follows a moment later reaches it by id (no search index involved: this server has none)."""
    recorder = RecordingActivities()
    async with running_workers(time_env.client, recorder.all()) as prefix:
        router = make_router(time_env, prefix, entries, KEYED)
        completed = event("Order Completed", customer="ada-7", order_id="K-1")
        [started] = await router.route(completed, MAX)
        [delivered] = await router.route(
            event("Order Delivered", customer="ada-7", order_id="K-1"), MAX
        )
        [other] = await router.route(
            event("Order Completed", customer="ada-7", order_id="K-2"), MAX
        )
        result = await finish(time_env, started.workflow_id)
        await finish(time_env, other.workflow_id)
        [again] = await router.route(completed, MAX)
    assert started.action == other.action == "started"
    assert (delivered.action, delivered.workflow_id) == ("signalled", started.workflow_id)
    assert result.outcome.kind == "completed" and recorder.sent[0].step_id == "send-2"
    assert (again.action, again.reason) == ("skipped", "a run for this key already took place")


async def test_runs_started_under_a_linked_anonymous_id_get_the_user_s_events(
    time_env: WorkflowEnvironment, entries: EntryStore
) -> None:
    """A visitor browses anonymously, logs in (alias), then orders: the browsing run converts."""
    browse = """
id: browse
name: Browse
category: marketing
trigger:
  event: Product Viewed
goal:
  event: Order Completed
  within: 7d
steps:
  - wait: 3d
  - send: email
    template: laptop-reminder
"""
    recorder = RecordingActivities()
    async with running_workers(time_env.client, recorder.all()) as prefix:
        router = make_router(time_env, prefix, entries, browse)
        [started] = await router.route(
            event("Product Viewed", customer="anon-1"), Profile(id="anon-1")
        )
        [unlinked] = await router.route(event("Order Completed", customer="max-1"), MAX)
        routed = await router.route(
            event("Order Completed", customer="max-1"), MAX, linked=["anon-1"]
        )
        result = await finish(time_env, started.workflow_id)
    assert unlinked.action == "not_running"
    assert sorted((r.action, r.workflow_id) for r in routed) == sorted(
        [("signalled", started.workflow_id), ("not_running", unlinked.workflow_id)]
    )
    assert result.outcome.kind == "converted" and recorder.sent == []
