"""The dashboard (issue 18) served by a real uvicorn and read with httpx: the login, every page
with the ids the browser test relies on, escaping of what customers and journeys say, the
security headers, the vendored files, the customer search over the real store (SQLite file),
Temporal down and up, and the command's refusals.

The numbers come from a stand-in :class:`Analytics` returning fixed dataclasses (the analytics
store is tested on its own); everything else — profiles, ledger, consent, suppressions,
deployments, plans — is the real store."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import Engine
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from config.settings import connect, load_settings
from dashboard import Sources, auth, create_app
from dashboard.timelines import Timelines
from language.diagram import to_mermaid
from ops.dev import wait_for_port
from store.analytics import (
    Analytics,
    DayCount,
    EdgeCount,
    JourneyOverview,
    JourneyStats,
    Lift,
    MessageEvent,
    Outcomes,
    RunRow,
    StepCount,
    TemplateCount,
    TemplateDayCount,
)
from store.consent import SMS, ConsentStore
from store.database import connect as connect_store
from store.deployments import Deployments
from store.ledger import Ledger
from store.plans import PlanStore
from store.profiles import ProfileStore
from store.suppressions import Suppressions
from store.topic_consent import TopicConsent
from tests.conftest import ROOT
from tests.net import free_port, served
from tests.temporal import CONTEXT, event, plan_from, running_workers, start_run
from workflows.models import customer_hash

SECRET = "a-dashboard-secret-for-tests-only"
NOW = datetime.now(UTC).replace(microsecond=0)
CUSTOMER = "cust-<b>42</b>"
HOSTILE = "<script>alert(1)</script>"
JOURNEY = plan_from(
    """
id: dash-journey
name: Dashboard "test" <journey>
category: marketing
trigger:
  event: Signed Up
steps:
  - id: hello
    stage: awareness
    send: email
    template: newsletter-welcome
  - id: choose
    branch:
      - if: profile.traits.tier == "<gold>"
        goto: vip
  - id: nap
    wait: 1d
  - end
  - id: vip
    send: email
    template: free-shipping
