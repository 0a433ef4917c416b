"""Profile the hot paths with py-spy (not part of ``make bench``): the worker process while it
runs the throughput journey, and the API process while it ingests ``/v1/track`` calls.

``python bench/profile_hot_path.py`` with py-spy on PATH or in PY_SPY (``pip install py-spy``).
Prints the top functions by inclusive and by own samples; writes the raw stacks next to them
(PROFILE_DIR, default a temporary folder that is kept)."""

from __future__ import annotations

import asyncio
import collections
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import httpx
from report import header, table
from stack import (
    BENCH,
    ROOT,
    api_command,
    bench_project,
    child,
    connect,
    create_write_key,
    dev_server,
    free_port,
    run,
    touchpoint_worker,
    worker_env,
)
from starts import DAY_IN_SECONDS, project_plans, run_batch, start_journey

from workflows.models import RunSettings

PY_SPY = os.environ.get("PY_SPY") or shutil.which("py-spy") or "py-spy"


def summarize(raw: Path, top: int = 25) -> None:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [_short(frame) for frame in stack.split(";")]
        samples = int(count)
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    print(f"{raw.name}: {total} samples")
    print(
        table(
            ["inclusive %", "function"],
            [[100 * n / total, f] for f, n in inclusive.most_common(top)],
        )
    )
    print(table(["own %", "function"], [[100 * n / total, f] for f, n in own.most_common(top)]))


def _short(frame: str) -> str:
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", str(ROOT) + "/", "lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where.rsplit(':', 1)[0]})"


def record(pid: int, out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            PY_SPY,
            "record",
            "--pid",
            str(pid),
            "--format",
            "raw",
            "--rate",
            "200",
            "--output",
            str(out),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def profile_worker(directory: Path, runs: int) -> Path:
    project = bench_project(directory, "project", [BENCH / "throughput-journey.yaml"])
    plan = project_plans(project)["bench-three-sends"]
    out = directory / "worker.txt"
    async with dev_server(directory) as server:
        client = await connect(server.address)
        with touchpoint_worker(
            server, directory, project, TOUCHPOINT_QUEUE_PREFIX="prof-"
        ) as worker:
            settings = RunSettings(queue_prefix="prof-", time_scale=DAY_IN_SECONDS)
            spy = record(worker.pid, out)
            await run_batch(
                lambda c: start_journey(client, plan, c, settings),
                [f"p-{uuid.uuid4().hex[:10]}" for _ in range(runs)],
            )
            spy.send_signal(2)
            spy.wait(30)
    return out


async def profile_api(directory: Path, events: int) -> Path:
    out = directory / "api.txt"
    async with dev_server(directory, name="temporal-api") as server:
        env = worker_env(server, directory)
        key = create_write_key(env, "prof")
        port = free_port()
        command = api_command(port)
        with child(command, env, directory / "api.log") as api:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", auth=(key, ""), timeout=30
            ) as http:
                for _ in range(300):
                    try:
                        if (await http.get("/readyz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        await asyncio.sleep(0.2)
                spy = record(api.pid, out)
                gate = asyncio.Semaphore(32)

                async def one() -> None:
                    async with gate:
                        body = {"userId": uuid.uuid4().hex, "event": "Newsletter Subscribed"}
                        (await http.post("/v1/track", json=body)).raise_for_status()

                await asyncio.gather(*(one() for _ in range(events)))
                spy.send_signal(2)
                spy.wait(30)
    return out


async def main() -> None:
    header("Profile of the hot paths (py-spy)", f"py-spy at {PY_SPY}")
    directory = Path(os.environ.get("PROFILE_DIR") or tempfile.mkdtemp(prefix="touchpoint-prof-"))
    directory.mkdir(parents=True, exist_ok=True)
    summarize(await profile_worker(directory, int(os.environ.get("BENCH_RUNS", 300))))
    summarize(await profile_api(directory, int(os.environ.get("BENCH_EVENTS", 600))))
    print(f"raw stacks in {directory}")


if __name__ == "__main__":
    run(main)
