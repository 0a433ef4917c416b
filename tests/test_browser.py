"""The dashboard and the API's /docs in a real browser (Debian's Chromium through Playwright),
offline: after the demo's events, the pages show the store's numbers and Temporal's, the journey
map is drawn with its counts, a customer's page shows their runs and messages, and a customer's
traits cannot run script. One stack and one browser for the module (tests/browser.py).

Every page is cut off from the internet: any request to a host other than 127.0.0.1 is blocked,
recorded and fails the test, as does a script error, a logged error or a dialog.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from store.analytics import Analytics
from store.database import connect
from store.deployments import Deployments
from store.ledger import Delivery, Ledger
from tests.browser import (
    DASHBOARD_SECRET,
    Stack,
    Watch,
    chromium,
    chromium_browser,
    copy_of_the_example,
    new_context,
    running_runs,
    running_stack,
    save_screenshot,
    send_the_demo_s_events,
    timeline_steps,
)
from tests.conftest import EXAMPLE_JOURNEYS
from workflows.models import customer_hash

XSS = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'
ALERT = "<svg/onload=alert(document.domain)>"
ASKS_THE_INTERNET = '<img src="https://cdn.example.com/logo.png">'
README_JOURNEY = "post-purchase-accessories"  # Max waits in it, after a branch
TEMPLATE_NUMBERS = (
    *("sent", "failed", "deferred", "delivered", "opened", "clicked", "bounced"),
    *("spam_reported", "unsubscribed"),
)
DEMO_JOURNEYS = ("newsletter-welcome", "laptop-recommendation", "post-purchase-accessories")


@pytest.fixture(scope="module")
def executable() -> str:
    return chromium()


@pytest.fixture(scope="module")
def stack(executable: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The stack after the demo's events, and a customer whose traits are markup."""
    project = copy_of_the_example(tmp_path_factory.mktemp("browser"))
    with running_stack(project, meanwhile=send_the_demo_s_events_and_eve_s) as running:
        yield running


def send_the_demo_s_events_and_eve_s(stack: Stack) -> None:
    """The demo's events, SendGrid's word that Max's welcome email arrived and was opened, and
    a customer whose traits are markup."""
    send_the_demo_s_events(stack)
    welcome = max_s_welcome_email(stack)
    stack.sendgrid_posts(
        [
            {
                "event": event,
                "sg_event_id": f"browser-{event}",
                "email": "max@example.com",
                "timestamp": int(time.time()),
                "touchpoint_message_id": welcome.message_id,
                "journey": welcome.journey_id,
                "step": welcome.step_id,
            }
            for event in ("delivered", "open")
        ]
    )
    with stack.shop() as shop:
        answer = shop.post(
            "/v1/identify",
            json={
                "userId": "eve",
                "traits": {"email": "eve@example.com", "nickname": XSS, "motto": ALERT},
            },
        )
        assert answer.status_code == 200, answer.text


def max_s_welcome_email(stack: Stack) -> Delivery:
    """newsletter-welcome's first email to Max, as the ledger has it once it was sent."""
    engine = connect(stack.database_url)
    try:
        deadline = time.monotonic() + 15
        while True:
            sent = [
                message
                for message in Ledger(engine).list(customer=customer_hash("max"))
                if (message.journey_id, message.step_id) == ("newsletter-welcome", "welcome")
                and message.status == "sent"
            ]
            if sent or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        engine.dispose()
    assert len(sent) == 1, "the welcome email was not sent in 15 s"
    return sent[0]


@pytest.fixture(scope="module")
def store(stack: Stack) -> Iterator[Analytics]:
    engine = connect(stack.database_url)
    try:
        yield Analytics(engine)
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def browser(executable: str) -> Iterator[Any]:
    with chromium_browser(executable) as running:
        yield running


@pytest.fixture(scope="module")
def watch() -> Watch:
    return Watch()


@pytest.fixture(autouse=True)
def offline(watch: Watch) -> Iterator[None]:
    """Each test ends with nothing asked of the internet, no script error, no dialog."""
    watch.clear()
    yield
    assert watch.problems() == []


