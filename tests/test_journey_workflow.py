"""JourneyWorkflow on Temporal's time-skipping test server: every node type and rule."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from simulation.recording import RecordingActivities
from tests.corpus import patches
from tests.temporal import binary, event, plan_from, running_workers, start_run
from workflows.models import (
    CancelRequest,
    Profile,
    RunResult,
    RunView,
    SendRequest,
    SendResult,
)
from workflows.privacy_models import ERASED_REASON, erasure_cancel

HEADER = """
id: t
name: T
category: marketing
trigger:
  event: Signed Up
"""


async def result_of(handle: WorkflowHandle) -> RunResult:
    return RunResult.model_validate(await handle.result())


async def test_send_wait_send_completes_with_two_messages(time_env: WorkflowEnvironment) -> None:
    plan = plan_from(
        HEADER
        + """
steps:
  - id: hello
    send: email
    template: newsletter-welcome
  - wait: 3d
  - id: again
    send: email
    template: free-shipping
"""
    )
    recorder = RecordingActivities()
    async with running_workers(time_env.client, recorder.all()) as prefix:
        started = await time_env.get_current_time()
        handle = await start_run(time_env.client, plan, prefix, event("Signed Up"))
        result = await result_of(handle)
    assert result.outcome.kind == "completed"
    assert [m.step_id for m in recorder.sent] == ["hello", "again"]
    sent_at = [e.at for e in result.timeline if e.kind == "sent"]
    assert sent_at[1] - sent_at[0] >= timedelta(days=3)
    assert sent_at[1] - started < timedelta(days=3, minutes=5)


async def run_to_end(
    env: WorkflowEnvironment,
    text: str,
    recorder: RecordingActivities | None = None,
    **start: object,
) -> tuple[RunResult, RecordingActivities]:
    recorder = recorder or RecordingActivities()
    async with running_workers(env.client, recorder.all()) as prefix:
        handle = await start_run(env.client, plan_from(text), prefix, event("Signed Up"), **start)
        return await result_of(handle), recorder


async def test_a_goal_during_a_wait_converts_at_once(time_env: WorkflowEnvironment) -> None:
    plan = plan_from(
        HEADER
        + """
goal:
  event: Order Completed
  within: 30d
steps:
  - send: email
    template: newsletter-welcome
  - id: pause
    wait: 7d
  - send: email
    template: free-shipping
"""
    )
    recorder = RecordingActivities()
    async with running_workers(time_env.client, recorder.all()) as prefix:
        handle = await start_run(time_env.client, plan, prefix, event("Signed Up"))
        await time_env.sleep(timedelta(days=2))
        await handle.signal("event", event("Order Completed"))
        result = await result_of(handle)
    assert result.outcome.kind == "converted"
    assert result.outcome.reason == "Order Completed"
    assert [m.template for m in recorder.sent] == ["newsletter-welcome"]
    assert result.outcome.at is not None
    assert result.outcome.at - result.timeline[0].at < timedelta(days=3)


async def test_a_goal_outside_its_window_does_not_convert(time_env: WorkflowEnvironment) -> None:
    plan = plan_from(
        HEADER
        + """
goal:
  event: Order Completed
  within: 1d
steps:
  - wait: 3d
  - send: email
    template: free-shipping
"""
    )
    recorder = RecordingActivities()
    async with running_workers(time_env.client, recorder.all()) as prefix:
        handle = await start_run(time_env.client, plan, prefix, event("Signed Up"))
        await time_env.sleep(timedelta(days=2))
        await handle.signal("event", event("Order Completed"))
        result = await result_of(handle)
    assert result.outcome.kind == "completed"
    assert len(recorder.sent) == 1


async def test_an_exit_interrupts_a_send_that_is_being_retried(
    time_env: WorkflowEnvironment,
) -> None:

    attempts: list[int] = []

    @activity.defn(name="send_email")
    async def flaky_provider(request: SendRequest) -> SendResult:
        attempts.append(activity.info().attempt)
        raise ApplicationError("503 from the provider", type="ProviderUnavailable")

    plan = plan_from(
        HEADER
        + """
exit_when:
  - event: Order Refunded
    reason: refunded
steps:
  - send: email
    template: newsletter-welcome
