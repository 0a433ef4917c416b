"""Signed webhooks against a real local server, verified by the independent standardwebhooks."""

from __future__ import annotations

import base64
import os
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from temporalio.exceptions import ApplicationError

from activities.http import make_client
from activities.webhooks import EXCERPT_LIMIT, post_webhook, sign
from tests.httpstub import HttpStub, Reply, closed_port

MESSAGE_ID = "msg_0123456789abcdef0123456789abcdef"


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


async def post(
    client: httpx.AsyncClient, url: str, secrets: list[str], **kwargs: object
) -> str | None:
    arguments: dict[str, object] = {
        "message_id": MESSAGE_ID,
        "event_type": "order.abandoned",
        "data": {"cart": {"total": 129.5, "items": ["laptop"]}, "note": "größe"},
        "now": datetime.now(UTC),
        **kwargs,
    }
    return await post_webhook(client, url, secrets, **arguments)  # type: ignore[arg-type]


async def failing(client: httpx.AsyncClient, url: str, secrets: list[str]) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        await post(client, url, secrets)
    return caught.value


def test_sign_matches_the_spec_test_vector() -> None:
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    for secret in ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"):
        assert sign([secret], "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == expected


def test_sign_refuses_a_secret_that_is_not_base64() -> None:
    with pytest.raises(ApplicationError) as caught:
        sign(["whsec_not base64!"], MESSAGE_ID, 1, b"{}")
    assert caught.value.non_retryable and caught.value.type == "Misconfigured"
    assert "not base64!" not in str(caught.value)


async def test_signed_headers_verify_with_standardwebhooks(
    stub: HttpStub, client: httpx.AsyncClient
) -> None:
    secret = new_secret()
    stub.reply(Reply(200, body="ok"))
    assert await post(client, stub.url("/hooks/touchpoint"), [secret]) is None

    [request] = stub.requests
    assert (request.method, request.path) == ("POST", "/hooks/touchpoint")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"] == MESSAGE_ID
    assert request.headers["idempotency-key"] == MESSAGE_ID
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 5
    payload = Webhook(secret).verify(request.body, request.headers)
    assert payload["type"] == "order.abandoned"
    assert payload["data"] == {"cart": {"total": 129.5, "items": ["laptop"]}, "note": "größe"}
    assert datetime.fromisoformat(payload["timestamp"]).tzinfo is not None
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(request.body, request.headers)


async def test_rotation_signs_with_every_secret(stub: HttpStub, client: httpx.AsyncClient) -> None:
    old, new = new_secret(), new_secret()
    stub.reply(Reply(204))
    await post(client, stub.url("/hook"), [old, new])

    [request] = stub.requests
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(request.body, request.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(request.body, request.headers)


async def test_unsigned_without_secrets(stub: HttpStub, client: httpx.AsyncClient) -> None:
    stub.reply(Reply(200))
    await post(client, stub.url("/hook"), [])
    assert "webhook-signature" not in stub.requests[0].headers
    assert stub.requests[0].headers["webhook-id"] == MESSAGE_ID


async def test_a_retry_keeps_the_id_and_key(stub: HttpStub, client: httpx.AsyncClient) -> None:
    secret = new_secret()
    occurred = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    stub.reply(Reply(503), Reply(200))
    with pytest.raises(ApplicationError):
        await post(client, stub.url("/hook"), [secret], occurred_at=occurred)
    later = datetime.now(UTC) + timedelta(seconds=2)
    await post(client, stub.url("/hook"), [secret], occurred_at=occurred, now=later)

    first, second = stub.requests
    for name in ("webhook-id", "idempotency-key"):
        assert first.headers[name] == second.headers[name] == MESSAGE_ID
    assert first.body == second.body  # same payload under the same Idempotency-Key
    assert int(second.headers["webhook-timestamp"]) > int(first.headers["webhook-timestamp"])
    for request in (first, second):
        assert Webhook(secret).verify(request.body, request.headers)["timestamp"] == (
            "2025-03-01T12:00:00+00:00"
        )


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (Reply(200, body="ok"), None),
        (Reply(201, body={"id": "evt_42", "status": "queued"}), "evt_42"),
        (Reply(202, body={"id": 7}), "7"),
        (Reply(200, headers={"X-Request-Id": "req-9"}), "req-9"),
        (Reply(204), None),
    ],
)
async def test_success_returns_the_provider_id(
    stub: HttpStub, client: httpx.AsyncClient, reply: Reply, expected: str | None
) -> None:
    stub.reply(reply)
    assert await post(client, stub.url("/hook"), [new_secret()]) == expected