@pytest.fixture(scope="module")
def logged_in(browser: Any, stack: Stack, watch: Watch) -> Iterator[Any]:
    """A page of a browser profile that logged in to the dashboard through its form."""
    context = new_context(browser, watch)
    page = context.new_page()
    page.goto(f"{stack.dashboard}/login")
    page.fill('input[name="secret"]', DASHBOARD_SECRET)
    with page.expect_navigation():
        page.click('button[type="submit"]')
    assert page.url == f"{stack.dashboard}/"
    try:
        yield page
    finally:
        context.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


def cell(row: Any, name: str) -> str:
    return str(row.locator(f'[data-field="{name}"]').inner_text()).strip()


def number(row: Any, name: str) -> int:
    return int(cell(row, name))


def test_a_request_off_loopback_is_blocked_and_recorded(browser: Any, watch: Watch) -> None:
    """The guard every other test relies on: it sees, and stops, a page asking the internet."""
    context = new_context(browser, watch)
    try:
        page = context.new_page()
        page.route(
            "http://127.0.0.1:9/",
            lambda route: route.fulfill(body=ASKS_THE_INTERNET, content_type="text/html"),
        )
        page.goto("http://127.0.0.1:9/")
        page.wait_for_load_state("networkidle")
        assert watch.outside == ["https://cdn.example.com/logo.png"]
        assert page.evaluate("document.images[0].naturalWidth") == 0, "it never arrived"
    finally:
        context.close()
        watch.clear()


def test_the_api_docs_work_offline(browser: Any, stack: Stack, watch: Watch) -> None:
    """Swagger UI (vendored) draws the API's operations with no internet."""
    context = new_context(browser, watch)
    try:
        page = context.new_page()
        page.goto(f"{stack.api}/docs")
        page.locator(".opblock").first.wait_for()
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        assert "/v1/track" in [p.strip().replace("\u200b", "") for p in paths]
        assert len(paths) >= 5
    finally:
        context.close()


def test_the_dashboard_lets_in_only_the_right_secret(
    browser: Any, stack: Stack, watch: Watch
) -> None:
    context = new_context(browser, watch)
    try:
        page = context.new_page()
        page.goto(f"{stack.dashboard}/journeys/newsletter-welcome")
        assert page.url == f"{stack.dashboard}/login?next=%2Fjourneys%2Fnewsletter-welcome" or (
            page.url == f"{stack.dashboard}/login?next=/journeys/newsletter-welcome"
        )
        page.fill('input[name="secret"]', "not-the-secret")
        with page.expect_navigation() as refused:
            page.click('button[type="submit"]')
        assert refused.value.status == 401
        watch.forgive(401)
        assert page.locator('input[name="secret"][type="password"]').count() == 1
        assert context.cookies() == [], "no session for a wrong secret"

        page.fill('input[name="secret"]', DASHBOARD_SECRET)
        with page.expect_navigation():
            page.click('button[type="submit"]')
        assert page.url == f"{stack.dashboard}/journeys/newsletter-welcome", "back where it was"
        assert page.locator("#journey-map").count() == 1
        [cookie] = context.cookies()
        assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"]) == (
            "touchpoint_dashboard",
            True,
            "Strict",
        )
        assert 11 * 3600 < cookie["expires"] - time.time() <= 12 * 3600
    finally:
        context.close()


