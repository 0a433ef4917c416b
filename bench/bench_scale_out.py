"""Ingestion past one process (issue 15): events/s through ``POST /v1/track`` with the store on
SQLite and on PostgreSQL (one API process), and with 1, 2 and 4 API processes on one PostgreSQL,
each against direct signal-with-start of the same journey from this process (the baseline of
``bench_ingestion.py``), all in the same run, in interleaved rounds.

Every event is a new customer's ``Newsletter Subscribed`` (as in ``bench_ingestion.py``); with
several APIs the events go round-robin to them (a load balancer's job), the same number in
flight in total as the baseline has. No worker runs. For each path, the CPU each part spent per
event: the API processes, the store (PostgreSQL: the postmaster and every backend it forked,
from /proc; SQLite runs inside the API, so its share is in the API's), the Temporal dev server,
and this process (the HTTP client, or the baseline's Temporal client).

PostgreSQL runs from its own programs (``ops/postgres.py``, as the store tests start it), with
its own settings for durability (``fsync``, commits flushed). Without ``initdb``/``pg_ctl`` the
benchmark says so and exits 0. Sizes: BENCH_EVENTS (per round and path, default 300),
BENCH_ROUNDS (3), BENCH_CONCURRENCY (32 in flight), BENCH_APIS (1,2,4).
BENCH_PROFILE=DIR also records a py-spy profile of one PostgreSQL API in each of its rounds
(py-spy from PATH or PY_SPY)."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from report import env_int, header, median, percentile, table, verdict
from stack import (
    ROOT,
    api_command,
    child,
    connect,
    cpu_seconds,
    create_write_key,
    dev_server,
    free_port,
    run,
    temporary_directory,
    worker_env,
)
from starts import project_plans, start_journey

from ops.postgres import Postgres, server_programs
from workflows.models import RunSettings

EVENT = "Newsletter Subscribed"
GOAL = 0.8
PARTS = ("api", "store", "server", "client")


@dataclass
class Way:
    """One way in: the baseline, or N API processes on one store."""

    name: str
    send: Callable[[str], Awaitable[None]]
    apis: Sequence[int] = ()  # the API processes' ids
    profile: int | None = None  # an API to record with py-spy, when profiling
    rates: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    cpu: dict[str, list[float]] = field(default_factory=lambda: {p: [] for p in PARTS})


@dataclass
class Meter:
    """CPU seconds so far of each part."""

    server: int
    store: Postgres | None

    def read(self, path: Way) -> dict[str, float]:
        return {
            "api": sum(cpu_seconds(pid) for pid in path.apis),
            "store": postgres_cpu_seconds(self.store.pid) if self.store else 0.0,
            "server": cpu_seconds(self.server),
            "client": cpu_seconds(os.getpid()),
        }


def postgres_cpu_seconds(postmaster: int) -> float:
    """CPU of the postmaster, its live children (a backend per connection, the writers) and
    the children that have exited (counted in the postmaster's cutime/cstime)."""
    ticks = os.sysconf("SC_CLK_TCK")
    fields = _stat(postmaster)
    total = sum(int(f) for f in fields[11:15]) / ticks
    for pid in _children(postmaster):
        # one that exits between the listing and the read is in the postmaster's cutime now
        with suppress(FileNotFoundError, ProcessLookupError):
            total += sum(int(f) for f in _stat(pid)[11:13]) / ticks
    return total


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(_stat(int(entry.name))[1]) == parent:
                    found.append(int(entry.name))
            except (FileNotFoundError, ProcessLookupError, IndexError):
                pass
    return found


async def measure(path: Way, events: int, concurrency: int, meter: Meter) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(customer: str) -> None:
        async with gate:
            began = time.perf_counter()
            await path.send(customer)
            path.latencies.append(time.perf_counter() - began)

    before = meter.read(path)
    began = time.perf_counter()
    customers = (f"{path.name}-{uuid.uuid4().hex[:12]}" for _ in range(events))
    with profiling(path.profile, path.name):
        await asyncio.gather(*(one(c) for c in customers))
    path.rates.append(events / (time.perf_counter() - began))
    after = meter.read(path)
    for part in PARTS:
        path.cpu[part].append((after[part] - before[part]) * 1000 / events)


PROFILE = os.environ.get("BENCH_PROFILE")
PY_SPY = os.environ.get("PY_SPY") or shutil.which("py-spy") or "py-spy"


@contextmanager
def profiling(pid: int | None, name: str) -> Iterator[None]:
    if not PROFILE or pid is None:
        yield
        return
    folder = Path(PROFILE)
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{name}-{time.strftime('%H%M%S')}.txt"
    command = [PY_SPY, "record", "--pid", str(pid), "--format", "raw", "--rate", "200"]
    recorder = subprocess.Popen(
        [*command, "--output", str(out), "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)  # attached
    try:
        yield
    finally:
        recorder.send_signal(2)  # py-spy writes its output on Ctrl-C
        recorder.wait(timeout=30)
        print(f"  profile of {name}: {out}", flush=True)


async def wait_ready(http: httpx.AsyncClient, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if (await http.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise SystemExit(f"the API at {http.base_url} did not become ready")


def tracker(clients: Sequence[httpx.AsyncClient]) -> Callable[[str], Awaitable[None]]:
    """``POST /v1/track`` a new customer's event, to each API in turn."""
    turns = itertools.cycle(clients)

    async def track(customer: str) -> None:
        body = {"userId": customer, "event": EVENT, "messageId": uuid.uuid4().hex}
        http = next(turns)
        try:
            response = await http.post("/v1/track", json=body)
        except (httpx.ReadError, httpx.RemoteProtocolError):
            # a kept-alive connection the API closed while idle (uvicorn: after 5 s) between
            # rounds; the same message id again is safe, the API takes it once
            response = await http.post("/v1/track", json=body)
        if response.status_code != 200:
            raise SystemExit(f"/v1/track answered {response.status_code}: {response.text}")

    return track


async def main() -> None:
    events, rounds = env_int("BENCH_EVENTS", 300), env_int("BENCH_ROUNDS", 3)
    concurrency = env_int("BENCH_CONCURRENCY", 32)
    counts = [int(n) for n in os.environ.get("BENCH_APIS", "1,2,4").split(",")]
    title = "Ingestion past one process: PostgreSQL vs SQLite, 1/2/4 API processes"
    programs = server_programs()
    if programs is None:
        print(
            f"\n=== {title} ===\nskipped: PostgreSQL's server programs (initdb, pg_ctl) are "
            "not on PATH or in /usr/lib/postgresql/*/bin",
            flush=True,
        )
        return
    header(
        title,
        f"{events} events per round and path, {rounds} interleaved rounds, {concurrency} in "
        f"flight in total, new customer per event, no worker; API processes {counts} on "
        "PostgreSQL (durable settings), 1 on SQLite",
    )
    store = Postgres.start(programs, durable=True)
    try:
        await compare(store, events, rounds, concurrency, counts)
    finally:
        store.stop()


async def compare(
    store: Postgres, events: int, rounds: int, concurrency: int, counts: list[int]
) -> None:
    plan = project_plans(ROOT)["newsletter-welcome"]
    with temporary_directory("scale-out") as tmp:
        directory = Path(tmp)
        async with dev_server(directory) as server:
            with ExitStack() as processes:  # the APIs, stopped before the server
                client = await connect(server.address)
                sqlite_env = worker_env(server, directory)
                pg_env = {**sqlite_env, "TOUCHPOINT_DATABASE_URL": store.create_database()}
                sqlite_key = create_write_key(sqlite_env, "bench")
                pg_key = create_write_key(pg_env, "bench")

                def api(env: dict[str, str], log: str) -> tuple[int, int]:
                    port = free_port()
                    process = processes.enter_context(
                        child(api_command(port), env, directory / f"{log}.log")
                    )
                    return port, process.pid

                sqlite_api = api(sqlite_env, "api-sqlite")
                pg_apis = [api(pg_env, f"api-pg-{n}") for n in range(max(counts))]
                limits = httpx.Limits(
                    max_connections=concurrency, max_keepalive_connections=concurrency
                )

                def http(port: int, key: str) -> httpx.AsyncClient:
                    return httpx.AsyncClient(
                        base_url=f"http://127.0.0.1:{port}",
                        auth=(key, ""),
                        limits=limits,
                        timeout=60,
                    )

                sqlite_http = http(sqlite_api[0], sqlite_key)
                pg_http = [http(port, pg_key) for port, _ in pg_apis]
                try:
                    for one in (sqlite_http, *pg_http):
                        await wait_ready(one)
                    settings = RunSettings()  # as the API's router: search attributes on

                    async def direct(customer: str) -> None:
                        await start_journey(client, plan, customer, settings)

                    paths = [
                        Way("direct", direct),
                        Way("api-sqlite-1", tracker([sqlite_http]), [sqlite_api[1]]),
                        *(
                            Way(
                                f"api-pg-{n}",
                                tracker(pg_http[:n]),
                                [pid for _, pid in pg_apis[:n]],
                                profile=pg_apis[0][1],
                            )
                            for n in counts
                        ),
                    ]
                    meters = {
                        p.name: Meter(server.pid, store if "-pg-" in p.name else None)
                        for p in paths
                    }
                    for path in paths:  # warm-up: connections, pools, caches
                        await measure(path, 40, concurrency, meters[path.name])
                        path.rates.clear(), path.latencies.clear()
                        for part in PARTS:
                            path.cpu[part].clear()
                    for number in range(rounds):
                        for path in paths if number % 2 == 0 else reversed(paths):
                            await measure(path, events, concurrency, meters[path.name])
                        print(
                            f"  round {number + 1}: "
                            + ", ".join(f"{p.name} {p.rates[-1]:.0f}/s" for p in paths),
                            f"(load {os.getloadavg()[0]:.1f})",
                            flush=True,
                        )
                finally:
                    for one in (sqlite_http, *pg_http):
                        await one.aclose()
    report(paths)


def touchpoint_cpu(path: Way) -> float:
    """CPU per event of getting the event in: the API processes, the store and the server —
    not the HTTP client that stands in for the senders (Segment, a shop's backend); for the
    baseline, the server and this process, whose Temporal client does the work."""
    parts = ("api", "store", "server") if path.apis else ("server", "client")
    return sum(median(path.cpu[part]) for part in parts)


def report(paths: list[Way]) -> None:
    baseline = median(paths[0].rates)
    baseline_cpu = touchpoint_cpu(paths[0])
    rows = []
    for path in paths:
        cpu = {part: median(values) for part, values in path.cpu.items()}
        rows.append(
            [
                path.name,
                median(path.rates),
                median(path.rates) / baseline,
                f"{min(path.rates):.0f}–{max(path.rates):.0f}",
                percentile(path.latencies, 50) * 1000,
                percentile(path.latencies, 99) * 1000,
                *(cpu[part] for part in PARTS),
                sum(cpu.values()),
                baseline_cpu / touchpoint_cpu(path),
            ]
        )
    print(
        table(
            [
                "path",
                "events/s (median)",
                "ratio vs direct",
                "rounds",
                "p50 ms",
                "p99 ms",
                "API CPU ms/event",
                "store (PostgreSQL) ms/event",
                "Temporal server ms/event",
                "bench client ms/event",
                "total CPU ms/event",
                "ratio by CPU",
            ],
            rows,
        )
    )
    print(
        f"CPU ms/event: medians over the rounds; {os.cpu_count()} cores give "
        f"{1000 * (os.cpu_count() or 1):,} ms of CPU a second, so a path whose total is T "
        "ms/event cannot pass that / T events/s here. Ratio by CPU: the baseline's CPU per "
        "event (server + its Temporal client) over the path's (API + store + server; not the "
        "HTTP client, which stands in for the senders). On a machine other work keeps busy, "
        "wall-clock ratios favour the paths with more processes (the scheduler shares the "
        "cores per thread): read the ratio by CPU."
    )
    for path in paths[1:]:
        ratio = median(path.rates) / baseline
        by_cpu = baseline_cpu / touchpoint_cpu(path)
        print(
            f"{path.name}: ratio api/direct = {ratio:.2f}: {verdict(ratio, GOAL)}; "
            f"by CPU {by_cpu:.2f}: {verdict(by_cpu, GOAL)}"
        )


if __name__ == "__main__":
    run(main)