@pytest.mark.parametrize(
    ("reply", "kind", "non_retryable", "delay"),
    [
        (Reply(410, body="endpoint disabled"), "RecipientUnreachable", True, None),
        (Reply(429, headers={"Retry-After": "7"}), "RateLimited", False, timedelta(seconds=7)),
        (Reply(429), "RateLimited", False, None),
        (Reply(500, body="boom"), "ProviderError", False, None),
        (Reply(502, headers={"Retry-After": "30"}), "ProviderError", False, timedelta(seconds=30)),
        (Reply(409, headers={"Retry-After": "2"}), "ProviderError", False, timedelta(seconds=2)),
        (Reply(401, body="bad signature"), "Rejected", True, None),
        (Reply(422, body="key reused"), "Rejected", True, None),
    ],
)
async def test_answers_are_classified(
    stub: HttpStub,
    client: httpx.AsyncClient,
    reply: Reply,
    kind: str,
    non_retryable: bool,
    delay: timedelta | None,
) -> None:
    stub.reply(reply)
    error = await failing(client, stub.url("/hook"), [new_secret()])
    assert (error.type, error.non_retryable, error.next_retry_delay) == (kind, non_retryable, delay)


async def test_a_rejection_quotes_an_excerpt_of_the_body(
    stub: HttpStub, client: httpx.AsyncClient
) -> None:
    stub.reply(Reply(400, body="invalid field 'cart':\n" + "x" * 1000))
    error = await failing(client, stub.url("/hook"), [new_secret()])
    assert (error.type, error.non_retryable, error.next_retry_delay) == ("Rejected", True, None)
    assert error.message.startswith(f"refused (400): webhook {MESSAGE_ID}: invalid field 'cart': x")
    quoted = error.message.split(f"webhook {MESSAGE_ID}: ", 1)[1]
    assert len(quoted) == EXCERPT_LIMIT and quoted.endswith("…")


async def test_a_secret_echoed_in_a_body_is_scrubbed(
    stub: HttpStub, client: httpx.AsyncClient
) -> None:
    secret = new_secret()
    stub.reply(Reply(400, body=f"we expected {secret}"))
    error = await failing(client, stub.url("/hook"), [secret])
    assert secret not in error.message and "***" in error.message


async def test_a_redirect_is_not_followed(stub: HttpStub, client: httpx.AsyncClient) -> None:
    stub.reply(Reply(302, headers={"Location": stub.url("/elsewhere")}), Reply(200))
    error = await failing(client, stub.url("/hook"), [new_secret()])
    assert (error.type, error.non_retryable, error.next_retry_delay) == (
        "Misconfigured",
        True,
        None,
    )
    assert "redirects are not followed" in error.message
    assert [r.path for r in stub.requests] == ["/hook"]


async def test_a_slow_answer_is_retried(stub: HttpStub) -> None:
    stub.reply(Reply(200, delay=3))
    started = time.monotonic()
    async with make_client(httpx.Timeout(0.5)) as client:
        error = await failing(client, stub.url("/hook"), [new_secret()])
    assert time.monotonic() - started < 2
    assert (error.type, error.non_retryable, error.next_retry_delay) == (
        "ProviderUnavailable",
        False,
        None,
    )
    assert error.message.startswith("timed out: ReadTimeout")
    assert error.__cause__ is None and error.__suppress_context__


async def test_a_refused_connection_is_retried(client: httpx.AsyncClient) -> None:
    url = f"http://127.0.0.1:{closed_port()}/hook?token=s3cr3t-in-url"
    error = await failing(client, url, [new_secret()])
    assert (error.type, error.non_retryable, error.next_retry_delay) == (
        "ProviderUnavailable",
        False,
        None,
    )
    assert error.message.startswith("no answer: ConnectError")
    assert "s3cr3t" not in error.message
    assert error.__cause__ is None and error.__suppress_context__


async def test_a_url_that_is_not_http_is_misconfigured(client: httpx.AsyncClient) -> None:
    error = await failing(client, "ftp://example.invalid/hook", [new_secret()])
    assert (error.type, error.non_retryable) == ("Misconfigured", True)
