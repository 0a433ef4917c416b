"""The dashboard's web app: read-only pages over the analytics, the store and Temporal.

Every page is rendered on the server by Jinja2 with autoescaping (customer data is
attacker-controlled: a trait ``<script>`` shows as text); the only scripts are the vendored
libraries and ``static/dashboard.js``, under a Content-Security-Policy that allows no other.
The only POSTs are the login, the logout and the customer search (the customer id travels in
the body, never in a URL or an access log).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2
from fastapi import FastAPI, Form, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import Engine

from dashboard import auth, views
from dashboard.timelines import Timelines
from store.analytics import Analytics, JourneyOverview, RunRow
from store.consent import MARKETING, SMS, ConsentStore
from store.deployments import Deployments
from store.ledger import Ledger
from store.plans import PlanStore
from store.profiles import ProfileStore
from store.suppressions import Suppressions
from store.topic_consent import TopicConsent
from workflows.models import RunView, customer_hash
from workflows.plan import Plan

HERE = Path(__file__).parent
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
OPEN_PATHS = ("/healthz", "/login")
MAX_CUSTOMER_ID = 200
MESSAGES_SHOWN = 100
TIMELINES_ASKED = 20  # the newest runs' timelines: one query each, all within a page's wait
log = logging.getLogger("touchpoint.dashboard")


@dataclass
class Sources:
    """Where the pages read from. ``secret`` None: no login (``touchpoint dev`` only)."""

    analytics: Analytics
    engine: Engine
    timelines: Timelines
    plans: Mapping[str, Plan] = field(default_factory=dict)  # the project folder's journeys
    secret: str | None = None


def create_app(sources: Sources) -> FastAPI:
    app = FastAPI(title="Touchpoint dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(env=_environment())
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    stores = _Stores(sources.engine)

    def page(request: Request, name: str, status: int = 200, **context: Any) -> Response:
        context |= {"dev": sources.secret is None, "path": request.url.path}
        return templates.TemplateResponse(request, name, context, status_code=status)

    def problem(request: Request, status: int, title: str, detail: str) -> Response:
        return page(request, "problem.html", status, title=title, detail=detail)

    @app.middleware("http")
    async def guard(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """Login, a same-origin check on POSTs, the security headers on every answer."""
        response = await _guarded(request, call_next)
        for name, value in HEADERS.items():
            response.headers[name] = value
        if not request.url.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"  # personal data: never cached
        return response

    async def _guarded(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        path = request.url.path
        if request.method == "POST" and not _same_origin(request):
            return problem(request, 403, "Refused", "This form was sent from another site.")
        logged_in = sources.secret is None or auth.valid(
            sources.secret, request.cookies.get(auth.COOKIE), datetime.now(UTC)
        )
        if not logged_in and path not in OPEN_PATHS and not path.startswith("/static/"):
            if request.headers.get("hx-request"):  # a table's refresh: keep what it shows
                return PlainTextResponse("log in again", status_code=401)
            target = path + (f"?{request.url.query}" if request.url.query else "")
            if request.method != "GET":
                target = path
            return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        try:
            return await call_next(request)
        except Exception:
            log.exception("the dashboard failed to answer %s %s", request.method, path)
            return problem(request, 500, "Something went wrong", "See the dashboard's log.")

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    # --- login ---------------------------------------------------------------------------

    @app.get("/login")
    async def login_form(request: Request, next: str = "/") -> Response:
        if sources.secret is None:
            return RedirectResponse(auth.same_origin_path(next), status_code=303)
        return page(request, "login.html", next=auth.same_origin_path(next), wrong=False)

    @app.post("/login")
    async def login(request: Request, secret: str = Form(""), next: str = Form("/")) -> Response:
        target = auth.same_origin_path(next)
        if sources.secret is None:
            return RedirectResponse(target, status_code=303)
        if not auth.secret_matches(sources.secret, secret):
            return page(request, "login.html", 401, next=target, wrong=True)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            auth.COOKIE,
            auth.issue(sources.secret, datetime.now(UTC)),
            max_age=int(auth.LIFETIME.total_seconds()),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    @app.post("/logout")
    async def logout() -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(auth.COOKIE, path="/", httponly=True, samesite="strict")
        return response

    # --- journeys --------------------------------------------------------------------------

    @app.get("/")
    async def journeys(request: Request) -> Response:
        rows = await asyncio.to_thread(_journey_rows, sources, stores)
        return page(request, "journeys.html", rows=rows)

    @app.get("/journeys/{journey_id}")
    async def journey(request: Request, journey_id: str, since: str = "7d") -> Response:
        if since not in views.SINCE:
            return problem(
                request, 400, "Unknown period", f"since must be one of {', '.join(views.SINCE)}."
            )
        found = await asyncio.to_thread(_journey_page, sources, stores, journey_id, since)
        if found is None:
            return problem(
                request,
                404,
                "No such journey",
                "Neither the project nor the store knows this journey.",
            )
        return page(request, "journey.html", **found)

    # --- customers -------------------------------------------------------------------------

    @app.get("/customers")
    async def customer_search(request: Request) -> Response:
        return page(request, "customers.html")

    @app.post("/customers")
    async def customer(request: Request, id: str = Form("")) -> Response:
        customer_id = id.strip()
        if not customer_id or len(customer_id) > MAX_CUSTOMER_ID:
            return page(
                request,
                "customers.html",
                400,
                error=f"Give a customer id (at most {MAX_CUSTOMER_ID} characters).",
            )
        found = await asyncio.to_thread(_customer_page, sources, stores, customer_id)
        if found is None:
            return page(request, "customers.html", 404, error="No such customer.")
        asked = [run.workflow_id for run in found["runs"][:TIMELINES_ASKED]]
        timelines = await sources.timelines.of(asked)
        return page(request, "customer.html", timelines=timelines, asked=asked, **found)

    @app.get("/failing")
    async def failing(request: Request) -> Response:
        runs = await asyncio.to_thread(sources.analytics.failing, 50)
        return page(request, "failing.html", runs=runs)

    @app.exception_handler(404)
    async def not_found(request: Request, _: Exception) -> Response:
        return problem(request, 404, "Not found", "There is no such page.")

    return app


class _Stores:
    """The store's tables the pages read, on one engine."""

    def __init__(self, engine: Engine) -> None:
        self.deployments = Deployments(engine)
        self.plans = PlanStore(engine)
        self.ledger = Ledger(engine)
        self.profiles = ProfileStore(engine)
        self.consent = ConsentStore(engine)
        self.topics = TopicConsent(engine)
        self.suppressions = Suppressions(engine)


