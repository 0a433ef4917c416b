"""A broadcast to many profiles (issue 19): one occurrence of a scheduled journey, fired with its
Temporal Schedule's *trigger now*, on the dev server with the real worker (``python worker.py``),
the store on SQLite and on PostgreSQL 15 — against starting the same runs directly, in the same
run.

Per store: a fresh dev server and store; N profiles written straight into the store's
``profiles`` table in bulk (one transaction of multi-row inserts, **not** through the API);
the benchmark's journey (``bench/broadcast-journey.yaml``: the Monday newsletter's audience,
which one profile in TOUCHPOINT_BENCH_EVERY matches; rate 100,000/s so that the pacing never
waits; each run only waits 30 days) deployed, so the worker creates its schedule when it
starts. Then, interleaved:

1. *direct*, first half: the same runs (same input, ids, policies and search attributes as the
   broadcast's page starts them, another occurrence) started from this process one after the
   other — the broadcast also starts one run at a time (``activities.audience``), so the same
   concurrency bound;
2. *broadcast*: trigger the schedule, wait for the BroadcastWorkflow's chain to end; the time
   from the trigger until the last customer's run started (its start time in Temporal), and the
   start rate over that time;
3. *direct*, second half; then *direct, parallel*: a tenth of N at
   TOUCHPOINT_BENCH_CONCURRENCY (32) starts in flight — what starting concurrently would give.

Also: the worker's RSS (VmRSS sampled every 0.2 s: idle, peak per phase), worker and server CPU
per run, every execution of the BroadcastWorkflow chain (events and bytes of its history:
continue-as-new every 20 pages keeps it bounded), and — **standalone, in this process, on the
same store after the broadcast** — the page query the activity runs (``ProfileStore.page``,
500 profiles; median/p95 over every page), the audience on a page, and the entry store's two
transactions per start.

For each execution of the chain, from its history's event times: how long it lived, how much
of it was the page activity, and the gap to the next. Temporal holds each execution of a
continue-as-new chain open for at least ``history.workflowIdReuseMinimalInterval`` (1 s by
default; the server delays the next run's first workflow task), so one page per execution
(as before 2026-12) read at most 500 profiles a second, 20 pages read 10,000;
TOUCHPOINT_BENCH_ID_REUSE_INTERVAL=0s starts the dev server with it lowered, to see what the
chain does without that floor.

Sizes: TOUCHPOINT_BENCH_PROFILES (100000), TOUCHPOINT_BENCH_PG_PROFILES (the same),
TOUCHPOINT_BENCH_EVERY (25: one profile in 25 is in the audience, 4,000 runs of 100,000 —
every start costs the dev server some 30 ms of CPU, so all 100,000 take over an hour per
store and side on 2 cores), TOUCHPOINT_BENCH_STORES (sqlite,postgresql),
TOUCHPOINT_BENCH_CONCURRENCY (32). Without PostgreSQL's programs (``initdb``, ``pg_ctl``) its
part says so and is skipped."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from report import env_int, header, median, percentile, table
from sqlalchemy import Connection, Engine, insert
from stack import (
    BENCH,
    bench_project,
    connect,
    cpu_seconds,
    dev_server,
    rss_mb,
    run,
    temporary_directory,
    touchpoint_worker,
)
from starts import project_plans, start_broadcast_run
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, ScheduleActionExecutionStartWorkflow

from activities.audience import in_audience
from config.settings import load_settings
from language.validator import validate
from ops.broadcasts import schedule_id
from ops.postgres import Postgres, server_programs
from store.database import connect as connect_store
from store.database import profiles
from store.deployments import Deployments, journey_state
from store.entries import EntryStore
from store.plans import PlanStore
from store.profiles import ProfileStore
from workflows.broadcast_models import PAGE_SIZE, BroadcastResult, occurrence_tag
from workflows.models import RunSettings, customer_hash, workflow_id
from workflows.plan import Plan

JOURNEY = BENCH / "broadcast-journey.yaml"
JOURNEY_ID = "bench-broadcast"
EVENT_TASK_SCHEDULED = EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED
EVENT_ACTIVITY_SCHEDULED = EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
EVENT_ACTIVITY_STARTED = EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
EVENT_ACTIVITY_COMPLETED = EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
DIRECT_OCCURRENCE = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)  # the direct runs' own occurrence
PARALLEL_OCCURRENCE = datetime(2027, 1, 11, 9, 0, tzinfo=UTC)
FILL_BATCH = 5_000
ENTRY_PROBES = 500


def customer(index: int) -> str:
    return f"c{index:07d}"  # customer id order is index order: the last page holds the last


def in_the_audience(index: int, every: int) -> bool:
    return index % every == 0


def traits(index: int, every: int) -> dict[str, Any]:
    """Every ``every``-th profile is a laptop fan who opted in to email; of the others, half
    are into phones only and half did not opt in (the audience's two halves both decide)."""
    fan = in_the_audience(index, every) or index % 2 == 1
    return {
        "first_name": "Kim",
        "interests": ["laptops", "phones"] if fan else ["phones"],
        "email_opt_in": in_the_audience(index, every) or not fan,
        "lifetime_value": index % 2_000,
    }


def fill(engine: Engine, count: int, every: int) -> float:
    """``count`` profiles in one transaction of multi-row inserts (the API would take one
    transaction per profile); seconds taken."""
    now = datetime.now(UTC)
    began = time.perf_counter()
    with engine.begin() as db:
        for first in range(0, count, FILL_BATCH):
            rows = [
                {
                    "customer_id": customer(i),
                    "email": f"{customer(i)}@example.com",
                    "locale": "de" if i % 4 == 0 else "en",
                    "timezone": "Europe/Berlin",
                    "traits": traits(i, every),
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(first, min(count, first + FILL_BATCH))
            ]
            db.execute(insert(profiles), rows)
    return time.perf_counter() - began


@dataclass
class Phase:
    """What one phase took: wall clock, CPU of the worker, server and this process, RSS peak."""

    name: str
    runs: int = 0
    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    rss_peak: float = 0.0


class Meter:
    """The worker's RSS, sampled in the background; CPU seconds of each process on demand."""

    def __init__(self, worker: int, server: int) -> None:
        self.pids = {"worker": worker, "server": server, "bench": os.getpid()}
        self.worker = worker
        self.peak = 0.0
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            value = rss_mb(self.worker)
            self.samples.append(value)
            self.peak = max(self.peak, value)
            await asyncio.sleep(0.2)

    def start(self) -> None:
        self._task = asyncio.create_task(self._sample())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def quiet(self, limit: float = 120) -> None:
        """Until the worker and the server together use under 5 % of a core for 0.5 s."""
        deadline = time.monotonic() + limit
        busy = self.cpu()
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            now = self.cpu()
            if sum(now[k] - busy[k] for k in ("worker", "server")) < 0.025:
                return
            busy = now

    def cpu(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    async def phase(self, name: str, work: Callable[[], Awaitable[int]]) -> Phase:
        """Run ``work``: its seconds, and the CPU until the worker and server are quiet again
        (the last runs' first workflow tasks are part of the phase's cost, not the next's)."""
        self.peak = rss_mb(self.worker)
        before, began = self.cpu(), time.perf_counter()
        runs = await work()
        seconds = time.perf_counter() - began
        await self.quiet()
        after = self.cpu()
        used = {k: after[k] - before[k] for k in before}
        return Phase(name, runs, seconds, used, self.peak)


async def direct(
    client: Client,
    plan: Plan,
    settings: RunSettings,
    customers: Sequence[str],
    occurrence: datetime,
    concurrency: int,
) -> int:
    gate = asyncio.Semaphore(concurrency)

    async def one(name: str) -> None:
        async with gate:
            await start_broadcast_run(client, plan, name, occurrence, settings)

    await asyncio.gather(*(one(c) for c in customers))
    return len(customers)


@dataclass
class Broadcast:
    result: BroadcastResult
    until_last_start: float  # seconds from the trigger to the last run's start
    first_start: float  # seconds from the trigger to the first run's start
    executions: list[Execution]


async def broadcast(client: Client, plan: Plan, sid: str, audience: Sequence[str]) -> Broadcast:
    """Trigger the schedule now; wait for the occurrence to end."""
    schedule = client.get_schedule_handle(sid)
    already = len((await schedule.describe()).info.recent_actions)
    triggered = time.time()
    await schedule.trigger()
    action = None
    while action is None:
        actions = (await schedule.describe()).info.recent_actions
        if len(actions) > already:
            action = actions[-1].action
        else:
            await asyncio.sleep(0.05)
    assert isinstance(action, ScheduleActionExecutionStartWorkflow)
    chain = client.get_workflow_handle(action.workflow_id)
    result = BroadcastResult.model_validate(await chain.result())
    counts = result.counts
    if (counts.matched, counts.started, counts.failed) != (len(audience), len(audience), 0):
        raise SystemExit(
            f"the broadcast should have started {len(audience):,} runs, one per customer in "
            f"the audience; its counts: {counts.model_dump()}"
        )
    tag = occurrence_tag(result.occurrence)

    async def started(name: str) -> float:
        run_id = workflow_id(plan.journey_id, name, None, tag)
        described = await client.get_workflow_handle(run_id).describe()
        return described.start_time.timestamp() - triggered

    return Broadcast(
        result,
        until_last_start=await started(audience[-1]),
        first_start=await started(audience[0]),
        executions=await chain_histories(client, action.workflow_id, action.first_execution_run_id),
    )


@dataclass(frozen=True)
class Execution:
    """One execution of the BroadcastWorkflow chain (one page), from its history."""

    events: int
    size: int  # bytes of its events
    seconds: float  # its first event to its last
    page_seconds: float  # the page activity: started to completed
    queued_seconds: float  # the page activity: scheduled to started
    held_seconds: float  # started to its first workflow task (the server's floor delays it)


async def chain_histories(client: Client, wid: str, run_id: str) -> list[Execution]:
    """Every execution, following continue-as-new from the first."""
    found: list[Execution] = []
    next_run: str | None = run_id
    while next_run:
        history = await client.get_workflow_handle(wid, run_id=next_run).fetch_history()
        events = history.events
        at = {e.event_type: e.event_time.ToDatetime().timestamp() for e in reversed(events)}
        first, last = events[0].event_time, events[-1].event_time
        begun, ended = first.ToDatetime().timestamp(), last.ToDatetime().timestamp()
        found.append(
            Execution(
                events=len(events),
                size=sum(e.ByteSize() for e in events),
                seconds=ended - begun,
                page_seconds=at[EVENT_ACTIVITY_COMPLETED] - at[EVENT_ACTIVITY_STARTED],
                queued_seconds=at[EVENT_ACTIVITY_STARTED] - at[EVENT_ACTIVITY_SCHEDULED],
                held_seconds=at[EVENT_TASK_SCHEDULED] - begun,
            )
        )
        attributes = events[-1].workflow_execution_continued_as_new_event_attributes
        continued = events[-1].HasField("workflow_execution_continued_as_new_event_attributes")
        next_run = attributes.new_execution_run_id if continued else None
    return found


def held(db: Connection) -> str | None:
    """The activity's question before each start: is the journey paused or stopped?"""
    state = journey_state(db, "bench-entry-probe")
    return f"the journey is {state}" if state in ("paused", "stopped") else None


@dataclass
class StoreTimes:
    page_ms: list[float]
    audience_ms: list[float]
    entry_ms: list[float]


def store_times(engine: Engine, plan: Plan) -> StoreTimes:
    """Standalone, on the store after the broadcast: every page as the activity reads it, the
    audience on it, and the entry store's transactions for a start (a journey id of its own)."""
    store, now = ProfileStore(engine), datetime.now(UTC)
    pages, audience = [], []
    after: str | None = None
    while True:
        began = time.perf_counter()
        page = store.page(after, PAGE_SIZE)
        pages.append((time.perf_counter() - began) * 1000)
        began = time.perf_counter()
        for profile in page:
            in_audience(plan, profile, now)
        audience.append((time.perf_counter() - began) * 1000)
        if len(page) < PAGE_SIZE:
            break
        after = page[-1].id
    entries, entry = EntryStore(engine), []
    for i in range(ENTRY_PROBES):
        subject = customer_hash(customer(i))
        began = time.perf_counter()
        claimed = entries.enter(
            "bench-entry-probe",
            subject,
            now,
            once=False,
            cooldown_seconds=0,
            refuse=held,
        )
        if claimed.claimed is None:
            entries.record_entry("bench-entry-probe", subject, now)
        entry.append((time.perf_counter() - began) * 1000)
    return StoreTimes(pages, audience, entry)


@dataclass
class StoreRun:
    store: str
    profiles: int
    audience: int
    fill_seconds: float
    idle_rss: float
    phases: dict[str, Phase]
    broadcast: Broadcast
    times: StoreTimes
    end_rss: float


@dataclass(frozen=True)
class Sizes:
    every: int  # every so-many-th profile is in the audience
    concurrency: int  # starts in flight in the parallel direct phase
    min_interval: str | None = None  # the server's history.workflowIdReuseMinimalInterval

    def dynamic_config(self) -> dict[str, str]:
        if self.min_interval is None:
            return {}
        value = json.dumps(self.min_interval)
        return {"history.workflowIdReuseMinimalInterval": value}


async def measure_store(name: str, url: str | None, count: int, sizes: Sizes) -> StoreRun:
    """One store: fill it, deploy the journey, run the phases on a fresh stack."""
    with temporary_directory("broadcast") as tmp:
        directory = Path(tmp)
        url = url or f"sqlite:///{directory / 'touchpoint.db'}"
        engine = connect_store(url)
        try:
            filled = fill(engine, count, sizes.every)
            print(f"{name}: {count:,} profiles written in {filled:.1f} s", flush=True)
            project = bench_project(directory, journeys=[JOURNEY])
            plan = project_plans(project)[JOURNEY_ID]
            PlanStore(engine).publish([plan])
            Deployments(engine).deploy([plan], actor="bench", reason="broadcast benchmark")
            settings = load_settings(validate((), root=project).config, {}).run_settings()
            audience = [customer(i) for i in range(count) if in_the_audience(i, sizes.every)]
            async with dev_server(directory, dynamic_config=sizes.dynamic_config()) as server:
                client = await connect(server.address)
                extra = {"TOUCHPOINT_DATABASE_URL": url}
                with touchpoint_worker(server, directory, project, **extra) as worker:
                    await asyncio.sleep(2)  # the worker settles (plans loaded, pollers up)
                    meter = Meter(worker.pid, server.pid)
                    idle = rss_mb(worker.pid)
                    meter.start()
                    try:
                        done = await phases(client, plan, settings, meter, audience, sizes, name)
                    finally:
                        await meter.stop()
                    end_rss = rss_mb(worker.pid)
            times = store_times(engine, plan)
        finally:
            engine.dispose()
    phased, fired = done
    return StoreRun(name, count, len(audience), filled, idle, phased, fired, times, end_rss)


async def phases(
    client: Client,
    plan: Plan,
    settings: RunSettings,
    meter: Meter,
    audience: Sequence[str],
    sizes: Sizes,
    name: str,
) -> tuple[dict[str, Phase], Broadcast]:
    """Direct (first half), the broadcast, direct (second half), direct in parallel."""
    half = len(audience) // 2
    sid = schedule_id(plan.journey_id, settings.queue_prefix)
    outcome: list[Broadcast] = []

    async def occurrence() -> int:
        outcome.append(await broadcast(client, plan, sid, audience))
        return outcome[0].result.counts.started

    def starting(
        customers: Sequence[str], occurrence: datetime, concurrency: int
    ) -> Callable[[], Awaitable[int]]:
        return lambda: direct(client, plan, settings, customers, occurrence, concurrency)

    first = await meter.phase("direct", starting(audience[:half], DIRECT_OCCURRENCE, 1))
    print(f"{name}: direct, first half: {first.runs / first.seconds:.1f} runs/s", flush=True)
    fired = await meter.phase("broadcast", occurrence)
    print(f"{name}: broadcast: {fired.runs / fired.seconds:.1f} runs/s", flush=True)
    second = await meter.phase("direct", starting(audience[half:], DIRECT_OCCURRENCE, 1))
    print(f"{name}: direct, second half: {second.runs / second.seconds:.1f} runs/s", flush=True)
    tenth = audience[: max(1, len(audience) // 10)]
    parallel = await meter.phase(
        "parallel", starting(tenth, PARALLEL_OCCURRENCE, sizes.concurrency)
    )
    together = Phase(
        "direct",
        first.runs + second.runs,
        first.seconds + second.seconds,
        {k: first.cpu[k] + second.cpu[k] for k in first.cpu},
        max(first.rss_peak, second.rss_peak),
    )
    return {"direct": together, "broadcast": fired, "parallel": parallel}, outcome[0]


def print_results(runs: Sequence[StoreRun], concurrency: int) -> None:
    rows: list[list[object]] = []
    for r in runs:
        b, counts = r.broadcast, r.broadcast.result.counts
        rate = counts.started / b.until_last_start
        d, p = r.phases["direct"], r.phases["parallel"]
        direct_rate, parallel_rate = d.runs / d.seconds, p.runs / p.seconds
        rows.append(
            [
                r.store,
                f"{r.profiles:,}",
                f"{counts.started:,} of {counts.read:,} read",
                f"{b.until_last_start:.1f}",
                f"{b.first_start:.2f}",
                f"{rate:.0f}",
                f"{direct_rate:.0f}",
                f"{rate / direct_rate:.2f}",
                f"{parallel_rate:.0f}",
            ]
        )
    print(
        table(
            [
                "store",
                "profiles",
                "runs started",
                "s until last run started",
                "s until first",
                "broadcast runs/s",
                "direct runs/s (1 in flight)",
                "broadcast / direct",
                f"direct runs/s ({concurrency} in flight, a tenth)",
            ],
            rows,
        )
    )
    rows = []
    for r in runs:
        t = r.times
        rows.append(
            [
                r.store,
                len(t.page_ms),
                f"{median(t.page_ms):.1f} / {percentile(t.page_ms, 95):.1f}",
                f"{median(t.audience_ms):.1f} / {percentile(t.audience_ms, 95):.1f}",
                f"{median(t.entry_ms):.2f} / {percentile(t.entry_ms, 95):.2f}",
            ]
        )
    print(
        table(
            [
                "store",
                "pages",
                "page query ms (500 profiles), median / p95",
                "audience on a page ms",
                "entry store ms per start",
            ],
            rows,
        )
    )
    rows = []
    for r in runs:
        for phase in r.phases.values():
            rows.append(
                [
                    r.store,
                    phase.name,
                    phase.runs,
                    *(
                        f"{phase.cpu[k] * 1000 / phase.runs:.2f}"
                        for k in ("worker", "server", "bench")
                    ),
                    f"{phase.rss_peak:.0f}",
                ]
            )
        rows.append(
            [r.store, "idle before / after", "", "", "", "", f"{r.idle_rss:.0f} / {r.end_rss:.0f}"]
        )
    print(
        table(
            [
                "store",
                "phase",
                "runs",
                "worker CPU ms/run",
                "server",
                "bench process",
                "worker RSS MB (peak)",
            ],
            rows,
        )
    )
    rows = []
    for r in runs:
        chain = r.broadcast.executions

        def spread(values: list[float], digits: int = 2) -> str:
            found = (median(values), percentile(values, 95), max(values))
            return " / ".join(f"{v:.{digits}f}" for v in found)

        rows.append(
            [
                r.store,
                len(chain),
                r.broadcast.result.pages,
                spread([float(e.events) for e in chain], 0),
                spread([float(e.size) for e in chain], 0),
                spread([e.seconds for e in chain]),
                spread([e.held_seconds for e in chain]),
                spread([e.page_seconds for e in chain]),
                spread([e.queued_seconds * 1000 for e in chain]),
            ]
        )
    print(
        table(
            [
                "store",
                "executions",
                "pages",
                "history events (median / p95 / max)",
                "history bytes",
                "s per execution",
                "s before its first workflow task",
                "s in the page activity",
                "ms page activity queued",
            ],
            rows,
        )
    )


async def main() -> None:
    count = env_int("TOUCHPOINT_BENCH_PROFILES", 100_000)
    pg_count = env_int("TOUCHPOINT_BENCH_PG_PROFILES", count)
    sizes = Sizes(
        every=env_int("TOUCHPOINT_BENCH_EVERY", 25),
        concurrency=env_int("TOUCHPOINT_BENCH_CONCURRENCY", 32),
        min_interval=os.environ.get("TOUCHPOINT_BENCH_ID_REUSE_INTERVAL") or None,
    )
    stores = os.environ.get("TOUCHPOINT_BENCH_STORES", "sqlite,postgresql").split(",")
    unknown = set(stores) - {"sqlite", "postgresql"}
    if unknown or sizes.every < 1 or min(count, pg_count) < 1:
        raise SystemExit(
            "TOUCHPOINT_BENCH_STORES names sqlite, postgresql or both (comma-separated), and "
            "TOUCHPOINT_BENCH_EVERY and the profile counts are 1 or more; got "
            f"{','.join(stores)}, every {sizes.every}, {count} and {pg_count} profiles"
        )
    header(
        "A broadcast: one occurrence of a scheduled journey, triggered now",
        f"{count:,} profiles on SQLite, {pg_count:,} on PostgreSQL (stores: {', '.join(stores)}); "
        f"1 in {sizes.every} in the audience; rate 100000/s; runs that wait 30 days; direct "
        f"starts one at a time, and {sizes.concurrency} in flight for a tenth of the audience; "
        f"server's workflowIdReuseMinimalInterval {sizes.min_interval or '1s (its default)'}",
    )
    runs = []
    for store in stores:
        if store == "sqlite":
            runs.append(await measure_store("SQLite", None, count, sizes))
            continue
        programs = server_programs()
        if programs is None:
            print("PostgreSQL skipped: initdb and pg_ctl are not on PATH", flush=True)
            continue
        postgres = Postgres.start(programs, durable=True)
        try:
            url = postgres.create_database()
            name = f"PostgreSQL {server_version(postgres)}"
            runs.append(await measure_store(name, url, pg_count, sizes))
        finally:
            postgres.stop()
    print_results(runs, sizes.concurrency)


def server_version(postgres: Postgres) -> str:
    with psycopg.connect(postgres.admin_url) as admin:
        row = admin.execute("SHOW server_version").fetchone()
    return str(row[0]).split()[0] if row else "?"


if __name__ == "__main__":
    run(main)
