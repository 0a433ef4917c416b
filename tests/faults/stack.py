"""The real stack as separate processes, for fault tests: the Temporal dev server on a SQLite
file, ``python worker.py`` and ``touchpoint api`` — each one can be stopped, killed and started
again, and every one is cleaned up by :class:`Processes` even when a test fails.

A fault test's project is a small Touchpoint project in a temporary folder (its own journeys,
one template, a Maildir outbox or a SendGrid stand-in, its own store: a SQLite file, or a
PostgreSQL database named in its ``touchpoint.yaml``), built by :func:`make_project`;
:func:`ledger_of` and :func:`outbox_ids` read back what was delivered.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import yaml
from sqlalchemy import Engine
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from activities.email.maildir import list_messages
from ops.dev import StartFailed, dev_server_command, wait_for_port
from store.database import connect as connect_store
from store.ledger import Delivery, Ledger
from tests.conftest import ROOT
from tests.net import free_port

TOUCHPOINT = str(Path(sys.executable).parent / "touchpoint")
UNSUBSCRIBE_SECRET = "fault-tests-unsubscribe-secret-0123456789"
OUTBOX = ".touchpoint/outbox"
TEMPLATE = """---
subject: "A note for {{ profile.email }}"
---
<p>Hello {{ profile.email }}, this is a note from a fault test.</p>
"""


def make_project(
    root: Path,
    journeys: Mapping[str, str],
    email: dict[str, Any] | None = None,
    worker: dict[str, Any] | None = None,
    database: str | None = None,
) -> Path:
    """A Touchpoint project: ``journeys`` (id → YAML), the ``note`` template, a sender,
    ``email`` settings (default: the Maildir outbox under ``root``), ``worker`` settings and
    the store's URL (default: ``touchpoint.db`` in ``root``)."""
    (root / "journeys").mkdir(parents=True)
    for journey_id, text in journeys.items():
        (root / "journeys" / f"{journey_id}.yaml").write_text(text)
    (root / "templates" / "note").mkdir(parents=True)
    (root / "templates" / "note" / "en.html").write_text(TEMPLATE)
    config = {
        "defaults": {"sender": {"email": "shop@faults.example", "name": "Fault test shop"}},
        "email": email or {"provider": "maildir", "maildir": {"path": OUTBOX}},
        "worker": worker or {},
    }
    if database is not None:
        config["database_url"] = database
    (root / "touchpoint.yaml").write_text(yaml.safe_dump(config))
    return root


def database_url(project: Path) -> str:
    """The project's store: its ``database_url``, or the SQLite file ``touchpoint.db``."""
    config = yaml.safe_load((project / "touchpoint.yaml").read_text()) or {}
    return str(config.get("database_url") or f"sqlite:///{project / 'touchpoint.db'}")


@cache
def store_of(url: str) -> Engine:
    """One migrated engine per store for the whole test session (a PostgreSQL pool each)."""
    return connect_store(url)


def ledger_of(project: Path) -> list[Delivery]:
    """Every row of the project's delivery ledger."""
    return Ledger(store_of(database_url(project))).list(limit=100_000)


def outbox_ids(project: Path) -> Counter[str]:
    """How many outbox messages carry each Touchpoint message id."""
    return Counter(str(entry.message_id) for entry in list_messages(project / OUTBOX))


def identity_of(process: subprocess.Popen[bytes]) -> str:
    """The Temporal identity a worker process reports (the SDK's default: pid@host)."""
    return f"{process.pid}@{socket.gethostname()}"


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, seconds: float) -> None:
    try:
        wait_for_port(port, seconds, process)
    except StartFailed as failure:
        raise AssertionError(f"{failure.code}:\n{log.read_text()[-3000:]}") from None


