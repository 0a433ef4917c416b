"""Signed webhooks (Standard Webhooks), and the HTTP plumbing chat and lookups share.

A webhook is ``POST {"type", "timestamp", "data"}`` with ``webhook-id`` (the message id, the same
on every retry, also sent as ``Idempotency-Key``), ``webhook-timestamp`` (this attempt) and
``webhook-signature`` (``v1,<base64 HMAC-SHA256>`` per secret, space-separated for rotation).

How an answer is classified (see :mod:`activities.errors`):

* 2xx: delivered; the provider's id if it gave one
* 3xx: ``Misconfigured``, not retried: redirects are not followed
* 409: retried; with an ``Idempotency-Key`` it means "the first attempt is still in flight"
* 410: ``RecipientUnreachable``; other 4xx: ``Rejected`` with an excerpt of the body
* 429, 5xx: retried, honouring ``Retry-After``
* no answer (timeout, refused, reset): ``ProviderUnavailable``, retried
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from temporalio.exceptions import ApplicationError

from activities.errors import from_status, parse_retry_after, permanent, retryable
from activities.messages import DeliveryKit, Prepared
from config.project import WebhookDestination
from workflows.models import SendRequest

SECRET_PREFIX = "whsec_"
EXCERPT_LIMIT = 300
READ_LIMIT = 64_000  # bytes of an answer read to classify it; the rest is dropped
ID_HEADERS = ("x-message-id", "x-request-id")


# -- HTTP plumbing shared with activities.chat and activities.lookups -------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    headers: httpx.Headers
    body: bytes
    too_large: bool  # the body went past the read limit and was cut

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def retry_after(self) -> float | None:
        return parse_retry_after(self.headers.get("retry-after"))

    def json(self) -> Any:
        """The body as JSON, or ``None`` when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


def scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def excerpt(body: bytes | str, secrets: Iterable[str] = ()) -> str:
    """At most :data:`EXCERPT_LIMIT` characters of a body, on one line, secrets scrubbed."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = scrub(" ".join(text.split()), secrets) or "(empty body)"
    return text if len(text) <= EXCERPT_LIMIT else text[: EXCERPT_LIMIT - 1] + "…"


async def exchange(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    secrets: Iterable[str] = (),
    limit: int = READ_LIMIT,
    **options: Any,
) -> Answer:
    """Send one request and read at most ``limit`` bytes of the answer. Transport failures become
    classified errors whose text never holds the URL or a secret, with no httpx cause attached
    (Temporal would record the cause, and the request in it)."""
    secrets = [url, *secrets]
    try:
        async with client.stream(method, url, **options) as response:
            body, too_large = await _read(response, limit)
            return Answer(response.status_code, response.headers, body, too_large)
    except (httpx.InvalidURL, httpx.UnsupportedProtocol, httpx.LocalProtocolError) as error:
        detail = scrub(str(error), secrets)
        raise permanent(f"cannot send: {type(error).__name__}: {detail}", "Misconfigured") from None
    except httpx.HTTPError as error:
        raise unavailable(error, secrets) from None


def unavailable(error: Exception, secrets: Iterable[str] = ()) -> ApplicationError:
    reason = "timed out" if isinstance(error, httpx.TimeoutException) else "no answer"
    detail = scrub(str(error), secrets)
    message = f"{reason}: {type(error).__name__}" + (f": {detail}" if detail else "")
    return retryable(message, "ProviderUnavailable")


def failure(answer: Answer, what: str, secrets: Iterable[str] = ()) -> ApplicationError:
    """The error for an answer that is not a success."""
    if 300 <= answer.status < 400:
        return permanent(
            f"{what} answered {answer.status}: redirects are not followed; configure the final URL",
            "Misconfigured",
        )
    return from_status(
        answer.status, f"{what}: {excerpt(answer.body, secrets)}", answer.retry_after
    )


async def _read(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return b"", True
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            return b"".join(chunks), True
        chunks.append(chunk)
    return b"".join(chunks), False


# -- Standard Webhooks --------------------------------------------------------------------------


def _key(secret: str) -> bytes:
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        key = b""
    if not key:
        raise permanent(
            "a webhook signing secret is not whsec_ followed by base64", "Misconfigured"
        )
    return key


def sign(secrets: list[str], message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one ``v1,<base64 HMAC-SHA256>`` per secret."""
    if "." in message_id:
        raise permanent(f"a webhook id cannot contain '.': {message_id!r}", "Misconfigured")
    signed = f"{message_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.digest(_key(secret), signed, hashlib.sha256)).decode()
        for secret in secrets
    )


