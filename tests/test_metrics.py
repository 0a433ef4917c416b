"""Prometheus metrics that speak of journeys and channels, scraped over real HTTP: the worker's
(through the Temporal runtime's endpoint, after real sends on the time-skipping server) and the
API's (after the router started real runs). No label carries personal data."""

from __future__ import annotations

import asyncio
import urllib.request
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.audience import AudienceActivities
from activities.delivery import DeliveryActivities
from activities.email.sendgrid import SendGridProvider
from activities.http import make_client
from activities.rendering import Renderer
from config.project import SendGridSettings
from config.settings import metrics_runtime
from ingestion.api import create_app
from ingestion.router import Router
from ops.workers import WorkerOptions, analytics_recorded, build_workers
from simulation.recording import RecordingActivities
from store.consent import ConsentStore
from store.database import connect
from store.entries import EntryStore
from store.keys import WriteKeys
from store.ledger import Ledger
from store.processed import ProcessedMessages
from store.profiles import ProfileStore
from tests.conftest import ROOT, api_of
from tests.httpstub import HttpStub, Reply
from tests.net import free_port
from tests.sendgrid_standin import SendGridStandIn
from tests.temporal import binary, deployed_from, event, plan_from, running_workers, start_run
from tests.test_broadcast import MONDAY, broadcast, newsletter, sent_to
from tests.test_delivery import project_config
from tests.test_policies import HoldFor
from tests.test_policies import delivery as policy_delivery
from workflows.analytics import RunEntered
from workflows.models import JOURNEY_QUEUE, Profile, RunResult, RunSettings, workflow_id
from workflows.registry import Deployment

JOURNEY = """
id: metered
name: Metered
category: marketing
trigger:
  event: Signed Up
steps:
  - id: picks
    lookup: shop-api
    path: /customers/{{ profile.id }}/recommendations
    save_as: picks
  - id: welcome
    send: email
    template: newsletter-welcome
"""
CUSTOMERS = {  # who they are, and what happens to their welcome email
    "max": Profile(id="max", email="max@example.com", locale="en"),  # sent
    "erika": Profile(id="erika", email="erika@example.com", locale="en"),  # unsubscribed
    "jonas": Profile(id="jonas", email="jonas@example.com", locale="en"),  # refused (400)
}
PERSONAL = {value for p in CUSTOMERS.values() for value in (p.id, p.email) if value}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> tuple[Samples, str]:
    """Every sample of a Prometheus text page, by name and labels; and the page."""
    with urllib.request.urlopen(url, timeout=5) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain")
        text = answer.read().decode()
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    return samples, text


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum over the series of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def assert_no_personal_data(text: str, samples: Samples) -> None:
    ours = {(n, ls) for n, ls in samples if n.startswith("touchpoint_")}
    assert ours, "no touchpoint_ series at all"
    for _, labels in ours:
        for label, label_value in labels:
            assert "@" not in label_value, (label, label_value)
            assert label_value not in PERSONAL, (label, label_value)
    assert not any(secret in text for secret in PERSONAL if "@" in secret)


@pytest.fixture(scope="module")
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server of this module's own (the session's is shared by every other
    test): with the shared one, the tests after this module found the server no longer skipping
    time and timed out waiting for their timers — what these tests leave behind (a second
    client with its own metrics runtime, runs started with no worker polling) stays here."""
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=binary("temporal-test-server"),
    )
    async with env:
        yield env


@pytest.fixture
async def metered_client(time_env: WorkflowEnvironment) -> AsyncIterator[tuple[Client, str]]:
    """A client of the time-skipping server whose runtime serves Prometheus metrics, as the
    worker's does with TOUCHPOINT_METRICS_ADDRESS; and the metrics URL."""
    port = free_port()
    runtime = metrics_runtime(f"127.0.0.1:{port}")
    client = await Client.connect(
        time_env.client.service_client.config.target_host,
        namespace=time_env.client.namespace,
        data_converter=pydantic_data_converter,
        runtime=runtime,
    )
    yield client, f"http://127.0.0.1:{port}/metrics"


