"""The shop-facing ingestion API, compatible with Segment's HTTP Tracking API.

``POST /v1/identify``, ``/v1/track`` and ``/v1/batch`` take Segment's request shapes and its
authentication (HTTP Basic, the write key as user name), so shop code instrumented with a
Segment SDK works by changing the host. Bad input is a 4xx that names the field; nothing on a
bad request is a 500. A ``messageId`` seen in the last 48 hours is accepted and not processed
again; if processing fails (Temporal unreachable) the claim is released and the answer is 503,
so the SDK's retry is processed — nothing is half done.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import html
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from activities import sendgrid_events as sg
from activities.unsubscribe import InvalidToken, verify_token
from api.one_click import NotOneClick, require_one_click
from store.ingestion import ProcessedMessages, ProfileStore, WriteKeys, key_scope
from workflows.models import Event, Profile

log = logging.getLogger("touchpoint.api")
MAX_EVENT_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024

RouteEvent = Callable[[Event, Profile], Awaitable[object]]

REGISTRY = CollectorRegistry()
RECEIVED = Counter("touchpoint_events_received", "Calls accepted", ["type"], registry=REGISTRY)
ROUTED = Counter("touchpoint_events_routed", "Events handed to the router", registry=REGISTRY)
REJECTED = Counter(
    "touchpoint_requests_rejected", "Refused, by reason", ["reason"], registry=REGISTRY
)
LATENCY = Histogram("touchpoint_request_seconds", "Request latency", ["route"], registry=REGISTRY)


class SegmentCall(BaseModel):
    """The fields Segment's calls share; unknown fields are allowed, as Segment allows them."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    user_id: str | None = Field(None, alias="userId", max_length=200)
    anonymous_id: str | None = Field(None, alias="anonymousId", max_length=200)
    message_id: str | None = Field(None, alias="messageId", max_length=200)
    timestamp: datetime | None = None
    context: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _someone(self) -> SegmentCall:
        if not (self.user_id or self.anonymous_id):
            raise ValueError("userId or anonymousId is required")
        return self

    @property
    def customer_id(self) -> str:
        return str(self.user_id or self.anonymous_id)


class IdentifyCall(SegmentCall):
    traits: dict[str, Any] = Field(default_factory=dict)


class TrackCall(SegmentCall):
    event: str = Field(min_length=1, max_length=200)
    properties: dict[str, Any] = Field(default_factory=dict)


