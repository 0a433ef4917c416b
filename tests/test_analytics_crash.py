"""``kill -9`` the worker process mid-journey on the Temporal dev server and start it again:
every step pass is in the store exactly once, as the runs' timelines say, and the numbers show
within 5 seconds of the runs' ends."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from store.analytics import Analytics
from store.database import step_passes
from tests.faults.runs import plan_of, results_of, start_runs
from tests.faults.stack import connect, database_url, make_project, processes, store_of

NOTES = """
id: paced-notes
name: Paced notes
category: marketing
trigger:
  event: Fault Started
steps:
  - id: first
    send: email
    template: note
  - id: pause
    wait: 2s
  - id: second
    send: email
    template: note
  - id: again
    wait: 2s
  - id: third
    send: email
    template: note
"""
RUNS = 20
VISIBLE_SECONDS = 5.0


def passes(analytics: Analytics) -> int:
    with analytics.engine.connect() as db:
        return int(db.scalar(select(func.count()).select_from(step_passes)) or 0)


@pytest.mark.timeout(300)
async def test_kill_9_mid_journey_counts_every_pass_exactly_once(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project", {"paced-notes": NOTES})
    analytics = Analytics(store_of(database_url(project)))
    with processes(tmp_path) as stack:
        server = stack.server().start()
        client = await connect(server)
        worker = stack.worker(project, server).start()
        handles = await start_runs(client, plan_of(project, "paced-notes"), stack.prefix, RUNS)
        deadline = time.monotonic() + 60
        while passes(analytics) < RUNS:  # mid-journey: every run passed a step or more
            assert time.monotonic() < deadline, stack.logs()
            await asyncio.sleep(0.05)
        worker.kill()
        at_kill = passes(analytics)
        worker.start()
        results = await results_of(handles, 180)
        ended = time.monotonic()
        stats = analytics.journey("paced-notes", datetime.now(UTC) - timedelta(hours=1))
        while stats.outcomes.completed < RUNS and time.monotonic() - ended < VISIBLE_SECONDS:
            await asyncio.sleep(0.1)
            stats = analytics.journey("paced-notes", datetime.now(UTC) - timedelta(hours=1))
        print(f"{at_kill} of {RUNS * 5} passes recorded at the kill")
    assert 0 < at_kill < RUNS * 5, "killed mid-journey"
    assert {r.outcome.kind for r in results} == {"completed"}
    timelines = Counter(e.step for r in results for e in r.timeline)
    assert stats.entered == RUNS and stats.outcomes.completed == RUNS, "visible within 5 s"
    assert {s.step: s.passed for s in stats.steps} == dict(timelines)
    assert set(timelines.values()) == {RUNS}
    assert sum(s.waiting for s in stats.steps) == 0
    assert passes(analytics) == RUNS * 5