def test_the_journeys_page_shows_the_store_s_and_temporal_s_counts(
    logged_in: Any, stack: Stack, store: Analytics, shots: Path
) -> None:
    page = logged_in
    overview = {o.journey_id: o for o in store.overview(datetime.now(UTC))}
    assert set(DEMO_JOURNEYS) <= set(overview), "the demo's events entered these journeys"
    project = {p.name.removesuffix(".yaml") for p in EXAMPLE_JOURNEYS}
    page.goto(f"{stack.dashboard}/")
    rows = page.locator("#journeys tr[data-journey]")
    shown = {rows.nth(i).get_attribute("data-journey") for i in range(rows.count())}
    assert shown == project | set(overview)
    for journey_id, numbers in overview.items():
        row = page.locator(f'#journeys tr[data-journey="{journey_id}"]')
        assert row.locator(f'a[href="/journeys/{journey_id}"]').count() == 1
        for name in ("entered_today", "entered_7d", "converted_today", "converted_7d"):
            assert number(row, name) == getattr(numbers, name), (journey_id, name)
        assert number(row, "active") == numbers.active, (journey_id, "active")
    deployed = Deployments(store.engine).journeys()
    assert set(deployed) == project, "touchpoint dev deployed the project's journeys"
    for journey_id, journey in deployed.items():
        row = page.locator(f'#journeys tr[data-journey="{journey_id}"]')
        assert cell(row, "status") == journey.state
        assert journey.active_version in cell(row, "versions").split()
    assert number(page.locator('tr[data-journey="laptop-recommendation"]'), "converted_7d") == 1

    deadline = time.monotonic() + 10  # Temporal's visibility lags its runs a little
    while True:
        shown_active = {
            j: number(page.locator(f'#journeys tr[data-journey="{j}"]'), "active")
            for j in DEMO_JOURNEYS
        }
        running = {j: running_runs(stack.temporal_address, j) for j in DEMO_JOURNEYS}
        if shown_active == running or time.monotonic() > deadline:
            break
        time.sleep(0.5)
        page.reload()
    assert shown_active == running, "the dashboard's active runs are Temporal's running ones"
    assert sum(running.values()) >= 1, "a run is still waiting (post-purchase-accessories)"
    save_screenshot(page, "journeys", shots)


def node_texts(page: Any) -> list[str]:
    """The text of every node the browser drew on the journey map."""
    return [
        " ".join(text.split())
        for text in page.locator("#journey-map svg g.node").all_text_contents()
    ]


def drawn_on_edges(page: Any, source: str, target: str) -> int:
    """The counts the map shows on its arrows from ``source`` to ``target`` ("… (N)"), added
    up (two branch cases may lead to the same step). Mermaid names an arrow's label
    L_<from>_<to>_<n>, of the nodes' Mermaid ids (``touchpoint graph``'s)."""
    labels = page.locator(
        f'#journey-map svg g.edgeLabel [data-id^="L_{mid(source)}_{mid(target)}_"]'
    )
    total = 0
    for text in labels.all_text_contents():
        if counted := re.search(r"\((\d+)\)$", text.strip()):
            total += int(counted.group(1))
    return total


def mid(step: str) -> str:
    """A step's node id in the Mermaid drawing."""
    return "n_" + re.sub(r"[^A-Za-z0-9_]", "_", step)


def test_an_open_journey_page_shows_a_new_entry_without_a_reload(
    logged_in: Any, stack: Stack, store: Analytics
) -> None:
    """The journey page asks for its numbers and map again every 10 s (htmx): a customer who
    enters while it is open shows in the count and on the redrawn map, no reload. The segment
    journey ``vip-thank-you`` (not the demo's: their counts are pinned by the tests above)."""
    page = logged_in
    journey = "vip-thank-you"
    page.goto(f"{stack.dashboard}/journeys/{journey}?since=7d")
    page.locator("#journey-map svg g.node").first.wait_for()
    before, as_of = int(page.inner_text("#entered")), page.inner_text("#as-of")
    with stack.shop() as shop:
        for value in (10, 1500):  # below the line, then across it: one crossing
            answer = shop.post(
                "/v1/identify",
                json={
                    "userId": "lena",
                    "traits": {"email": "lena@example.com", "lifetime_value": value},
                },
            )
            assert answer.status_code == 200, answer.text
    page.wait_for_function(
        "n => Number(document.querySelector('#entered').textContent) === n",
        arg=before + 1,
        timeout=30_000,
    )
    assert page.inner_text("#as-of") != as_of, "the page's moment moved on"
    page.locator("#journey-map svg g.node").first.wait_for()  # drawn again after the swap
    nodes = node_texts(page)
    assert any(n.startswith("⚡") and f"entered {before + 1}" in n for n in nodes), nodes
    since = datetime.now(UTC) - timedelta(days=7)
    assert store.journey(journey, since=since).entered == before + 1
    deadline = time.monotonic() + 30  # leave no run in flight for the tests that count them
    while store.journey(journey, since=since).outcomes.active and time.monotonic() < deadline:
        time.sleep(0.25)


