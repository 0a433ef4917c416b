"""``kill -9`` the worker in the middle of a broadcast on the dev server (``make chaos``: about
three minutes, most of it the page's heartbeat timeout and two worker starts); a new worker
finishes it. Every customer of the audience got exactly one message — nobody lost, nobody
twice — for ``reentry: every_time`` and for ``once``, whose entries the store claims (a claim
the killed worker took for a run it never started is resumed by the retried page, not refused)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert
from temporalio.testing import WorkflowEnvironment

from store.database import connect, profiles
from store.deployments import Deployments
from store.plans import PlanStore
from tests.conftest import ROOT
from tests.temporal import plan_from
from workflows.broadcast_models import BROADCAST_QUEUE, BroadcastInput, BroadcastResult

PROFILES = 3_000


def journey(reentry: str) -> str:
    return f"""
id: crash-news-{uuid.uuid4().hex[:6]}
name: Crash news
category: marketing
trigger:
  schedule:
    every: monday 09:00
    rate: 100/s
  audience: profile.traits.fan
entry:
  reentry: {reentry}
steps:
  - send: email
    template: newsletter-welcome
"""


class Worker:
    """``python worker.py`` against the dev server and a store of its own."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log.open("a")
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "worker.py"), "--project", str(ROOT)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        assert self.process.stdout is not None
        ready = self.process.stdout.readline()
        assert "touchpoint worker ready" in ready, log.read_text()

    def stop(self, *, kill: bool = False) -> None:
        if self.process.poll() is None:
            (self.process.kill if kill else self.process.terminate)()
            self.process.wait(timeout=30)
        assert self.process.stdout is not None
        self.process.stdout.close()
        self.log.close()


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.stop(kill=True)


def sent(record: Path) -> list[str]:
    if not record.exists():
        return []
    return [json.loads(line)["customer_id"] for line in record.read_text().splitlines() if line]


@pytest.mark.timeout(480)
@pytest.mark.parametrize("reentry", ["every_time", "once"])
async def test_a_worker_killed_mid_broadcast_loses_and_duplicates_nobody(
    dev_env: WorkflowEnvironment, tmp_path: Path, workers: list[Worker], reentry: str
) -> None:
    database = f"sqlite:///{tmp_path / 'touchpoint.db'}"
    engine = connect(database)
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = [
        {
            "customer_id": f"c{i:05d}",
            "email": f"c{i}@example.com",
            "traits": {"fan": i % 3 == 0},
            "created_at": now,
            "updated_at": now,
        }
        for i in range(PROFILES)
    ]
    with engine.begin() as db:
        db.execute(insert(profiles), rows)
    plan = plan_from(journey(reentry))
    PlanStore(engine).publish([plan])
    Deployments(engine).deploy([plan], actor="test", reason=None)
    engine.dispose()
    expected = sorted(f"c{i:05d}" for i in range(0, PROFILES, 3))

    prefix = f"crash{uuid.uuid4().hex[:6]}-"
    record = tmp_path / "sent.jsonl"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TOUCHPOINT_TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "TOUCHPOINT_DATABASE_URL": database,
        "TOUCHPOINT_QUEUE_PREFIX": prefix,
        "TOUCHPOINT_RECORD_FILE": str(record),
    }
    workers.append(Worker(env, tmp_path / "worker.log"))
    handle = await dev_env.client.start_workflow(
        "BroadcastWorkflow",
        BroadcastInput(journey_id=plan.journey_id, plan_version=plan.version),
        id=f"broadcast-{uuid.uuid4()}",
        task_queue=prefix + BROADCAST_QUEUE,
    )
    deadline = time.monotonic() + 120
    while len(sent(record)) < 250 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    workers[0].stop(kill=True)  # mid-page: 250 of 1,000 sent, the page's starts half done
    before = len(sent(record))
    assert 250 <= before < len(expected), "killed in the middle"

    workers.append(Worker(env, tmp_path / "worker.log"))
    result = BroadcastResult.model_validate(await asyncio.wait_for(handle.result(), 240))
    deadline = time.monotonic() + 60
    while len(sent(record)) < len(expected) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)  # a duplicate would show up meanwhile
    customers = sent(record)
    assert sorted(customers) == expected, "everybody once: nobody lost, nobody twice"
    assert result.counts.matched == len(expected)
    assert result.counts.started + result.counts.already_started == len(expected)
    assert result.counts.refused == 0, "no claim of the killed worker's refused its customer"
    assert result.counts.read == PROFILES
