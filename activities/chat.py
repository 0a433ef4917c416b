"""Chat senders: Slack incoming webhooks, Teams workflow webhooks, Telegram ``sendMessage``.

Each URL (and the Telegram bot token inside its URL) is a secret: no error text carries it.
Classification follows :mod:`activities.errors`, with each service's own signals:

* Slack: ``ok`` on 200; 404/410 and ``no_service``-like bodies mean the webhook is gone
  (``RecipientUnreachable``); other 4xx are ``Rejected``; 429 honours ``Retry-After``.
* Teams: 202 (workflow) or 200 (legacy connector); a legacy connector also wraps failures in a
  200 whose text says ``returned HTTP error <code>``, classified as that code.
* Telegram: ``{"ok": true, "result": Message}``; 429 waits ``parameters.retry_after``; any 403
  (blocked, kicked, deactivated) is ``RecipientUnreachable``; 401/404 mean a bad token and a
  ``migrate_to_chat_id`` a chat that moved (both ``Misconfigured``); other 400s ``Rejected``.

**Data is escaped for its platform, the template's text is not.** Each value a ``{{ … }}``
prints (a trait, an event property, a lookup's answer) goes through the destination's escape
(:data:`ESCAPES`), so customer data cannot become a mention, a link or a notification, while
the formatting the marketer wrote (``*bold*``, ``<https://shop.example|the shop>``) works:

* Slack (``mrkdwn``): ``&``, ``<`` and ``>`` become ``&amp;``, ``&lt;`` and ``&gt;``, Slack's
  own escaping: no ``<!channel>``, ``<!here>``, ``<@U123>``, ``<#C123>`` or
  ``<https://evil|click>`` from data (``*``, ``_``, ``~`` have no escape in Slack and stay);
* Telegram: messages go without ``parse_mode``, as plain text, so nothing in them is markup;
  an ``@`` that starts a word in data gets a word joiner (U+2060) after it, so
  ``@everyone_admin`` shows as written but mentions nobody;
* Teams (Adaptive Card ``TextBlock``): a word joiner after each ``]`` and before each ``(`` in
  data, so ``[click](https://evil)`` cannot become a link with a hidden address (a card sent
  without ``msteams.entities`` mentions no one, whatever it says).

A bare address in data (``https://…``) may still be shown as a link by the app: it is shown as
written, never behind other words. ``{{ value | safe }}`` prints a value unescaped (text the
template built itself, e.g. with a macro).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from activities.errors import from_status, permanent
from activities.messages import DeliveryKit, Prepared
from activities.webhooks import Answer, excerpt, exchange, failure
from config.project import SlackDestination, TeamsDestination, TelegramDestination
from workflows.models import SendRequest, SendResult

SLACK_GONE = frozenset({"no_service", "channel_not_found", "channel_is_archived"})
WORD_JOINER = "\u2060"  # invisible; keeps what is around it from being read as markup
_SLACK_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
_TEAMS_LINK_PARTS = str.maketrans({"]": "]" + WORD_JOINER, "(": WORD_JOINER + "("})
_WORD_START_AT = re.compile(r"(?<![\w@])@")


def slack_escape(value: Any) -> str:
    """Data for Slack ``mrkdwn``: no control sequence (``<!channel>``, ``<url|label>``)."""
    return str(value).translate(_SLACK_ESCAPES)


def telegram_escape(value: Any) -> str:
    """Data for a plain-text Telegram message: no ``@mention``."""
    return _WORD_START_AT.sub("@" + WORD_JOINER, str(value))


def teams_escape(value: Any) -> str:
    """Data for a Teams ``TextBlock``: no Markdown link (``[label](url)``)."""
    return str(value).translate(_TEAMS_LINK_PARTS)


ESCAPES: dict[str, Callable[[Any], str]] = {
    "slack": slack_escape,
    "telegram": telegram_escape,
    "teams": teams_escape,
}
"""Each chat platform's escape for the values a template prints."""
TEAMS_WRAPPED_ERROR = re.compile(r"returned HTTP error (\d{3})")
ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"


async def send_slack(
    client: httpx.AsyncClient, url: str, text: str, blocks: list[Any] | None = None
) -> str | None:
    """Post to an incoming webhook; Slack gives no message id, so this returns ``None``."""
    payload: dict[str, Any] = {"text": text}
    if blocks is not None:
        payload["blocks"] = blocks
    answer = await exchange(client, "POST", url, json=payload, secrets=[url])
    if answer.ok:
        return None
    reason = answer.body.decode("utf-8", "replace").strip()
    if answer.status in (404, 410) or reason in SLACK_GONE:
        raise permanent(
            f"Slack webhook is gone ({answer.status}): {excerpt(reason, [url])}",
            "RecipientUnreachable",
        )
    raise failure(answer, "Slack", [url])


