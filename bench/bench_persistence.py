"""Dev server persistence: the same workload on two dev servers, one with SQLite's default
pragmas (rollback journal, synchronous=FULL) and one with ``touchpoint dev``'s
``journal_mode=wal`` + ``synchronous=normal``; interleaved rounds.

Two workloads: starts (signal-with-start of a journey on a queue no worker polls: pure server
writes) and whole journeys (3 sends + 2 waits of 1 s through the real worker).
Sizes: BENCH_STARTS (default 400), BENCH_RUNS (default 150), BENCH_ROUNDS (default 2)."""

from __future__ import annotations

import asyncio
import uuid
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from report import env_int, header, median, table, verdict
from stack import (
    BENCH,
    WAL_PRAGMAS,
    DevServer,
    bench_project,
    connect,
    cpu_seconds,
    dev_server,
    run,
    temporary_directory,
    touchpoint_worker,
)
from starts import DAY_IN_SECONDS, project_plans, start_journey
from temporalio.client import Client

from workflows.models import RunSettings
from workflows.plan import Plan


@dataclass
class Server:
    name: str
    server: DevServer
    client: Client
    starts: list[float] = field(default_factory=list)
    runs: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)


async def starts_per_second(target: Server, plan: Plan, count: int) -> float:
    idle = RunSettings(queue_prefix="nobody-polls-", time_scale=DAY_IN_SECONDS)
    gate = asyncio.Semaphore(32)

    async def one() -> None:
        async with gate:
            await start_journey(target.client, plan, f"s-{uuid.uuid4().hex[:12]}", idle)

    began = asyncio.get_running_loop().time()
    await asyncio.gather(*(one() for _ in range(count)))
    return count / (asyncio.get_running_loop().time() - began)


async def runs_per_second(target: Server, plan: Plan, count: int, settings: Any) -> float:
    from starts import run_batch

    cpu0 = cpu_seconds(target.server.pid)
    seconds = await run_batch(
        lambda c: start_journey(target.client, plan, c, settings),
        [f"r-{uuid.uuid4().hex[:12]}" for _ in range(count)],
    )
    target.cpu_ms.append((cpu_seconds(target.server.pid) - cpu0) * 1000 / count)
    return count / seconds


async def main() -> None:
    starts, runs = env_int("BENCH_STARTS", 400), env_int("BENCH_RUNS", 150)
    rounds = env_int("BENCH_ROUNDS", 2)
    header(
        "Dev server persistence: SQLite default pragmas vs WAL + synchronous=normal",
        f"{starts} starts and {runs} journeys (3 sends + 2 waits of 1 s) per round, "
        f"{rounds} interleaved rounds, one real worker per server",
    )
    settings = RunSettings(queue_prefix="p-", time_scale=DAY_IN_SECONDS)
    with temporary_directory("persistence") as tmp:
        directory = Path(tmp)
        project = bench_project(directory, "project", [BENCH / "throughput-journey.yaml"])
        plan = project_plans(project)["bench-three-sends"]
        async with AsyncExitStack() as servers:
            targets = []
            for name, pragmas in (("default", ()), ("wal+normal", WAL_PRAGMAS)):
                folder = directory / name.replace("+", "-")
                folder.mkdir()
                server = await servers.enter_async_context(dev_server(folder, pragmas))
                targets.append(Server(name, server, await connect(server.address)))
            with ExitStack() as workers:
                for target in targets:
                    folder = target.server.database.parent
                    workers.enter_context(
                        touchpoint_worker(
                            target.server, folder, project, TOUCHPOINT_QUEUE_PREFIX="p-"
                        )
                    )
                for target in targets:
                    await runs_per_second(target, plan, 5, settings)  # warm-up
                    target.cpu_ms.clear()
                for number in range(rounds):
                    for target in targets if number % 2 == 0 else reversed(targets):
                        target.starts.append(await starts_per_second(target, plan, starts))
                        target.runs.append(await runs_per_second(target, plan, runs, settings))
                    print(
                        f"  round {number + 1}: "
                        + ", ".join(
                            f"{t.name} {t.starts[-1]:.0f} starts/s {t.runs[-1]:.1f} runs/s"
                            for t in targets
                        ),
                        flush=True,
                    )
    default, wal = targets
    rows = [
        [
            t.name,
            median(t.starts),
            median(t.starts) / median(default.starts),
            median(t.runs),
            median(t.runs) / median(default.runs),
            median(t.cpu_ms),
        ]
        for t in targets
    ]
    print(
        table(
            ["SQLite pragmas", "starts/s", "ratio", "journeys/s", "ratio", "server CPU ms/journey"],
            rows,
        )
    )
    ratio = median(wal.starts) / median(default.starts)
    print(f"WAL/default starts ratio = {ratio:.2f}: {verdict(ratio, 1.0)}")


if __name__ == "__main__":
    run(main)
