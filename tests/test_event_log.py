"""The event log: the calls the API accepted, per customer, in order — through the real HTTP
API on a real port, on SQLite and PostgreSQL; bounded in size; erased, exported, turned off.
Retention's purge runs on the dev server in tests/test_retention.py."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import Engine, update
from typer.testing import CliRunner

from cli import app
from config.project import EventLogSettings, ProjectConfig
from ingestion.api import Api, create_app
from ingestion.service import Ingestion
from ops.export import Exporter
from store.database import event_log
from store.erasure import ErasureStore
from store.event_log import EventLog, bounded, event_log_of
from store.keys import WriteKeys
from store.processed import ProcessedMessages
from store.profiles import ProfileStore
from tests.conftest import ROOT, Database, Routed
from tests.net import served

KEY = b"k" * 32


@dataclass
class Served:
    client: httpx.AsyncClient
    routed: Routed
    log: EventLog
    engine: Engine


async def _serve(engine: Engine, log: EventLog | None) -> AsyncIterator[Served]:
    routed = Routed()
    keys = WriteKeys(engine)
    key = keys.create("web shop")
    service = Ingestion(
        ProfileStore(engine),
        ProcessedMessages(engine),
        routed,
        max_profile_bytes=8_192,
        event_log=log,
    )
    async with (
        served(create_app(Api(service, keys))) as url,
        httpx.AsyncClient(base_url=url, auth=(key, "")) as client,
    ):
        yield Served(client, routed, log or EventLog(engine), engine)


@pytest.fixture
async def api(database: Database) -> AsyncIterator[Served]:
    """The ingestion API on a real port, logging into ``database`` (caps: 8 KB of profile,
    2 KB of a call's properties in the log)."""
    engine = database.connect()
    async for one in _serve(engine, EventLog(engine, max_bytes=2_048)):
        yield one


async def test_accepted_calls_are_logged_per_customer_in_the_order_applied(api: Served) -> None:
    client = api.client
    calls = [
        (
            "identify",
            {
                "userId": "max-1",
                "traits": {"plan": "gold"},
                "messageId": "i-1",
                "context": {"timezone": "Europe/Berlin"},
            },
        ),
        ("track", {"userId": "erika", "event": "Order Completed", "messageId": "t-1"}),
        (
            "track",
            {
                "userId": "max-1",
                "event": "Product Viewed",
                "messageId": "t-2",
                "properties": {"sku": "LAP-1"},
                "timestamp": "2026-11-27T10:00:00Z",
            },
        ),
        ("page", {"userId": "max-1", "name": "Pricing", "messageId": "p-1"}),
        ("track", {"anonymousId": "anon-7", "event": "Cart Viewed", "messageId": "t-3"}),
        ("alias", {"userId": "max-1", "previousId": "anon-7", "messageId": "a-1"}),
    ]
    for kind, body in calls:
        response = await client.post(f"/v1/{kind}", json=body)
        assert response.status_code == 200, response.text

    logged = list(api.log.read())
    assert [(e.customer_id, e.kind, e.event, e.message_id.split("/")[-1]) for e in logged] == [
        ("max-1", "identify", None, "i-1"),
        ("erika", "track", "Order Completed", "t-1"),
        ("max-1", "track", "Product Viewed", "t-2"),
        ("max-1", "track", "Page Viewed", "p-1"),
        ("anon-7", "track", "Cart Viewed", "t-3"),
        ("max-1", "identify", None, "a-1"),
    ]
    assert [e.id for e in logged] == sorted(e.id for e in logged)
    identify, _, viewed, page, _, alias = logged
    assert identify.data == {"plan": "gold"} and identify.context == {"timezone": "Europe/Berlin"}
    assert viewed.data == {"sku": "LAP-1"} and not viewed.truncated
    assert viewed.timestamp == datetime(2026, 11, 27, 10, tzinfo=UTC)
    assert viewed.received_at > viewed.timestamp  # its own time, and when it came
    assert viewed.message_id == api.routed.events[1][0].message_id  # as the router saw it
    assert page.data["name"] == "Pricing"
    assert alias.context == {"linked": "anon-7"}
    # one customer's calls, and a window of time
    assert [e.message_id.split("/")[-1] for e in api.log.read(customers=["max-1"])] == [
        "i-1",
        "t-2",
        "p-1",
        "a-1",
    ]
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert list(api.log.read(since=later)) == [] and len(list(api.log.read(until=later))) == 6
    assert api.log.count() == 6 and api.log.count(customers=["erika"]) == 1


async def test_a_retried_call_is_logged_once_and_a_refused_one_not_at_all(api: Served) -> None:
    client = api.client
    same = {"userId": "max-1", "event": "Product Viewed", "messageId": "same"}
    for _ in range(3):  # the SDK's retries
        assert (await client.post("/v1/track", json=same)).status_code == 200
    batch = {"batch": [{"type": "track", **same}, {"type": "track", **same, "messageId": "b"}]}
    assert (await client.post("/v1/batch", json=batch)).status_code == 200
    refused = [
        ("/v1/track", {"event": "No One"}),  # 400: whose?
        ("/v1/track", {"userId": "max-1", "event": "X", "properties": {"b": "x" * 40_000}}),
        ("/v1/identify", {"userId": "max-1", "traits": {"bio": "x" * 10_000}}),  # profile cap
    ]
    for path, body in refused:
        response = await client.post(path, json=body)
        assert response.status_code in (400, 413), response.text
    # a call that fails downstream is taken back, and its retry logged as the first attempt
    api.routed.fail = True
    failing = {"userId": "max-1", "event": "Checkout Started", "messageId": "retry-me"}
    assert (await client.post("/v1/track", json=failing)).status_code == 503
    assert [e.message_id.split("/")[-1] for e in api.log.read()] == ["same", "b"]
    api.routed.fail = False
    assert (await client.post("/v1/track", json=failing)).status_code == 200

    assert [e.message_id.split("/")[-1] for e in api.log.read()] == ["same", "b", "retry-me"]


async def test_large_properties_keep_their_smallest_fields_and_are_flagged(api: Served) -> None:
    body = {
        "userId": "max-1",
        "event": "Order Completed",
        "properties": {"order_id": "O-1", "total": 1299.0, "html": "x" * 10_000},
        "context": {"traits": {"note": "y" * 5_000, "plan": "gold"}},
    }
    assert (await api.client.post("/v1/track", json=body)).status_code == 200
    [logged] = api.log.read()
    assert logged.truncated and logged.data == {"order_id": "O-1", "total": 1299.0}
    assert logged.context == {"traits": {"plan": "gold"}}


def test_bounding_keeps_what_fits_smallest_first_in_the_original_order() -> None:
    small = {"a": 1, "b": "two"}
    assert bounded(small, 1_024) == (small, False)
    data = {"big": "x" * 100, "id": "O-1", "mid": "y" * 30, "n": 5}
    kept, cut = bounded(data, 60)
    assert cut and kept == {"id": "O-1", "mid": "y" * 30, "n": 5}
    assert len(json.dumps(kept, separators=(",", ":")).encode()) <= 60
    assert bounded({"only": "z" * 100}, 20) == ({}, True)


async def test_reading_pages_through_the_log_in_order(database: Database) -> None:
    log = EventLog(database.connect())
    for number in range(25):
        log.append(f"c-{number % 3}", "track", {"n": number}, f"cli/m-{number}", event="E")
    assert [e.data["n"] for e in log.read(page=4)] == list(range(25))
    assert [e.data["n"] for e in log.read(customers=["c-1"], page=2)] == list(range(1, 25, 3))


async def test_turned_off_nothing_is_logged(database: Database) -> None:
    engine = database.connect()
    config = ProjectConfig.model_validate({"event_log": {"enabled": False}})
    assert event_log_of(engine, config.event_log) is None
    assert event_log_of(engine, EventLogSettings()) is not None
    async for api in _serve(engine, event_log_of(engine, config.event_log)):
        call = {"userId": "max-1", "event": "Product Viewed"}
        assert (await api.client.post("/v1/track", json=call)).status_code == 200
        assert len(api.routed.events) == 1 and api.log.count() == 0


async def test_forget_erases_the_customers_rows_and_export_includes_them(
    database: Database,
) -> None:
    engine = database.connect()
    async for api in _serve(engine, EventLog(engine)):
        for body in (
            {"anonymousId": "anon-1", "event": "Cart Viewed"},
            {"userId": "u-1", "previousId": "anon-1"},
            {"userId": "u-1", "traits": {"plan": "gold"}},
            {"userId": "u-2", "event": "Product Viewed"},
        ):
            kind = "track" if "event" in body else "alias" if "previousId" in body else "identify"
            assert (await api.client.post(f"/v1/{kind}", json=body)).status_code == 200

    document = await Exporter(engine, None).export("u-1")
    assert [(e["kind"], e["event"]) for e in document["events"]] == [
        ("track", "Cart Viewed"),  # under the anonymous id linked to them
        ("identify", None),
        ("identify", None),
    ]
    assert document["events"][2]["data"] == {"plan": "gold"}
    json.dumps(document)

    store = ErasureStore(engine, KEY)
    ids = store.identities("u-1")
    store.delete_customer(ids, store.addresses(ids))

    log = EventLog(engine)
    assert [e.customer_id for e in log.read()] == ["u-2"]
    assert (await Exporter(engine, None).export("u-1"))["events"] == []


async def test_export_caps_the_events_it_lists(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = database.connect()
    log = EventLog(engine)
    for number in range(4):
        log.append("u-1", "track", {"n": number}, f"cli/m-{number}", event="E")
    monkeypatch.setattr("ops.export.MAX_EVENTS", 3)

    document = await Exporter(engine, None).export("u-1")

    assert [e["data"]["n"] for e in document["events"]] == [0, 1, 2]
    assert any("first 3" in note for note in document["notes"])


def test_the_events_command_counts_and_tails_the_window(
    cli: CliRunner, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = database.connect()
    log = EventLog(engine)
    for number in range(5):
        log.append("max-1", "track", {"n": number}, f"cli/m-{number}", event="Product Viewed")
    log.append("max-1", "identify", {"bio": "x" * 100}, "cli/i-1")
    with engine.begin() as db:  # one call from two days ago: outside a 1d window
        db.execute(
            update(event_log)
            .where(event_log.c.message_id == "cli/m-0")
            .values(received_at=datetime.now(UTC) - timedelta(days=2))
        )
    monkeypatch.setenv("TOUCHPOINT_DATABASE_URL", database.url)

    counted = cli.invoke(app, ["events", "count", "-C", str(ROOT)])
    assert (counted.exit_code, counted.stdout.strip()) == (0, "5")
    assert cli.invoke(app, ["events", "count", "--since", "3d", "-C", str(ROOT)]).stdout == "6\n"
    tail = cli.invoke(app, ["events", "tail", "--limit", "2", "-C", str(ROOT)])
    assert tail.exit_code == 0, tail.output
    first, second = tail.stdout.splitlines()
    assert "max-1" in first and "Product Viewed" in first and '{"n":4}' in first
    assert (
        "identify" in second and second.endswith("…") and "2 of 5 call(s) since 1d" in tail.stderr
    )
    wrong = cli.invoke(app, ["events", "tail", "--since", "soon", "-C", str(ROOT)])
    assert wrong.exit_code == 2 and "--since 'soon' is not a duration" in wrong.stderr
