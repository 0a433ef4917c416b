"""A broadcast's start rate, in real time: one page of the real activity (``broadcast_page``)
over a real SQLite store, starting real runs on Temporal's time-skipping server. The page
paces its starts to the request's rate, else the schedule's ``rate:``, else the default (50/s);
N starts at R a second take at least (N − 1) / R seconds, and all N start."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.audience import AudienceActivities
from simulation.recording import RecordingActivities
from store.database import connect, profiles
from tests.temporal import deployed_from, running_workers
from workflows.broadcast_models import DEFAULT_STARTS_PER_SECOND, PageRequest, PageResult
from workflows.models import RunSettings
from workflows.plan import Plan

MONDAY = datetime(2027, 1, 4, 8, 0, tzinfo=UTC)


def journey(rate: str | None) -> str:
    """A journey of its own per test (run ids are per journey, customer and occurrence)."""
    line = f"\n    rate: {rate}" if rate else ""
    return f"""
id: paced-{uuid.uuid4().hex[:8]}
name: Paced news
category: marketing
trigger:
  schedule:
    every: monday 09:00
    timezone: Europe/Berlin{line}
steps:
  - id: issue
    send: email
    template: newsletter-welcome
"""


def store_of(tmp_path: Path, count: int) -> Engine:
    engine = connect(f"sqlite:///{tmp_path / 'touchpoint.db'}")
    now = datetime.now(UTC)
    rows = [
        {
            "customer_id": f"c{i:05d}",
            "email": f"c{i}@example.com",
            "traits": {},
            "created_at": now,
            "updated_at": now,
        }
        for i in range(count)
    ]
    with engine.begin() as db:
        db.execute(insert(profiles), rows)
    return engine


def deployed(engine: Engine, rate: str | None) -> Plan:
    return deployed_from(engine, journey(rate))


async def one_page(
    env: WorkflowEnvironment, engine: Engine, plan: Plan, requested: float | None
) -> tuple[PageResult, float]:
    """Run one page (every profile) of ``plan``'s Monday occurrence; its result and seconds."""
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    audience = AudienceActivities(
        env.client, engine, RunSettings(queue_prefix=prefix, index_runs=False)
    )
    request = PageRequest(
        journey_id=plan.journey_id,
        plan_version=plan.version,
        occurrence=MONDAY,
        page_size=500,
        starts_per_second=requested,
    )
    recorder = RecordingActivities()
    async with running_workers(env.client, recorder.all(), prefix):
        began = time.monotonic()
        page = await ActivityEnvironment().run(audience.broadcast_page, request)
        return page, time.monotonic() - began


@pytest.mark.parametrize(
    ("rate", "requested"),
    [("5/s", None), ("100000/s", 5.0)],
    ids=["the schedule's rate", "the request's rate over the schedule's"],
)
async def test_a_page_starts_everyone_at_the_rate(
    time_env: WorkflowEnvironment, tmp_path: Path, rate: str, requested: float | None
) -> None:
    customers = 11
    engine = store_of(tmp_path, customers)
    page, seconds = await one_page(time_env, engine, deployed(engine, rate), requested)
    assert page.counts.started == customers, "everyone starts, only later"
    assert seconds >= (customers - 1) / 5, f"11 starts at 5/s took {seconds:.2f} s"


async def test_without_a_rate_the_default_applies(
    time_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """50/s: 151 starts take at least 3 s (unpaced, about 1.7 s here)."""
    customers = 151
    engine = store_of(tmp_path, customers)
    plan = deployed(engine, rate=None)
    assert plan.schedule is not None and plan.schedule.starts_per_second is None
    page, seconds = await one_page(time_env, engine, plan, requested=None)
    assert page.counts.started == customers
    assert seconds >= (customers - 1) / DEFAULT_STARTS_PER_SECOND, f"took {seconds:.2f} s"
