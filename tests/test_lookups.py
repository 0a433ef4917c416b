"""Lookups against a real local server: what is sent, what comes back, what is refused."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from activities.http import make_client
from activities.lookups import fetch, lookup_url
from config.project import Connection
from tests.httpstub import HttpStub, Reply, closed_port
from workflows.models import LookupRequest, LookupResult

TOKEN = "shop-api-token-0123456789"


def connection(stub: HttpStub, timeout: str = "5s") -> Connection:
    headers = {"Authorization": f"Bearer {TOKEN}", "X-Shop": "laptops"}
    return Connection(base_url=stub.url("/api/"), headers=headers, timeout=timeout)


def lookup(path: str = "/customers/c1/recommendations", **fields: Any) -> LookupRequest:
    return LookupRequest(
        request_id="look_0123456789abcdef",
        journey_id="abandoned-cart",
        step_id="recommend",
        connection="shop-api",
        path=path,
        **fields,
    )


async def refused(
    client: httpx.AsyncClient, conn: Connection, request: LookupRequest, **kwargs: Any
) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        await fetch(client, conn, request, **kwargs)
    assert TOKEN not in caught.value.message
    assert caught.value.__cause__ is None
    return caught.value


def classified(error: ApplicationError) -> tuple[str | None, bool, timedelta | None]:
    return error.type, error.non_retryable, error.next_retry_delay


async def test_get_sends_query_and_headers(stub: HttpStub, client: httpx.AsyncClient) -> None:
    stub.reply(Reply(200, body={"items": [{"sku": "X1"}]}))
    request = lookup(query={"limit": 3, "fresh": True, "q": "a b&c"})
    result = await fetch(client, connection(stub), request)

    assert result == LookupResult(status=200, data={"items": [{"sku": "X1"}]})
    [sent] = stub.requests
    assert (sent.method, sent.path) == ("GET", "/api/customers/c1/recommendations")
    assert sent.query == {"limit": ["3"], "fresh": ["true"], "q": ["a b&c"]}
    assert sent.headers["authorization"] == f"Bearer {TOKEN}"
    assert sent.headers["x-shop"] == "laptops"
    assert sent.headers["accept"] == "application/json"
    assert "idempotency-key" not in sent.headers
    assert sent.body == b""


async def test_post_sends_a_json_body_and_an_idempotency_key(
    stub: HttpStub, client: httpx.AsyncClient
) -> None:
    stub.reply(Reply(201, body={"coupon": "SAVE10"}))
    request = lookup("/coupons", method="POST", body={"customer": "c1", "percent": 10})
    result = await fetch(client, connection(stub), request)

    assert result == LookupResult(status=201, data={"coupon": "SAVE10"})
    [sent] = stub.requests
    assert (sent.method, sent.target) == ("POST", "/api/coupons")
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["idempotency-key"] == "look_0123456789abcdef"
    assert sent.json() == {"customer": "c1", "percent": 10}


async def test_not_found_is_no_data(stub: HttpStub, client: httpx.AsyncClient) -> None:
    stub.reply(Reply(404, body={"error": "no recommendations"}))
    assert await fetch(client, connection(stub), lookup()) == LookupResult(status=404, data=None)


async def test_an_empty_success_is_no_data(stub: HttpStub, client: httpx.AsyncClient) -> None:
    stub.reply(Reply(204))
    assert await fetch(client, connection(stub), lookup()) == LookupResult(status=204, data=None)


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "streamed"])
async def test_an_answer_past_the_cap_is_refused(
    stub: HttpStub, client: httpx.AsyncClient, declared: bool
) -> None:
    big = {"items": ["x" * 100 for _ in range(100)]}  # about 10 kB
    stub.reply(Reply(200, body=big, content_length=declared))
    error = await refused(client, connection(stub), lookup(), max_bytes=5_000)
    assert classified(error) == ("ResponseTooLarge", True, None)


async def test_an_answer_within_the_cap_is_read(stub: HttpStub, client: httpx.AsyncClient) -> None:
    stub.reply(Reply(200, body={"items": ["x" * 100] * 40}, content_length=False))
    result = await fetch(client, connection(stub), lookup(), max_bytes=5_000)
    assert result.data == {"items": ["x" * 100] * 40}


@pytest.mark.parametrize(
    "path",
    [
        "/../admin",
        "/customers/../../admin",
        "/customers/%2e%2e/admin",
        "/customers/%252E%252E/admin",
        "/customers/..;/admin",
        "/a\\..\\admin",
        "customers/c1",
        "https://evil.example/steal",
        "//evil.example/steal",
    ],
)
async def test_paths_that_leave_the_connection_are_refused(
    stub: HttpStub, client: httpx.AsyncClient, path: str
) -> None:
    error = await refused(client, connection(stub), lookup(path))
    assert classified(error) == ("Misconfigured", True, None)
    assert stub.requests == []


def test_lookup_url_joins_base_and_path() -> None:
    assert lookup_url("https://shop.example/api/", "/c/1?x=1") == "https://shop.example/api/c/1?x=1"
    assert lookup_url("https://shop.example/api", "/c/1..2") == "https://shop.example/api/c/1..2"


async def test_a_slow_answer_times_out_and_is_retried(stub: HttpStub) -> None:
    stub.reply(Reply(200, body={"late": True}, delay=4))
    started = time.monotonic()
    async with make_client() as client:  # default 10 s: the connection's 1 s must win
        error = await refused(client, connection(stub, timeout="1s"), lookup())
    assert 0.9 < time.monotonic() - started < 2.5
    assert classified(error) == ("ProviderUnavailable", False, None)


async def test_a_trickling_answer_is_cut_at_the_deadline(stub: HttpStub) -> None:
    """Per-read timeouts alone would let a slow drip run on; the whole lookup has a deadline."""
    stub.reply(Reply(200, body={"items": ["x" * 100]}, content_length=False, trickle=0.3))
    started = time.monotonic()
    async with make_client() as client:
        error = await refused(client, connection(stub, timeout="1s"), lookup())
    assert 0.9 < time.monotonic() - started < 2.5
    assert classified(error) == ("ProviderUnavailable", False, None)
    assert error.message == (
        "lookup shop-api GET /customers/c1/recommendations: timed out after 1s"
    )


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (Reply(429, headers={"Retry-After": "12"}), ("RateLimited", False, timedelta(seconds=12))),
        (Reply(500, body="database down"), ("ProviderError", False, None)),
        (Reply(503, headers={"Retry-After": "3"}), ("ProviderError", False, timedelta(seconds=3))),
        (Reply(401, body=f"bad token Bearer {TOKEN}"), ("Rejected", True, None)),
        (Reply(400, body={"error": "limit too high"}), ("Rejected", True, None)),
        (Reply(410), ("RecipientUnreachable", True, None)),
        (Reply(302, headers={"Location": "/login"}), ("Misconfigured", True, None)),
        (Reply(200, body="<html>login</html>"), ("InvalidResponse", True, None)),
    ],
)
async def test_answers_are_classified(
    stub: HttpStub, client: httpx.AsyncClient, reply: Reply, expected: tuple[object, ...]
) -> None:
    stub.reply(reply)
    assert classified(await refused(client, connection(stub), lookup())) == expected


async def test_a_rejection_names_the_lookup_and_quotes_the_body(
    stub: HttpStub, client: httpx.AsyncClient
) -> None:
    stub.reply(Reply(400, body=f"limit too high for Bearer {TOKEN}"))
    error = await refused(client, connection(stub), lookup())
    assert error.message == (
        "refused (400): lookup shop-api GET /customers/c1/recommendations: limit too high for ***"
    )


async def test_a_refused_connection_is_retried(client: httpx.AsyncClient) -> None:
    conn = Connection(base_url=f"http://127.0.0.1:{closed_port()}/api", timeout="2s")
    error = await refused(client, conn, lookup())
    assert classified(error) == ("ProviderUnavailable", False, None)