def teams_message(text: str, title: str | None = None) -> dict[str, Any]:
    """A message with one Adaptive Card: an optional bold title, then the text."""
    body: list[dict[str, Any]] = []
    if title:
        body.append(
            {"type": "TextBlock", "text": title, "weight": "Bolder", "size": "Medium", "wrap": True}
        )
    body.append({"type": "TextBlock", "text": text, "wrap": True})
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    }
    return {
        "type": "message",
        "attachments": [{"contentType": ADAPTIVE_CARD, "contentUrl": None, "content": card}],
    }


async def send_teams(
    client: httpx.AsyncClient, url: str, text: str, title: str | None = None
) -> str | None:
    """Post an Adaptive Card; Teams gives no message id, so this returns ``None``."""
    answer = await exchange(client, "POST", url, json=teams_message(text, title), secrets=[url])
    if not answer.ok:
        raise failure(answer, "Teams", [url])
    wrapped = TEAMS_WRAPPED_ERROR.search(answer.body.decode("utf-8", "replace"))
    if wrapped:  # a legacy connector's "200, but delivery failed with <code>"
        status = int(wrapped.group(1))
        raise from_status(status, f"Teams: {excerpt(answer.body, [url])}", answer.retry_after)
    return None


async def send_telegram(
    client: httpx.AsyncClient,
    bot_token: str,
    chat_id: str | int,
    text: str,
    api_base: str = "https://api.telegram.org",
) -> str | None:
    """Send one message; returns Telegram's ``message_id``."""
    url = f"{api_base.rstrip('/')}/bot{bot_token}/sendMessage"
    secrets = [url, bot_token]
    payload = {"chat_id": chat_id, "text": text}
    answer = await exchange(client, "POST", url, json=payload, secrets=secrets)
    reply = answer.json()
    reply = reply if isinstance(reply, dict) else {}
    if answer.ok and reply.get("ok") is True:
        result = reply.get("result")
        message_id = result.get("message_id") if isinstance(result, dict) else None
        return None if message_id is None else str(message_id)
    raise _telegram_failure(answer, reply, secrets)


def _telegram_failure(answer: Answer, reply: dict[str, Any], secrets: list[str]) -> Exception:
    if not reply:
        return failure(answer, "Telegram", secrets)
    code = reply.get("error_code")
    status = code if isinstance(code, int) else answer.status
    description = excerpt(str(reply.get("description") or ""), secrets)
    parameters = reply.get("parameters")
    parameters = parameters if isinstance(parameters, dict) else {}
    if status == 403:
        return permanent(f"Telegram: {description}", "RecipientUnreachable")
    if status in (401, 404):
        return permanent(
            f"Telegram rejected the bot token ({status}): {description}", "Misconfigured"
        )
    if "migrate_to_chat_id" in parameters:
        moved = parameters["migrate_to_chat_id"]
        return permanent(f"Telegram: the chat moved; set chat_id to {moved}", "Misconfigured")
    retry_after = parameters.get("retry_after")
    if not isinstance(retry_after, int | float):
        retry_after = answer.retry_after
    if 200 <= status < 300:  # an {"ok": false} answer that still claimed success
        status = 400
    return from_status(status, f"Telegram: {description}", retry_after)


# --- the chat channel's sender -----------------------------------------------------------------


@dataclass(frozen=True)
class ChatPost:
    kind: str  # slack, teams, telegram
    url: str  # the webhook URL, or the bot token for Telegram
    text: str
    chat_id: str | None = None  # Telegram


class ChatSender:
    """``send: chat``: the rendered text to a Slack, Teams or Telegram destination (a Telegram
    destination without a fixed chat goes to the customer's ``traits.telegram_chat_id``)."""

    def __init__(self, kit: DeliveryKit) -> None:
        self.kit = kit

    async def prepare(self, request: SendRequest, recipient: str) -> Prepared | SendResult:
        destination = self.kit.config.destinations.get(recipient)
        if not isinstance(destination, SlackDestination | TeamsDestination | TelegramDestination):
            raise permanent(f"{recipient!r} is not a chat destination", "Misconfigured")
        chat_id = None
        if isinstance(destination, TelegramDestination):
            chat_id = destination.chat_id or request.customer.traits.get("telegram_chat_id")
            if chat_id is None:
                return SendResult(
                    message_id=request.message_id,
                    status="skipped",
                    reason="no Telegram chat id for this customer",
                )
        rendered = await self.kit.renderer.render_async(request, escape=ESCAPES[destination.type])
        text = rendered.text or ""
        if isinstance(destination, TelegramDestination):
            post = ChatPost("telegram", self.kit.env(destination.bot_token), text, str(chat_id))
        else:
            post = ChatPost(destination.type, self.kit.env(destination.url), text)
        return Prepared(request, to=recipient, provider=post.kind, rendered=rendered, payload=post)

    async def deliver(self, prepared: Prepared) -> str | None:
        post: ChatPost = prepared.payload
        http = self.kit.http
        if post.kind == "slack":
            return await send_slack(http, post.url, post.text)
        if post.kind == "teams":
            return await send_teams(http, post.url, post.text)
        assert post.chat_id is not None
        return await send_telegram(
            http, post.url, post.chat_id, post.text, api_base=self.kit.telegram_api
        )
