"""Scheduled journeys on the real Temporal dev server: the Temporal Schedule is created from
the deployment (visible to ``temporal schedule list``), triggered it starts a broadcast that
reaches exactly the audience, with the occurrence Temporal scheduled; one_at_a_time holds
across occurrences (the run index); pause, resume, a changed schedule and stop follow the
store."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine
from temporalio.client import (
    Client,
    ScheduleActionStartWorkflow,
    ScheduleOverlapPolicy,
    WorkflowExecutionStatus,
)
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from activities.audience import AudienceActivities
from cli import app
from ops.broadcasts import CATCHUP_WINDOW, broadcast_schedule, schedule_id, sync_broadcasts
from simulation.recording import RecordingActivities
from store.database import connect
from store.deployments import Deployments
from store.plans import PlanStore
from store.profiles import ProfileStore
from tests.conftest import ROOT
from tests.temporal import binary, plan_from, running_workers
from workflows import registry
from workflows.broadcast_models import BROADCAST_QUEUE as QUEUE
from workflows.broadcast_models import BroadcastInput, BroadcastResult
from workflows.models import RunSettings
from workflows.plan import Plan
from workflows.search import JOURNEY_ID


def journey(journey_id: str, time: str = "09:00") -> str:
    return f"""
id: {journey_id}
name: Weekly
category: marketing
trigger:
  schedule:
    every: monday {time}
    timezone: Europe/Berlin
    start: 2027-01-04
  audience: profile.traits.vip | default(false)
steps:
  - id: issue
    send: email
    template: newsletter-welcome
  - wait: 1d
"""


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = connect(f"sqlite:///{tmp_path / 'touchpoint.db'}")
    for i in range(30):
        ProfileStore(engine).upsert(f"c{i:03d}", {"vip": i % 3 == 0})
    return engine


def deploy(engine: Engine, plan: Plan) -> Deployments:
    PlanStore(engine).publish([plan])
    deployments = Deployments(engine)
    deployments.deploy([plan], actor="test", reason=None)
    registry.register([plan])
    return deployments


async def sync(client: Client, engine: Engine, prefix: str) -> list[str]:
    lines = await sync_broadcasts(client, Deployments(engine), PlanStore(engine), prefix)
    return [line for line in lines if line.startswith("weekly-")]


async def running(client: Client, journey_id: str, count: int) -> list[str]:
    """The ids of the journey's running runs, once visibility lists ``count`` (or 20 s)."""
    query = f"{JOURNEY_ID.name} = '{journey_id}' AND ExecutionStatus = 'Running'"
    for _ in range(200):
        found = [run.id async for run in client.list_workflows(query)]
        if len(found) >= count:
            return found
        await asyncio.sleep(0.1)
    return found


async def last_broadcast(client: Client, sid: str, actions: int) -> BroadcastResult:
    handle = client.get_schedule_handle(sid)
    for _ in range(200):
        recent = (await handle.describe()).info.recent_actions
        if len(recent) >= actions:
            started = recent[-1].action
            result = await client.get_workflow_handle(started.workflow_id).result()
            return BroadcastResult.model_validate(result)
        await asyncio.sleep(0.1)
    raise AssertionError("the schedule did not start a broadcast")


