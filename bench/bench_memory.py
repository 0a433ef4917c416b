"""Memory: resident memory of the real worker process (``python worker.py``) with 1k, 5k and
10k journeys waiting, beside the hand-written baseline's worker holding as many waiting runs.

Touchpoint runs the example ``newsletter-welcome`` journey (a welcome email, then a 2-day wait),
started as the router starts it (input version 4: a reference to the plan the worker compiled);
the baseline sends one email and sleeps 2 days. A level counts once every run has sent its
email (the record files say so). RSS is VmRSS from /proc/PID/status.
Sizes: BENCH_LEVELS (default "1000,2000", a few minutes; the issue's "1000,5000,10000" takes
about half an hour on 2 cores, the dev server being the bottleneck). BENCH_MAX_CACHED sets both
workers' ``max_cached_workflows`` (default: the project's); BENCH_FILL_SECONDS how long a level
may take to fill (default 900; more on a busy machine)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path

from report import env_int, header, table, verdict
from stack import (
    ROOT,
    bench_project,
    connect,
    dev_server,
    raw_worker,
    rss_mb,
    run,
    temporary_directory,
    touchpoint_worker,
)
from starts import Starter, project_plans, start_journey, start_raw

from language.validator import validate
from workflows.models import RunSettings

GOAL_MB = 300  # issue 13: at 10,000 journeys waiting

RAW_STEPS = ("send:newsletter-welcome", "wait:172800")


def lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as file:
        return sum(1 for _ in file)


async def fill(
    start: Starter, count: int, record: Path, target: int, concurrency: int = 64
) -> float:
    """Start ``count`` runs, then wait until ``target`` emails are recorded; seconds taken."""
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            await start(f"m-{uuid.uuid4().hex[:12]}")

    began = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    while lines(record) < target:
        if time.perf_counter() - began > env_int("BENCH_FILL_SECONDS", 900):
            raise SystemExit(f"only {lines(record)} of {target} runs reached their wait")
        await asyncio.sleep(0.5)
    return time.perf_counter() - began


async def main() -> None:
    levels = [int(n) for n in os.environ.get("BENCH_LEVELS", "1000,2000").split(",")]
    cache = os.environ.get("BENCH_MAX_CACHED")
    cached = int(cache) if cache else validate((), root=ROOT).config.worker.max_cached_workflows
    header(
        "Memory: worker RSS with journeys waiting, Touchpoint vs hand-written",
        f"levels {levels}; worker max_cached_workflows {cached} (both workers)",
    )
    rows = []
    with temporary_directory("memory") as tmp:
        directory = Path(tmp)
        project = bench_project(directory, worker={"max_cached_workflows": cached})
        plan = project_plans(project)["newsletter-welcome"]
        async with dev_server(directory) as server:
            client = await connect(server.address)
            prefix = "mem-"
            with (
                touchpoint_worker(
                    server, directory, project, TOUCHPOINT_QUEUE_PREFIX=prefix
                ) as worker,
                raw_worker(server, directory, "mem-raw", cached) as raw,
            ):
                await asyncio.sleep(2)
                rows.append([0, rss_mb(worker.pid), rss_mb(raw.pid), "", ""])
                settings = RunSettings(queue_prefix=prefix)
                done = 0
                for level in levels:
                    more = level - done
                    tp_seconds = await fill(
                        lambda c: start_journey(client, plan, c, settings),
                        more,
                        directory / "sent.jsonl",
                        level,
                    )
                    print(
                        f"  {level} waiting: touchpoint {rss_mb(worker.pid):.0f} MB "
                        "(the hand-written side fills next)",
                        flush=True,
                    )
                    raw_seconds = await fill(
                        lambda c: start_raw(client, "mem-raw", c, RAW_STEPS),
                        more,
                        directory / "raw-sent.jsonl",
                        level,
                    )
                    done = level
                    await asyncio.sleep(2)
                    rows.append(
                        [
                            level,
                            rss_mb(worker.pid),
                            rss_mb(raw.pid),
                            more / tp_seconds,
                            more / raw_seconds,
                        ]
                    )
                    print(
                        f"  {level} waiting: touchpoint {rows[-1][1]:.0f} MB, "
                        f"raw {rows[-1][2]:.0f} MB",
                        flush=True,
                    )
    print(
        table(
            [
                "journeys waiting",
                "touchpoint worker RSS MB",
                "hand-written worker RSS MB",
                "ratio",
                "touchpoint runs/s to the wait",
                "hand-written runs/s",
            ],
            [[r[0], r[1], r[2], r[1] / r[2], r[3], r[4]] for r in rows],
        )
    )
    top = rows[-1][1]
    print(
        f"touchpoint worker at {rows[-1][0]} waiting: {top:.0f} MB: "
        f"{verdict(top, GOAL_MB, higher_is_better=False)}"
    )
    raw_top = rows[-1][2]
    print(
        f"worker RSS touchpoint/hand-written at {rows[-1][0]} waiting = {top / raw_top:.2f} "
        f"({top:.0f} vs {raw_top:.0f} MB)"
    )


if __name__ == "__main__":
    run(main)