class BatchItem(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["identify", "track", "page", "screen", "group", "alias"]


class BatchCall(BaseModel):
    model_config = ConfigDict(extra="allow")
    batch: list[dict[str, Any]] = Field(min_length=1)
    context: dict[str, Any] = Field(default_factory=dict)


class BadRequest(Exception):
    def __init__(self, status: int, message: str, errors: list[dict[str, str]] | None = None):
        super().__init__(message)
        self.status, self.message, self.errors = status, message, errors or []


@dataclass
class Ingestion:
    """What the API needs: the stores and the router's ``route``."""

    profiles: ProfileStore
    processed: ProcessedMessages
    keys: WriteKeys
    route: RouteEvent
    unsubscribe: Callable[[str, str], Awaitable[object]] | None = None
    unsubscribe_secret: bytes | None = None
    suppress: Callable[[str, str], Awaitable[object]] | None = None  # customer id, reason
    sendgrid_key: Any = None  # the Event Webhook's verification key (P-256)
    ready: Callable[[], Awaitable[dict[str, bool]]] | None = None

    async def identify(self, call: IdentifyCall) -> None:
        RECEIVED.labels("identify").inc()
        context = call.context
        await asyncio.to_thread(
            self.profiles.upsert,
            call.customer_id,
            call.traits,
            locale=_text(context.get("locale")),
            timezone=_text(context.get("timezone")),
        )

    def _claim_and_profile(
        self, scope: str, message_id: str, call: TrackCall
    ) -> tuple[bool, Profile | None]:
        """One trip to the store's thread: claim the message id, and read the profile."""
        if not self.processed.claim(scope, message_id):
            return False, None
        return True, self.profiles.get(call.customer_id)

    async def track(self, call: TrackCall, scope: str = "") -> None:
        message_id = call.message_id or _derived_message_id(call)
        RECEIVED.labels("track").inc()
        first, profile = await asyncio.to_thread(self._claim_and_profile, scope, message_id, call)
        if not first:
            REJECTED.labels("duplicate").inc()
            return  # a duplicate: accepted, not processed twice
        try:
            event = Event(
                message_id=message_id,
                event=call.event,
                customer_id=call.customer_id,
                properties=call.properties,
                timestamp=call.timestamp or datetime.now(UTC),
            )
            await self.route(event, profile or Profile(id=call.customer_id))
            ROUTED.inc()
        except Exception:
            await asyncio.to_thread(self.processed.release, scope, message_id)
            raise


PURGE_EVERY_SECONDS = 3600


def create_app(ingestion: Ingestion) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        """Forget processed message ids older than the dedupe window, now and every hour."""

        async def purge_forever() -> None:
            while True:
                removed = await asyncio.to_thread(ingestion.processed.purge)
                log.info("purged %d processed message ids", removed)
                await asyncio.sleep(PURGE_EVERY_SECONDS)

        task = asyncio.create_task(purge_forever())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(
        lifespan=lifespan,
        title="Touchpoint ingestion API",
        version="1",
        description="Segment-compatible: point a Segment SDK's host here.",
    )

    @app.exception_handler(BadRequest)
    async def bad_request(_: Request, error: BadRequest) -> JSONResponse:
        REJECTED.labels(_REASONS.get(error.status, str(error.status))).inc()
        return JSONResponse(
            {"success": False, "message": error.message, "errors": error.errors},
            status_code=error.status,
        )

    async def handle(request: Request, kind: type[SegmentCall], limit: int) -> JSONResponse:
        scope = await _authenticate(request, ingestion.keys)
        body = await _json_body(request, limit)
        return await process([_validate(kind, body)], scope)

    async def process(calls: list[SegmentCall], scope: str) -> JSONResponse:
        """Hand calls on in order; a failure is a 503 so the sender retries (nothing half done)."""
        try:
            for call in calls:
                if isinstance(call, TrackCall):
                    await ingestion.track(call, scope)
                elif isinstance(call, IdentifyCall):
                    await ingestion.identify(call)
        except Exception:
            log.exception("processing failed; the sender may retry")
            return JSONResponse({"success": False, "message": "try again later"}, status_code=503)
        return JSONResponse({"success": True})

    @app.post(
        "/v1/identify",
        summary="Create or update a customer profile",
        openapi_extra=_request_body(IdentifyCall),
    )
    async def identify(request: Request) -> JSONResponse:
        return await handle(request, IdentifyCall, MAX_EVENT_BYTES)

    @app.post(
        "/v1/track",
        summary="Record an event; it may start journeys or reach waiting runs",
        openapi_extra=_request_body(TrackCall),
    )
    async def track(request: Request) -> JSONResponse:
        return await handle(request, TrackCall, MAX_EVENT_BYTES)

    @app.post(
        "/v1/batch",
        summary="Several identify and track calls at once",
        openapi_extra=_request_body(BatchCall),
    )
    async def batch(request: Request) -> JSONResponse:
        scope = await _authenticate(request, ingestion.keys)
        body = _validate(BatchCall, await _json_body(request, MAX_BATCH_BYTES))
        calls: list[SegmentCall] = []
        for index, item in enumerate(body.batch):
            if len(json.dumps(item)) > MAX_EVENT_BYTES:
                raise BadRequest(413, f"batch[{index}] is larger than 32 KB")
            kind = _validate(BatchItem, item, prefix=f"batch[{index}]").type
            model = {"identify": IdentifyCall, "track": TrackCall}.get(kind)
            if model is not None:  # page, screen, group, alias: accepted, not used
                calls.append(
                    _validate(model, {"context": body.context, **item}, prefix=f"batch[{index}]")
                )
        return await process(calls, scope)

    @app.get(
        "/unsubscribe/{token}",
        summary="Confirmation page (never unsubscribes by itself)",
        response_class=HTMLResponse,
    )
    async def unsubscribe_page(token: str) -> HTMLResponse:
        return HTMLResponse(_CONFIRM_PAGE.format(token=html.escape(token, quote=True)))

    @app.post("/unsubscribe/{token}", summary="One-click unsubscribe (RFC 8058)")
    async def unsubscribe(token: str, request: Request) -> HTMLResponse:
        if ingestion.unsubscribe is None or ingestion.unsubscribe_secret is None:
            raise BadRequest(503, "unsubscribing is not configured")
        try:
            await require_one_click(request)
        except NotOneClick as refused:
            raise BadRequest(refused.status, refused.message) from None
        try:
            claim = verify_token(ingestion.unsubscribe_secret, token)
        except InvalidToken:
            raise BadRequest(400, "this unsubscribe link is not valid") from None
        await ingestion.unsubscribe(claim.customer_id, "one-click")
        return HTMLResponse(_DONE_PAGE)

    @app.post("/webhooks/sendgrid", summary="SendGrid Event Webhook (signed)")
    async def sendgrid_events(request: Request) -> JSONResponse:
        raw = await request.body()
        signature = request.headers.get(sg.SIGNATURE_HEADER, "")
        timestamp = request.headers.get(sg.TIMESTAMP_HEADER, "")
        key = ingestion.sendgrid_key
        if key is None or not sg.verify(key, raw, signature, timestamp):
            raise BadRequest(403, "the signature does not verify")
        try:
            events = sg.parse_events(raw)
        except ValueError as error:
            raise BadRequest(400, str(error)) from None
        for feedback in events:
            claim = f"sendgrid:{feedback.sg_event_id}"
            if not await asyncio.to_thread(ingestion.processed.claim, "sendgrid", claim):
                continue
            customer = await asyncio.to_thread(ingestion.profiles.by_email, feedback.email)
            if customer is None:
                continue
            if feedback.kind == "suppression" and ingestion.suppress is not None:
                await ingestion.suppress(customer, feedback.reason or "suppressed")
            elif feedback.name:
                properties = {
                    "message_id": feedback.message_id,
                    "journey": feedback.journey,
                    "step": feedback.step,
                    "url": feedback.url,
                }
                event = Event(
                    message_id=claim,
                    event=feedback.name,
                    customer_id=customer,
                    timestamp=feedback.timestamp,
                    properties={k: v for k, v in properties.items() if v is not None},
                )
                profile = await asyncio.to_thread(ingestion.profiles.get, customer)
                await ingestion.route(event, profile or Profile(id=customer))
        return JSONResponse({"success": True})

    @app.get("/healthz", summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Temporal and the store are reachable")
    async def readyz() -> JSONResponse:
        checks = await ingestion.ready() if ingestion.ready else {}
        ok = all(checks.values())
        return JSONResponse({"ready": ok, **checks}, status_code=200 if ok else 503)

    @app.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    @app.middleware("http")
    async def measure(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        LATENCY.labels(getattr(route, "path", "unmatched")).observe(time.perf_counter() - started)
        return response

    return app


async def _authenticate(request: Request, keys: WriteKeys) -> str:
    """The dedupe scope of the request's write key; 401 for an unknown or missing key."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    key = None
    if scheme.lower() == "basic":
        try:
            key = base64.b64decode(value, validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            key = None
    if not key or await asyncio.to_thread(keys.source, key) is None:
        raise BadRequest(401, "unknown or missing write key (HTTP Basic, the key as user name)")
    return key_scope(key)


async def _json_body(request: Request, limit: int) -> Any:
    if "json" not in request.headers.get("content-type", "application/json"):
        raise BadRequest(415, "send JSON (Content-Type: application/json)")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BadRequest(413, f"the body is larger than {limit // 1024} KB")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise BadRequest(413, f"the body is larger than {limit // 1024} KB")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadRequest(400, f"invalid JSON: {error}") from None


def _validate(model: type[Any], body: Any, prefix: str = "") -> Any:
    if not isinstance(body, dict):
        raise BadRequest(400, f"{prefix or 'the body'} must be a JSON object")
    try:
        return model.model_validate(body)
    except ValidationError as error:
        errors = [
            {"path": _path(prefix, detail["loc"]), "message": detail["msg"]}
            for detail in error.errors()
        ]
        raise BadRequest(
            400, "; ".join(f"{e['path']}: {e['message']}" for e in errors), errors
        ) from None


def _derived_message_id(call: TrackCall) -> str:
    """For a call without ``messageId``: with a timestamp, a hash of the call (so a retried
    request is recognised); without one, two equal calls may be two real events — a new id."""
    if call.timestamp is None:
        return f"api-{uuid.uuid4()}"
    content = call.model_dump(mode="json", by_alias=True, exclude={"context"})
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return "api-" + hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _request_body(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON body a route reads itself (to answer 400/413 in its own words), for /docs."""
    schema = model.model_json_schema(by_alias=True)
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _path(prefix: str, loc: tuple[Any, ...]) -> str:
    text = prefix
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(body)"


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


_CONFIRM_PAGE = """<!doctype html><html><head><meta charset="utf-8">
<title>Unsubscribe</title></head><body><h1>Unsubscribe from marketing email?</h1>
<form method="post" action="/unsubscribe/{token}">
<input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">Unsubscribe</button></form></body></html>"""
_DONE_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Unsubscribed</title></head>
<body><h1>You are unsubscribed.</h1><p>You will get no more marketing email from us.
Messages about your orders still reach you.</p></body></html>"""


_REASONS = {
    400: "invalid",
    401: "unauthenticated",
    403: "forbidden",
    413: "too_large",
    415: "unsupported_media_type",
    503: "unavailable",
}
