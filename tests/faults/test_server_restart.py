"""Stop the Temporal dev server (SIGTERM, and ``kill -9``) while journeys wait, start it again
on the same SQLite file: every run resumes, and each wait lasts as long as the journey says."""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest

from tests.faults.runs import plan_of, results_of, start_runs
from tests.faults.stack import Processes, connect, ledger_of, make_project

pytestmark = pytest.mark.chaos

WAITS = """
id: waits
name: Waits
category: marketing
trigger:
  event: Fault Started
steps:
  - send: email
    template: note
  - wait: 8s
  - send: email
    template: note
  - wait: 3s
  - send: email
    template: note
"""
RUNS = 20
LATE = timedelta(seconds=3)  # a timer, the workflow task after it, and the send


async def wait_for_sends(project: Path, count: int, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while sum(1 for row in ledger_of(project) if row.status == "sent") < count:
        assert time.monotonic() < deadline, f"fewer than {count} sends after {seconds} s"
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
async def test_runs_waiting_through_a_server_restart_finish_on_time(
    stack: Processes, tmp_path: Path, stop: signal.Signals
) -> None:
    project = make_project(tmp_path / "project", {"waits": WAITS})
    server = stack.server().start()
    client = await connect(server)
    stack.worker(project, server).start()
    handles = await start_runs(client, plan_of(project, "waits"), stack.prefix, RUNS)
    await wait_for_sends(project, RUNS)  # every run is in its first wait now

    stopping = time.monotonic()
    server.stop(stop)
    await asyncio.sleep(1)
    server.start()
    down = timedelta(seconds=time.monotonic() - stopping)  # until it answers again
    print(f"server down for {down.total_seconds():.1f} s")
    results = await results_of(handles, 60)

    assert {r.outcome.kind for r in results} == {"completed"}, stack.logs()
    for result in results:
        first, second, third = (entry.at for entry in result.timeline if entry.kind == "sent")
        # a timer due while the server was down fires as soon as it is back: never early,
        # and late by no more than the outage
        assert timedelta(seconds=8) <= second - first <= timedelta(seconds=8) + LATE + down
        assert timedelta(seconds=3) <= third - second <= timedelta(seconds=3) + LATE + down
    assert len(ledger_of(project)) == 3 * RUNS
