"""The delivery policy chain: the first objection decides; skip is recorded in the ledger and the
timeline; defer makes the run wait (a durable timer that an exit interrupts) and ask again
with the same message id — on the time-skipping server with the real delivery activity."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from activities.delivery import DeliveryActivities
from activities.email.maildir import list_messages
from activities.policies import Decision, Message, PolicyChain
from tests.delivery import example_delivery
from tests.temporal import event, plan_from, running_workers, start_run
from workflows.channels import EMAIL
from workflows.models import Profile, RunResult, SendRequest

JOURNEY = """
id: held
name: Held back
category: marketing
trigger:
  event: Signed Up
exit_when:
  - event: Account Closed
steps:
  - id: welcome
    send: email
    template: newsletter-welcome
"""
MAX = Profile(id="max", email="max@example.com", locale="en")


@dataclass
class HoldFor:
    """Defers every message it sees until ``hours`` after the first one asked."""

    hours: float
    name: str = "hold"
    until: datetime | None = None
    asked: int = 0

    def decide(self, message: Message) -> Decision | None:
        self.asked += 1
        if self.until is None:
            self.until = message.now + timedelta(hours=self.hours)
        if message.now < self.until:
            return Decision.defer("held for a test", self.until)
        return None


@dataclass
class Says:
    decision: Decision | None
    name: str

    def decide(self, message: Message) -> Decision | None:
        return self.decision


def request() -> SendRequest:
    return SendRequest(
        message_id="msg_1",
        journey_id="held",
        journey_version="v",
        category="marketing",
        step_id="welcome",
        channel="email",
        template="newsletter-welcome",
        customer_id="max",
        profile=MAX,
    )


def test_the_first_objection_decides_and_no_objection_sends() -> None:
    message = Message(request(), EMAIL, "max@example.com", datetime.now(UTC))
    quiet = Says(None, "quiet")
    skip = Says(Decision.skip("capped"), "cap")
    defer = Says(Decision.defer("night", datetime(2027, 1, 1, tzinfo=UTC)), "quiet-hours")
    assert PolicyChain([quiet]).decide(message).action == "send"
    decided = PolicyChain([quiet, skip, defer]).decide(message)
    assert (decided.action, decided.reason, decided.policy) == ("skip", "capped", "cap")
    assert PolicyChain([defer, skip]).decide(message).policy == "quiet-hours"


def delivery(tmp_path: Path, *policies: object) -> DeliveryActivities:
    return example_delivery(tmp_path, chain=PolicyChain(policies))  # type: ignore[arg-type]


async def test_a_deferred_message_waits_then_is_sent_once(
    time_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    hold = HoldFor(hours=10)
    activities = delivery(tmp_path, hold)
    async with running_workers(time_env.client, activities.all()) as prefix:
        handle = await start_run(
            time_env.client, plan_from(JOURNEY), prefix, event("Signed Up", customer="max"),
            profile=MAX, workflow_id=f"held-{uuid.uuid4()}",
        )  # fmt: skip
        result = RunResult.model_validate(await handle.result())
    deferred, sent = (e for e in result.timeline if e.step == "welcome")
    assert deferred.kind == "deferred" and "held for a test until" in deferred.detail
    assert hold.until is not None and hold.until >= deferred.at + timedelta(hours=9, minutes=59)
    assert sent.kind == "sent" and sent.at >= hold.until, "not a moment before the policy said"
    assert hold.asked == 2, "asked again once the moment came"
    assert len(list_messages(tmp_path / "outbox")) == 1
    [row] = activities.ledger.list()
    assert (row.status, row.attempts) == ("sent", 2), "the same message id, claimed twice"


async def test_an_exit_interrupts_a_deferred_message(
    time_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    activities = delivery(tmp_path, HoldFor(hours=48))
    async with running_workers(time_env.client, activities.all()) as prefix:
        handle = await start_run(
            time_env.client, plan_from(JOURNEY), prefix, event("Signed Up", customer="max"),
            profile=MAX, workflow_id=f"held-{uuid.uuid4()}",
        )  # fmt: skip
        await time_env.sleep(timedelta(hours=1))
        await handle.signal("event", event("Account Closed", customer="max"))
        result = RunResult.model_validate(await handle.result())
    assert result.outcome.kind == "exited"
    assert [e.kind for e in result.timeline if e.step == "welcome"] == ["deferred"]
    assert list_messages(tmp_path / "outbox") == []
    [row] = activities.ledger.list()
    assert row.status == "deferred"


async def test_a_skip_is_in_the_ledger_and_the_timeline(
    time_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    activities = delivery(tmp_path, Says(Decision.skip("capped: 2 per day"), "cap"))
    async with running_workers(time_env.client, activities.all()) as prefix:
        handle = await start_run(
            time_env.client, plan_from(JOURNEY), prefix, event("Signed Up", customer="max"),
            profile=MAX, workflow_id=f"held-{uuid.uuid4()}",
        )  # fmt: skip
        result = RunResult.model_validate(await handle.result())
    [welcome] = [e for e in result.timeline if e.step == "welcome"]
    assert (welcome.kind, welcome.detail) == (
        "skipped",
        "email: newsletter-welcome (skipped: capped: 2 per day)",
    )
    [row] = activities.ledger.list()
    assert (row.status, row.reason) == ("skipped", "capped: 2 per day")
