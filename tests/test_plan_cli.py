"""``touchpoint plan`` through the installed executable, in a copy of the project: deploy v1
with ``touchpoint deploy``, edit the YAML, and ``plan`` shows the change and the runs now in
the journey per step, counted by the real Temporal dev server's visibility.

The runs are workflows started with the search attributes the router and the interpreter
set (journey, version, step) on a task queue no worker polls: they stay where they are, so
the counts are exact; what is under test is the counting, not the interpreter."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.testing import WorkflowEnvironment

from tests.conftest import ROOT
from workflows.search import JOURNEY_ID, JOURNEY_STEP, JOURNEY_VERSION

TOUCHPOINT = str(Path(sys.executable).parent / "touchpoint")

JOURNEY = """
id: {id}
name: Welcome
category: marketing
trigger:
  event: Signed Up
steps:
  - id: hello
    send: email
    template: newsletter-welcome
  - id: answer
    wait_for: Order Completed
    timeout: 2d
    on_timeout: survey
  - end
  - id: survey
    send: email
    template: apology
"""

WITHOUT_SURVEY = """
id: {id}
name: Welcome
category: marketing
trigger:
  event: Signed Up
steps:
  - id: hello
    send: email
    template: newsletter-welcome
  - id: answer
    wait_for: Order Completed
    timeout: 3d
    on_timeout: end
  - end