"""
    )
    async with running_workers(time_env.client, [flaky_provider]) as prefix:
        handle = await start_run(time_env.client, plan, prefix, event("Signed Up"))
        await time_env.sleep(timedelta(seconds=40))
        await handle.signal("event", event("Order Refunded"))
        result = await result_of(handle)
    assert result.outcome.kind == "exited" and result.outcome.reason == "refunded"
    assert len(attempts) >= 2, "the send was being retried when the exit came"
    assert not [e for e in result.timeline if e.kind == "sent"]


async def test_a_provider_retry_after_is_honoured(time_env: WorkflowEnvironment) -> None:

    scheduled: list[datetime] = []

    @activity.defn(name="send_email")
    async def rate_limited(request: SendRequest) -> SendResult:
        scheduled.append(activity.info().current_attempt_scheduled_time)
        if activity.info().attempt == 1:
            raise ApplicationError("429", type="RateLimited", next_retry_delay=timedelta(minutes=5))
        return SendResult(message_id=request.message_id)

    plan = plan_from(HEADER + "steps:\n  - send: email\n    template: newsletter-welcome\n")
    started = await time_env.get_current_time()
    async with running_workers(time_env.client, [rate_limited]) as prefix:
        handle = await start_run(time_env.client, plan, prefix, event("Signed Up"))
        result = await result_of(handle)
    assert result.outcome.kind == "completed"
    assert len(scheduled) == 2
    assert result.timeline[0].at - started >= timedelta(minutes=5), "waited as the provider asked"
    assert result.timeline[0].at - started < timedelta(minutes=6)


async def test_a_rejected_send_fails_the_run_with_step_and_error(
    time_env: WorkflowEnvironment,
) -> None:

    attempts: list[int] = []

    @activity.defn(name="send_email")
    async def rejecting(request: SendRequest) -> SendResult:
        attempts.append(1)
        raise ApplicationError("400 invalid recipient", type="EmailRejected", non_retryable=True)

    text = (
        HEADER
        + """
steps:
  - id: first
    send: email
    template: newsletter-welcome
    SKIP
  - id: second
    wait: 1h
"""
    )
    async with running_workers(time_env.client, [rejecting]) as prefix:
        handle = await start_run(
            time_env.client, plan_from(text.replace("SKIP", "")), prefix, event("Signed Up")
        )
        failed = await result_of(handle)
        handle = await start_run(
            time_env.client,
            plan_from(text.replace("SKIP", "skip_on_failure: true")),
            prefix,
            event("Signed Up"),
        )
        skipped = await result_of(handle)
    assert failed.outcome.kind == "failed"
    assert failed.outcome.step == "first"
    assert failed.outcome.error is not None and "400 invalid recipient" in failed.outcome.error
    assert len(attempts) == 2, "non-retryable: one attempt per run"
    assert skipped.outcome.kind == "completed"
    assert [e.kind for e in skipped.timeline] == ["skipped", "waited"]


async def test_an_event_before_its_wait_for_is_not_missed(time_env: WorkflowEnvironment) -> None:
    plan = plan_from(
        HEADER
        + """
steps:
  - wait: 1d
  - id: delivered
    wait_for: Order Delivered
    timeout: 3d
  - send: email
    template: laptop-setup
"""
    )
    recorder = RecordingActivities()
    async with running_workers(time_env.client, recorder.all()) as prefix:
        handle = await start_run(time_env.client, plan, prefix, event("Signed Up"))
        await time_env.sleep(timedelta(hours=2))
        await handle.signal("event", event("Order Delivered", order_id="o-1"))
        result = await result_of(handle)
    kinds = [(e.step, e.kind) for e in result.timeline]
    assert kinds == [("wait-1", "waited"), ("delivered", "event"), ("send-3", "sent")]
    assert result.timeline[1].at - result.timeline[0].at < timedelta(minutes=1)
    assert recorder.sent[0].context["events"]["delivered"]["properties"] == {"order_id": "o-1"}


async def test_the_same_event_delivered_twice_counts_once(time_env: WorkflowEnvironment) -> None:
    plan = plan_from(
        HEADER
        + """
steps:
  - id: first
    wait_for: Item Viewed
    timeout: 2d
  - id: second
    wait_for: Item Viewed
    timeout: 2d