@pytest.mark.parametrize("journey_id", DEMO_JOURNEYS)
def test_a_journey_page_draws_the_map_with_the_store_s_counts(
    logged_in: Any, stack: Stack, store: Analytics, shots: Path, journey_id: str
) -> None:
    page = logged_in
    stats = store.journey(journey_id, since=datetime.now(UTC) - timedelta(days=7))
    assert stats.entered == 1, "Max entered each of the demo's journeys once"
    page.goto(f"{stack.dashboard}/journeys/{journey_id}?since=7d")
    assert int(page.inner_text("#entered")) == stats.entered

    rows = page.locator("#steps tr[data-step]")
    shown = {
        str(rows.nth(i).get_attribute("data-step")): (
            number(rows.nth(i), "passed"),
            number(rows.nth(i), "waiting"),
        )
        for i in range(rows.count())
    }
    counted = {s.step: (s.passed, s.waiting) for s in stats.steps}
    assert counted and set(counted) <= set(shown)
    assert shown == {step: counted.get(step, (0, 0)) for step in shown}

    outcomes = page.locator("#outcomes")
    expected = {
        "active": stats.outcomes.active,
        "completed": stats.outcomes.completed,
        "converted": stats.outcomes.converted,
        "exited": sum(stats.outcomes.exited.values()),
        "failed": sum(stats.outcomes.failed.values()),
        "cancelled": stats.outcomes.cancelled,
        "erased": stats.outcomes.erased,
    }
    for outcome, count in expected.items():
        assert number(outcomes.locator(f'tr[data-outcome="{outcome}"]'), "count") == count

    page.locator("#journey-map svg g.node").first.wait_for()
    nodes = node_texts(page)
    assert any(n.startswith("⚡") and f"entered {stats.entered}" in n for n in nodes), nodes
    for step, (passed, waiting) in shown.items():
        drawn = [n for n in nodes if n == step or n.startswith(f"{step}: ")]
        assert len(drawn) == 1, f"step {step} is not on the map once: {nodes}"
        if passed or waiting:
            assert f"passed {passed} · waiting {waiting}" in drawn[0], drawn[0]

    edges = page.locator("#edges tr[data-source]")
    taken: Counter[tuple[str, str]] = Counter()
    for i in range(edges.count()):
        row = edges.nth(i)
        way = (str(row.get_attribute("data-source")), str(row.get_attribute("data-target")))
        taken[way] += number(row, "passed")
    stored: Counter[tuple[str, str]] = Counter()
    for edge in stats.edges:
        stored[(edge.source, edge.target)] += edge.passed
    assert +taken == +stored
    for (source, target), passed in (+taken).items():
        assert drawn_on_edges(page, source, target) == passed, (source, target)

    templates = page.locator("#templates tr[data-step]")
    assert templates.count() == len(stats.templates)
    for counts in stats.templates:
        row = page.locator(f'#templates tr[data-step="{counts.step}"]')
        assert (cell(row, "template"), cell(row, "channel")) == (counts.template, counts.channel)
        for name in TEMPLATE_NUMBERS:
            assert number(row, name) == getattr(counts, name), (counts.step, name)
        assert number(row, "skipped") == sum(counts.skipped.values())
    if journey_id == "newsletter-welcome":  # SendGrid's events, joined by message id
        welcome = page.locator('#templates tr[data-step="welcome"]')
        assert (number(welcome, "delivered"), number(welcome, "opened")) == (1, 1)

    chart = page.locator("#daily-chart canvas, #daily-chart svg").first
    chart.wait_for()
    box = chart.bounding_box()
    assert box is not None and box["width"] > 100 and box["height"] > 50
    save_screenshot(page, f"journey-{journey_id}", shots)
    if journey_id == README_JOURNEY:  # docs/images/journey-page.png: its map, with counts
        page.locator("#journey-map").evaluate(
            "map => window.scrollTo(0, map.getBoundingClientRect().top + window.scrollY - 60)"
        )
        save_screenshot(page, "journey-page", shots)