async def test_a_schedule_is_created_fires_and_follows_the_journeys_state(
    dev_env: WorkflowEnvironment, engine: Engine
) -> None:
    client = dev_env.client
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    journey_id = f"weekly-{uuid.uuid4().hex[:6]}"
    plan = plan_from(journey(journey_id))
    deployments = deploy(engine, plan)
    sid = schedule_id(journey_id, prefix)
    recorder = RecordingActivities()
    audience = AudienceActivities(client, engine, RunSettings(queue_prefix=prefix))
    runs: list[str] = []
    try:
        assert await sync(client, engine, prefix) == [
            f"{journey_id}: schedule created, every Monday at 09:00 (Europe/Berlin, from "
            f"2027-01-04), version {plan.version}"
        ]
        described = await client.get_schedule_handle(sid).describe()
        spec = described.schedule.spec
        assert spec.time_zone_name == "Europe/Berlin"
        [calendar] = spec.calendars
        assert [(r.start, r.end) for r in calendar.day_of_week] == [(1, 1)]  # Monday
        assert [r.start for r in calendar.hour] == [9]
        assert spec.start_at == datetime(2027, 1, 3, 23, 0, tzinfo=UTC)
        assert described.schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
        assert described.schedule.policy.catchup_window == CATCHUP_WINDOW
        listed = subprocess.run(
            [
                binary("temporal"),
                "schedule",
                "list",
                "--address",
                client.service_client.config.target_host,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        assert sid in listed.stdout

        async with running_workers(client, [*recorder.all(), *audience.all()], prefix):
            await client.get_schedule_handle(sid).trigger()
            first = await last_broadcast(client, sid, 1)
            runs = await running(client, journey_id, 10)
            # one_at_a_time: the runs of the first occurrence still wait, so nobody enters
            await client.get_schedule_handle(sid).trigger()
            second = await last_broadcast(client, sid, 2)
        assert (first.counts.read, first.counts.matched, first.counts.started) == (30, 10, 10)
        assert sorted(m.customer_id for m in recorder.sent) == [
            f"c{i:03d}" for i in range(0, 30, 3)
        ]
        assert abs((first.occurrence - datetime.now(UTC)).total_seconds()) < 60
        assert len(runs) == 10
        assert (second.counts.matched, second.counts.started, second.counts.refused) == (
            10,
            0,
            10,
        )

        deployments.set_state(journey_id, "paused", actor="test", reason="hold")
        assert [line.split(",")[0] for line in await sync(client, engine, prefix)] == [
            f"{journey_id}: schedule paused"
        ]
        assert (await client.get_schedule_handle(sid).describe()).schedule.state.paused
        deployments.set_state(journey_id, "active", actor="test", reason="go")
        assert [line.split(",")[0] for line in await sync(client, engine, prefix)] == [
            f"{journey_id}: schedule resumed"
        ]
        assert not (await client.get_schedule_handle(sid).describe()).schedule.state.paused

        later = plan_from(journey(journey_id, time="10:30"))
        deploy(engine, later)
        assert (await sync(client, engine, prefix))[0].startswith(f"{journey_id}: schedule updated")
        described = await client.get_schedule_handle(sid).describe()
        assert [r.start for r in described.schedule.spec.calendars[0].hour] == [10]
        action = described.schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        [payload] = action.args
        started = client.data_converter.payload_converter.from_payload(payload, BroadcastInput)  # type: ignore[arg-type]
        assert started.plan_version == later.version, "new occurrences start the new version"

        deployments.set_state(journey_id, "stopped", actor="test", reason="done")
        assert await sync(client, engine, prefix) == [
            f"{journey_id}: schedule deleted (the journey is stopped)"
        ]
        with pytest.raises(RPCError) as gone:
            await client.get_schedule_handle(sid).describe()
        assert gone.value.status == RPCStatusCode.NOT_FOUND
    finally:
        for run in runs:
            handle = client.get_workflow_handle(run)
            if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
                await handle.terminate("test over")
        with contextlib.suppress(RPCError):
            await client.get_schedule_handle(sid).delete()


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project with the Monday newsletter, its own store and queue prefix."""
    root = tmp_path / "shop"
    (root / "journeys").mkdir(parents=True)
    shutil.copy(ROOT / "touchpoint.yaml", root / "touchpoint.yaml")
    shutil.copytree(ROOT / "templates", root / "templates")
    shutil.copy(ROOT / "journeys" / "monday-newsletter.yaml", root / "journeys")
    monkeypatch.setenv("TOUCHPOINT_DATABASE_URL", f"sqlite:///{tmp_path / 'touchpoint.db'}")
    monkeypatch.setenv("TOUCHPOINT_QUEUE_PREFIX", f"t{uuid.uuid4().hex[:8]}-")
    return root


def test_deploy_pause_and_stop_on_the_command_line_follow_the_schedule(
    dev_env: WorkflowEnvironment, shop: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "TOUCHPOINT_TEMPORAL_ADDRESS", dev_env.client.service_client.config.target_host
    )
    cli = CliRunner()
    where = ["-C", str(shop)]
    deployed = cli.invoke(app, ["deploy", *where])
    paused = cli.invoke(app, ["journeys", "pause", "monday-newsletter", "--why", "x", *where])
    resumed = cli.invoke(app, ["journeys", "resume", "monday-newsletter", "--why", "x", *where])
    stopped = cli.invoke(app, ["journeys", "stop", "monday-newsletter", "--why", "x", *where])
    assert [r.exit_code for r in (deployed, paused, resumed, stopped)] == [0, 0, 0, 0]
    assert "monday-newsletter: schedule created, every Monday at 09:00 (Europe/Berlin" in (
        deployed.stderr
    )
    assert paused.stderr.startswith("monday-newsletter: schedule paused")
    assert resumed.stderr.startswith("monday-newsletter: schedule resumed")
    assert stopped.stderr == "monday-newsletter: schedule deleted (the journey is stopped)\n"


def test_a_deploy_while_temporal_is_down_says_the_worker_will_do_it(
    shop: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOUCHPOINT_TEMPORAL_ADDRESS", "127.0.0.1:1")
    deployed = CliRunner().invoke(app, ["deploy", "-C", str(shop)])
    assert deployed.exit_code == 0
    assert "monday-newsletter  deployed" in deployed.stdout
    assert "note: Temporal at 127.0.0.1:1 is not reachable; scheduled journeys' schedules are " in (
        deployed.stderr
    )


def test_the_schedule_spec_from_cron_and_an_end_date() -> None:
    plan = plan_from(
        "id: weekdays\nname: W\ncategory: marketing\ntrigger:\n  schedule:\n"
        '    cron: "30 7 * * MON-FRI"\n    timezone: Europe/Berlin\n    end: 2027-06-30\n'
        "    rate: 5/s\nsteps:\n  - send: email\n    template: newsletter-welcome\n"
    )
    schedule = broadcast_schedule(plan, "p-", paused=True)
    assert schedule.spec.cron_expressions == ["30 7 * * MON-FRI"]
    assert schedule.spec.calendars == []
    assert schedule.spec.start_at is None
    assert schedule.spec.end_at == datetime(2027, 6, 30, 21, 59, 59, tzinfo=UTC), "the whole day"
    assert schedule.state.paused
    action = schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert (action.id, action.task_queue) == ("p-touchpoint-broadcast/weekdays", "p-" + QUEUE)
    assert action.args == [
        BroadcastInput(journey_id="weekdays", plan_version=plan.version, starts_per_second=5.0)
    ]