"""
    )
    async with running_workers(time_env.client, RecordingActivities().all()) as prefix:
        handle = await start_run(time_env.client, plan, prefix, event("Signed Up"))
        viewed = event("Item Viewed")
        await handle.signal("event", viewed)
        await handle.signal("event", viewed)  # at-least-once delivery: the same messageId again
        result = await result_of(handle)
    assert [(e.step, e.kind) for e in result.timeline] == [
        ("first", "event"),
        ("second", "timeout"),
    ]


async def _until_step(handle: WorkflowHandle, step: str) -> None:
    for _ in range(100):
        view = RunView.model_validate(await handle.query("state"))
        if view.current == step:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the run never reached {step}")


async def test_cancel_ends_the_run(time_env: WorkflowEnvironment) -> None:
    plan = plan_from(HEADER + "steps:\n  - wait: 30d\n  - send: email\n    template: apology\n")
    recorder = RecordingActivities()
    async with running_workers(time_env.client, recorder.all()) as prefix:
        handle = await start_run(time_env.client, plan, prefix, event("Signed Up"))
        await time_env.sleep(timedelta(days=1))
        await handle.signal("cancel", CancelRequest(reason="customer asked support"))
        result = await result_of(handle)
    assert (result.outcome.kind, result.outcome.reason) == ("cancelled", "customer asked support")
    assert recorder.sent == []


async def test_an_erased_customers_waiting_run_ends_erased_and_sends_nothing_more(
    time_env: WorkflowEnvironment,
) -> None:
    """The signal ``touchpoint forget`` sends: the run ends as ``erased`` (result and state),
    through the patched branch, and the send after the wait never happens."""
    plan = plan_from(
        HEADER
        + """
steps:
  - send: email
    template: newsletter-welcome
  - id: pause
    wait: 30d
  - send: email
    template: free-shipping
"""
    )
    recorder = RecordingActivities()
    async with running_workers(time_env.client, recorder.all()) as prefix:
        handle = await start_run(
            time_env.client, plan, prefix, event("Signed Up"), input_version=2
        )  # a run that asks for its patches: the marker shows the branch it took
        await time_env.sleep(timedelta(days=1))
        await _until_step(handle, "pause")
        await handle.signal("cancel", erasure_cancel())
        result = await result_of(handle)
        view = RunView.model_validate(await handle.query("state"))
        await time_env.sleep(timedelta(days=60))
    assert (result.outcome.kind, result.outcome.reason) == ("erased", None)
    assert view.outcome is not None and view.outcome.kind == "erased"
    assert [m.template for m in recorder.sent] == ["newsletter-welcome"]
    assert [e.kind for e in result.timeline] == ["sent"], "the wait never ended"
    assert "erasure-outcome" in patches(await handle.fetch_history())


async def test_an_erasure_stops_a_send_that_is_being_retried(
    time_env: WorkflowEnvironment,
) -> None:
    """A send retried through an outage is cancelled with the run: no attempt after it."""
    attempts: list[int] = []

    @activity.defn(name="send_email")
    async def provider_down(request: SendRequest) -> SendResult:
        attempts.append(activity.info().attempt)
        raise ApplicationError("503 from the provider", type="ProviderUnavailable")

    plan = plan_from(HEADER + "steps:\n  - send: email\n    template: newsletter-welcome\n")
    async with running_workers(time_env.client, [provider_down]) as prefix:
        handle = await start_run(time_env.client, plan, prefix, event("Signed Up"))
        await time_env.sleep(timedelta(seconds=40))
        await handle.signal("cancel", erasure_cancel())
        result = await result_of(handle)
        tried = len(attempts)
        await time_env.sleep(timedelta(hours=30))  # past any backoff and the 24 h deadline
    assert result.outcome.kind == "erased"
    assert tried >= 2, "the send was being retried when the erasure came"
    assert len(attempts) == tried, "no attempt after the run ended"
    assert result.timeline == []


async def test_an_erasure_does_not_wait_for_a_send_attempt_in_flight(
    dev_env: WorkflowEnvironment,
) -> None:
    """The run ends at once; an attempt already under way is not stopped (the send activity
    does not heartbeat, so it hears no cancellation) — docs/privacy.md names this limit. On
    the dev server: an attempt that outlives its run leaves the shared time-skipping server
    unable to skip time."""
    started, release, finished = asyncio.Event(), asyncio.Event(), asyncio.Event()

    @activity.defn(name="send_email")
    async def slow_provider(request: SendRequest) -> SendResult:
        started.set()
        await release.wait()
        finished.set()
        return SendResult(message_id=request.message_id)

    plan = plan_from(HEADER + "steps:\n  - send: email\n    template: newsletter-welcome\n")
    async with running_workers(dev_env.client, [slow_provider]) as prefix:
        handle = await start_run(dev_env.client, plan, prefix, event("Signed Up"))
        await asyncio.wait_for(started.wait(), 30)
        await handle.signal("cancel", erasure_cancel())
        result = await asyncio.wait_for(result_of(handle), 30)
        assert not finished.is_set(), "the run ended while the attempt was still under way"
        release.set()
        await asyncio.wait_for(finished.wait(), 30)
    assert result.outcome.kind == "erased"
    assert result.timeline == [], "the run never records the late attempt as sent"


async def test_cancel_without_the_erased_flag_stays_cancelled(
    time_env: WorkflowEnvironment,
) -> None:
    """An operator's cancel with reason ``erased`` is still a cancel, and asks no patch."""
    plan = plan_from(HEADER + "steps:\n  - wait: 30d\n")
    async with running_workers(time_env.client, RecordingActivities().all()) as prefix:
        handle = await start_run(
            time_env.client, plan, prefix, event("Signed Up"), input_version=2
        )  # a run that asks for its patches, so that asking would show
        await time_env.sleep(timedelta(days=1))
        await handle.signal("cancel", CancelRequest(reason=ERASED_REASON))
        result = await result_of(handle)
        history = await handle.fetch_history()
    assert (result.outcome.kind, result.outcome.reason) == ("cancelled", "erased")
    assert "erasure-outcome" not in patches(history)