def _wait_for_line(text: str, process: subprocess.Popen[bytes], log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if text in log.read_text():
            return
        if process.poll() is not None:
            raise AssertionError(f"exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)
    raise AssertionError(f"no {text!r} after {seconds:.0f} s:\n{log.read_text()[-3000:]}")


@dataclass
class Service:
    """One child process with its log file; ``start`` again after a stop or a kill."""

    name: str
    command: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    cwd: Path = ROOT
    process: subprocess.Popen[bytes] | None = None

    def launch(self) -> subprocess.Popen[bytes]:
        assert not self.running, f"{self.name} is already running"
        with self.log.open("ab") as log:
            log.write(f"--- {self.name} starting\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal reaches only pytest
            )
        return self.process

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def send(self, signum: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def stop(self, signum: signal.Signals = signal.SIGTERM, seconds: float = 30) -> int:
        """Send ``signum`` and wait for the exit (SIGKILL after ``seconds``); the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signum)
            try:
                self.process.wait(seconds)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def kill(self) -> None:
        """``kill -9``: no clean-up, no goodbye."""
        self.stop(signal.SIGKILL)


class DevServer(Service):
    """``temporal server start-dev`` on a WAL SQLite file, as ``touchpoint dev`` runs it."""

    def __init__(self, database: Path, log: Path) -> None:
        self.port = free_port()
        super().__init__(
            "temporal",
            dev_server_command(self.port, database),
            log,
        )

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> DevServer:
        process = self.launch()
        _wait_for_port(self.port, process, self.log, 60)
        return self


def environment(project: Path, server: DevServer, prefix: str) -> dict[str, str]:
    """What a worker, an API or a ``touchpoint`` command of the project runs with: this
    environment without its ``TOUCHPOINT_*`` variables, then the project's server, queues,
    store and secrets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOUCHPOINT_")}
    return env | {
        "TOUCHPOINT_TEMPORAL_ADDRESS": server.address,
        "TOUCHPOINT_QUEUE_PREFIX": prefix,
        "TOUCHPOINT_DATABASE_URL": database_url(project),
        "TOUCHPOINT_UNSUBSCRIBE_SECRET": UNSUBSCRIBE_SECRET,
        "SENDGRID_API_KEY": "SG.fault-test.key",
    }


class WorkerProcess(Service):
    """``python worker.py --project P`` with real delivery (the ledger, Maildir or SendGrid)."""

    def __init__(
        self, project: Path, server: DevServer, prefix: str, log: Path, executable: bool = False
    ) -> None:
        """``executable``: run it as ``touchpoint worker`` (as deployments do), not worker.py."""
        env = environment(project, server, prefix) | {"PYTHONUNBUFFERED": "1"}
        if executable:
            command = [TOUCHPOINT, "worker", "-C", str(project)]
        else:
            command = [sys.executable, str(ROOT / "worker.py"), "--project", str(project)]
        super().__init__("worker", command, log, env, cwd=project)

    def start(self) -> WorkerProcess:
        """Start and wait until it polls every queue (it prints ``touchpoint worker ready``)."""
        already = self._readies()
        self.launch()
        return self.wait_until_ready(already)

    def wait_until_ready(self, already: int = 0) -> WorkerProcess:
        """Wait for its ``already + 1``-th ``touchpoint worker ready`` line (of all its starts)."""
        deadline = time.monotonic() + 60
        while self._readies() <= already:
            if not self.running or time.monotonic() > deadline:
                raise AssertionError(f"the worker did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.05)
        return self

    def _readies(self) -> int:
        return self.log.read_text().count("touchpoint worker ready") if self.log.exists() else 0

    @property
    def identity(self) -> str:
        assert self.process is not None
        return identity_of(self.process)


class ApiProcess(Service):
    """``touchpoint api`` for a project, on a free port."""

    def __init__(self, project: Path, server: DevServer, prefix: str, log: Path) -> None:
        self.port = free_port()
        command = [TOUCHPOINT, "api", "--port", str(self.port), "-C", str(project)]
        super().__init__("api", command, log, environment(project, server, prefix), cwd=project)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ApiProcess:
        process = self.launch()
        _wait_for_port(self.port, process, self.log, 60)
        return self


class Processes:
    """Every process a test starts; :meth:`close` kills whatever still runs (also on failure)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.services: list[Service] = []
        self.prefix = f"fault{uuid.uuid4().hex[:6]}-"

    def server(self) -> DevServer:
        return self._add(DevServer(self.folder / "temporal.db", self.folder / "temporal.log"))

    def worker(
        self, project: Path, server: DevServer, name: str = "worker", executable: bool = False
    ) -> WorkerProcess:
        log = self.folder / f"{name}.log"
        return self._add(WorkerProcess(project, server, self.prefix, log, executable))

    def api(self, project: Path, server: DevServer, name: str = "api") -> ApiProcess:
        log = self.folder / f"{name}.log"
        return self._add(ApiProcess(project, server, self.prefix, log))

    def _add(self, service: Any) -> Any:
        self.services.append(service)
        return service

    def close(self) -> None:
        for service in reversed(self.services):
            if service.running:
                service.kill()

    def logs(self) -> str:
        """The tail of every log, for a failure message."""
        return "\n".join(
            f"== {s.log.name}\n{s.log.read_text()[-2000:]}" for s in self.services if s.log.exists()
        )


@contextmanager
def processes(folder: Path) -> Iterator[Processes]:
    running = Processes(folder)
    try:
        yield running
    finally:
        running.close()


async def ready(apis: list[ApiProcess], stack: Processes, seconds: float = 30) -> None:
    """Wait until every API's ``/readyz`` says yes (Temporal and the store reachable)."""
    async with httpx.AsyncClient() as http:
        for api in apis:
            deadline = time.monotonic() + seconds
            while True:
                try:
                    if (await http.get(f"{api.url}/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if not api.running or time.monotonic() > deadline:
                    raise AssertionError(f"{api.log.name} is not ready:\n{stack.logs()}")
                await asyncio.sleep(0.1)


async def connect(server: DevServer, seconds: float = 30) -> Client:
    """A client for ``server``, once it answers (it may have just been started)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return await Client.connect(server.address, data_converter=pydantic_data_converter)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
