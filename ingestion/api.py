"""The shop-facing ingestion API, compatible with Segment's HTTP Tracking API.

``POST /v1/identify``, ``/v1/track``, ``/v1/page``, ``/v1/screen``, ``/v1/group``,
``/v1/alias`` and ``/v1/batch`` take Segment's request shapes (see :mod:`ingestion.segment`) and its
authentication (HTTP Basic with the write key as user name, or ``writeKey`` in the body), with
gzip or deflate bodies (:mod:`ingestion.body`), so shop code instrumented with a Segment or
RudderStack SDK works by changing the host. Bad input is a 4xx that names the field; nothing on
a bad request is a 500. A ``messageId`` seen from the same write key in the last 48 hours is
accepted and not processed again; if processing fails (Temporal unreachable) the claim is
released and the answer is 503, so the SDK's retry is processed — nothing is half done.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from pydantic import BaseModel

from config.errors import UserError
from ingestion import sendgrid_events as sg
from ingestion.admin import AdminAuth, basic_auth_key
from ingestion.body import check_shape, parse_json, read_body
from ingestion.calls import field_error, read_call, read_typed_call, validate
from ingestion.consent import Change, Consents
from ingestion.docs_ui import serve_docs
from ingestion.errors import BadRequest
from ingestion.metrics import REGISTRY
from ingestion.one_click import NotOneClick, require_one_click
from ingestion.preferences import (
    BadForm,
    preferences_page,
    problem_page,
    read_form,
    saved_page,
    unsubscribed_page,
)
from ingestion.segment import (
    CALL_MODELS,
    MAX_BATCH_BYTES,
    MAX_CALL_BYTES,
    BatchCall,
    Ingest,
)
from ingestion.service import Ingestion
from ingestion.unsubscribe import InvalidToken, UnsubscribeClaim, verify_token
from ops.suppressions import record_sendgrid_feedback
from store.analytics import Analytics
from store.keys import WriteKeys, key_scope
from store.profiles import ProfileTooLarge
from store.suppressions import Suppressions
from store.topic_consent import UNSUBSCRIBED
from workflows.models import Event, Profile

log = logging.getLogger("touchpoint.api")
MAX_WEBHOOK_BYTES = 4 * 1024 * 1024  # SendGrid posts events in batches of up to a few MB

RECEIVED = Counter("touchpoint_events_received", "Calls accepted", ["type"], registry=REGISTRY)
ROUTED = Counter("touchpoint_events_routed", "Events handed to the router", registry=REGISTRY)
REJECTED = Counter(
    "touchpoint_requests_rejected", "Refused, by reason", ["reason"], registry=REGISTRY
)
LATENCY = Histogram("touchpoint_request_seconds", "Request latency", ["route"], registry=REGISTRY)


@dataclass
class Api:
    """What the HTTP API needs: the ingestion service, and what only the API has — write keys,
    one-click unsubscribe, the SendGrid Event Webhook, readiness."""

    service: Ingestion
    keys: WriteKeys
    unsubscribe: Callable[[str, str], Awaitable[object]] | None = None
    unsubscribe_secret: bytes | None = None
    suppress: Callable[[str, str], Awaitable[object]] | None = None  # customer id, reason
    suppressions: Suppressions | None = None  # addresses no email may go to (bounce, spam)
    sendgrid_key: Any = None  # the Event Webhook's verification key (P-256)
    ready: Callable[[], Awaitable[dict[str, bool]]] | None = None
    background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = ()  # for its lifetime
    export: Callable[[str], Awaitable[dict[str, Any]]] | None = None  # ops.export.Exporter
    # ops.forget: customer id, request id, who → what was erased (a JSON-able dict)
    forget: Callable[[str, str, str], Awaitable[dict[str, Any]]] | None = None
    consents: Consents | None = None  # topics: the page behind the link, topic unsubscribes

    async def apply(self, kind: str, call: Ingest, scope: str) -> None:
        RECEIVED.labels(kind).inc()
        applied = await self.service.apply(call, scope)
        if applied.duplicate:
            REJECTED.labels("duplicate").inc()
        elif applied.event is not None:
            ROUTED.inc()


PURGE_EVERY_SECONDS = 3600


def create_app(api: Api) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        """Forget processed message ids older than the dedupe window, now and every hour; run
        the API's background tasks (following deploys)."""

        async def purge_forever() -> None:
            while True:
                removed = await asyncio.to_thread(api.service.processed.purge)
                log.info("purged %d processed message ids", removed)
                await asyncio.sleep(PURGE_EVERY_SECONDS)

        tasks = [asyncio.create_task(purge_forever())]
        tasks += [asyncio.create_task(run()) for run in api.background]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    app = FastAPI(
        lifespan=lifespan,
        title="Touchpoint ingestion API",
        version="1",
        description="Segment-compatible: point a Segment or RudderStack SDK's host here.",
        docs_url=None,  # served from vendored files, not a CDN: ingestion.docs_ui
        redoc_url=None,
    )
    serve_docs(app)

    @app.exception_handler(BadRequest)
    async def bad_request(_: Request, error: BadRequest) -> JSONResponse:
        REJECTED.labels(_REASONS.get(error.status, str(error.status))).inc()
        return JSONResponse(
            {"success": False, "message": error.message, "errors": error.errors},
            status_code=error.status,
        )

    async def one_call(request: Request, kind: str) -> JSONResponse:
        key = basic_auth_key(request)
        document = parse_json(await read_body(request, MAX_CALL_BYTES))
        scope = await _authenticate(api.keys, key or _body_key(document))
        call = read_call(kind, document)
        try:
            await api.apply(kind, call.ingest(), scope)
        except ProfileTooLarge as refused:
            raise BadRequest(
                413, str(refused), [field_error(refused.path, refused.reason)]
            ) from None
        except Exception:
            log.exception("processing a %s call failed; the sender may retry", kind)
            return _try_again()
        return JSONResponse({"success": True})

    for kind, model in CALL_MODELS.items():
        app.add_api_route(
            f"/v1/{kind}",
            _endpoint(one_call, kind),
            methods=["POST"],
            summary=_SUMMARIES[kind],
            openapi_extra=_request_body(model),
            response_class=JSONResponse,
        )

    @app.post(
        "/v1/batch",
        summary="Several calls at once (what the Segment and RudderStack SDKs send)",
        openapi_extra=_request_body(BatchCall),
    )
    async def batch(request: Request) -> JSONResponse:
        """Each call is checked on its own: an invalid one, or one that would make a profile
        larger than its cap, is listed in ``errors`` (400) and the others are processed in
        order. If processing fails part-way the answer is 503 and a retry of the same batch is
        safe: calls already done are recognised by their message id, the rest are done then."""
        key = basic_auth_key(request)
        document = parse_json(await read_body(request, MAX_BATCH_BYTES))
        scope = await _authenticate(api.keys, key or _body_key(document))
        body = validate(BatchCall, document)
        calls: list[tuple[int, str, Ingest]] = []
        errors: list[dict[str, Any]] = []
        for index, item in enumerate(body.batch):
            try:
                calls.append((index, *read_typed_call(item, body.context, f"batch[{index}]")))
            except BadRequest as error:
                details = error.errors or [{"path": f"batch[{index}]", "message": error.message}]
                errors += [{"index": index, **detail} for detail in details]
        processed = 0
        for index, kind, call in calls:
            try:
                await api.apply(kind, call, scope)
            except ProfileTooLarge as refused:  # this call is not done; the others go on
                path = f"batch[{index}].{refused.path}"
                errors.append({"index": index, **field_error(path, refused.reason)})
                continue
            except Exception:
                log.exception("processing a batch failed at a %s call; the sender may retry", kind)
                return _try_again(processed=processed, errors=errors)
            processed += 1
        if errors:
            errors.sort(key=lambda error: int(error["index"]))
            REJECTED.labels("invalid").inc(len({e["index"] for e in errors}))
            message = "; ".join(f"{e['path']}: {e['message']}" for e in errors)
            return JSONResponse(
                {"success": False, "processed": processed, "message": message, "errors": errors},
                status_code=400,
            )
        return JSONResponse({"success": True, "processed": processed})

    @app.get(
        "/unsubscribe/{token}",
        summary="The customer's preferences page (never changes anything)",
        response_class=HTMLResponse,
    )
    async def unsubscribe_page(token: str) -> HTMLResponse:
        if api.consents is None or api.unsubscribe_secret is None:
            return HTMLResponse(_CONFIRM_PAGE.format(token=html.escape(token, quote=True)))
        claim = _claim_or_none(api.unsubscribe_secret, token)
        if claim is None:
            return _bad_link()
        view = await asyncio.to_thread(api.consents.view, claim.customer_id)
        names = _topic_names(api.consents)
        return HTMLResponse(preferences_page(view, token, claim.topic, names))

    @app.post(
        "/unsubscribe/{token}/preferences",
        summary="The preferences page's form: topic choices, or leave all",
        response_class=HTMLResponse,
    )
    async def save_preferences(token: str, request: Request) -> HTMLResponse:
        if api.consents is None or api.unsubscribe_secret is None:
            return _problem(404, "Not found", "There is no preferences page here.")
        claim = _claim_or_none(api.unsubscribe_secret, token)
        if claim is None:
            return _bad_link()
        view = await asyncio.to_thread(api.consents.view, claim.customer_id)
        try:
            changes, leave_all = await read_form(request, view)
        except BadForm as refused:
            REJECTED.labels(_REASONS.get(refused.status, "invalid")).inc()
            return _problem(refused.status, "Your choices were not saved", refused.message)
        applied = await api.consents.apply(
            claim.customer_id, changes, "preferences page", leave_all=leave_all
        )
        return HTMLResponse(saved_page(applied, token, _topic_names(api.consents)))

    @app.post("/unsubscribe/{token}", summary="One-click unsubscribe (RFC 8058)")
    async def unsubscribe(token: str, request: Request) -> HTMLResponse:
        """A token with a topic leaves that topic on email; one without (every link made
        before topics) withdraws all marketing email."""
        if api.unsubscribe is None or api.unsubscribe_secret is None:
            raise BadRequest(503, "unsubscribing is not configured")
        try:
            await require_one_click(request)
        except NotOneClick as refused:
            raise BadRequest(refused.status, refused.message) from None
        try:
            claim = verify_token(api.unsubscribe_secret, token)
        except InvalidToken:
            raise BadRequest(400, "this unsubscribe link is not valid") from None
        if claim.topic is None or api.consents is None:  # without topics: leave all marketing
            await api.unsubscribe(claim.customer_id, "one-click")
            return HTMLResponse(unsubscribed_page(None, token, {}))
        left: list[Change] = [(claim.topic, "email", UNSUBSCRIBED)]
        await api.consents.apply(claim.customer_id, left, "one-click")
        return HTMLResponse(unsubscribed_page(claim.topic, token, _topic_names(api.consents)))

    @app.post("/webhooks/sendgrid", summary="SendGrid Event Webhook (signed)")
    async def sendgrid_events(request: Request) -> JSONResponse:
        """Events SendGrid posts: each is processed once (by ``sg_event_id``). An event that
        cannot be read is listed in ``errors`` (400) and the others are processed all the same;
        if processing fails the answer is 503, the claims of the events not done are released,
        and SendGrid's retry processes them."""
        raw = await read_body(request, MAX_WEBHOOK_BYTES)
        signature = request.headers.get(sg.SIGNATURE_HEADER, "")
        timestamp = request.headers.get(sg.TIMESTAMP_HEADER, "")
        key = api.sendgrid_key
        if key is None or not sg.verify(key, raw, signature, timestamp):
            raise BadRequest(403, "the signature does not verify")
        document = parse_json(raw)
        if not isinstance(document, list):
            raise BadRequest(400, "the body must be a JSON array of SendGrid events")
        errors: list[dict[str, str]] = []
        readable: list[tuple[int, Any]] = []
        for index, item in enumerate(document):
            try:
                check_shape(item, f"[{index}]")
                readable.append((index, item))
            except BadRequest as error:
                errors += error.errors
        events, problems = sg.read_events(readable)
        errors += [field_error(f"[{index}]", problem) for index, problem in problems]
        for feedback in events:
            try:
                await _feedback(api, feedback)
            except Exception:
                log.exception("processing SendGrid events failed; SendGrid will retry")
                return _try_again()
        if errors:
            log.warning("skipped %d unreadable SendGrid event(s): %s", len(errors), errors[0])
            message = "; ".join(f"{e['path']}: {e['message']}" for e in errors)
            return JSONResponse(
                {"success": False, "message": message, "errors": errors}, status_code=400
            )
        return JSONResponse({"success": True})

    admin = AdminAuth(api.keys)

    @app.get(
        "/v1/customers/{customer_id}/export",
        summary="Everything held about one customer, as one JSON document (admin key)",
    )
    async def export_customer(customer_id: str, by: str = Depends(admin)) -> JSONResponse:
        """For the shop's backend answering an access or portability request (GDPR Art. 15,
        20): the profile, consent, suppressions, entries, runs with their timelines and events,
        and messages. Needs an admin key (401 without one, 403 for a write key)."""
        if api.export is None:
            raise BadRequest(503, "exporting is not configured on this API")
        log.info("export of one customer requested by admin key %r", by)
        try:
            document = await api.export(customer_id)
        except Exception:
            log.exception("an export failed; the caller may retry")
            return _try_again()
        return JSONResponse(document)

    @app.delete(
        "/v1/customers/{customer_id}",
        summary="Erase one customer (admin key); waits until it is done",
    )
    async def forget_customer(
        customer_id: str, request: Request, by: str = Depends(admin)
    ) -> JSONResponse:
        """For the shop's backend answering an erasure request (GDPR Art. 17): the customer's
        runs end and are deleted, their profile, consent and outbox files go, the ledger is
        anonymised; keyed hashes keep that they were erased and their address. Idempotent: a
        second call erases again (nothing left) and answers the same. ``X-Request-Id`` (or
        ``?request_id=``) names the request in the audit. 200 when done; 503 (try again) when
        no worker finished it in time — it goes on, and calling again waits for it."""
        if api.forget is None:
            raise BadRequest(503, "erasure is not configured on this API")
        reference = (
            request.query_params.get("request_id") or request.headers.get("x-request-id") or ""
        ).strip()[:200] or f"api-{uuid.uuid4()}"
        log.info("erasure of one customer requested by admin key %r (request %s)", by, reference)
        try:
            erased = await api.forget(customer_id, reference, f"admin key {by}")
        except UserError as error:
            raise BadRequest(503, str(error)) from None
        except Exception:
            log.exception("an erasure failed; the caller may retry")
            return _try_again()
        return JSONResponse({"erased": True, "request_id": reference, **erased})

    @app.get("/healthz", summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Temporal and the store are reachable")
    async def readyz() -> JSONResponse:
        checks = await api.ready() if api.ready else {}
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


async def _feedback(api: Api, feedback: sg.FeedbackEvent) -> None:
    """Act on one SendGrid event once: its claim is released if acting on it fails.

    A hard bounce or spam report suppresses the address for all email; it and an unsubscribe
    also end the customer's marketing runs. Blocked bounces and drops are only noted. Every
    event about a message Touchpoint sent is kept for its journey's numbers (store.analytics,
    idempotent by ``sg_event_id``), whoever the address belongs to."""
    claim = f"sendgrid:{feedback.sg_event_id}"
    if not await asyncio.to_thread(api.service.processed.claim, "sendgrid", claim):
        return
    try:
        if feedback.message_id is not None and not feedback.test:
            analytics = Analytics(api.service.processed.engine)
            await asyncio.to_thread(
                analytics.record_message_event,
                feedback.sg_event_id,
                feedback.message_id,
                feedback.sendgrid_event,
                "sendgrid",
                feedback.timestamp,
            )
        if feedback.suppresses_address and api.suppressions is not None:
            await asyncio.to_thread(record_sendgrid_feedback, api.suppressions, feedback)
        customer = await asyncio.to_thread(api.service.profiles.by_email, feedback.email)
        if customer is None:
            return
        if feedback.suppresses_address or feedback.withdraws_marketing:
            if api.suppress is not None:  # the customer's marketing runs end now
                await api.suppress(customer, feedback.reason or "suppressed")
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
            profile = await asyncio.to_thread(api.service.profiles.get, customer)
            await api.service.route(event, profile or Profile(id=customer), ())
    except BaseException:
        await asyncio.to_thread(api.service.processed.release, "sendgrid", claim)
        raise


def _claim_or_none(secret: bytes, token: str) -> UnsubscribeClaim | None:
    try:
        return verify_token(secret, token)
    except InvalidToken:
        return None


def _bad_link() -> HTMLResponse:
    REJECTED.labels("invalid").inc()
    return _problem(
        400,
        "This link is not valid",
        "Copy the whole link from the email, or use the link of a newer email from us.",
    )


def _problem(status: int, title: str, message: str) -> HTMLResponse:
    return HTMLResponse(problem_page(title, message), status_code=status)


def _topic_names(consents: Consents) -> dict[str, str]:
    return {slug: topic.name for slug, topic in consents.topics.items()}


def _body_key(document: Any) -> str | None:
    """The write key in the body, as older Segment SDKs send it (``writeKey``)."""
    key = document.get("writeKey") if isinstance(document, dict) else None
    return key if isinstance(key, str) and key else None


async def _authenticate(keys: WriteKeys, key: str | None) -> str:
    """The dedupe scope of a known write key; 401 for an unknown or missing one."""
    if not key or await asyncio.to_thread(keys.source, key) is None:
        raise BadRequest(
            401, "unknown or missing write key (HTTP Basic with the key as user name, or writeKey)"
        )
    return key_scope(key)


def _endpoint(
    read: Callable[[Request, str], Awaitable[JSONResponse]], kind: str
) -> Callable[[Request], Awaitable[JSONResponse]]:
    async def endpoint(request: Request) -> JSONResponse:
        return await read(request, kind)

    endpoint.__name__ = f"{kind}_call"
    return endpoint


def _try_again(**details: Any) -> JSONResponse:
    REJECTED.labels("unavailable").inc()
    return JSONResponse(
        {"success": False, "message": "try again later", **details}, status_code=503
    )


def _request_body(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON body a route reads itself (to answer 400/413 in its own words), for /docs."""
    schema = model.model_json_schema(by_alias=True)
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


_CONFIRM_PAGE = """<!doctype html><html><head><meta charset="utf-8">
<title>Unsubscribe</title></head><body><h1>Unsubscribe from marketing email?</h1>
<form method="post" action="/unsubscribe/{token}">
<input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">Unsubscribe</button></form></body></html>"""


_SUMMARIES = {
    "identify": "Create or update a customer profile",
    "track": "Record an event; it may start journeys or reach waiting runs",
    "page": "A page view: the event 'Page Viewed' with the page's name and properties",
    "screen": "A screen view in an app: the event 'Screen Viewed'",
    "group": "Associate the customer with a group (a company): profile traits group_id, group",
    "alias": "Link an anonymous id (previousId) to a user id: their profiles merge",
}

_REASONS = {
    400: "invalid",
    401: "unauthenticated",
    403: "forbidden",
    413: "too_large",
    415: "unsupported_media_type",
    503: "unavailable",
}