async def test_the_state_query_shows_step_and_timeline(time_env: WorkflowEnvironment) -> None:
    plan = plan_from(
        HEADER
        + """
steps:
  - send: email
    template: newsletter-welcome
  - id: long-wait
    wait: 10d
"""
    )
    async with running_workers(time_env.client, RecordingActivities().all()) as prefix:
        handle = await start_run(time_env.client, plan, prefix, event("Signed Up"))
        await _until_step(handle, "long-wait")
        view = RunView.model_validate(await handle.query("state"))
        await handle.signal("cancel", {"reason": "done"})
        await handle.result()
    assert view.outcome is None and view.journey_id == "t"
    assert [(e.step, e.kind) for e in view.timeline] == [("send-1", "sent")]


async def test_branch_set_goto_loop_and_lookup(time_env: WorkflowEnvironment) -> None:
    recorder = RecordingActivities(lookups={"shop-api": {"products": [{"name": "X1"}]}})
    result, _ = await run_to_end(
        time_env,
        HEADER
        + """
steps:
  - id: picks
    lookup: shop-api
    path: /customers/{{ profile.id }}/recommendations
    query:
      limit: 3
    save_as: picks
  - set:
      rounds: 0
  - id: loop
    set:
      rounds: vars.rounds + 1
  - wait: 1d
  - id: more
    branch:
      - if: vars.rounds < 3
        goto: loop
  - id: any
    branch:
      - if: lookups.picks.products | length > 0
        goto: recommend
    else: end
  - id: recommend
    send: email
    template: laptop-picks
""",
        recorder,
    )
    assert result.outcome.kind == "completed"
    assert recorder.looked_up[0].path == "/customers/cust-1/recommendations"
    assert recorder.looked_up[0].query == {"limit": 3}
    assert [m.template for m in recorder.sent] == ["laptop-picks"]
    assert recorder.sent[0].context["vars"] == {"rounds": 3}
    assert recorder.sent[0].context["lookups"]["picks"]["products"][0]["name"] == "X1"
    assert sum(1 for e in result.timeline if e.step == "loop") == 3


