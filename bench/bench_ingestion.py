"""Ingestion: events/s through the real HTTP API (``touchpoint api`` in its own process,
``POST /v1/track`` with a write key, a concurrent httpx client on loopback) against direct
signal-with-start of the same journey from a Python client (the same input, version 3: a
reference to the plan); interleaved rounds; p50/p99.

Each event is a new customer's ``Newsletter Subscribed``: the API authenticates, claims the
message id, reads the profile, and the router checks re-entry in the store before it
signal-with-starts ``newsletter-welcome``. No worker runs: this measures getting events in.
Sizes: BENCH_EVENTS (per round, default 600), BENCH_ROUNDS (3), BENCH_CONCURRENCY (32)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
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

from workflows.models import RunSettings

EVENT = "Newsletter Subscribed"


@dataclass
class Side:
    name: str
    send: Callable[[str], Awaitable[None]]
    pid: int  # the process doing the work besides the server (API, or this one)
    rates: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)


async def measure(side: Side, events: int, concurrency: int, server_pid: int) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(customer: str) -> None:
        async with gate:
            began = time.perf_counter()
            await side.send(customer)
            side.latencies.append(time.perf_counter() - began)

    cpu0 = cpu_seconds(side.pid) + cpu_seconds(server_pid)
    began = time.perf_counter()
    await asyncio.gather(*(one(f"{side.name}-{uuid.uuid4().hex[:12]}") for _ in range(events)))
    side.rates.append(events / (time.perf_counter() - began))
    side.cpu_ms.append((cpu_seconds(side.pid) + cpu_seconds(server_pid) - cpu0) * 1000 / events)


async def wait_ready(http: httpx.AsyncClient, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if (await http.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise SystemExit("the API did not become ready")


async def main() -> None:
    events, rounds = env_int("BENCH_EVENTS", 600), env_int("BENCH_ROUNDS", 3)
    concurrency = env_int("BENCH_CONCURRENCY", 32)
    header(
        "Ingestion: HTTP API /v1/track vs direct signal-with-start",
        f"{events} events per round, {rounds} interleaved rounds, {concurrency} in flight, "
        "new customer per event, no worker",
    )
    plan = project_plans(ROOT)["newsletter-welcome"]
    with temporary_directory("ingestion") as tmp:
        directory = Path(tmp)
        async with dev_server(directory) as server:
            client = await connect(server.address)
            env = worker_env(server, directory)
            key = create_write_key(env, "bench")
            port = free_port()
            command = api_command(port)
            limits = httpx.Limits(
                max_connections=concurrency, max_keepalive_connections=concurrency
            )
            with child(command, env, directory / "api.log") as api:
                async with httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{port}",
                    auth=(key, ""),
                    limits=limits,
                    timeout=30,
                ) as http:
                    await wait_ready(http)

                    async def track(customer: str) -> None:
                        body = {"userId": customer, "event": EVENT, "messageId": uuid.uuid4().hex}
                        response = await http.post("/v1/track", json=body)
                        if response.status_code != 200:
                            raise SystemExit(f"/v1/track answered {response.status_code}")

                    settings = RunSettings()  # as the API's router: search attributes on

                    async def direct(customer: str) -> None:
                        await start_journey(client, plan, customer, settings)

                    sides = [Side("api", track, api.pid), Side("direct", direct, _own_pid())]
                    for side in sides:
                        await measure(side, 20, concurrency, server.pid)  # warm-up
                        side.rates.clear(), side.latencies.clear(), side.cpu_ms.clear()
                    for number in range(rounds):
                        for side in sides if number % 2 == 0 else reversed(sides):
                            await measure(side, events, concurrency, server.pid)
                        print(
                            f"  round {number + 1}: "
                            + ", ".join(f"{s.name} {s.rates[-1]:.0f}/s" for s in sides),
                            flush=True,
                        )
    api_side, direct_side = sides
    rows = [
        [
            s.name,
            median(s.rates),
            median(s.rates) / median(direct_side.rates),
            percentile(s.latencies, 50) * 1000,
            percentile(s.latencies, 99) * 1000,
            median(s.cpu_ms),
        ]
        for s in sides
    ]
    print(
        table(
            [
                "path",
                "events/s (median)",
                "ratio vs direct",
                "p50 ms",
                "p99 ms",
                "CPU ms/event (API or client + server)",
            ],
            rows,
        )
    )
    ratio = median(api_side.rates) / median(direct_side.rates)
    print(f"ingestion ratio api/direct = {ratio:.2f}: {verdict(ratio, 0.8)}")


def _own_pid() -> int:
    import os

    return os.getpid()


if __name__ == "__main__":
    run(main)
