"""A profile read slower than a workflow task: the run still replays.

When the ``read_profile`` local activity outlasts the workflow task (about 8 s: Temporal's
task heartbeat), its result reaches the run one task after the task that recorded it; a replay
hands it over at once. A ``workflow.patched`` first asked right after the read would then be
answered differently on replay (seen on a loaded machine as a lookup run that did not replay).
Steps that read the profile take their patch decisions first (``_decide_patches``); this test
makes the read slow on purpose, on the time-skipping server, checks that every patch of a
step that reads the profile is decided before the read, and replays the history.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment

from simulation.recording import RecordingActivities
from tests.corpus import Recording, replay
from tests.temporal import event, finish, plan_from, running_workers, start_run
from workflows.models import READ_PROFILE_ACTIVITY, Profile, ProfileAnswer, ProfileRequest
from workflows.registry import Deployment

READS_THEN_PATCHES = """
id: slow-read-{tag}
name: Slow profile read
category: transactional
trigger:
  event: Signed Up
steps:
  - id: picks
    lookup: shop-api
    path: /customers/{{{{ profile.id }}}}/recommendations
    save_as: picks
  - id: next-morning
    wait_until:
      time: "09:00"
  - id: on-the-day
    wait_until:
      date: profile.traits.renewal_at
      time: "10:00"
  - id: note
    send: email
    template: newsletter-welcome
"""

BERLIN = "Europe/Berlin"  # the test workers' default time zone (tests/temporal.py)
SLOWER_THAN_A_TASK = 9.0  # seconds; the task heartbeat comes at 80 % of its 10 s timeout


class SlowProfiles(RecordingActivities):
    @activity.defn(name=READ_PROFILE_ACTIVITY)
    async def read_profile(self, request: ProfileRequest) -> ProfileAnswer:
        await asyncio.sleep(SLOWER_THAN_A_TASK)
        return ProfileAnswer(profile=self.profiles.get(request.customer_id))


def markers(history: WorkflowHistory) -> list[str]:
    """The run's markers in order: a patch's id, or ``read`` for a profile read."""
    found = []
    for item in history.events:
        if item.event_type != EventType.EVENT_TYPE_MARKER_RECORDED:
            continue
        marker = item.marker_recorded_event_attributes
        if marker.marker_name == "core_local_activity":
            found.append("read")
        elif marker.marker_name == "core_patch":
            found.append(json.loads(marker.details["patch-data"].payloads[0].data)["id"])
    return found


async def test_a_profile_read_slower_than_a_task_replays(time_env: WorkflowEnvironment) -> None:
    plan = plan_from(READS_THEN_PATCHES.format(tag=uuid.uuid4().hex[:6]))
    customer = f"slow-{uuid.uuid4().hex[:6]}"
    soon = (await time_env.get_current_time() + timedelta(days=5)).date().isoformat()
    traits: Mapping[str, Any] = {"renewal_at": soon}
    profiles = {customer: Profile(id=customer, email="slow@example.com", traits=dict(traits))}
    activities = SlowProfiles(profiles=profiles).all()
    async with running_workers(time_env.client, activities) as prefix:
        handle = await start_run(
            time_env.client,
            plan,
            prefix,
            event("Signed Up", customer),
            by_reference=True,
            input_version=2,  # a run that asks for its patches (version 3 takes them unasked)
        )
        result = await finish(time_env, handle.id)
        history = await handle.fetch_history()
    assert result.outcome.kind == "completed", result
    # each step that reads the profile decided its patches before the read
    assert markers(history) == [
        "bounded-expressions",
        "lookup-path-values-encoded",
        "read",
        "continue-as-new-in-waits",
        "read",
        "wait-until-wall-clock-offset",
        "read",
        "long-send-retries",
    ]
    worker = Recording(
        story="reads slower than a task",
        workflow_id=handle.id,
        run_id="",
        recorded_on="test",
        deployment=dataclasses.asdict(
            Deployment(index_runs=False, default_timezone="Europe/Berlin")
        ),
    )
    replayed = await replay(history, worker, plans=[plan])
    assert replayed.replay_failure is None, replayed.replay_failure