async def test_the_worker_counts_sends_skips_failures_lookups_and_ends_by_journey(
    time_env: WorkflowEnvironment, metered_client: tuple[Client, str], tmp_path: Path
) -> None:
    client, url = metered_client
    engine = connect(f"sqlite:///{tmp_path / 'touchpoint.db'}")
    ConsentStore(engine).withdraw("erika", "one-click")
    with HttpStub() as shop, SendGridStandIn() as sendgrid:
        config = project_config(shop)
        activities = DeliveryActivities(
            config=config,
            ledger=Ledger(engine),
            renderer=Renderer(ROOT / "templates", config.defaults.locale),
            email=SendGridProvider(SendGridSettings(host=sendgrid.url, timeout="5s"), "SG.t"),
            http=make_client(),
            unsubscribe_secret=b"unsubscribe-secret",
            environ={"SHOP_API_TOKEN": "shop-token"},
        )
        plan = plan_from(JOURNEY)
        results: dict[str, RunResult] = {}
        async with uncached_workers(client, activities.all()) as prefix:
            sendgrid.answer(503, {"errors": [{"message": "down"}]})  # max: a bad minute,
            sendgrid.answer(202, headers={"X-Message-Id": "sg-1"})  # then accepted
            sendgrid.answer(400, {"errors": [{"message": "bad"}]})  # jonas: refused
            for name in ("max", "erika", "jonas"):  # erika: unsubscribed, nothing reaches SG
                shop.reply(Reply(404) if name == "erika" else Reply(200, body={"items": []}))
                handle = await start_run(
                    time_env.client, plan, prefix, event("Signed Up", customer=name),
                    profile=CUSTOMERS[name], workflow_id=f"metered-{uuid.uuid4()}",
                )  # fmt: skip
                results[name] = RunResult.model_validate(await handle.result())
    assert {n: r.outcome.kind for n, r in results.items()} == {
        "max": "completed",
        "erika": "completed",
        "jonas": "failed",
    }

    samples, text = await _scraped_once_counted(url, ends=3)
    journey = {"journey": "metered", "channel": "email"}
    messages = "touchpoint_messages_total"
    assert value(samples, messages, **journey, status="sent", policy="none") == 1
    assert value(samples, messages, **journey, status="skipped", policy="consent") == 1
    assert value(samples, messages, **journey, status="failed") == 1
    assert value(samples, messages, **journey) == 3, "a skipped email is not a sent one"
    decisions = "touchpoint_policy_decisions_total"
    assert value(samples, decisions, policy="consent", action="skip") == 1
    assert value(samples, decisions, policy="none", action="send") == 3  # max twice, jonas
    provider = {"provider": "sendgrid", "channel": "email"}
    assert value(samples, "touchpoint_provider_seconds_count", **provider) == 3
    errors = "touchpoint_provider_errors_total"
    assert value(samples, errors, **provider, **{"class": "retryable"}) == 1
    assert value(samples, errors, **provider, **{"class": "permanent"}, kind="Rejected") == 1
    lookups = "touchpoint_lookups_total"
    assert value(samples, lookups, connection="shop-api", result="found") == 2
    assert value(samples, lookups, connection="shop-api", result="not_found") == 1
    assert value(samples, "touchpoint_lookup_seconds_count", connection="shop-api") == 3
    ended = "touchpoint_runs_ended_total"
    assert value(samples, ended, journey="metered", outcome="completed") == 2
    assert value(samples, ended, journey="metered", outcome="failed") == 1
    assert_no_personal_data(text, samples)


@asynccontextmanager
async def uncached_workers(client: Client, activities: list[Any]) -> AsyncIterator[str]:
    """Workers that keep no run in memory: every workflow task replays the run's history
    from its start, so a metric recorded while replaying would show as counted twice."""
    prefix = f"m{uuid.uuid4().hex[:8]}-"
    options = WorkerOptions(
        queue_prefix=prefix, max_cached_workflows=0, deployment=Deployment(index_runs=False)
    )
    async with AsyncExitStack() as stack:
        for worker in build_workers(client, activities, options):
            await stack.enter_async_context(worker)
        yield prefix


async def _scraped_once_counted(url: str, ends: int) -> tuple[Samples, str]:
    """The page once the last run's end shows (the runtime exports what it has at a scrape)."""
    for _ in range(50):
        samples, text = await asyncio.to_thread(scrape, url)
        if value(samples, "touchpoint_runs_ended_total", journey="metered") >= ends:
            return samples, text
        await asyncio.sleep(0.1)
    return samples, text


async def test_a_deferred_message_counts_as_deferred_then_as_sent(
    time_env: WorkflowEnvironment, metered_client: tuple[Client, str], tmp_path: Path
) -> None:
    client, url = metered_client
    hold = HoldFor(hours=10)
    activities = policy_delivery(tmp_path, hold)
    with HttpStub() as shop:
        shop.reply(Reply(200, body={"items": []}))
        activities.config = project_config(shop)
        activities.environ = {"SHOP_API_TOKEN": "shop-token"}
        async with uncached_workers(client, activities.all()) as prefix:
            handle = await start_run(
                time_env.client, plan_from(JOURNEY), prefix, event("Signed Up", customer="max"),
                profile=CUSTOMERS["max"], workflow_id=f"metered-{uuid.uuid4()}",
            )  # fmt: skip
            result = RunResult.model_validate(await handle.result())
    assert [e.kind for e in result.timeline if e.step == "welcome"] == ["deferred", "sent"]
    samples, _ = await _scraped_once_counted(url, ends=1)
    messages = "touchpoint_messages_total"
    assert value(samples, messages, journey="metered", status="deferred", policy="hold") == 1
    assert value(samples, messages, journey="metered", status="sent", policy="none") == 1
    decisions = "touchpoint_policy_decisions_total"
    assert value(samples, decisions, policy="hold", action="defer") == 1
    assert value(samples, decisions, policy="none", action="send") == 1
    assert value(samples, "touchpoint_provider_seconds_count", provider="maildir") == 1


