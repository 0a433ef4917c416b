"""The ingestion API: Segment's request shapes, auth, limits, dedupe; and the official Segment
SDK pointed at it, starting a real journey."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from ingestion.api import create_app
from ingestion.router import Router
from simulation.recording import RecordingActivities
from store.database import connect
from store.entries import EntryStore
from store.keys import WriteKeys
from store.processed import ProcessedMessages
from store.profiles import ProfileStore
from store.suppressions import Suppressions
from tests.conftest import Routed, api_of
from tests.net import served
from tests.temporal import plan_from, running_workers
from workflows.models import RunSettings


async def test_identify_then_track_hands_the_event_and_profile_to_the_router(api: Any) -> None:
    client, routed, _ = api
    identified = await client.post(
        "/v1/identify",
        json={
            "userId": "max-1",
            "traits": {"email": "max@example.com", "first_name": "Max"},
            "context": {"locale": "de-DE", "timezone": "Europe/Berlin"},
        },
    )
    assert (identified.status_code, identified.json()) == (200, {"success": True})
    tracked = await client.post(
        "/v1/track",
        json={
            "userId": "max-1",
            "event": "Product Viewed",
            "properties": {"sku": "LAP-1"},
            "messageId": "m-1",
            "timestamp": "2026-11-27T10:00:00Z",
        },
    )
    assert tracked.status_code == 200
    [(event, profile)] = routed.events
    assert (event.event, event.message_id.split("/")[-1], event.properties) == (
        "Product Viewed",
        "m-1",
        {"sku": "LAP-1"},
    )
    assert (profile.email, profile.locale, profile.timezone) == (
        "max@example.com",
        "de-DE",
        "Europe/Berlin",
    )


async def test_a_duplicate_message_id_is_accepted_but_not_processed_twice(api: Any) -> None:
    client, routed, _ = api
    call = {"userId": "max-1", "event": "Product Viewed", "messageId": "same"}
    assert (await client.post("/v1/track", json=call)).status_code == 200
    assert (await client.post("/v1/track", json=call)).status_code == 200
    assert len(routed.events) == 1


async def test_a_call_without_message_id_is_recognised_by_its_content_and_time(api: Any) -> None:
    client, routed, _ = api
    timed = {"userId": "max-1", "event": "Order Completed", "timestamp": "2026-11-27T10:00:00Z"}
    for _ in range(2):  # a retried request: the same event
        assert (await client.post("/v1/track", json=timed)).status_code == 200
    assert len(routed.events) == 1 and "/api-" in routed.events[0][0].message_id
    untimed = {"userId": "max-1", "event": "Page Viewed"}
    for _ in range(2):  # no time given: two page views may well be two events
        assert (await client.post("/v1/track", json=untimed)).status_code == 200
    assert len(routed.events) == 3


async def test_the_openapi_document_describes_the_request_bodies(api: Any) -> None:
    client, _, _ = api
    paths = (await client.get("/openapi.json")).json()["paths"]
    track = paths["/v1/track"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"userId", "event", "properties", "messageId"} <= set(track["properties"])
    assert (
        "batch"
        in paths["/v1/batch"]["post"]["requestBody"]["content"]["application/json"]["schema"][
            "properties"
        ]
    )


async def test_a_failure_to_route_is_503_and_the_retry_is_processed(api: Any) -> None:
    client, routed, _ = api
    routed.fail = True
    call = {"userId": "max-1", "event": "Product Viewed", "messageId": "retry-me"}
    assert (await client.post("/v1/track", json=call)).status_code == 503
    routed.fail = False
    assert (await client.post("/v1/track", json=call)).status_code == 200
    assert len(routed.events) == 1


@pytest.mark.parametrize(
    ("body", "status", "path"),
    [
        ({"event": "X"}, 400, "(body)"),
        ({"userId": "u", "event": ""}, 400, "event"),
        ({"userId": "u", "event": "X", "properties": "nope"}, 400, "properties"),
        ({"userId": "u", "event": "X", "timestamp": "yesterday"}, 400, "timestamp"),
        ([1, 2], 400, None),
        ({"userId": "u", "event": "X", "properties": {"blob": "x" * 40_000}}, 413, None),
    ],
)
async def test_bad_requests_are_4xx_with_the_field_path(
    api: Any, body: Any, status: int, path: str | None
) -> None:
    client, routed, _ = api
    response = await client.post("/v1/track", json=body)
    assert response.status_code == status
    assert response.json()["success"] is False
    if path is not None:
        assert path in [e["path"] for e in response.json()["errors"]]
    assert routed.events == []


async def test_malformed_json_and_wrong_content_type(api: Any) -> None:
    client, _, _ = api
    broken = await client.post(
        "/v1/track", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 400 and "invalid JSON" in broken.json()["message"]
    form = await client.post(
        "/v1/track", content=b"a=b", headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert form.status_code == 415
    plain = await client.post(  # analytics.js sends JSON as text/plain (no CORS preflight)
        "/v1/track",
        content=b'{"userId": "u", "event": "Seen"}',
        headers={"content-type": "text/plain"},
    )
    assert plain.status_code == 200


async def test_unknown_or_missing_write_keys_are_401(api: Any) -> None:
    client, routed, _ = api
    call = {"userId": "u", "event": "X"}
    assert (await client.post("/v1/track", json=call, auth=("wrong-key", ""))).status_code == 401
    no_auth = httpx.AsyncClient(transport=client._transport, base_url="http://api")
    assert (await no_auth.post("/v1/track", json=call)).status_code == 401
    garbage = await no_auth.post("/v1/track", json=call, headers={"authorization": "Basic !!!"})
    assert garbage.status_code == 401
    assert routed.events == []


async def test_batch_mixes_identify_and_track_and_names_the_bad_item(api: Any) -> None:
    client, routed, _ = api
    good = await client.post(
        "/v1/batch",
        json={
            "batch": [
                {"type": "identify", "userId": "erika", "traits": {"email": "erika@example.com"}},
                {"type": "track", "userId": "erika", "event": "Signed Up", "messageId": "b-1"},
                {"type": "page", "userId": "erika", "name": "Home"},
            ]
        },
    )
    assert good.status_code == 200
    [(event, profile), (page, _)] = routed.events
    assert event.event == "Signed Up" and profile.email == "erika@example.com"
    assert (page.event, page.properties) == ("Page Viewed", {"name": "Home"})
    bad = await client.post("/v1/batch", json={"batch": [{"type": "track", "userId": "e"}]})
    assert bad.status_code == 400 and "batch[0].event" in [e["path"] for e in bad.json()["errors"]]
    odd = await client.post("/v1/batch", json={"batch": [{"type": "launch"}]})
    assert odd.status_code == 400 and odd.json()["errors"][0]["path"] == "batch[0].type"


async def test_the_openapi_document_lists_the_endpoints(api: Any) -> None:
    client, _, _ = api
    document = (await client.get("/openapi.json")).json()
    assert {"/v1/identify", "/v1/track", "/v1/batch", "/healthz"} <= set(document["paths"])


async def test_the_official_segment_sdk_starts_a_journey(
    time_env: WorkflowEnvironment,
    stores: tuple[ProfileStore, ProcessedMessages, WriteKeys],
    tmp_path: Path,
) -> None:
    from segment.analytics import Client as SegmentClient

    plan = plan_from("""