async def test_splits_are_sticky_and_a_holdout_receives_nothing(
    time_env: WorkflowEnvironment,
) -> None:
    text = (
        HEADER
        + """
steps:
  - id: ab
    split:
      - {name: a, percent: 50, goto: send-a}
      - {name: b, percent: 50}
  - send: email
    template: free-shipping
  - end
  - id: send-a
    send: email
    template: first-order-discount
"""
    )
    recorder = RecordingActivities()
    paths: dict[str, list[str]] = {}
    async with running_workers(time_env.client, recorder.all()) as prefix:
        for _round in range(2):
            for n in range(8):
                customer = f"customer-{n}"
                handle = await start_run(
                    time_env.client, plan_from(text), prefix, event("Signed Up", customer=customer)
                )
                result = await result_of(handle)
                paths.setdefault(customer, []).append(result.timeline[0].detail)
        holdout = (
            HEADER
            + """
steps:
  - split:
      - {name: a, percent: 1}
      - {name: control, percent: 99, holdout: true}
  - send: email
    template: free-shipping
"""
        )
        before = len(recorder.sent)
        held = await result_of(
            await start_run(
                time_env.client,
                plan_from(holdout),
                prefix,
                event("Signed Up", customer="customer-0"),
            )
        )
    assert all(first == second for first, second in paths.values()), "the same path every time"
    assert {p[0] for p in paths.values()} == {"a", "b"}, "both paths are used"
    assert held.timeline[0].detail == "control (holdout)"
    assert held.timeline[1].kind == "held out"
    assert len(recorder.sent) == before, "a holdout customer is sent nothing"


async def test_wait_until_a_local_time_across_a_daylight_saving_change() -> None:
    """Berlin moves to summer time on 2027-03-28: 09:00 local is 08:00 UTC the day before and
    07:00 UTC that Sunday; the Monday-only wait lands on 2027-03-29 07:00 UTC. A server of its
    own, so that its clock starts at today's date."""
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=binary("temporal-test-server"),
    )
    async with env:
        target = datetime(2027, 3, 27, 8, 30, tzinfo=UTC)  # Saturday 09:30 in Berlin (winter)
        now = await env.get_current_time()
        assert now < target, "the test server starts at today's date"
        await env.sleep(target - now)
        result, recorder = await _dst_journey(env)
    waits = [e.detail for e in result.timeline if e.kind == "waited"]
    assert waits == ["until 2027-03-28T07:00:00+00:00", "until 2027-03-29T07:00:00+00:00"]
    assert len(recorder.sent) == 2


async def _dst_journey(env: WorkflowEnvironment) -> tuple[RunResult, RecordingActivities]:
    return await run_to_end(
        env,
        HEADER
        + """
steps:
  - wait_until:
      time: "09:00"
  - send: email
    template: newsletter-welcome
  - wait_until:
      time: "09:00"
      days: [mon]
  - send: email
    template: free-shipping
""",
        profile=Profile(id="cust-1", timezone="Europe/Berlin"),
    )


async def test_wait_until_a_date_from_the_profile_with_an_offset(
    time_env: WorkflowEnvironment,
) -> None:
    now = await time_env.get_current_time()
    birthday = (now + timedelta(days=10)).date().isoformat()
    result, _ = await run_to_end(
        time_env,
        HEADER
        + """
steps:
  - wait_until:
      date: profile.traits.birthday
      offset: -1d
      time: "10:00"
  - send: email
    template: newsletter-welcome
""",
        profile=Profile(id="c", timezone="Europe/Berlin", traits={"birthday": birthday}),
    )
    waited = result.timeline[0]
    assert waited.kind == "waited"
    expected_day = (now + timedelta(days=9)).date().isoformat()
    assert f"until {expected_day}T0" in waited.detail  # 10:00 Berlin is 08:00 or 09:00 UTC


async def test_continue_as_new_keeps_all_state(time_env: WorkflowEnvironment) -> None:
    recorder = RecordingActivities()
    text = (
        HEADER
        + """
steps:
  - id: got
    wait_for: Item Viewed
    timeout: 1d
  - set:
      n: 0
  - id: again
    set:
      n: vars.n + 1
  - wait: 1h
  - branch:
      - if: vars.n < 12
        goto: again
  - send: email
    template: newsletter-welcome
"""
    )
    async with running_workers(time_env.client, recorder.all(), history_limit=40) as prefix:
        handle = await start_run(time_env.client, plan_from(text), prefix, event("Signed Up"))
        await handle.signal("event", event("Item Viewed", sku="LAP-1"))
        result = await result_of(handle)
        described = await handle.describe()
    assert result.outcome.kind == "completed"
    assert recorder.sent[0].context["vars"] == {"n": 12}
    assert recorder.sent[0].context["events"]["got"]["properties"] == {"sku": "LAP-1"}
    assert described.run_id != handle.first_execution_run_id, "it continued as new"
    assert sum(1 for e in result.timeline if e.step == "again") == 12, "timeline carried over"