async def test_the_api_counts_the_runs_the_router_started_by_journey(
    time_env: WorkflowEnvironment, stores: Stores, tmp_path: Path
) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'entries.db'}")
    router = Router(
        time_env.client,
        {"metered": plan_from(JOURNEY)},
        EntryStore(engine),
        RunSettings(index_runs=False),
    )
    key = stores[2].create("web shop")
    async with (
        served(create_app(api_of(stores, router.route))) as base,
        httpx.AsyncClient(base_url=base, auth=(key, "")) as http,
    ):
        before, _ = await asyncio.to_thread(scrape, f"{base}/metrics")
        for n, customer in enumerate(["max", "max", "erika"]):  # max's second: signalled
            call = {"userId": customer, "event": "Signed Up", "messageId": f"m{n}"}
            assert (await http.post("/v1/track", json=call)).status_code == 200
        after, text = await asyncio.to_thread(scrape, f"{base}/metrics")
    name = "touchpoint_runs_started_total"
    assert value(after, name, journey="metered") - value(before, name, journey="metered") == 2
    assert value(after, "touchpoint_events_received_total", type="track") >= 3
    assert_no_personal_data(text, after)
    for customer in ("max", "erika"):  # no worker runs them: leave nothing running
        handle = time_env.client.get_workflow_handle(workflow_id("metered", customer, None, None))
        await handle.terminate("test done")


async def test_the_worker_counts_the_runs_a_broadcast_page_started_by_journey(
    time_env: WorkflowEnvironment, metered_client: tuple[Client, str], tmp_path: Path
) -> None:
    """Three fans of four profiles get a run: three starts; the same occurrence again starts
    nobody (their runs exist) and counts nothing more."""
    client, url = metered_client
    engine = connect(f"sqlite:///{tmp_path / 'touchpoint.db'}")
    for n, interests in enumerate(["laptops", "laptops", "phones", "laptops"]):
        traits = {"interests": [interests], "opted_in": True}
        ProfileStore(engine).upsert(f"fan{n}", {**traits, "email": f"fan{n}@example.com"})
    plan = deployed_from(engine, newsletter())
    recorder = RecordingActivities()
    prefix = f"m{uuid.uuid4().hex[:8]}-"
    audience = AudienceActivities(
        client, engine, RunSettings(queue_prefix=prefix, index_runs=False)
    )
    async with running_workers(client, [*recorder.all(), *audience.all()], prefix):
        first, _ = await broadcast(time_env, prefix, plan, MONDAY)
        await sent_to(recorder, 3)
        again, _ = await broadcast(time_env, prefix, plan, MONDAY)
    assert (first.counts.started, again.counts.started, again.counts.already_started) == (3, 0, 3)
    name, journey = "touchpoint_runs_started_total", plan.journey_id
    for _ in range(50):  # the runtime exports what it has at a scrape
        samples, text = await asyncio.to_thread(scrape, url)
        if value(samples, name, journey=journey) >= 3:
            break
        await asyncio.sleep(0.1)
    assert value(samples, name, journey=journey) == 3
    assert value(samples, name, journey=journey, activity_type="broadcast_page") == 3
    assert not any(f"fan{n}" in text for n in range(4)), "no customer id in a label"


async def test_analytics_batches_dropped_and_held_show_on_the_worker_s_metrics(
    tmp_path: Path,
) -> None:
    """The store is down (its folder is missing): the worker's recorder holds what it cannot
    write, and once its backlog is full drops the oldest — both on the metrics page."""
    port = free_port()
    runtime = metrics_runtime(f"127.0.0.1:{port}")
    down = create_engine(f"sqlite:///{tmp_path / 'missing' / 'touchpoint.db'}")
    queue = f"m{uuid.uuid4().hex[:8]}-{JOURNEY_QUEUE}"
    with analytics_recorded(queue, down, runtime.metric_meter) as recorder:
        recorder.capacity, recorder.retry_seconds = 2, 0.05
        for n in range(5):
            recorder.record([RunEntered(f"r{n}", "metered", "v1", "c-hash", datetime.now(UTC))])
        assert (recorder.lost, recorder.backlog) == (3, 2)
        url = f"http://127.0.0.1:{port}/metrics"
        for _ in range(50):  # the backlog is reported after the writer's next try
            samples, text = await asyncio.to_thread(scrape, url)
            if value(samples, "touchpoint_analytics_backlog") == 2:
                break
            await asyncio.sleep(0.1)
    assert value(samples, "touchpoint_analytics_dropped_total") == 3
    assert value(samples, "touchpoint_analytics_backlog") == 2
    assert "c-hash" not in text


Stores = tuple[ProfileStore, ProcessedMessages, WriteKeys]


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """The app on a real socket (uvicorn, as ``touchpoint api`` serves it); its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not task.done(), "the API did not start"
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
