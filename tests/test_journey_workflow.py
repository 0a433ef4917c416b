"""JourneyWorkflow on Temporal's time-skipping test server: every node type and rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from activities.recording import RecordingActivities
from tests.temporal import event, plan_from, running_workers, start_run
from workflows.models import RunResult

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
    plan = plan_from(HEADER + """
steps:
  - id: hello
    send: email
    template: newsletter-welcome
  - wait: 3d
  - id: again
    send: email
    template: free-shipping
""")
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