@dataclass(frozen=True)
class JourneyRow:
    journey_id: str
    status: str
    active_version: str | None
    versions: list[str]
    numbers: JourneyOverview | None


def _journey_rows(sources: Sources, stores: _Stores) -> list[JourneyRow]:
    overview = {o.journey_id: o for o in sources.analytics.overview(datetime.now(UTC))}
    deployed = stores.deployments.journeys()
    rows = []
    for journey_id in sorted(set(sources.plans) | set(deployed) | set(overview)):
        current = deployed.get(journey_id)
        numbers = overview.get(journey_id)
        versions = list(numbers.versions if numbers else [])
        if current and current.active_version not in versions:
            versions.append(current.active_version)
        rows.append(
            JourneyRow(
                journey_id,
                current.state if current else "not deployed",
                current.active_version if current else None,
                versions,
                numbers,
            )
        )
    return rows


REFRESH_SECONDS = 10  # the journey page asks for its numbers and map again this often


def _journey_page(
    sources: Sources, stores: _Stores, journey_id: str, since: str
) -> dict[str, Any] | None:
    deployed = stores.deployments.journeys().get(journey_id)
    plan = stores.plans.get(deployed.active_version) if deployed else None
    plan = plan or sources.plans.get(journey_id)
    now = datetime.now(UTC)
    if plan is None and deployed is None:
        known = {o.journey_id for o in sources.analytics.overview(now)}
        if journey_id not in known:
            return None
    stats = sources.analytics.journey(journey_id, since=now - views.SINCE[since])
    return {
        "journey_id": journey_id,
        "deployed": deployed,
        "plan": plan,
        "since": since,
        "periods": list(views.SINCE),
        "stats": stats,
        "map": views.journey_map(plan, stats) if plan else None,
        "has_holdout": plan is not None and views.has_holdout(plan),
        "steps": views.step_rows(plan, stats),
        "outcomes": views.outcome_counts(stats.outcomes),
        "conversion_rate": views.percent(stats.conversion_rate),
        "daily": views.daily_json(stats),
        "as_of": now,
        "refresh_seconds": REFRESH_SECONDS,
        "template_days": stats.template_days_by_step(),
        "percent": views.percent,
        "points": views.points,
    }


def _customer_page(sources: Sources, stores: _Stores, customer_id: str) -> dict[str, Any] | None:
    hashed = customer_hash(customer_id)
    profile = stores.profiles.get(customer_id)
    runs = sources.analytics.runs_of_customer(hashed)
    messages = stores.ledger.list(customer=hashed, limit=MESSAGES_SHOWN)
    if profile is None and not runs and not messages:
        return None
    suppression = None
    if profile is not None and profile.email:
        try:
            suppression = stores.suppressions.get(profile.email)
        except ValueError:  # not an address the suppressions could hold
            suppression = None
    return {
        "profile": profile,
        "traits": json.dumps(profile.traits, indent=2, ensure_ascii=False, default=str)
        if profile
        else "",
        "runs": runs,
        "messages": messages,
        "events": sources.analytics.message_events([m.message_id for m in messages]),
        "consent": {
            "marketing email": stores.consent.status(customer_id, MARKETING),
            "SMS": stores.consent.status(customer_id, SMS),
        },
        "topics": stores.topics.choices(customer_id),
        "suppression": suppression,
        "email": profile.email if profile else None,
    }


def _same_origin(request: Request) -> bool:
    """A POST comes from a page of this site: no form of another site can act here (the
    cookie is SameSite=Strict too). Browsers say where a request comes from in
    ``Sec-Fetch-Site``; older ones in ``Origin`` (``null`` under this site's no-referrer
    policy, which says nothing); other clients say neither."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return True
    return urlsplit(origin).netloc == request.headers.get("host", "")


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # every page: customer data must never become markup
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["when"] = _when
    environment.globals["timeline_of"] = _timeline_of
    return environment


def _when(moment: datetime | None) -> str:
    return "—" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _timeline_of(timelines: Mapping[str, RunView | None], run: RunRow) -> RunView | None:
    return timelines.get(run.workflow_id)
