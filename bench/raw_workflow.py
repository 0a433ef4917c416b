"""The hand-written baseline: what a Temporal developer would write by hand for a journey —
a list of steps (send an email, sleep, wait for a signal with a timeout), the same activities
and payload models as Touchpoint, no interpreter, no search attributes, no state query."""

from __future__ import annotations

import contextlib
import hashlib
from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from workflows.models import Event, Profile, SendRequest, SendResult

RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_attempts=10)


class RawInput(BaseModel):
    customer_id: str
    profile: Profile
    steps: list[str]  # "send:<template>", "wait:<seconds>", "wait_for:<seconds>"
    # None: activities on the workflow's own task queue, which lets the server hand them to
    # the worker eagerly (in the workflow task's answer); a name: a queue of their own, as
    # Touchpoint's sends of a rate-limited channel (one queue per channel)
    activity_queue: str | None = None


@workflow.defn(name="RawJourney")
class RawJourney:
    def __init__(self) -> None:
        self.inbox: list[Event] = []

    @workflow.signal(name="event")
    def on_event(self, event: Event) -> None:
        self.inbox.append(event)

    @workflow.run
    async def run(self, run_input: RawInput) -> int:
        sent = 0
        for index, step in enumerate(run_input.steps):
            kind, _, argument = step.partition(":")
            if kind == "send":
                await workflow.execute_activity(
                    "send_email",
                    _request(run_input, index, argument),
                    task_queue=run_input.activity_queue or workflow.info().task_queue,
                    result_type=SendResult,
                    retry_policy=RETRY,
                    start_to_close_timeout=timedelta(seconds=60),
                )
                sent += 1
            elif kind == "wait":
                await workflow.sleep(float(argument))
            elif kind == "wait_for":
                with contextlib.suppress(TimeoutError):
                    await workflow.wait_condition(
                        lambda: bool(self.inbox), timeout=timedelta(seconds=float(argument))
                    )
        return sent


def _request(run_input: RawInput, index: int, template: str) -> SendRequest:
    source = f"{workflow.info().workflow_id}|{index}"
    return SendRequest(
        message_id="msg_" + hashlib.sha256(source.encode()).hexdigest()[:32],
        journey_id="raw",
        journey_version="1",
        category="marketing",
        step_id=f"step-{index}",
        channel="email",
        template=template,
        customer_id=run_input.customer_id,
        profile=run_input.profile,
    )


if __name__ == "__main__":
    raise SystemExit("RawJourney runs inside a Temporal worker: see bench/raw_worker.py")