def search(page: Any, stack: Stack, customer_id: str) -> Any:
    """The customer page, by the search form (the id goes in the POST body)."""
    page.goto(f"{stack.dashboard}/customers")
    page.fill('form[action="/customers"] input[name="id"]', customer_id)
    with page.expect_navigation() as answered:
        page.locator('form[action="/customers"] [type="submit"]').click()
    assert customer_id not in page.url
    return answered.value


def test_a_customer_page_shows_runs_timelines_and_messages(
    logged_in: Any, stack: Stack, store: Analytics, shots: Path
) -> None:
    page = logged_in
    answer = search(page, stack, "max")
    assert answer.status == 200
    assert "max@example.com" in page.inner_text("#profile")

    runs = store.runs_of_customer(customer_hash("max"))
    assert len(runs) == len(DEMO_JOURNEYS)
    articles = page.locator("#runs article.run")
    shown = [articles.nth(i).get_attribute("data-workflow-id") for i in range(articles.count())]
    assert sorted(shown) == sorted(r.workflow_id for r in runs)
    timelines = timeline_steps(stack.temporal_address, [r.workflow_id for r in runs])
    assert any(timelines.values()), "Max's runs have done something"
    for run in runs:
        entries = page.locator(f'#runs article[data-workflow-id="{run.workflow_id}"] ol.timeline')
        steps = [s.strip() for s in entries.locator("li strong").all_inner_texts()]
        assert steps == timelines[run.workflow_id], run.journey_id
    assert "timeline unavailable" not in page.inner_text("#runs")

    ledger = Ledger(store.engine).list(customer=customer_hash("max"))
    assert ledger, "the demo sent Max emails"
    rows = page.locator("#messages tr[data-message-id]")
    assert sorted(rows.nth(i).get_attribute("data-message-id") for i in range(rows.count())) == (
        sorted(d.message_id for d in ledger)
    )
    welcome = [d for d in ledger if (d.journey_id, d.step_id) == ("newsletter-welcome", "welcome")]
    events = page.inner_text(f'#messages tr[data-message-id="{welcome[0].message_id}"]')
    assert "delivered" in events and "open" in events, events
    assert page.locator("#consent").count() == 1 and page.locator("#suppressions").count() == 1
    save_screenshot(page, "customer", shots)


def test_a_customer_s_markup_is_shown_as_text_and_never_runs(
    logged_in: Any, stack: Stack, watch: Watch
) -> None:
    page = logged_in
    assert search(page, stack, "eve").status == 200
    profile = page.inner_text("#profile")
    for markup in (XSS, ALERT):  # as typed, or as the JSON of the traits spells it
        assert markup in profile or json.dumps(markup) in profile
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.locator("#profile script, #profile img, #profile svg").count() == 0

    missing = '<img src=x onerror="window.__xss=3">'
    assert search(page, stack, missing).status == 404
    watch.forgive(404)
    assert page.evaluate("typeof window.__xss") == "undefined"
    page.wait_for_timeout(300)  # an onload/onerror would have fired by now
    assert watch.dialogs == []


def test_the_nav_leads_to_every_page(logged_in: Any, stack: Stack, store: Analytics) -> None:
    page = logged_in
    page.goto(f"{stack.dashboard}/")
    with page.expect_navigation():
        page.get_by_role("link", name="Failing runs").click()
    assert page.url == f"{stack.dashboard}/failing"
    assert page.locator("#failing tr[data-workflow-id]").count() == len(store.failing())
    with page.expect_navigation():
        page.get_by_role("link", name="Customers").click()
    assert page.locator('form[method="post"][action="/customers"] input[name="id"]').count() == 1
    with page.expect_navigation():
        page.get_by_role("link", name="Journeys").click()
    assert page.locator("#journeys tr[data-journey]").count() >= len(DEMO_JOURNEYS)
