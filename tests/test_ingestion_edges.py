"""What real SDKs and hostile clients send to the ingestion API: compressed bodies, traits in
``context.traits``, every Segment call type, pathological payloads, batches with bad items,
the same message id from two shops, and SendGrid posts with one bad event."""

from __future__ import annotations

import base64
import gzip
import json
import os
import tracemalloc
import zlib
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from ingestion.api import create_app
from store.keys import WriteKeys
from store.processed import ProcessedMessages
from store.profiles import ProfileStore
from tests.conftest import Routed, api_of

Stores = tuple[ProfileStore, ProcessedMessages, WriteKeys]


def gzipped(document: Any) -> bytes:
    return gzip.compress(json.dumps(document).encode())


def nested(depth: int, leaf: Any = 1) -> Any:
    for _ in range(depth):
        leaf = {"a": leaf}
    return leaf


# --- 1. compressed bodies ------------------------------------------------------------------


@pytest.mark.parametrize("route", ["/v1/track", "/v1/identify", "/v1/batch"])
async def test_a_gzip_body_is_decoded_on_every_endpoint(api: Any, route: str) -> None:
    client, routed, _ = api
    call = {"userId": "max-1", "event": "Signed Up", "traits": {"email": "max@example.com"}}
    document = {"batch": [{"type": "track", **call}]} if route == "/v1/batch" else call
    response = await client.post(
        route,
        content=gzipped(document),
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    assert response.status_code == 200, response.text
    if route != "/v1/identify":
        assert [e.event for e, _ in routed.events] == ["Signed Up"]


@pytest.mark.parametrize(
    "compress",
    [
        lambda data: zlib.compress(data),  # deflate as RFC 9110 means it (zlib)
        lambda data: zlib.compress(data)[2:-4],  # raw deflate, as some clients send it
    ],
    ids=["zlib", "raw"],
)
async def test_a_deflate_body_is_decoded(api: Any, compress: Any) -> None:
    client, routed, _ = api
    body = compress(json.dumps({"userId": "u", "event": "Seen"}).encode())
    response = await client.post("/v1/track", content=body, headers={"content-encoding": "deflate"})
    assert response.status_code == 200
    assert [e.event for e, _ in routed.events] == ["Seen"]


async def test_gzip_members_one_after_another_are_one_body(api: Any) -> None:
    client, routed, _ = api
    text = json.dumps({"userId": "u", "event": "Seen"}).encode()
    body = gzip.compress(text[:10]) + gzip.compress(text[10:])
    response = await client.post("/v1/track", content=body, headers={"content-encoding": "gzip"})
    assert response.status_code == 200 and len(routed.events) == 1


async def test_a_body_that_says_gzip_but_is_not_is_a_clear_400(api: Any) -> None:
    client, routed, _ = api
    plain = json.dumps({"userId": "u", "event": "Seen"}).encode()
    truncated = gzipped({"userId": "u", "event": "Seen"})[:-6]
    for body in (plain, truncated):
        response = await client.post(
            "/v1/track", content=body, headers={"content-encoding": "gzip"}
        )
        assert (response.status_code, response.json()["message"]) == (
            400,
            "the body is not valid gzip data",
        )
    unknown = await client.post("/v1/track", content=plain, headers={"content-encoding": "br"})
    assert unknown.status_code == 415
    assert (
        unknown.json()["message"]
        == "cannot decode Content-Encoding 'br': send gzip, deflate or none"
    )
    assert routed.events == []


async def test_a_zip_bomb_is_413_without_being_inflated(api: Any) -> None:
    """100 MB of zeros, 100 KB compressed: refused once 500 KB are inflated."""
    client, routed, _ = api
    squeezer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = b"0" * (1024 * 1024)
    bomb = b"".join(squeezer.compress(zeros) for _ in range(100)) + squeezer.flush()
    assert len(bomb) < 500 * 1024
    tracemalloc.start()
    try:
        response = await client.post(
            "/v1/batch", content=bomb, headers={"content-encoding": "gzip"}
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 413
    assert response.json()["message"] == "the decompressed body is larger than 500 KB"
    assert peak < 8 * 1024 * 1024, f"inflated {peak} bytes"
    assert routed.events == []


async def test_a_compressed_body_over_the_limit_is_413_before_decoding(api: Any) -> None:
    client, _, _ = api
    noise = base64.b64encode(os.urandom(40_000)).decode()  # does not compress
    body = gzipped({"userId": "u", "event": "Seen", "properties": {"noise": noise}})
    assert len(body) > 32 * 1024
    response = await client.post("/v1/track", content=body, headers={"content-encoding": "gzip"})
    assert (response.status_code, response.json()["message"]) == (
        413,
        "the body is larger than 32 KB",
    )


# --- 2. traits where SDKs put them ---------------------------------------------------------


async def test_identify_traits_in_context_traits_reach_the_profile(
    api: Any, stores: Stores
) -> None:
    """rudder-sdk-python's identify: the traits are only in context.traits."""
    client, _, _ = api
    response = await client.post(
        "/v1/identify",
        json={"userId": "max-1", "context": {"traits": {"email": "max@example.com"}}},
    )
    assert response.status_code == 200
    profile = stores[0].get("max-1")
    assert profile is not None and profile.email == "max@example.com"


async def test_precedence_call_traits_then_context_traits_then_the_profile(
    api: Any, stores: Stores
) -> None:
    client, routed, _ = api
    stores[0].upsert("max-1", {"plan": "free", "city": "Köln", "email": "old@example.com"})
    await client.post(
        "/v1/identify",
        json={
            "userId": "max-1",
            "traits": {"plan": "pro"},
            "context": {"traits": {"plan": "basic", "email": "max@example.com"}},
        },
    )
    profile = stores[0].get("max-1")
    assert profile is not None
    assert (profile.traits["plan"], profile.traits["city"], profile.email) == (
        "pro",
        "Köln",
        "max@example.com",
    )
    await client.post(
        "/v1/track",
        json={"userId": "max-1", "event": "Seen", "context": {"traits": {"city": "Bonn"}}},
    )
    [(_, seen_with)] = routed.events
    assert seen_with.traits["city"] == "Bonn", "a track's context.traits update the profile first"


async def test_segment_camel_case_traits_are_also_under_the_names_templates_use(
    api: Any, stores: Stores
) -> None:
    client, _, _ = api
    await client.post(
        "/v1/identify",
        json={
            "userId": "max-1",
            "traits": {
                "firstName": "Max",
                "lastName": "Mustermann",
                "createdAt": "2026-01-02T03:04:05Z",
                "address": {"postalCode": "50667", "city": "Köln"},
            },
        },
    )
    traits = stores[0].get("max-1").traits  # type: ignore[union-attr]
    assert (traits["first_name"], traits["firstName"]) == ("Max", "Max")
    assert (traits["last_name"], traits["created_at"]) == ("Mustermann", "2026-01-02T03:04:05Z")
    assert traits["address"] == {"postalCode": "50667", "postal_code": "50667", "city": "Köln"}
    await client.post("/v1/identify", json={"userId": "max-1", "traits": {"first_name": "Maxi"}})
    traits = stores[0].get("max-1").traits  # type: ignore[union-attr]
    assert (traits["first_name"], traits["firstName"]) == ("Maxi", "Maxi"), "both follow"
    both = {"firstName": "A", "first_name": "B"}
    await client.post("/v1/identify", json={"userId": "max-1", "traits": both})
    traits = stores[0].get("max-1").traits  # type: ignore[union-attr]
    assert (traits["first_name"], traits["firstName"]) == ("B", "B"), "snake_case wins"


async def test_a_numeric_user_id_is_read_as_text(api: Any) -> None:
    client, routed, _ = api
    response = await client.post("/v1/track", json={"userId": 42, "event": "Seen"})
    assert response.status_code == 200 and routed.events[0][0].customer_id == "42"


async def test_the_write_key_may_come_in_the_body_as_older_segment_sdks_send_it(
    api: Any,
) -> None:
    client, routed, key = api
    anonymous = httpx.AsyncClient(transport=client._transport, base_url="http://api")
    call = {"writeKey": key, "batch": [{"type": "track", "userId": "u", "event": "Seen"}]}
    assert (await anonymous.post("/v1/batch", json=call)).status_code == 200
    wrong = {**call, "writeKey": "tp_nope"}
    assert (await anonymous.post("/v1/batch", json=wrong)).status_code == 401
    assert len(routed.events) == 1


# --- 3. every Segment call type ------------------------------------------------------------


async def test_page_and_screen_become_events_journeys_can_trigger_on(api: Any) -> None:
    client, routed, _ = api
    page = {
        "userId": "max-1",
        "name": "Laptops",
        "category": "Shop",
        "properties": {"path": "/laptops", "url": "https://shop.example/laptops"},
    }
    assert (await client.post("/v1/page", json=page)).status_code == 200
    screen = {"userId": "max-1", "name": "Cart", "properties": {"items": 2}}
    assert (await client.post("/v1/screen", json=screen)).status_code == 200
    [(viewed, _), (screened, _)] = routed.events
    assert (viewed.event, viewed.properties) == (
        "Page Viewed",
        {
            "name": "Laptops",
            "category": "Shop",
            "path": "/laptops",
            "url": page["properties"]["url"],
        },
    )
    assert (screened.event, screened.properties) == ("Screen Viewed", {"name": "Cart", "items": 2})


async def test_group_keeps_the_group_on_the_profile(api: Any, stores: Stores) -> None:
    client, routed, _ = api
    group = {"userId": "max-1", "groupId": "acme", "traits": {"name": "ACME", "plan": "b2b"}}
    assert (await client.post("/v1/group", json=group)).status_code == 200
    traits = stores[0].get("max-1").traits  # type: ignore[union-attr]
    assert (traits["group_id"], traits["group"]) == ("acme", {"name": "ACME", "plan": "b2b"})
    missing = await client.post("/v1/group", json={"userId": "max-1"})
    assert missing.status_code == 400 and missing.json()["errors"][0]["path"] == "groupId"
    assert routed.events == []


async def test_alias_links_an_anonymous_visitor_to_the_user(api: Any, stores: Stores) -> None:
    client, routed, _ = api
    await client.post(
        "/v1/identify",
        json={"anonymousId": "anon-7", "traits": {"interests": ["laptops"], "email": "a@x.de"}},
    )
    await client.post("/v1/identify", json={"userId": "max-1", "traits": {"email": "max@x.de"}})
    alias = {"userId": "max-1", "previousId": "anon-7"}
    assert (await client.post("/v1/alias", json=alias)).status_code == 200
    profile = stores[0].get("max-1")
    assert profile is not None
    assert (profile.email, profile.traits["interests"]) == ("max@x.de", ["laptops"])
    await client.post("/v1/track", json={"anonymousId": "anon-7", "event": "Cart Viewed"})
    [(event, seen_with)] = routed.events
    assert (event.customer_id, seen_with.email) == ("max-1", "max@x.de")
    no_previous = await client.post("/v1/alias", json={"userId": "max-1"})
    assert no_previous.status_code == 400
    assert no_previous.json()["errors"][0]["path"] == "previousId"


async def test_a_call_with_both_ids_links_them(api: Any, stores: Stores) -> None:
    client, routed, _ = api
    await client.post("/v1/track", json={"anonymousId": "anon-8", "event": "Seen"})
    await client.post(
        "/v1/identify", json={"userId": "erika", "anonymousId": "anon-8", "traits": {"x": 1}}
    )
    await client.post("/v1/track", json={"anonymousId": "anon-8", "event": "Seen again"})
    assert [e.customer_id for e, _ in routed.events] == ["anon-8", "erika"]
    assert stores[0].linked_ids("erika") == ["anon-8"]


# --- 4. pathological payloads --------------------------------------------------------------


@pytest.mark.parametrize(
    ("properties", "path", "message"),
    [
        (nested(200), "properties" + ".a" * 31, "nested deeper than 32 levels"),
        (
            {"list": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]},
            None,
            "nested",
        ),
        ({"s": "x" * 17_000}, "properties.s", "string longer than 16384 characters"),
        ({"k" * 300: 1}, None, "key longer than 256 characters"),
        ({"nul": "a\x00b"}, "properties.nul", "string contains a NUL character"),
        ({"odd key": {"x": "\ud800"}}, 'properties["odd key"].x', "lone UTF-16 surrogate"),
        ({"many": [0] * 6000}, "properties.many", "more than 5000 values in one call"),
    ],
)
async def test_pathological_properties_are_400_with_the_field_path(
    api: Any, properties: Any, path: str | None, message: str
) -> None:
    client, routed, _ = api
    body = json.dumps({"userId": "u", "event": "Seen", "properties": properties})
    response = await client.post(
        "/v1/track", content=body.encode(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    [error] = response.json()["errors"]
    assert message in error["message"]
    if path is not None:
        assert error["path"] == path
    assert routed.events == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[" * 15_000 + b"]" * 15_000, "invalid JSON: nested deeper than 32 levels"),
        (b'{"userId": "u", "event": "X", "properties": {"n": NaN}}', "NaN is not a JSON number"),
        (b'{"userId": "u", "event": "X", "properties": {"n": -Infinity}}', "-Infinity"),
        (b'{"userId": "u", "event": "X", "properties": {"n": 1' + b"0" * 5000 + b"}}", "digits"),
        (b'{"userId": "u", "event": "\xff"}', "invalid JSON: the body is not UTF-8"),
    ],
)
async def test_json_that_cannot_travel_is_400_not_a_crash(
    api: Any, body: bytes, message: str
) -> None:
    client, routed, _ = api
    for route in ("/v1/track", "/v1/batch"):
        response = await client.post(route, content=body)
        assert response.status_code == 400, response.text
        assert message in response.json()["message"]
    assert routed.events == []


async def test_deep_nesting_in_a_batch_item_names_the_item(api: Any) -> None:
    client, routed, _ = api
    batch = {
        "batch": [
            {"type": "track", "userId": "u", "event": "Deep", "properties": nested(100)},
            {"type": "track", "userId": "u", "event": "Fine"},
        ]
    }
    response = await client.post("/v1/batch", json=batch)
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["index"] == 0 and error["path"].startswith("batch[0].properties.a.a")
    assert [e.event for e, _ in routed.events] == ["Fine"]


# --- 5. batches ----------------------------------------------------------------------------


async def test_an_invalid_batch_item_gets_its_own_error_and_the_rest_are_processed(
    api: Any,
) -> None:
    client, routed, _ = api
    batch = {
        "batch": [
            {"type": "track", "userId": "u", "messageId": "b-0"},
            {"type": "track", "userId": "u", "event": "One", "messageId": "b-1"},
            "not an object",
            {"type": "launch", "userId": "u"},
            {"type": "track", "userId": "u", "event": "Two", "messageId": "b-4"},
        ]
    }
    response = await client.post("/v1/batch", json=batch)
    assert response.status_code == 400
    body = response.json()
    assert (body["success"], body["processed"]) == (False, 2)
    assert [(e["index"], e["path"]) for e in body["errors"]] == [
        (0, "batch[0].event"),
        (2, "batch[2]"),
        (3, "batch[3].type"),
    ]
    assert [e.event for e, _ in routed.events] == ["One", "Two"]


async def test_a_batch_that_fails_part_way_is_safe_to_retry(stores: Stores) -> None:
    """The router fails at the second event: 503; the retry does the rest, nothing twice."""

    class FailsOnce(Routed):
        async def __call__(self, event: Any, profile: Any, linked: object = ()) -> None:
            if event.event == "Two" and self.fail:
                self.fail = False
                raise RuntimeError("Temporal is unreachable")
            self.events.append((event, profile))

    routed = FailsOnce()
    routed.fail = True
    key = stores[2].create("shop")
    app = create_app(api_of(stores, routed))
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api", auth=(key, "")
    )
    batch = {
        "batch": [
            {"type": "track", "userId": "u", "event": name, "messageId": f"m-{name}"}
            for name in ("One", "Two", "Three")
        ]
    }
    first = await client.post("/v1/batch", json=batch)
    assert first.status_code == 503
    assert first.json() == {
        "success": False,
        "message": "try again later",
        "processed": 1,
        "errors": [],
    }
    retry = await client.post("/v1/batch", json=batch)
    assert retry.json() == {"success": True, "processed": 3}
    assert [e.event for e, _ in routed.events] == ["One", "Two", "Three"]