id: sdk-welcome
name: Welcome from the SDK
category: marketing
trigger:
  event: Signed Up
steps:
  - send: email
    template: newsletter-welcome
""")
    recorder = RecordingActivities()
    async with running_workers(time_env.client, recorder.all()) as prefix:
        router = Router(
            time_env.client,
            {plan.journey_id: plan},
            EntryStore(connect(f"sqlite:///{tmp_path / 'touchpoint.db'}")),
            RunSettings(queue_prefix=prefix, index_runs=False),
        )
        key = stores[2].create("web shop")
        async with served(create_app(api_of(stores, router.route))) as url:
            sdk = SegmentClient(write_key=key, host=url, sync_mode=True)
            await asyncio.to_thread(
                sdk.identify, "max-1", {"email": "max@example.com", "first_name": "Max"}
            )
            await asyncio.to_thread(sdk.track, "max-1", "Signed Up", {"source": "newsletter-form"})
            for _ in range(100):
                if recorder.sent:
                    break
                await asyncio.sleep(0.05)
    [message] = recorder.sent
    assert message.journey_id == "sdk-welcome"
    assert message.profile is None, "the run carries no personal data: delivery reads the store"
    assert stores[0].get("max-1").email == "max@example.com"  # type: ignore[union-attr]
    assert message.context["event"]["properties"] == {"source": "newsletter-form"}


def _signed(private_key: Any, body: bytes, timestamp: str) -> dict[str, str]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    signature = private_key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        "content-type": "application/json",
    }


async def test_the_signed_sendgrid_webhook_suppresses_and_routes_engagement(
    stores: tuple[ProfileStore, ProcessedMessages, WriteKeys],
) -> None:
    import json as jsonlib

    from cryptography.hazmat.primitives.asymmetric import ec

    private = ec.generate_private_key(ec.SECP256R1())
    routed, suppressed = Routed(), []

    async def suppress(customer: str, reason: str) -> None:
        suppressed.append((customer, reason))

    stores[0].upsert("max-1", {"email": "Max@Example.com"})
    suppressions = Suppressions(stores[0].engine)
    app = create_app(
        api_of(
            stores,
            routed,
            suppress=suppress,
            suppressions=suppressions,
            sendgrid_key=private.public_key(),
        )
    )
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")
    events = [
        {
            "sg_event_id": "e1",
            "event": "click",
            "email": "max@example.com",
            "timestamp": 1764230000,
            "url": "https://shop.example/a14",
            "touchpoint_message_id": "msg_1",
            "journey": "laptop-recommendation",
            "step": "recommend",
        },
        {
            "sg_event_id": "e2",
            "event": "bounce",
            "email": "max@example.com",
            "timestamp": 1764230001,
        },
        {
            "sg_event_id": "e3",
            "event": "open",
            "email": "someone-else@example.com",
            "timestamp": 1764230002,
        },
        {  # a spam report from an address no profile has: suppressed all the same
            "sg_event_id": "e4",
            "event": "spamreport",
            "email": "Stranger@Example.com",
            "timestamp": 1764230003,
        },
        {  # a blocked bounce is temporary: noted, nothing suppressed
            "sg_event_id": "e5",
            "event": "bounce",
            "type": "blocked",
            "email": "blocked@example.com",
            "timestamp": 1764230004,
        },
    ]
    body = jsonlib.dumps(events).encode()
    headers = _signed(private, body, "1764230005")
    accepted = await client.post("/webhooks/sendgrid", content=body, headers=headers)
    again = await client.post("/webhooks/sendgrid", content=body, headers=headers)
    tampered = await client.post(
        "/webhooks/sendgrid", content=body.replace(b"e1", b"e9"), headers=headers
    )
    other_key = _signed(ec.generate_private_key(ec.SECP256R1()), body, "1764230005")
    wrong = await client.post("/webhooks/sendgrid", content=body, headers=other_key)
    unsigned = await client.post("/webhooks/sendgrid", content=body)
    assert accepted.status_code == again.status_code == 200
    assert tampered.status_code == wrong.status_code == unsigned.status_code == 403
    [(event, profile)] = routed.events  # once, although posted twice; the stranger is ignored
    assert (event.event, event.customer_id, profile.id) == ("email.clicked", "max-1", "max-1")
    assert event.properties == {
        "message_id": "msg_1",
        "journey": "laptop-recommendation",
        "step": "recommend",
        "url": "https://shop.example/a14",
    }
    assert suppressed == [("max-1", "bounce")]
    assert sorted(s.address for s in suppressions.list(10)) == [
        "max@example.com",
        "stranger@example.com",
    ]


async def test_readyz_reports_each_dependency_and_metrics_count(
    stores: tuple[ProfileStore, ProcessedMessages, WriteKeys],
) -> None:
    async def half_ready() -> dict[str, bool]:
        return {"temporal": True, "store": False}

    key = stores[2].create("shop")
    app = create_app(api_of(stores, Routed(), ready=half_ready))
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api", auth=(key, "")
    )
    ready = await client.get("/readyz")
    assert ready.status_code == 503 and ready.json() == {
        "ready": False,
        "temporal": True,
        "store": False,
    }
    assert (await client.get("/healthz")).status_code == 200
    await client.post("/v1/track", json={"userId": "u", "event": "Seen", "messageId": "metrics-1"})
    await client.post("/v1/track", json={"event": "no user"})
    text = (await client.get("/metrics")).text
    assert 'touchpoint_events_received_total{type="track"}' in text
    assert 'touchpoint_requests_rejected_total{reason="invalid"}' in text
    assert "touchpoint_request_seconds_bucket" in text


def test_processed_message_ids_are_forgotten_after_the_dedupe_window(
    stores: tuple[ProfileStore, ProcessedMessages, WriteKeys],
) -> None:
    from datetime import UTC, datetime, timedelta

    processed = stores[1]
    assert processed.claim("k", "old") and processed.claim("k", "new")
    later = datetime.now(UTC) + timedelta(hours=47)
    assert processed.purge(now=later) == 0, "kept for the whole 48 hours"
    assert processed.purge(now=later + timedelta(hours=2)) == 2
    assert processed.claim("k", "old"), "after the window the id is new again"


async def test_the_api_purges_on_start(
    stores: tuple[ProfileStore, ProcessedMessages, WriteKeys],
) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from store.database import processed_messages

    stores[1].claim("k", "ancient")
    with stores[1].engine.begin() as db:
        db.execute(
            update(processed_messages).values(received_at=datetime.now(UTC) - timedelta(days=3))
        )
    app = create_app(api_of(stores, Routed()))
    async with app.router.lifespan_context(app):
        for _ in range(50):
            if stores[1].claim("k", "ancient"):
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the old id was not purged")
