"""Journey throughput: N customers through a journey of 3 sends and 2 waits (YAML, compiled and
run by the real worker) against a hand-written Temporal workflow doing the same activities and
timers on the same dev server; interleaved rounds.

A second baseline, ``raw-activity-queue``, is the same hand-written workflow with its activities
on a queue of their own, as Touchpoint's sends were before 2026-12-08 (and are for a channel
with a rate limit): on the workflow's own queue the server hands activities to the worker
eagerly, in the workflow task's answer — where Touchpoint schedules its sends now.

Touchpoint runs start as the router starts them (input version 4: a reference to the plan,
which each worker compiled from its project; search attributes on the start). Two Touchpoint
workers, each its own process and queue prefix: the default one, and one whose project says
``worker: index_runs: false`` (no search attributes). A third, ``touchpoint-no-analytics``,
runs the default project with ``worker: analytics: false``: what recording journey analytics
in the store (:mod:`store.analytics`, a write per workflow task that moved a run) costs is the
difference between it and ``touchpoint``.

``BENCH_INPUT_V2=1`` adds a side ``touchpoint-input-v2``: the default worker's journey started
with input version 2, as routers did before version 3 (the run asks ``workflow.patched`` for
each patch: a marker and a ``TemporalChangeVersion`` upsert each), in the same rounds.

Each side has a dev server of its own (and its own worker process, store and record file):
a server's deferred work for a batch — visibility writes, timers, clean-up — used to land in
whichever side's batch ran next on a shared server, and moved the server's CPU per run of one
side by 40 % from one pass to the next. Each batch is measured until BENCH_DRAIN_SECONDS (3)
after its last run ended.

Sizes: BENCH_RUNS (customers per round, default 200), BENCH_ROUNDS (default 3).
Also reports the CPU each side's worker process and its server spent per run, which is far
less noisy than wall-clock throughput on a small shared machine, and the ratio of those totals
(on two busy cores, throughput is the inverse of CPU per run); and the median of that ratio
taken within each round, where both sides ran under the same load."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from raw_worker import activity_queue
from report import env_int, header, median, table, verdict
from stack import (
    BENCH,
    bench_project,
    connect,
    cpu_seconds,
    dev_server,
    raw_worker,
    run,
    temporary_directory,
    touchpoint_worker,
)
from starts import DAY_IN_SECONDS, project_plans, run_batch, start_journey, start_raw

from workflows.models import RunSettings

RAW_STEPS = (
    "send:newsletter-welcome",
    "wait:1",
    "send:newsletter-recommendations",
    "wait:1",
    "send:first-order-discount",
)


@dataclass
class Side:
    name: str
    start: Callable[[str], object]
    worker_pid: int
    server_pid: int
    rates: list[float] = field(default_factory=list)
    worker_cpu_ms: list[float] = field(default_factory=list)
    server_cpu_ms: list[float] = field(default_factory=list)


async def measure(side: Side, runs: int, drain: float) -> None:
    """One batch of ``side``: its rate, and the CPU its worker and its own server spent on it
    — measured until ``drain`` seconds after the last run ended, so that the server's deferred
    work for the batch (visibility, timers, clean-up) is counted with it; what still comes later
    lands in this side's next batch, never in another side's."""
    customers = [f"{side.name}-{uuid.uuid4().hex[:10]}" for _ in range(runs)]
    worker0, server0 = cpu_seconds(side.worker_pid), cpu_seconds(side.server_pid)
    seconds = await run_batch(side.start, customers)  # type: ignore[arg-type]
    await asyncio.sleep(drain)
    side.rates.append(runs / seconds)
    side.worker_cpu_ms.append((cpu_seconds(side.worker_pid) - worker0) * 1000 / runs)
    side.server_cpu_ms.append((cpu_seconds(side.server_pid) - server0) * 1000 / runs)


async def main() -> None:
    runs, rounds = env_int("BENCH_RUNS", 200), env_int("BENCH_ROUNDS", 3)
    drain = float(env_int("BENCH_DRAIN_SECONDS", 3))
    header(
        "Journey throughput: 3 sends + 2 waits of 1 s, Touchpoint vs hand-written",
        f"{runs} customers per round, {rounds} interleaved rounds, a dev server (WAL/normal) "
        f"per side, {drain:.0f} s drain after each batch",
    )
    journey = BENCH / "throughput-journey.yaml"
    with temporary_directory("throughput") as tmp:
        directory = Path(tmp)
        project = bench_project(directory, "project", [journey])
        plain_project = bench_project(
            directory, "project-no-index", [journey], {"index_runs": False}
        )
        quiet_project = bench_project(
            directory, "project-no-analytics", [journey], {"analytics": False}
        )
        plan = project_plans(project)["bench-three-sends"]
        names = ["raw", "raw-activity-queue", "touchpoint", "touchpoint-no-index"]
        names += ["touchpoint-no-analytics"]
        if env_int("BENCH_INPUT_V2", 0):
            names.append("touchpoint-input-v2")
        async with contextlib.AsyncExitStack() as stack:
            servers = {
                name: await stack.enter_async_context(
                    dev_server(directory, name=f"temporal-{name}")
                )
                for name in names
            }
            clients = {name: await connect(server.address) for name, server in servers.items()}

            def worker_of(name: str, chosen: Path, **extra: str) -> int:
                """The real worker of side ``name``, on its own server, store and record."""
                process = stack.enter_context(
                    touchpoint_worker(
                        servers[name],
                        directory,
                        chosen,
                        log=f"worker-{name}",
                        TOUCHPOINT_DATABASE_URL=f"sqlite:///{directory / f'{name}.db'}",
                        TOUCHPOINT_RECORD_FILE=str(directory / f"{name}-sent.jsonl"),
                        **extra,
                    )
                )
                return process.pid

            def raw_of(name: str) -> int:
                return stack.enter_context(raw_worker(servers[name], directory, "raw-bench")).pid

            indexed = RunSettings(queue_prefix="tp-", time_scale=DAY_IN_SECONDS)
            quiet = RunSettings(queue_prefix="tpq-", time_scale=DAY_IN_SECONDS)
            unindexed = RunSettings(
                queue_prefix="tpn-", time_scale=DAY_IN_SECONDS, index_runs=False
            )
            own_queue = activity_queue("raw-bench")
            starters: dict[str, tuple[Callable[[str], object], int]] = {
                "raw": (
                    lambda c: start_raw(clients["raw"], "raw-bench", c, RAW_STEPS),
                    raw_of("raw"),
                ),
                "raw-activity-queue": (
                    lambda c: start_raw(
                        clients["raw-activity-queue"], "raw-bench", c, RAW_STEPS, own_queue
                    ),
                    raw_of("raw-activity-queue"),
                ),
                "touchpoint": (
                    lambda c: start_journey(clients["touchpoint"], plan, c, indexed),
                    worker_of("touchpoint", project, TOUCHPOINT_QUEUE_PREFIX="tp-"),
                ),
                "touchpoint-no-index": (
                    lambda c: start_journey(clients["touchpoint-no-index"], plan, c, unindexed),
                    worker_of("touchpoint-no-index", plain_project, TOUCHPOINT_QUEUE_PREFIX="tpn-"),
                ),
                "touchpoint-no-analytics": (
                    lambda c: start_journey(clients["touchpoint-no-analytics"], plan, c, quiet),
                    worker_of(
                        "touchpoint-no-analytics", quiet_project, TOUCHPOINT_QUEUE_PREFIX="tpq-"
                    ),
                ),
            }
            if "touchpoint-input-v2" in names:
                starters["touchpoint-input-v2"] = (
                    lambda c: start_journey(
                        clients["touchpoint-input-v2"], plan, c, indexed, input_version=2
                    ),
                    worker_of("touchpoint-input-v2", project, TOUCHPOINT_QUEUE_PREFIX="tp-"),
                )
            sides = [
                Side(name, starters[name][0], starters[name][1], servers[name].pid)
                for name in names
            ]
            for side in sides:  # warm-up: one run each
                await run_batch(side.start, [f"warmup-{side.name}"])  # type: ignore[arg-type]
            for round_number in range(rounds):
                order = sides if round_number % 2 == 0 else list(reversed(sides))
                for side in order:
                    await measure(side, runs, drain)
                print(
                    f"  round {round_number + 1}: "
                    + ", ".join(f"{s.name} {s.rates[-1]:.1f} runs/s" for s in sides),
                    flush=True,
                )
    raw_side = sides[0]
    rows = []
    for side in sides:
        rows.append(
            [
                side.name,
                median(side.rates),
                median(side.rates) / median(raw_side.rates),
                median([a / b for a, b in zip(side.rates, raw_side.rates, strict=True)]),
                median(side.worker_cpu_ms),
                median(side.server_cpu_ms),
                cpu_per_run(raw_side) / cpu_per_run(side),
                median(
                    [
                        raw / this
                        for raw, this in zip(round_cpu(raw_side), round_cpu(side), strict=True)
                    ]
                ),
            ]
        )
    print(
        table(
            [
                "workflow",
                "runs/s (median)",
                "ratio vs raw",
                "ratio per round (median)",
                "worker CPU ms/run",
                "server CPU ms/run",
                "CPU ratio (raw / this)",
                "CPU ratio per round (median)",
            ],
            rows,
        )
    )
    for side, row in zip(sides[2:], rows[2:], strict=True):
        ratio, by_cpu, paired = float(row[2]), float(row[6]), float(row[7])  # type: ignore[arg-type]
        print(
            f"throughput ratio {side.name}/raw = {ratio:.2f}: {verdict(ratio, 0.9)} (aim 1.0); "
            f"by CPU per run (worker + server) {by_cpu:.2f}, per round {paired:.2f}"
        )
    named = {side.name: side for side in sides}
    recorded, unrecorded = named["touchpoint"], named["touchpoint-no-analytics"]
    rate = median(
        [a / b for a, b in zip(recorded.rates, unrecorded.rates, strict=True)]
    )  # per round: both ran in it, under the same load
    cost = cpu_per_run(recorded) / cpu_per_run(unrecorded)
    print(
        f"analytics: throughput with/without = {rate:.3f} (per round, median); CPU per run "
        f"with/without = {cost:.3f} ({cpu_per_run(recorded):.0f} vs "
        f"{cpu_per_run(unrecorded):.0f} ms; worker alone "
        f"{median(recorded.worker_cpu_ms):.1f} vs {median(unrecorded.worker_cpu_ms):.1f} ms); "
        f"aim: cost at most 5 %"
    )
    if "touchpoint-input-v2" in named:
        v2, v3 = cpu_per_run(named["touchpoint-input-v2"]), cpu_per_run(named["touchpoint"])
        print(f"CPU per run, input version 3 / version 2 = {v3 / v2:.2f} ({v3:.0f} vs {v2:.0f} ms)")


def round_cpu(side: Side) -> list[float]:
    """Worker + server CPU per run of each round: a round's sides ran back to back, under the
    same load, so the ratio within a round is less moved by the machine's drift."""
    return [w + s for w, s in zip(side.worker_cpu_ms, side.server_cpu_ms, strict=True)]


def cpu_per_run(side: Side) -> float:
    """Worker + server CPU per run: on a CPU-bound machine throughput is its inverse, and it
    stays steady when other processes share the cores (wall-clock rates do not)."""
    return median(side.worker_cpu_ms) + median(side.server_cpu_ms)


if __name__ == "__main__":
    run(main)
