"""Slack, Teams and Telegram senders against a real local server standing in for each."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from activities.chat import send_slack, send_teams, send_telegram
from activities.http import make_client
from tests.httpstub import HttpStub, Reply, closed_port

SLACK_PATH = "/services/T0001/B0002/SlackSecretPart123"
TEAMS_PATH = "/workflows/abc/triggers/manual/paths/invoke?sig=TeamsSecretSig456"
TOKEN = "123456789:AAEhBOweik9ai2o4-TelegramSecretToken_xyz"


def classified(error: ApplicationError) -> tuple[str | None, bool, timedelta | None]:
    return error.type, error.non_retryable, error.next_retry_delay


def assert_clean(error: ApplicationError, *secrets: str) -> None:
    """No secret in the message, and no httpx error (holding the URL) chained for Temporal."""
    for secret in secrets:
        assert secret not in error.message
    assert error.__cause__ is None
    assert error.__suppress_context__ or error.__context__ is None


# -- Slack --------------------------------------------------------------------------------------


async def test_slack_posts_text(stub: HttpStub, client: httpx.AsyncClient) -> None:
    stub.reply(Reply(200, body="ok"))
    assert await send_slack(client, stub.url(SLACK_PATH), "Cart abandoned: 129.50 €") is None
    [request] = stub.requests
    assert (request.method, request.path) == ("POST", SLACK_PATH)
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {"text": "Cart abandoned: 129.50 €"}


async def test_slack_posts_blocks(stub: HttpStub, client: httpx.AsyncClient) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*VIP* checkout"}}]
    stub.reply(Reply(200, body="ok"))
    await send_slack(client, stub.url(SLACK_PATH), "VIP checkout", blocks)
    assert stub.requests[0].json() == {"text": "VIP checkout", "blocks": blocks}


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (Reply(400, body="invalid_payload"), ("Rejected", True, None)),
        (Reply(403, body="action_prohibited"), ("Rejected", True, None)),
        (Reply(404, body="no_service"), ("RecipientUnreachable", True, None)),
        (Reply(410, body="channel_is_archived"), ("RecipientUnreachable", True, None)),
        (Reply(400, body="no_service"), ("RecipientUnreachable", True, None)),
        (
            Reply(429, body="rate_limited", headers={"Retry-After": "30"}),
            ("RateLimited", False, timedelta(seconds=30)),
        ),
        (Reply(500, body="rollup_error"), ("ProviderError", False, None)),
        (
            Reply(301, headers={"Location": "https://example.invalid/"}),
            ("Misconfigured", True, None),
        ),
    ],
)
async def test_slack_errors(
    stub: HttpStub, client: httpx.AsyncClient, reply: Reply, expected: tuple[object, ...]
) -> None:
    stub.reply(reply)
    with pytest.raises(ApplicationError) as caught:
        await send_slack(client, stub.url(SLACK_PATH), "hi")
    assert classified(caught.value) == expected
    assert_clean(caught.value, "SlackSecretPart123")


async def test_slack_error_quotes_slack_reason(stub: HttpStub, client: httpx.AsyncClient) -> None:
    stub.reply(Reply(400, body="invalid_blocks"))
    with pytest.raises(ApplicationError) as caught:
        await send_slack(client, stub.url(SLACK_PATH), "hi", [{"type": "nonsense"}])
    assert caught.value.message == "refused (400): Slack: invalid_blocks"


async def test_slack_unreachable_hides_the_url(client: httpx.AsyncClient) -> None:
    with pytest.raises(ApplicationError) as caught:
        await send_slack(client, f"http://127.0.0.1:{closed_port()}{SLACK_PATH}", "hi")
    assert classified(caught.value) == ("ProviderUnavailable", False, None)
    assert_clean(caught.value, "SlackSecretPart123")


# -- Teams --------------------------------------------------------------------------------------


def card(*blocks: dict[str, object]) -> dict[str, object]:
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": list(blocks),
                },
            }
        ],
    }


async def test_teams_posts_an_adaptive_card(stub: HttpStub, client: httpx.AsyncClient) -> None:
    stub.reply(Reply(202))
    assert await send_teams(client, stub.url(TEAMS_PATH), "A **VIP** checked out") is None
    [request] = stub.requests
    assert request.target == TEAMS_PATH
    assert request.headers["content-type"] == "application/json"
    assert request.json() == card(
        {"type": "TextBlock", "text": "A **VIP** checked out", "wrap": True}
    )


async def test_teams_card_with_a_title(stub: HttpStub, client: httpx.AsyncClient) -> None:
    stub.reply(Reply(200, body="1"))  # a legacy connector's success
    await send_teams(client, stub.url(TEAMS_PATH), "Order 1001", title="New order")
    assert stub.requests[0].json() == card(
        {
            "type": "TextBlock",
            "text": "New order",
            "weight": "Bolder",
            "size": "Medium",
            "wrap": True,
        },
        {"type": "TextBlock", "text": "Order 1001", "wrap": True},
    )


WRAPPED = (
    "Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error "
    "{} with ContextId tcid=0,server=msgapi-production,cv=abc.0.."
)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (Reply(200, body=WRAPPED.format(429)), ("RateLimited", False, None)),
        (Reply(200, body=WRAPPED.format(413)), ("Rejected", True, None)),
        (Reply(200, body=WRAPPED.format(400)), ("Rejected", True, None)),
        (Reply(429, headers={"Retry-After": "5"}), ("RateLimited", False, timedelta(seconds=5))),
        (Reply(400, body="Bad payload"), ("Rejected", True, None)),
        (Reply(404), ("Rejected", True, None)),
        (Reply(503), ("ProviderError", False, None)),
    ],
)
async def test_teams_errors(
    stub: HttpStub, client: httpx.AsyncClient, reply: Reply, expected: tuple[object, ...]
) -> None:
    stub.reply(reply)
    with pytest.raises(ApplicationError) as caught:
        await send_teams(client, stub.url(TEAMS_PATH), "hi")
    assert classified(caught.value) == expected
    assert_clean(caught.value, "TeamsSecretSig456")


# -- Telegram -----------------------------------------------------------------------------------


async def telegram_error(
    stub: HttpStub, client: httpx.AsyncClient, reply: Reply
) -> ApplicationError:
    stub.reply(reply)
    with pytest.raises(ApplicationError) as caught:
        await send_telegram(client, TOKEN, 42, "hi", api_base=stub.url(""))
    assert_clean(caught.value, TOKEN, TOKEN.split(":")[1])
    return caught.value


async def test_telegram_sends_a_message(stub: HttpStub, client: httpx.AsyncClient) -> None:
    message = {"message_id": 777, "chat": {"id": 42, "type": "private"}, "date": 1, "text": "hi"}
    stub.reply(Reply(200, body={"ok": True, "result": message}))
    assert await send_telegram(client, TOKEN, 42, "Hallo 👋", api_base=stub.url("")) == "777"
    [request] = stub.requests
    assert (request.method, request.path) == ("POST", f"/bot{TOKEN}/sendMessage")
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {"chat_id": 42, "text": "Hallo 👋"}


async def test_telegram_channel_names_pass_through(
    stub: HttpStub, client: httpx.AsyncClient
) -> None:
    stub.reply(Reply(200, body={"ok": True, "result": {"message_id": 1}}))
    await send_telegram(client, TOKEN, "@shop_news", "hi", api_base=stub.url("/"))
    assert stub.requests[0].path == f"/bot{TOKEN}/sendMessage"
    assert stub.requests[0].json() == {"chat_id": "@shop_news", "text": "hi"}


async def test_telegram_flood_control_waits_retry_after(
    stub: HttpStub, client: httpx.AsyncClient
) -> None:
    reply = {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 35",
        "parameters": {"retry_after": 35},
    }
    error = await telegram_error(stub, client, Reply(429, body=reply))
    assert classified(error) == ("RateLimited", False, timedelta(seconds=35))
    assert error.message == "rate limited: Telegram: Too Many Requests: retry after 35"


async def test_telegram_blocked_is_unreachable(stub: HttpStub, client: httpx.AsyncClient) -> None:
    reply = {
        "ok": False,
        "error_code": 403,
        "description": "Forbidden: bot was blocked by the user",
    }
    error = await telegram_error(stub, client, Reply(403, body=reply))
    assert classified(error) == ("RecipientUnreachable", True, None)
    assert error.message == "Telegram: Forbidden: bot was blocked by the user"


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (
            Reply(
                400,
                body={"ok": False, "error_code": 400, "description": "Bad Request: chat not found"},
            ),
            ("Rejected", True, None),
        ),
        (
            Reply(
                400,
                body={
                    "ok": False,
                    "error_code": 400,
                    "description": "Bad Request: group chat was upgraded to a supergroup chat",
                    "parameters": {"migrate_to_chat_id": -1001234567890},
                },
            ),
            ("Misconfigured", True, None),
        ),
        (
            Reply(401, body={"ok": False, "error_code": 401, "description": "Unauthorized"}),
            ("Misconfigured", True, None),
        ),
        (
            Reply(
                403,
                body={
                    "ok": False,
                    "error_code": 403,
                    "description": "Forbidden: user is deactivated",
                },
            ),
            ("RecipientUnreachable", True, None),
        ),
        (Reply(502, body="<html>Bad Gateway</html>"), ("ProviderError", False, None)),
        (Reply(200, body={"ok": False, "description": "odd"}), ("Rejected", True, None)),
    ],
)
async def test_telegram_errors(
    stub: HttpStub, client: httpx.AsyncClient, reply: Reply, expected: tuple[object, ...]
) -> None:
    assert classified(await telegram_error(stub, client, reply)) == expected


async def test_telegram_moved_chat_names_the_new_id(
    stub: HttpStub, client: httpx.AsyncClient
) -> None:
    reply = {
        "ok": False,
        "error_code": 400,
        "description": "Bad Request: group chat was upgraded to a supergroup chat",
        "parameters": {"migrate_to_chat_id": -1001234567890},
    }
    error = await telegram_error(stub, client, Reply(400, body=reply))
    assert error.message == "Telegram: the chat moved; set chat_id to -1001234567890"


async def test_telegram_token_echoed_in_an_error_page_is_scrubbed(
    stub: HttpStub, client: httpx.AsyncClient
) -> None:
    page = f"<h1>502</h1> upstream failed for POST /bot{TOKEN}/sendMessage"
    error = await telegram_error(stub, client, Reply(502, body=page))
    assert classified(error) == ("ProviderError", False, None)
    assert error.message.endswith("upstream failed for POST /bot***/sendMessage")


async def test_telegram_unreachable_hides_the_token(client: httpx.AsyncClient) -> None:
    with pytest.raises(ApplicationError) as caught:
        await send_telegram(client, TOKEN, 42, "hi", api_base=f"http://127.0.0.1:{closed_port()}")
    assert classified(caught.value) == ("ProviderUnavailable", False, None)
    assert_clean(caught.value, TOKEN, TOKEN.split(":")[1])


async def test_telegram_timeout_hides_the_token(stub: HttpStub) -> None:
    stub.reply(Reply(200, body={"ok": True, "result": {"message_id": 1}}, delay=3))
    async with make_client(httpx.Timeout(0.5)) as client:
        with pytest.raises(ApplicationError) as caught:
            await send_telegram(client, TOKEN, 42, "hi", api_base=stub.url(""))
    assert classified(caught.value) == ("ProviderUnavailable", False, None)
    assert_clean(caught.value, TOKEN, TOKEN.split(":")[1])