"""
)
STATS = JourneyStats(
    journey_id="dash-journey",
    versions=[JOURNEY.version],
    since=NOW - timedelta(days=7),
    until=NOW,
    entered=40,
    outcomes=Outcomes(
        active=7,
        completed=20,
        converted=5,
        cancelled=1,
        erased=2,
        exited={"bought": 3},
        failed={"hello": 2},
    ),
    conversion_rate=0.125,
    steps=[StepCount("hello", 38, 1), StepCount("choose", 37, 0), StepCount("nap", 30, 6)],
    edges=[
        EdgeCount("hello", "choose", None, 37),
        EdgeCount("choose", "vip", 'profile.traits.tier == "<gold>"', 7),
        EdgeCount("choose", "nap", "else", 30),
    ],
    templates=[
        TemplateCount(
            "hello",
            "newsletter-welcome",
            "email",
            sent=33,
            failed=2,
            skipped={"no_consent": 3, "suppressed": 1},
            deferred=4,
            delivered=31,
            opened=17,
            clicked=9,
            bounced=1,
            spam_reported=1,
            unsubscribed=2,
        )
    ],
    days=[DayCount("2026-12-06", entered=15, converted=2, sent=12), DayCount("2026-12-07", 25)],
    template_days=[
        TemplateDayCount(
            "hello",
            "newsletter-welcome",
            "email",
            "2026-12-06",
            sent=12,
            skipped=3,
            failed=1,
            delivered=11,
            opened=6,
            clicked=2,
            bounced=1,
        ),
        TemplateDayCount(
            "hello", "newsletter-welcome", "email", "2026-12-07", sent=21, opened=11, clicked=7
        ),
    ],
    lift=Lift(
        treatment_runs=30,
        treatment_converted=6,
        holdout_runs=10,
        holdout_converted=1,
        treatment_rate=0.2,
        holdout_rate=0.1,
        lift=0.1,
        low=-0.12,
        high=0.32,
    ),
)
FAILED = RunRow(
    "journey/dash-journey/abc123",
    "dash-journey",
    JOURNEY.version,
    NOW - timedelta(hours=2),
    None,
    "failed",
    "SendGrid said 400: <bad>",
    "hello",
    NOW - timedelta(hours=1),
)


@dataclass
class FixedAnalytics(Analytics):
    """The numbers only, fixed (a pure stand-in: the real ones are another module's)."""

    engine: Engine
    runs: dict[str, list[RunRow]] = field(default_factory=dict)  # by customer hash
    events: dict[str, list[MessageEvent]] = field(default_factory=dict)
    asked: list[tuple[str, datetime]] = field(default_factory=list)
    stats: JourneyStats = STATS

    def journey(
        self,
        journey_id: str,
        since: datetime,
        until: datetime | None = None,
        version: str | None = None,
    ) -> JourneyStats:
        self.asked.append((journey_id, since))
        return self.stats

    def overview(self, now: datetime) -> list[JourneyOverview]:
        return [
            JourneyOverview("dash-journey", [JOURNEY.version], 4, 40, 7, 1, 5),
            JourneyOverview("retired-journey", ["v-old"], 0, 2, 0, 0, 1),
        ]

    def runs_of_customer(self, customer_hash: str) -> list[RunRow]:
        return self.runs.get(customer_hash, [])

    def failing(self, limit: int = 50) -> list[RunRow]:
        return [FAILED]

    def message_events(self, message_ids: Sequence[str]) -> dict[str, list[MessageEvent]]:
        return {m: self.events[m] for m in message_ids if m in self.events}


def dead_temporal() -> Timelines:
    """Timelines from a Temporal nobody runs (a free port)."""
    settings = load_settings(
        CONTEXT.config, {"TOUCHPOINT_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}"}
    )
    return Timelines(lambda: connect(settings), seconds=1.0)


def seeded_store(tmp_path: Path) -> tuple[Engine, FixedAnalytics]:
    """A real store with a customer (hostile trait), two messages, consent, a topic choice,
    a suppression and the journey deployed; the stand-in's runs and provider events."""
    engine = connect_store(f"sqlite:///{tmp_path / 'touchpoint.db'}")
    ProfileStore(engine).upsert(
        CUSTOMER,
        {"email": "Max@Example.com", "first_name": HOSTILE, "tier": "<gold>"},
        locale="de-DE",
        timezone="Europe/Berlin",
    )
    ledger = Ledger(engine)
    hashed = customer_hash(CUSTOMER)
    for message_id, status in (("msg-sent-1", "sent"), ("msg-skipped-2", "skipped")):
        ledger.claim(message_id, "dash-journey", "hello", "email", hashed)
        ledger.mark(
            message_id,
            status,
            provider="sendgrid",
            reason="no_consent" if status == "skipped" else None,
        )
    ConsentStore(engine).withdraw(CUSTOMER, "replied STOP", category=SMS)
    TopicConsent(engine).choose(CUSTOMER, "newsletter", "email", "unsubscribed", "preferences")
    Suppressions(engine).add(
        "max@example.com",
        "bounce",
        detail="550 <mailbox full>",
        source="sendgrid",
        actor="sendgrid",
    )
    PlanStore(engine).publish([JOURNEY])
    Deployments(engine).deploy([JOURNEY], actor="test", reason=None)
    analytics = FixedAnalytics(
        engine,
        runs={
            hashed: [
                RunRow(
                    "journey/dash-journey/run-of-max",
                    "dash-journey",
                    JOURNEY.version,
                    NOW - timedelta(days=1),
                    "nap",
                    None,
                    None,
                    None,
                    None,
                )
            ]
        },
        events={
            "msg-sent-1": [
                MessageEvent("msg-sent-1", "delivered", "sendgrid", NOW - timedelta(hours=3)),
                MessageEvent("msg-sent-1", "opened", "sendgrid", NOW - timedelta(hours=2)),
            ]
        },
    )
    return engine, analytics


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[tuple[str, FixedAnalytics]]:
    engine, analytics = seeded_store(tmp_path)
    sources = Sources(analytics, engine, dead_temporal(), {"dash-journey": JOURNEY}, SECRET)
    async with served(create_app(sources)) as url:
        yield url, analytics


@asynccontextmanager
async def logged_in(url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=url, timeout=20) as client:
        response = await client.post("/login", data={"secret": SECRET, "next": "/"})
        assert response.status_code == 303
        yield client


def cells(html: str, row: str) -> dict[str, str]:
    """``data-field`` → text of the cells of the ``<tr …>`` that starts with ``row``."""
    start = html.index(row)
    body = html[start : html.index("</tr>", start)]
    return {
        name: re.sub(r"<[^>]+>", "", text).strip()
        for name, text in re.findall(r'data-field="([a-z0-9_]+)"[^>]*>(.*?)</t[dh]>', body, re.S)
    }


# --- login ------------------------------------------------------------------------------------


async def test_every_page_needs_the_login_and_a_wrong_secret_is_401(
    site: tuple[str, FixedAnalytics],
) -> None:
    url, _ = site
    async with httpx.AsyncClient(base_url=url) as anonymous:
        assert (await anonymous.get("/healthz")).text == "ok"
        for path in ("/", "/journeys/dash-journey?since=30d", "/customers", "/failing"):
            response = await anonymous.get(path)
            assert response.status_code == 303, path
            assert response.headers["location"] == "/login?next=" + quote(path, safe="")
        refresh = await anonymous.get("/", headers={"HX-Request": "true"})
        assert refresh.status_code == 401, "a table's refresh keeps what it shows"
        searched = await anonymous.post("/customers", data={"id": CUSTOMER})
        assert (searched.status_code, searched.headers["location"]) == (
            303,
            "/login?next=%2Fcustomers",
        )
        form = await anonymous.get("/login")
        assert '<input id="secret" name="secret" type="password"' in form.text
        assert '<button type="submit">Log in</button>' in form.text
        wrong = await anonymous.post("/login", data={"secret": SECRET + "x", "next": "/failing"})
        assert wrong.status_code == 401
        assert "not the dashboard's secret" in wrong.text and 'name="secret"' in wrong.text
        assert auth.COOKIE not in wrong.headers.get("set-cookie", "")
        right = await anonymous.post("/login", data={"secret": SECRET, "next": "/failing"})
        assert (right.status_code, right.headers["location"]) == (303, "/failing")
        cookie = right.headers["set-cookie"]
        assert cookie.startswith(f"{auth.COOKIE}=")
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=43200" in cookie
        assert (await anonymous.get("/failing")).status_code == 200  # the cookie works
        await anonymous.post("/logout")
        assert (await anonymous.get("/failing")).status_code == 303


async def test_a_forged_or_expired_cookie_is_no_login(site: tuple[str, FixedAnalytics]) -> None:
    url, _ = site
    expired = auth.issue(SECRET, NOW - auth.LIFETIME - timedelta(minutes=1))
    forged = auth.issue("another-secret-of-16-bytes", NOW)
    tampered = str(int(NOW.timestamp()) + 10**6) + "." + auth.issue(SECRET, NOW).split(".")[1]
    for value in (expired, forged, tampered, "garbage", ""):
        async with httpx.AsyncClient(base_url=url, cookies={auth.COOKIE: value}) as client:
            assert (await client.get("/")).status_code == 303, value
    async with httpx.AsyncClient(
        base_url=url, cookies={auth.COOKIE: auth.issue(SECRET, NOW)}
    ) as client:
        assert (await client.get("/")).status_code == 200


@pytest.mark.parametrize(
    ("given", "goes_to"),
    [
        ("/journeys/dash-journey?since=1d", "/journeys/dash-journey?since=1d"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example/", "/"),
        ("javascript:alert(1)", "/"),
        ("/ok\r\nSet-Cookie: x=1", "/"),
    ],
)
async def test_login_sends_only_to_pages_of_this_site(
    site: tuple[str, FixedAnalytics], given: str, goes_to: str
) -> None:
    url, _ = site
    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.post("/login", data={"secret": SECRET, "next": given})
        assert (response.status_code, response.headers["location"]) == (303, goes_to)
        form = await client.get("/login", params={"next": given})
        assert f'name="next" value="{goes_to}"' in form.text.replace("&amp;", "&").replace(
            "&#34;", '"'
        )


async def test_a_post_from_another_site_is_refused(site: tuple[str, FixedAnalytics]) -> None:
    url, _ = site
    async with logged_in(url) as client:
        response = await client.post(
            "/customers", data={"id": CUSTOMER}, headers={"Origin": "https://evil.example"}
        )
        assert response.status_code == 403
        fetched = await client.post(
            "/customers", data={"id": CUSTOMER}, headers={"Sec-Fetch-Site": "cross-site"}
        )
        assert fetched.status_code == 403
        for same in (
            {"Origin": url},
            {"Origin": "null", "Sec-Fetch-Site": "same-origin"},  # what Chromium sends here
        ):
            response = await client.post("/customers", data={"id": CUSTOMER}, headers=same)
            assert response.status_code == 200, same


# --- pages ------------------------------------------------------------------------------------


async def test_the_journeys_page_lists_project_store_and_analytics_journeys(
    site: tuple[str, FixedAnalytics],
) -> None:
    url, _ = site
    async with logged_in(url) as client:
        page = (await client.get("/")).text
    assert '<table id="journeys"' in page
    assert cells(page, '<tr data-journey="dash-journey">') == {
        "status": "active",
        "versions": JOURNEY.version,
        "entered_today": "4",
        "entered_7d": "40",
        "active": "7",
        "converted_today": "1",
        "converted_7d": "5",
    }
    assert cells(page, '<tr data-journey="retired-journey">')["status"] == "not deployed"
    assert '<a href="/journeys/dash-journey">dash-journey</a>' in page
    for link in ('href="/"', 'href="/customers"', 'href="/failing"'):
        assert link in page


async def test_the_journey_page_shows_the_map_with_counts_and_every_number(
    site: tuple[str, FixedAnalytics],
) -> None:
    url, analytics = site
    async with logged_in(url) as client:
        response = await client.get("/journeys/dash-journey", params={"since": "30d"})
    page = response.text
    assert response.status_code == 200
    [(asked, since)] = analytics.asked
    assert asked == "dash-journey" and timedelta(days=30) - (datetime.now(UTC) - since) < timedelta(
        minutes=1
    )
    assert '<span id="entered">40</span>' in page
    assert '<span id="conversion-rate">12.5 %</span>' in page
    drawn = re.search(r'<div id="journey-map"><pre class="mermaid">(.*?)</pre></div>', page, re.S)
    assert drawn is not None
    mermaid = drawn.group(1)
    for counted in (
        "hello: email: newsletter-welcome&lt;br&gt;passed 38 · waiting 1",
        "nap: wait 1d&lt;br&gt;passed 30 · waiting 6",
        "entered 40",
        "|&#34;if profile.traits.tier == #quot;#lt;gold#gt;#quot; (7)&#34;|",
        "|&#34;else (30)&#34;|",
        "n_hello --&gt;|&#34;(37)&#34;| n_choose",
    ):
        assert counted in mermaid, counted
    assert "<gold>" not in page and "<journey>" not in page  # a label cannot become markup
    assert cells(page, '<tr data-step="nap">') == {"passed": "30", "waiting": "6"}
    assert cells(page, '<tr data-step="vip">') == {"passed": "0", "waiting": "0"}
    assert cells(page, '<tr data-source="choose" data-target="vip">') == {
        "label": "profile.traits.tier == &#34;&lt;gold&gt;&#34;",
        "passed": "7",
    }
    outcomes = {
        k: cells(page, f'<tr data-outcome="{k}">')["count"]
        for k in ("active", "completed", "converted", "exited", "failed", "cancelled", "erased")
    }
    assert outcomes == {
        "active": "7",
        "completed": "20",
        "converted": "5",
        "exited": "3",
        "failed": "2",
        "cancelled": "1",
        "erased": "2",
    }
    lift = page[
        page.index('<section id="lift">') : page.index(
            "</section>", page.index('<section id="lift">')
        )
    ]
    assert "+10.0 points" in lift and "-12.0 points to +32.0 points" in lift and ">30<" in lift
    templates = page[page.index('<table id="templates">') :]
    assert cells(templates, '<tr data-step="hello">') == {
        "template": "newsletter-welcome",
        "channel": "email",
        "sent": "33",
        "skipped": "4",
        "failed": "2",
        "deferred": "4",
        "delivered": "31",
        "opened": "17",
        "clicked": "9",
        "bounced": "1",
        "spam_reported": "1",
        "unsubscribed": "2",
    }
    assert '<table class="template-days" data-step="hello">' in page
    assert "<caption>hello (newsletter-welcome)</caption>" in page
    assert cells(page, '<tr data-step="hello" data-day="2026-12-06">') == {
        "sent": "12",
        "skipped": "3",
        "failed": "1",
        "delivered": "11",
        "opened": "6",
        "clicked": "2",
        "bounced": "1",
    }
    assert cells(page, '<tr data-step="hello" data-day="2026-12-07">')["clicked"] == "7"
    assert '<div id="daily-chart"></div>' in page
    daily = re.search(r'<script type="application/json" id="daily-data">(.*?)</script>', page)
    assert daily is not None and '"day":"2026-12-06","entered":15,"converted":2' in daily.group(1)
    assert "mermaid-12.3.0/mermaid.min.js" in page and "uplot-1.6.32/uPlot.iife.min.js" in page


def test_counts_leave_touchpoint_graph_s_drawing_alone() -> None:
    """Without annotations the drawing is what ``touchpoint graph`` prints (its tests pin it);
    the dashboard's annotations only add."""
    from dashboard.views import journey_map

    plain = to_mermaid(JOURNEY)
    annotated = journey_map(JOURNEY, STATS)
    assert plain.splitlines()[:2] == annotated.splitlines()[:2]
    assert len(plain.splitlines()) == len(annotated.splitlines())
    assert "passed" not in plain and "passed 38" in annotated


def test_edge_counts_land_on_the_arrow_runs_took() -> None:
    """The store's labels — a wait_for's "event"/"timeout", a split path's name, a branch
    case's condition or "else" — pick the drawn arrow, also where two arrows join the same
    steps."""
    from dashboard.views import edge_counts
    from language.diagram import edges

    plan = plan_from(
        """
id: arrows
name: A
category: marketing
trigger:
  event: Signed Up
steps:
  - id: delivered
    wait_for: Order Delivered
    timeout: 3d
    on_timeout: done
  - id: groups
    split:
      - {name: treat, percent: 50, goto: done}
      - {name: control, percent: 50, goto: done, holdout: true}
  - id: done
    send: email
    template: free-shipping
"""
    )
    counted = [
        EdgeCount("delivered", "groups", "event", 5),
        EdgeCount("delivered", "done", "timeout", 3),
        EdgeCount("groups", "done", "treat", 4),
        EdgeCount("groups", "done", "control", 1),
    ]
    found = {
        (e.source, e.label): n for e, n in edge_counts(plan, list(edges(plan)), counted).items()
    }
    assert found == {
        ("delivered", "Order Delivered"): 5,
        ("delivered", "timeout 3d"): 3,
        ("groups", "treat 50%"): 4,
        ("groups", "control 50% (holdout)"): 1,
    }


async def test_a_journey_without_holdout_numbers_says_so(
    site: tuple[str, FixedAnalytics],
) -> None:
    url, analytics = site
    analytics.stats = replace(STATS, lift=None)
    async with logged_in(url) as client:
        page = (await client.get("/journeys/dash-journey")).text
    lift = page[page.index('<section id="lift">') :]
    assert lift[: lift.index("</section>")].endswith("<p>no holdout</p>\n")


async def test_a_bad_period_is_400_and_an_unknown_journey_404(
    site: tuple[str, FixedAnalytics],
) -> None:
    url, _ = site
    async with logged_in(url) as client:
        assert (await client.get("/journeys/dash-journey?since=2y")).status_code == 400
        missing = await client.get("/journeys/no-such-journey")
        assert missing.status_code == 404 and "No such journey" in missing.text
        retired = await client.get("/journeys/retired-journey")  # known by its runs only
        assert retired.status_code == 200 and "no map" in retired.text
        assert (await client.get("/nowhere")).status_code == 404


async def test_the_failing_page(site: tuple[str, FixedAnalytics]) -> None:
    url, _ = site
    async with logged_in(url) as client:
        page = (await client.get("/failing")).text
    assert cells(page, '<tr data-workflow-id="journey/dash-journey/abc123">') == {
        "journey": f"dash-journey {JOURNEY.version}",
        "step": "hello",
        "error": "SendGrid said 400: &lt;bad&gt;",
        "ended_at": (NOW - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S UTC"),
    }


# --- customers --------------------------------------------------------------------------------


async def test_the_customer_page_shows_the_store_escaped_and_no_timeline_without_temporal(
    site: tuple[str, FixedAnalytics],
) -> None:
    url, _ = site
    async with logged_in(url) as client:
        form = (await client.get("/customers")).text
        assert '<form method="post" action="/customers"' in form and 'name="id"' in form
        started = datetime.now(UTC)
        response = await client.post("/customers", data={"id": CUSTOMER})
        took = datetime.now(UTC) - started
        unknown = await client.post("/customers", data={"id": "nobody"})
    page = response.text
    assert response.status_code == 200
    assert took < timedelta(seconds=8), "Temporal down costs the page a short timeout only"
    assert HOSTILE not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert CUSTOMER not in page and "cust-&lt;b&gt;42&lt;/b&gt;" in page
    profile = page[page.index('<section id="profile">') :]
    assert "Max@Example.com" in profile and "de-DE" in profile and "Europe/Berlin" in profile
    run = page[
        page.index('<article class="run" data-workflow-id="journey/dash-journey/run-of-max">') :
    ]
    assert "nap" in run[: run.index("</article>")]
    assert "timeline unavailable" in run[: run.index("</article>")]
    messages = page[
        page.index('<table id="messages">') : page.index(
            "</table>", page.index('<table id="messages">')
        )
    ]
    assert cells(messages, '<tr data-message-id="msg-sent-1">')["events"].startswith("delivered ")
    assert "; opened " in cells(messages, '<tr data-message-id="msg-sent-1">')["events"]
    assert (
        cells(messages, '<tr data-message-id="msg-skipped-2">')["status"] == "skipped (no_consent)"
    )
    consent = page[page.index('<section id="consent">') :]
    assert (
        "unsubscribed (replied STOP)" in consent and "newsletter on email: unsubscribed" in consent
    )
    suppressions = page[page.index('<section id="suppressions">') :]
    assert (
        "max@example.com</strong> is suppressed: bounce (550 &lt;mailbox full&gt;)" in suppressions
    )
    assert unknown.status_code == 404 and "No such customer" in unknown.text


async def test_the_page_asks_temporal_for_the_newest_runs_only(
    site: tuple[str, FixedAnalytics],
) -> None:
    from dashboard.app import TIMELINES_ASKED

    url, analytics = site
    [run] = analytics.runs[customer_hash(CUSTOMER)]
    many = [replace(run, workflow_id=f"{run.workflow_id}/{n}") for n in range(TIMELINES_ASKED + 1)]
    analytics.runs[customer_hash(CUSTOMER)] = many
    async with logged_in(url) as client:
        page = (await client.post("/customers", data={"id": CUSTOMER})).text
    assert page.count('<article class="run"') == TIMELINES_ASKED + 1
    assert page.count("timeline unavailable") == TIMELINES_ASKED
    assert page.count("timeline not asked for") == 1


async def test_the_customer_page_shows_a_run_s_timeline_from_temporal(
    tmp_path: Path, time_env: WorkflowEnvironment
) -> None:
    """A real run on the time-skipping server, asked for its ``state`` by the page."""
    engine, analytics = seeded_store(tmp_path)
    plan = plan_from(
        "id: napper\nname: N\ncategory: marketing\ntrigger:\n  event: Signed Up\n"
        "steps:\n  - id: mark\n    set:\n      seen: 1\n  - id: nap\n    wait: 3d\n"
    )

    async def client() -> Client:
        return time_env.client

    async with running_workers(time_env.client, []) as prefix:
        handle = await start_run(time_env.client, plan, prefix, event("Signed Up", CUSTOMER))
        analytics.runs[customer_hash(CUSTOMER)] = [
            RunRow(handle.id, "napper", plan.version, NOW, "nap", None, None, None, None)
        ]
        sources = Sources(analytics, engine, Timelines(client), {"napper": plan}, SECRET)
        async with served(create_app(sources)) as url, logged_in(url) as browser:
            page = (await browser.post("/customers", data={"id": CUSTOMER})).text
        await handle.terminate()
    run = page[page.index(f'<article class="run" data-workflow-id="{handle.id}">') :]
    run = run[: run.index("</article>")]
    assert '<ol class="timeline">' in run and "timeline unavailable" not in run
    assert "<strong>mark</strong> set: vars.seen" in run and "waiting until" in run


# --- headers, static files, no other host ----------------------------------------------------


async def test_every_answer_has_the_security_headers_and_pages_name_no_other_host(
    site: tuple[str, FixedAnalytics],
) -> None:
    url, _ = site
    async with logged_in(url) as client:
        answers = [
            await client.get(path)
            for path in (
                "/",
                "/journeys/dash-journey",
                "/customers",
                "/failing",
                "/login",
                "/healthz",
                "/nowhere",
                "/static/dashboard.js",
            )
        ]
        answers.append(await client.post("/customers", data={"id": CUSTOMER}))
    for answer in answers:
        assert answer.headers["content-security-policy"] == (
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
        ), answer.url
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"
        if answer.headers["content-type"].startswith("text/html"):
            assert answer.headers["cache-control"] == "no-store"
            assert re.findall(r"https?://", answer.text) == [], answer.url
            assert "<script>" not in answer.text, "no inline script"
            for reference in re.findall(
                r'<(?:script|link)[^>]*(?:src|href)="([^"]+)"', answer.text
            ):
                assert reference.startswith("/static/"), reference


VENDOR = ROOT / "dashboard" / "static" / "vendor"
LOADED = ["mermaid-12.3.0/mermaid.min.js", "htmx.org-4.0.1/htmx.min.js"]
LOADED += ["uplot-1.6.32/uPlot.iife.min.js", "uplot-1.6.32/uPlot.min.css"]


def listed_sums() -> dict[str, str]:
    """``folder/file`` → sha256, from the tables of VENDOR.md's ``## NAME VERSION`` sections."""
    sums: dict[str, str] = {}
    folder = ""
    for line in (VENDOR / "VENDOR.md").read_text().splitlines():
        if line.startswith("## "):
            folder = "-".join(line[3:].split())
        found = re.match(r"\| (\S+) \| `([0-9a-f]{64})` \|$", line)
        if found and folder:
            sums[f"{folder}/{found.group(1)}"] = found.group(2)
    return sums


async def test_the_vendored_files_are_served_as_listed(site: tuple[str, FixedAnalytics]) -> None:
    listed = (VENDOR / "VENDOR.md").read_text()
    sums = listed_sums()
    kept = {str(f.relative_to(VENDOR)) for f in VENDOR.glob("*/*")}
    assert sorted(sums) == sorted(kept), "VENDOR.md lists every file kept, and only those"
    url, _ = site
    async with httpx.AsyncClient(base_url=url) as anonymous:  # no login: public files
        for path in LOADED:
            served_file = await anonymous.get(f"/static/vendor/{path}")
            assert served_file.status_code == 200, path
            assert hashlib.sha256(served_file.content).hexdigest() == sums[path], path
            assert f"{path.split('/')[0]}/LICENSE" in sums
        for package, integrity in (
            ("mermaid-12.3.0", "sha512-4113TdXeLAsMruJ79OpFL5O8"),
            ("htmx.org-4.0.1", "sha512-oF7JgXhDW9UXCy/k1ZYFUQgz"),
            ("uplot-1.6.32", "sha512-KIMVnG68zvu5XXUbC4LQEPnh"),
        ):
            assert integrity in listed and package in listed


# --- the command ------------------------------------------------------------------------------


def command(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TOUCHPOINT_")}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=ROOT,
        env={**environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_command_refuses_to_start_without_a_secret_or_off_loopback_in_dev() -> None:
    done = command("dashboard", "--port", str(free_port()))
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "✗ the dashboard shows personal data and needs a login: set TOUCHPOINT_DASHBOARD_SECRET "
        "(at least 16 bytes, e.g. `openssl rand -hex 32`); `touchpoint dev` starts one without "
        "login on 127.0.0.1\n"
    )
    dev = command("ui", "--dev", "--host", "0.0.0.0", TOUCHPOINT_DEV_STACK="1")
    assert dev.returncode == 2 and "--dev serves the dashboard with no login" in dev.stderr
    outside = command("dashboard", "--dev", "--port", str(free_port()))  # not touchpoint dev's
    assert (outside.returncode, outside.stdout) == (2, "")
    assert outside.stderr.startswith("✗ --dev (no login) is how `touchpoint dev` starts")
    assert "--dev" not in command("dashboard", "--help").stdout, "touchpoint dev's, not a user's"
    short = command("dashboard", TOUCHPOINT_DASHBOARD_SECRET="short")
    assert short.returncode == 2 and "TOUCHPOINT_DASHBOARD_SECRET is too short" in short.stderr
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        taken = command("dashboard", "--port", str(port), TOUCHPOINT_DASHBOARD_SECRET=SECRET)
    assert taken.returncode == 2
    assert taken.stderr == (
        f"✗ port {port} on 127.0.0.1 is in use: stop what listens there or choose --port\n"
    )


async def test_the_dev_dashboard_needs_no_login(tmp_path: Path) -> None:
    """``--dev`` (what ``touchpoint dev`` passes): pages open without a login."""
    engine, analytics = seeded_store(tmp_path)
    sources = Sources(analytics, engine, dead_temporal(), {"dash-journey": JOURNEY}, None)
    async with served(create_app(sources)) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/login")).status_code == 303
        page = await client.get("/failing")
    assert page.status_code == 200 and "dev mode: no login" in page.text


def test_the_command_serves_the_project_s_store_with_a_login(tmp_path: Path) -> None:
    """``touchpoint dashboard`` as an operator starts it: the example project, its store from
    TOUCHPOINT_DATABASE_URL, the secret from the environment."""
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TOUCHPOINT_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "dashboard", "--port", str(port), "-C", str(ROOT)],
        cwd=tmp_path,
        env={
            **environ,
            "PYTHONPATH": str(ROOT),
            "TOUCHPOINT_DASHBOARD_SECRET": SECRET,
            "TOUCHPOINT_DATABASE_URL": f"sqlite:///{tmp_path / 'touchpoint.db'}",
            "TOUCHPOINT_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",  # down: pages still work
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_port(port, 60, process)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            assert client.get("/healthz").text == "ok"
            assert client.get("/customers").status_code == 303
            client.post("/login", data={"secret": SECRET})
            assert 'action="/customers"' in client.get("/customers").text
            assert client.post("/customers", data={"id": " "}).status_code == 400
            client.post("/customers", data={"id": "cust-in-no-log"})
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert "Application shutdown complete" in output  # uvicorn then re-raises SIGTERM
    assert "POST /customers" in output and "cust-in-no-log" not in output, "ids are in no log"