async def test_a_batch_over_2500_calls_is_refused(api: Any) -> None:
    client, routed, _ = api
    call = {"type": "track", "userId": "u", "event": "E"}
    response = await client.post("/v1/batch", json={"batch": [call] * 2501})
    assert response.status_code == 400 and response.json()["errors"][0]["path"] == "batch"
    assert routed.events == []


# --- 6. deduplication scope ----------------------------------------------------------------


async def test_the_same_message_id_from_two_shops_is_two_messages(api: Any, stores: Stores) -> None:
    client, routed, _ = api
    other_key = stores[2].create("store tills")
    call = {"userId": "max-1", "event": "Order Completed", "messageId": "order-1"}
    assert (await client.post("/v1/track", json=call)).status_code == 200
    assert (await client.post("/v1/track", json=call, auth=(other_key, ""))).status_code == 200
    assert (await client.post("/v1/track", json=call)).status_code == 200  # a real duplicate
    ids = [event.message_id for event, _ in routed.events]
    assert len(ids) == 2 and len(set(ids)) == 2 and all(i.endswith("/order-1") for i in ids)


# --- 7. SendGrid Event Webhook -------------------------------------------------------------


def _signed(key: ec.EllipticCurvePrivateKey, events: list[Any]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(events).encode()
    signature = key.sign(b"1764230005" + body, ec.ECDSA(hashes.SHA256()))
    return body, {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": "1764230005",
        "content-type": "application/json",
    }


def _click(event_id: str | None, at: int = 1764230000) -> dict[str, Any]:
    click = {
        "event": "click",
        "email": "max@example.com",
        "timestamp": at,
        "url": "https://shop.example/a14",
    }
    return click if event_id is None else {**click, "sg_event_id": event_id}


async def test_a_failed_sendgrid_event_is_processed_on_sendgrid_s_retry(stores: Stores) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    routed = Routed()
    stores[0].upsert("max-1", {"email": "max@example.com"})
    app = create_app(api_of(stores, routed, sendgrid_key=private.public_key()))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")
    body, headers = _signed(private, [_click("e1")])
    routed.fail = True
    assert (
        await client.post("/webhooks/sendgrid", content=body, headers=headers)
    ).status_code == 503
    routed.fail = False
    assert (
        await client.post("/webhooks/sendgrid", content=body, headers=headers)
    ).status_code == 200
    assert [e.event for e, _ in routed.events] == ["email.clicked"]


async def test_one_sendgrid_event_without_an_id_or_unreadable_does_not_fail_the_post(
    stores: Stores,
) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    routed = Routed()
    stores[0].upsert("max-1", {"email": "max@example.com"})
    app = create_app(api_of(stores, routed, sendgrid_key=private.public_key()))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")
    without_id = _click(None, at=1764230001)
    body, headers = _signed(private, [_click("e1"), without_id])
    assert (
        await client.post("/webhooks/sendgrid", content=body, headers=headers)
    ).status_code == 200
    assert len(routed.events) == 2
    again = await client.post("/webhooks/sendgrid", content=body, headers=headers)
    assert again.status_code == 200 and len(routed.events) == 2, "both deduplicated on retry"
    unreadable = {**_click("e3"), "timestamp": "yesterday"}
    deep = {**_click("e4"), "extra": nested(200)}
    body, headers = _signed(private, [unreadable, deep, _click("e5", at=1764230009)])
    response = await client.post("/webhooks/sendgrid", content=body, headers=headers)
    assert response.status_code == 400
    assert [e["path"] for e in response.json()["errors"]] == ["[1].extra" + ".a" * 31, "[0]"]
    assert len(routed.events) == 3, "the readable event of that post is processed all the same"


async def test_a_sendgrid_post_nested_too_deep_to_read_is_400(stores: Stores) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    app = create_app(api_of(stores, Routed(), sendgrid_key=private.public_key()))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")
    body = b"[" * 50_000 + b"]" * 50_000
    signature = private.sign(b"1764230005" + body, ec.ECDSA(hashes.SHA256()))
    headers = {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": "1764230005",
    }
    response = await client.post("/webhooks/sendgrid", content=body, headers=headers)
    assert response.status_code == 400
