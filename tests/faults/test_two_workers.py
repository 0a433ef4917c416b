"""Two worker processes on the same task queues share the work, and the journeys finish when
one of them is killed while they wait."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from tests.faults.runs import (
    Handle,
    activities_in_flight,
    activity_starts,
    plan_of,
    results_of,
    start_runs,
)
from tests.faults.stack import Processes, WorkerProcess, connect, ledger_of, make_project

pytestmark = pytest.mark.chaos

NOTE_WAIT_NOTE = """
id: note-wait-note
name: Note, wait, note
category: marketing
trigger:
  event: Fault Started
steps:
  - send: email
    template: note
  - wait: 4s
  - send: email
    template: note
"""
RUNS = 30


async def kill_while_waiting(worker: WorkerProcess, project: Path, handles: list[Handle]) -> None:
    """``kill -9`` ``worker`` once every first email is sent and it holds no activity."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if sum(1 for row in ledger_of(project) if row.status == "sent") == RUNS:
            worker.send(signal.SIGSTOP)
            if not await activities_in_flight(handles):
                worker.kill()
                return
            worker.send(signal.SIGCONT)
        await asyncio.sleep(0.02)
    raise AssertionError("the first emails were not all sent")


async def test_two_workers_share_the_work_and_survive_one_being_killed(
    stack: Processes, tmp_path: Path
) -> None:
    project = make_project(tmp_path / "project", {"note-wait-note": NOTE_WAIT_NOTE})
    server = stack.server().start()
    client = await connect(server)
    first = stack.worker(project, server, "first").start()
    second = stack.worker(project, server, "second").start()
    identities = {first.identity: "first", second.identity: "second"}
    handles = await start_runs(client, plan_of(project, "note-wait-note"), stack.prefix, RUNS)

    await kill_while_waiting(first, project, handles)
    results = await results_of(handles, 60)

    assert {r.outcome.kind for r in results} == {"completed"}, stack.logs()
    senders: dict[str, list[str]] = {}
    for start in await activity_starts(handles):
        senders.setdefault(start.workflow_id, []).append(identities[start.identity])
    assert {first for first, _ in senders.values()} == {"first", "second"}, "both sent"
    assert {second for _, second in senders.values()} == {"second"}, "the survivor took over"
    ledger = ledger_of(project)
    assert len(ledger) == 2 * RUNS and {row.status for row in ledger} == {"sent"}