async def post_webhook(
    client: httpx.AsyncClient,
    url: str,
    secrets: list[str],
    message_id: str,
    event_type: str,
    data: Any,
    now: datetime,
    *,
    occurred_at: datetime | None = None,
) -> str | None:
    """Deliver one signed webhook; returns the receiver's id for it, if it gave one.

    ``now`` is this attempt's time (``webhook-timestamp``, which receivers check within ±5
    minutes). The payload's ``timestamp`` is ``occurred_at`` when given: pass a time that is the
    same on every retry so the body, which an ``Idempotency-Key`` receiver fingerprints, is too.
    """
    now = now if now.tzinfo else now.replace(tzinfo=UTC)
    try:
        body = webhook_body(event_type, data, occurred_at or now)
    except (TypeError, ValueError) as error:
        raise permanent(f"webhook data is not JSON: {error}", "RenderError") from None
    timestamp = int(now.timestamp())
    headers = {
        "Content-Type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "Idempotency-Key": message_id,
    }
    if secrets:
        headers["webhook-signature"] = sign(secrets, message_id, timestamp, body)
    answer = await exchange(client, "POST", url, content=body, headers=headers, secrets=secrets)
    if answer.ok:
        return _provider_id(answer)
    if answer.status == 409:
        message = f"webhook {message_id}: the receiver is still processing it (409)"
        raise retryable(message, "ProviderError", answer.retry_after)
    raise failure(answer, f"webhook {message_id}", [url, *secrets])


def webhook_body(event_type: str, data: Any, at: datetime) -> bytes:
    """What the receiver gets: ``{"type", "timestamp", "data"}`` as compact JSON in UTF-8
    (``"key":"value"``, no spaces; non-ASCII text as it is)."""
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    payload = {"type": event_type, "timestamp": at.isoformat(), "data": data}
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def _provider_id(answer: Answer) -> str | None:
    document = answer.json()
    found = document.get("id") if isinstance(document, dict) else None
    if isinstance(found, str | int) and not isinstance(found, bool):
        return str(found)
    for name in ID_HEADERS:
        if value := answer.headers.get(name):
            return str(value)
    return None


# --- the webhook channel's sender --------------------------------------------------------------


@dataclass(frozen=True)
class WebhookPost:
    url: str
    secrets: list[str]
    event_type: str
    data: Any
    occurred_at: datetime | None


class WebhookSender:
    """``send: webhook``: the rendered JSON, signed, to a webhook destination."""

    def __init__(self, kit: DeliveryKit) -> None:
        self.kit = kit

    async def prepare(self, request: SendRequest, recipient: str) -> Prepared:
        destination = self.kit.config.destinations.get(recipient)
        if not isinstance(destination, WebhookDestination):
            raise permanent(f"{recipient!r} is not a webhook destination", "Misconfigured")
        rendered = await self.kit.renderer.render_async(request)
        post = WebhookPost(
            url=self.kit.env(destination.url),
            secrets=[self.kit.env(s) for s in destination.secrets],
            event_type=f"journey.{request.journey_id}.{request.step_id}",
            data=rendered.data,
            occurred_at=step_time(request),
        )
        return Prepared(request, to=recipient, provider="webhook", rendered=rendered, payload=post)

    async def deliver(self, prepared: Prepared) -> str | None:
        post: WebhookPost = prepared.payload
        return await post_webhook(
            self.kit.http,
            post.url,
            post.secrets,
            prepared.request.message_id,
            post.event_type,
            post.data,
            datetime.now(UTC),
            occurred_at=post.occurred_at,
        )


def step_time(request: SendRequest) -> datetime | None:
    """When the journey reached the step (the workflow's clock): the same on every retry."""
    value = request.context.get("now")
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