"""


class Project:
    def __init__(self, root: Path, journey_id: str, env: dict[str, str]) -> None:
        self.root, self.journey_id, self.env = root, journey_id, env

    def write(self, template: str) -> None:
        (self.root / "journeys" / f"{self.journey_id}.yaml").write_text(
            template.format(id=self.journey_id)
        )

    def touchpoint(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [TOUCHPOINT, *args, "-C", str(self.root)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )


def make_project(tmp_path: Path, temporal: str) -> Project:
    root = tmp_path / "shop"
    root.mkdir()
    shutil.copy(ROOT / "touchpoint.yaml", root / "touchpoint.yaml")
    shutil.copytree(ROOT / "templates", root / "templates")
    (root / "journeys").mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TOUCHPOINT_DATABASE_URL": f"sqlite:///{tmp_path / 'touchpoint.db'}",
        "TOUCHPOINT_TEMPORAL_ADDRESS": temporal,
        "TOUCHPOINT_TEMPORAL_NAMESPACE": "default",
    }
    project = Project(root, f"welcome-{uuid.uuid4().hex[:8]}", env)
    project.write(JOURNEY)
    return project


def test_ci_without_a_store_unknown_and_broken_journeys(tmp_path: Path) -> None:
    project = make_project(tmp_path, "127.0.0.1:1")
    fresh = project.touchpoint("plan", "--json")
    assert fresh.returncode == 0, fresh.stderr
    document = json.loads(fresh.stdout)
    assert document["store_note"] == (
        f"no deployed version (store sqlite:///{tmp_path / 'touchpoint.db'} does not exist)"
    )
    (journey,) = document["journeys"]
    assert journey["status"] == "new" and journey["deployed_version"] is None
    assert [c["name"] for c in journey["changes"] if c["what"] == "step"] == [
        "hello", "answer", "survey", "end",
    ]  # fmt: skip
    assert not (tmp_path / "touchpoint.db").exists(), "plan creates no store"

    unknown = project.touchpoint("plan", "nope")
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert unknown.stderr.startswith("✗ no journey 'nope': no file ")

    (project.root / "journeys" / "broken.yaml").write_text(
        JOURNEY.format(id="broken") + "  - wait: soon\n"
    )
    broken = project.touchpoint("plan", "broken")
    assert broken.returncode == 1 and broken.stdout == ""
    # validate's file:line:col (the path as validate shows it: relative to where it runs)
    assert "shop/journeys/broken.yaml:19:11: steps[4].wait: " in broken.stderr

    # deployed, then Temporal unreachable: the diff, and a note instead of the counts
    assert project.touchpoint("deploy", project.journey_id).returncode == 0
    project.write(WITHOUT_SURVEY)
    offline = project.touchpoint("plan", project.journey_id)
    assert offline.returncode == 0, offline.stderr
    assert "  - step survey: send email apology" in offline.stdout
    assert "  runs now: no run counts: Temporal is not reachable at 127.0.0.1:1" in offline.stdout


async def start_waiting(
    client: Client, journey_id: str, version: str, step: str, n: int
) -> list[str]:
    """``n`` runs of the version, indexed at ``step``, that nothing moves on."""
    ids = []
    for _ in range(n):
        handle = await client.start_workflow(
            "JourneyWorkflow",
            id=f"plan-test-{uuid.uuid4()}",
            task_queue=f"nobody-{uuid.uuid4().hex[:8]}",
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(JOURNEY_ID, journey_id),
                    SearchAttributePair(JOURNEY_VERSION, version),
                    SearchAttributePair(JOURNEY_STEP, step),
                ]
            ),
        )
        ids.append(handle.id)
    return ids


async def visible(client: Client, journey_id: str, expected: int) -> None:
    """Visibility is eventually consistent: wait until every started run is counted."""
    for _ in range(100):
        found = await client.count_workflows(f"{JOURNEY_ID.name} = '{journey_id}'")
        if found.count == expected:
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"visibility counted {found.count} runs, not {expected}")


async def test_plan_shows_the_change_and_the_runs_per_step(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    client = dev_env.client
    project = make_project(tmp_path, client.service_client.config.target_host)
    deployed = project.touchpoint("deploy", project.journey_id)
    assert deployed.returncode == 0, deployed.stderr
    v1 = deployed.stdout.split()[2]
    same = project.touchpoint("plan", project.journey_id)
    assert same.returncode == 0, same.stderr
    assert same.stdout.splitlines()[0] == f"{project.journey_id}: no change ({v1} is deployed)"
    assert "  runs now: none running" in same.stdout

    started = await start_waiting(client, project.journey_id, v1, "survey", 3)
    started += await start_waiting(client, project.journey_id, v1, "answer", 2)
    try:
        await visible(client, project.journey_id, 5)
        project.write(WITHOUT_SURVEY)
        planned = project.touchpoint("plan", project.journey_id)
        assert planned.returncode == 0, planned.stderr
        lines = planned.stdout.splitlines()
        v2 = lines[0].split()[3]
        assert lines[:6] == [
            f"{project.journey_id}: {v1} → {v2} (5 change(s))",
            "  ~ step answer: timeout_seconds: 2d → 3d",
            "  - step survey: send email apology",
            "  - edge answer --timeout--> survey",
            "  - edge survey --> end",
            "  + edge answer --timeout--> end",
        ]
        assert lines[-4:-1] == [
            "  runs now: 5 running; they finish on the version they entered (no migration)",
            f"    2 run(s) on {v1} at `answer`, which the new version changes: "
            f"they go through {v1}'s step",
            f"    3 run(s) on {v1} at `survey`, which the new version removes: "
            f"they finish on {v1} and still go through it",
        ]
        # the store's event log is empty: the replay says so (tests/test_replay_events.py replays)
        assert lines[-1].startswith("  replay: no recorded events from ")
        as_json = json.loads(project.touchpoint("plan", project.journey_id, "--json").stdout)
        (journey,) = as_json["journeys"]
        assert journey["status"] == "changed" and journey["deployed_version"] == v1
        assert journey["runs"] == [
            {"version": v1, "step": "answer", "running": 2, "fate": "changed"},
            {"version": v1, "step": "survey", "running": 3, "fate": "removed"},
        ]
        assert journey["runs_note"] is None and journey["replay"] is None
        assert as_json["replay_note"].startswith("no recorded events from ")
    finally:
        for workflow_id in started:
            await client.get_workflow_handle(workflow_id).terminate("test over")
