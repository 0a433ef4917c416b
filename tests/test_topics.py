"""Subscription topics: consent per topic and channel in the store (SQLite and PostgreSQL), the
consent policy on the real send path, unsubscribe tokens with and without a topic, the RFC 8058
POST of a topic token and the preferences page on a real uvicorn server with a plain HTTP
client, and running runs told on the dev server: a newsletter run exits when the customer
leaves ``newsletter``, a recommendations run goes on."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import html
import json
import mailbox
import os
import re
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.delivery import DeliveryActivities
from activities.email.maildir import list_messages
from config.policies import PolicySettings, Topic
from ingestion.api import Api, create_app
from ingestion.consent import Consents
from ingestion.router import Router
from ingestion.service import Ingestion
from ingestion.unsubscribe import InvalidToken, make_token, verify_token
from ops.export import Exporter
from simulation.recording import RecordingActivities
from store.consent import ConsentStore
from store.database import connect
from store.entries import EntryStore
from store.erasure import ErasureStore
from store.keys import WriteKeys
from store.processed import ProcessedMessages
from store.profiles import ProfileStore
from store.topic_consent import ALL, SUBSCRIBED, UNSUBSCRIBED, TopicConsent
from tests.conftest import ROOT, Database
from tests.delivery import example_delivery
from tests.net import free_port, served
from tests.temporal import event, plan_from, running_workers, start_run
from workflows.models import CancelRequest, Profile, RunResult, RunSettings, customer_hash
from workflows.plan import Plan, SendNode
from workflows.search import CUSTOMER

SECRET = b"unsubscribe-secret-for-tests"
TOPICS = {
    "newsletter": Topic(name="Newsletter", description="Our weekly news"),
    "recommendations": Topic(name="Recommendations", description="Products picked for you"),
}


def journey(
    journey_id: str, topic: str | None, category: str = "marketing", wait: str = "1d"
) -> str:
    topic_line = f"topic: {topic}" if topic else ""
    return f"""
id: {journey_id}
name: {journey_id}
category: {category}
{topic_line}
trigger:
  event: Signed Up
steps:
  - send: email
    template: newsletter-welcome
  - wait: {wait}
  - send: email
    template: free-shipping
"""


def with_topic(plan: Plan, topic: str = "newsletter") -> Plan:
    nodes = {
        step: node.model_copy(update={"topic": topic}) if isinstance(node, SendNode) else node
        for step, node in plan.nodes.items()
    }
    return plan.model_copy(update={"nodes": nodes})


# --- the store ----------------------------------------------------------------------------------


def test_the_most_specific_choice_decides(database: Database) -> None:
    topics = TopicConsent(database.connect())
    assert topics.left("max", "newsletter", "email") is None, "topics are opt-out"
    topics.choose("max", "newsletter", ALL, UNSUBSCRIBED, "one-click")
    assert topics.left("max", "newsletter", "sms") == (
        "unsubscribed from topic 'newsletter' on all channels (one-click)"
    )
    topics.choose("max", "newsletter", "email", SUBSCRIBED, "preferences page")
    assert topics.left("max", "newsletter", "email") is None, "the channel's own choice wins"
    assert topics.left("max", "newsletter", "sms") is not None
    assert topics.left("max", "recommendations", "email") is None
    assert topics.left("moritz", "newsletter", "email") is None, "per customer"
    topics.choose("max", "newsletter", ALL, UNSUBSCRIBED, "support")  # replaces the channel's
    assert [(c.channel, c.status, c.reason) for c in topics.choices("max")] == [
        (ALL, UNSUBSCRIBED, "support")
    ]
    topics.choose("max", "newsletter", "email", UNSUBSCRIBED, "again")
    topics.choose("max", "newsletter", "email", UNSUBSCRIBED, "again")  # idempotent
    assert len(topics.choices("max")) == 2


def test_an_erased_customer_loses_their_topic_choices(database: Database) -> None:
    engine = database.connect()
    TopicConsent(engine).choose("max", "newsletter", "email", UNSUBSCRIBED, "one-click")
    TopicConsent(engine).choose("moritz", "newsletter", "email", UNSUBSCRIBED, "one-click")
    ErasureStore(engine, b"k" * 32).delete_customer(["max"], [])
    assert TopicConsent(engine).choices("max") == []
    assert len(TopicConsent(engine).choices("moritz")) == 1


async def test_the_export_lists_the_topic_choices(database: Database) -> None:
    engine = database.connect()
    TopicConsent(engine).choose("max", "newsletter", "email", UNSUBSCRIBED, "one-click")
    document = await Exporter(engine, None).export("max")
    assert document["found"], "a topic choice alone is something held"
    [choice] = document["topic_consent"]
    assert {k: v for k, v in choice.items() if k != "since"} == {
        "topic": "newsletter",
        "channel": "email",
        "status": UNSUBSCRIBED,
        "reason": "one-click",
    }
    assert (await Exporter(engine, None).export("moritz"))["topic_consent"] == []


# --- tokens -------------------------------------------------------------------------------------


def test_a_token_carries_the_topic_and_an_old_token_means_all_marketing() -> None:
    claim = verify_token(SECRET, make_token(SECRET, "max", topic="newsletter"))
    assert (claim.customer_id, claim.category, claim.topic) == ("max", "marketing", "newsletter")
    old = make_token(SECRET, "max", now=1_700_000_000)  # no topic: the payload of before
    body = old.split(".")[0]
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    assert payload == {"c": "max", "k": "marketing", "t": 1_700_000_000}
    assert verify_token(SECRET, old).topic is None


def test_a_signed_token_with_a_topic_that_is_no_string_is_refused() -> None:
    raw = json.dumps({"c": "max", "k": "marketing", "t": 1, "p": 7}).encode()
    body = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    mac = hmac.new(SECRET, b"touchpoint-unsubscribe-v1\x00" + body.encode(), hashlib.sha256)
    signature = base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()
    with pytest.raises(InvalidToken, match="bad payload"):
        verify_token(SECRET, f"{body}.{signature}")


# --- the policy on the real send path --------------------------------------------------------


def delivery(tmp_path: Path) -> DeliveryActivities:
    """The example project's delivery without its frequency caps: these tests send a customer
    more marketing email in a minute than the project's daily cap lets through."""
    return example_delivery(tmp_path, policies=PolicySettings(), unsubscribe_secret=SECRET)


async def test_a_left_topic_is_skipped_on_its_channel_and_nothing_else_is(
    time_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    activities = delivery(tmp_path)
    TopicConsent(activities.ledger.engine).choose(
        "max", "newsletter", "email", UNSUBSCRIBED, "one-click"
    )
    max_ = Profile(id="max", email="max@example.com", locale="en")
    plans = [
        plan_from(journey("news", "newsletter", wait="1h")),
        plan_from(journey("picks", "recommendations", wait="1h")),
        # validate refuses a topic on a transactional journey; were one to reach a send anyway
        # (a plan edited by hand), the policy still never holds a transactional message
        with_topic(plan_from(journey("orders", None, category="transactional", wait="1h"))),
    ]
    async with running_workers(time_env.client, activities.all()) as prefix:
        results = []
        for plan in plans:
            handle = await start_run(
                time_env.client, plan, prefix, event("Signed Up", customer="max"),
                profile=max_, workflow_id=f"{plan.journey_id}-{uuid.uuid4()}",
            )  # fmt: skip
            results.append(RunResult.model_validate(await handle.result()))
    news, picks, orders = ([e.kind for e in r.timeline if e.channel] for r in results)
    assert news == ["skipped", "skipped"]
    assert picks == ["sent", "sent"] and orders == ["sent", "sent"], "transactional: never held"
    skipped = [r for r in activities.ledger.list() if r.status == "skipped"]
    assert {r.reason for r in skipped} == {
        "unsubscribed from topic 'newsletter' on email (one-click)"
    }
    assert len(list_messages(tmp_path / "outbox")) == 4
    topics = set()
    for message in mailbox.Maildir(tmp_path / "outbox", create=False):
        link = re.search(r"<https?://[^>]*/([^/>]+)>", message["List-Unsubscribe"] or "")
        if link is not None:  # marketing email: its own topic in its one-click link
            topics.add(verify_token(SECRET, link.group(1)).topic)
    assert topics == {"recommendations"}


# --- the link: RFC 8058 and the page ---------------------------------------------------------


class Shop:
    """The API on a real uvicorn server, with the project's topics and a profile or two."""

    def __init__(
        self, tmp_path: Path, topics: dict[str, Topic] = TOPICS, client: Client | None = None
    ) -> None:
        self.engine = connect(f"sqlite:///{tmp_path / 'touchpoint.db'}")
        self.consent = ConsentStore(self.engine)
        self.topics = TopicConsent(self.engine)

        async def nowhere(*_: object) -> None:
            raise AssertionError("no event is routed here")

        async def unsubscribe(customer_id: str, reason: str) -> None:
            self.consent.withdraw(customer_id, reason)

        self.app = create_app(
            Api(
                Ingestion(ProfileStore(self.engine), ProcessedMessages(self.engine), nowhere),
                WriteKeys(self.engine),
                unsubscribe=unsubscribe,
                unsubscribe_secret=SECRET,
                consents=Consents(self.engine, topics, client),
            )
        )

    def link(self, customer: str, topic: str | None = None) -> str:
        return f"/unsubscribe/{make_token(SECRET, customer, topic=topic)}"

    def statuses(self, customer: str) -> dict[tuple[str, str], str]:
        return {(c.topic, c.channel): c.status for c in self.topics.choices(customer)}


async def test_the_one_click_post_of_a_topic_link_leaves_that_topic_on_email(
    tmp_path: Path,
) -> None:
    shop = Shop(tmp_path)
    async with served(shop.app) as base, httpx.AsyncClient(base_url=base) as http:
        link = shop.link("max", "newsletter")
        clicked = await http.post(link, data={"List-Unsubscribe": "One-Click"})
        old = await http.post(shop.link("moritz"), data={"List-Unsubscribe": "One-Click"})
    assert clicked.status_code == 200, clicked.text
    assert "You will get no more “Newsletter” email from us." in clicked.text
    assert shop.statuses("max") == {("newsletter", "email"): UNSUBSCRIBED}
    assert shop.consent.blocked("max") is None, "only the topic, not all marketing"
    assert old.status_code == 200 and shop.consent.blocked("moritz") == "unsubscribed (one-click)"
    assert shop.statuses("moritz") == {}


async def test_a_click_while_temporal_is_down_is_recorded_and_answered(tmp_path: Path) -> None:
    """Telling running runs needs Temporal; the choice does not: the send path asks the record."""
    nobody = await Client.connect(f"127.0.0.1:{free_port()}", lazy=True)
    shop = Shop(tmp_path, client=nobody)
    async with served(shop.app) as base, httpx.AsyncClient(base_url=base) as http:
        clicked = await http.post(
            shop.link("max", "newsletter"), data={"List-Unsubscribe": "One-Click"}
        )
    assert clicked.status_code == 200, clicked.text
    assert shop.statuses("max") == {("newsletter", "email"): UNSUBSCRIBED}


async def test_the_page_shows_the_choices_and_a_get_changes_nothing(tmp_path: Path) -> None:
    shop = Shop(tmp_path)
    shop.topics.choose("max", "recommendations", "sms", UNSUBSCRIBED, "support")
    async with served(shop.app) as base, httpx.AsyncClient(base_url=base) as http:
        link = shop.link("max", "newsletter")
        page = await http.get(link)
        await http.get(link)
        head = await http.head(link)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert head.status_code in (200, 405)
    assert "Unsubscribe from “Newsletter”" in page.text
    assert '<input type="hidden" name="List-Unsubscribe" value="One-Click">' in page.text
    assert "Our weekly news" in page.text and "Products picked for you" in page.text
    assert 'name="topic:recommendations:sms" value="out" checked' in page.text
    assert 'name="topic:newsletter:email" value="in" checked' in page.text
    assert "<script" not in page.text and "http" not in page.text.replace("http-equiv", "")
    assert shop.statuses("max") == {("recommendations", "sms"): UNSUBSCRIBED}, "unchanged"
    assert shop.consent.blocked("max") is None


async def test_hostile_topic_text_and_customer_ids_are_escaped(tmp_path: Path) -> None:
    hostile = {
        "newsletter": Topic(
            name="<b>News</b>", description='<script>alert(1)</script>"><img src=x onerror=a()>'
        )
    }
    shop = Shop(tmp_path, hostile)
    customer = '"><script>alert(2)</script>'
    async with served(shop.app) as base, httpx.AsyncClient(base_url=base) as http:
        page = await http.get(shop.link(customer, "newsletter"))
        saved = await http.post(
            shop.link(customer, "newsletter") + "/preferences",
            data={"preferences": "1", "topic:newsletter:email": "out"},
        )
    for answer in (page, saved):
        assert answer.status_code == 200, answer.text
        assert (
            "<script" not in answer.text and "<img" not in answer.text and "<b>" not in answer.text
        )
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "&lt;b&gt;News&lt;/b&gt;: unsubscribed (Email)" in saved.text
    assert shop.statuses(customer) == {("newsletter", "email"): UNSUBSCRIBED}


async def test_the_form_changes_the_choices_and_confirms(tmp_path: Path) -> None:
    shop = Shop(tmp_path)
    async with served(shop.app) as base, httpx.AsyncClient(base_url=base) as http:
        link = shop.link("max", "newsletter")
        saved = await http.post(
            f"{link}/preferences",
            data={
                "preferences": "1",
                "topic:newsletter:email": "out",
                "topic:newsletter:sms": "in",  # as it was: not recorded
                "topic:recommendations:sms": "out",
            },
        )
        page = await http.get(link)
        again = await http.post(
            f"{link}/preferences", data={"preferences": "1", "topic:newsletter:email": "in"}
        )
    assert saved.status_code == 200 and "Your choices are saved" in saved.text
    assert "Newsletter: unsubscribed (Email)" in saved.text
    assert "Recommendations: unsubscribed (Text messages (SMS))" in saved.text
    assert 'name="topic:newsletter:email" value="out" checked' in page.text
    assert again.status_code == 200
    assert shop.statuses("max") == {
        ("newsletter", "email"): SUBSCRIBED,
        ("recommendations", "sms"): UNSUBSCRIBED,
    }


async def test_leave_all_withdraws_all_marketing_and_joining_a_topic_lifts_it_for_that_one(
    tmp_path: Path,
) -> None:
    shop = Shop(tmp_path)
    async with served(shop.app) as base, httpx.AsyncClient(base_url=base) as http:
        preferences = shop.link("max") + "/preferences"
        left = await http.post(preferences, data={"preferences": "1", "leave_all": "yes"})
        assert left.status_code == 200 and "no more marketing" in left.text
        assert shop.consent.blocked("max") == "unsubscribed (preferences page)"
        assert shop.statuses("max") == {
            ("newsletter", ALL): UNSUBSCRIBED,
            ("recommendations", ALL): UNSUBSCRIBED,
        }
        joined = await http.post(
            preferences, data={"preferences": "1", "topic:newsletter:email": "in"}
        )
    assert joined.status_code == 200 and "the other topics stay left" in joined.text
    assert shop.consent.blocked("max") is None, "the customer's own withdrawal is lifted"
    assert shop.topics.left("max", "newsletter", "email") is None
    assert shop.topics.left("max", "recommendations", "email") is not None


async def test_a_suppression_never_lifts_from_the_page(tmp_path: Path) -> None:
    shop = Shop(tmp_path)
    shop.consent.withdraw("max", "spamreport", status="suppressed")
    async with served(shop.app) as base, httpx.AsyncClient(base_url=base) as http:
        joined = await http.post(
            shop.link("max") + "/preferences",
            data={"preferences": "1", "topic:newsletter:email": "in"},
        )
    assert joined.status_code == 200 and "never lifted here" in joined.text
    assert shop.consent.blocked("max") == "suppressed (spamreport)"


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        pytest.param({"List-Unsubscribe": "One-Click"}, 400, "List-Unsubscribe", id="one-click"),
        pytest.param({"topic:newsletter:email": "out"}, 400, "preferences: missing", id="bare"),
        pytest.param(
            {"preferences": "1", "topic:surveys:email": "out"}, 400, "topic:surveys:email",
            id="unknown-topic",
        ),
        pytest.param(
            {"preferences": "1", "topic:newsletter:email": "maybe"}, 400, "expected 'in'",
            id="bad-value",
        ),
    ],
)  # fmt: skip
async def test_anything_but_the_form_is_refused_and_changes_nothing(
    tmp_path: Path, data: dict[str, str], status: int, message: str
) -> None:
    shop = Shop(tmp_path)
    async with served(shop.app) as base, httpx.AsyncClient(base_url=base) as http:
        refused = await http.post(shop.link("max", "newsletter") + "/preferences", data=data)
    assert refused.status_code == status and message in html.unescape(refused.text)
    assert refused.headers["content-type"].startswith("text/html")
    assert shop.statuses("max") == {} and shop.consent.blocked("max") is None


async def test_a_forged_or_mangled_link_is_a_400_page(tmp_path: Path) -> None:
    shop = Shop(tmp_path)
    forged = make_token(b"another-secret-of-some-length", "max", topic="newsletter")
    async with served(shop.app) as base, httpx.AsyncClient(base_url=base) as http:
        answers = [
            await http.get(f"/unsubscribe/{forged}"),
            await http.get("/unsubscribe/not-a-token"),
            await http.get("/unsubscribe/" + "a" * 5000 + ".b"),
            await http.post(
                f"/unsubscribe/{forged}/preferences",
                data={"preferences": "1", "leave_all": "yes"},
            ),
        ]
    for answer in answers:
        assert answer.status_code == 400, answer.text
        assert "This link is not valid" in answer.text
    assert shop.statuses("max") == {} and shop.consent.blocked("max") is None


# --- running runs on the dev server ------------------------------------------------------------


async def test_leaving_newsletter_ends_the_newsletter_run_and_not_the_recommendations_run(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    activities = delivery(tmp_path)
    engine = activities.ledger.engine
    plans = {
        p.journey_id: p
        for p in (
            plan_from(journey("weekly-news", "newsletter")),
            plan_from(journey("picks", "recommendations")),
        )
    }
    customer = f"max-{uuid.uuid4().hex[:6]}"
    profile = ProfileStore(engine).upsert(customer, {"email": "max@example.com"})
    consents = Consents(engine, TOPICS, dev_env.client)
    async with running_workers(dev_env.client, activities.all(), index_runs=True) as prefix:
        settings = RunSettings(queue_prefix=prefix, time_scale=1 / 8640)  # a day lasts 10 s
        router = Router(dev_env.client, plans, EntryStore(engine), settings)
        started = {r.journey_id: r.workflow_id for r in await router.route(
            event("Signed Up", customer=customer), profile
        )}  # fmt: skip
        query = f"{CUSTOMER.name} = '{customer_hash(customer)}' AND ExecutionStatus = 'Running'"
        while len([run async for run in dev_env.client.list_workflows(query)]) < 2:
            await asyncio.sleep(0.1)  # visibility catches up
        applied = await consents.apply(
            customer, [("newsletter", ALL, UNSUBSCRIBED)], "preferences page"
        )
        results = {
            journey_id: RunResult.model_validate(
                await asyncio.wait_for(dev_env.client.get_workflow_handle(run).result(), 60)
            )
            for journey_id, run in started.items()
        }
    assert applied.runs_told == 2
    news, picks = results["weekly-news"], results["picks"]
    assert (news.outcome.kind, news.outcome.reason) == ("exited", "unsubscribed from newsletter")
    assert picks.outcome.kind == "completed"
    assert [e.kind for e in picks.timeline if e.channel] == ["sent", "sent"]


# --- touchpoint consent, as a subprocess ---------------------------------------------------------

PROJECT_YAML = """
topics:
  newsletter: {name: Newsletter, description: Our weekly news}
  recommendations: {name: Recommendations}
"""


def consent_cli(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "consent", *args, "--project", str(project)],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip


async def test_support_staff_show_and_set_consent_and_running_runs_are_told(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    project = tmp_path / "shop"
    (project / "journeys").mkdir(parents=True)
    (project / "touchpoint.yaml").write_text(PROJECT_YAML)
    database_url = f"sqlite:///{tmp_path / 'touchpoint.db'}"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TOUCHPOINT_DATABASE_URL": database_url,
        "TOUCHPOINT_TEMPORAL_ADDRESS": dev_env.client.service_client.config.target_host,
        "TOUCHPOINT_TEMPORAL_NAMESPACE": dev_env.client.namespace,
    }
    activities = delivery(tmp_path)
    engine = activities.ledger.engine
    customer = f"max-{uuid.uuid4().hex[:6]}"

    unknown = await asyncio.to_thread(consent_cli, project, env, customer)
    assert (unknown.returncode, unknown.stderr.strip()) == (
        1,
        f"✗ no customer {customer!r} in the store: check the id "
        f"(`touchpoint export {customer}` shows what is held)",
    )
    profile = ProfileStore(engine).upsert(customer, {"email": "max@example.com"})
    shown = await asyncio.to_thread(consent_cli, project, env, customer)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == [
        f"customer {customer} <max@example.com>",
        "all marketing email: subscribed",
        "SMS: subscribed",
        "address max@example.com: not suppressed",
        "TOPIC            EMAIL         SMS",
        "newsletter       subscribed    subscribed",
        "recommendations  subscribed    subscribed",
    ]
    for args, message in [
        (("--leave", "surveys"), "unknown topic 'surveys'; the project's topics: newsletter, "),
        (("--leave", "newsletter", "--channel", "fax"), "unknown channel 'fax'"),
        (("--leave", "newsletter", "--join", "newsletter"), "both joined and left"),
    ]:
        refused = await asyncio.to_thread(consent_cli, project, env, customer, *args)
        assert refused.returncode == 1 and message in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr

    usage = await asyncio.to_thread(consent_cli, project, env, customer, "--channel", "sms")
    said = " ".join(usage.stderr.replace("│", " ").split())  # Rich draws usage errors in a box
    assert usage.returncode == 2 and "goes with --leave, --join or --leave-all" in said

    plans = {"weekly-news": plan_from(journey("weekly-news", "newsletter"))}
    async with running_workers(dev_env.client, activities.all(), index_runs=True) as prefix:
        settings = RunSettings(queue_prefix=prefix, time_scale=1 / 8640)  # a day lasts 10 s
        router = Router(dev_env.client, plans, EntryStore(engine), settings)
        [started] = await router.route(event("Signed Up", customer=customer), profile)
        query = f"{CUSTOMER.name} = '{customer_hash(customer)}' AND ExecutionStatus = 'Running'"
        while not [run async for run in dev_env.client.list_workflows(query)]:
            await asyncio.sleep(0.1)  # visibility catches up
        left = await asyncio.to_thread(
            consent_cli, project, env, customer, "--leave", "newsletter", "--channel", "email",
            "--reason", "ticket 42", "--by", "sam",
        )  # fmt: skip
        assert left.returncode == 0, left.stderr
        handle = dev_env.client.get_workflow_handle(started.workflow_id or "")
        result = RunResult.model_validate(await asyncio.wait_for(handle.result(), 60))
    assert "left newsletter on email" in left.stderr and "1 running run(s) told" in left.stderr
    assert "newsletter       unsubscribed  subscribed" in left.stdout
    assert (result.outcome.kind, result.outcome.reason) == (
        "exited",
        "unsubscribed from newsletter",
    ), "the journey sends its topic by email only"
    [choice] = TopicConsent(engine).choices(customer)
    assert (choice.channel, choice.reason) == ("email", "ticket 42 (by sam)")

    joined = await asyncio.to_thread(consent_cli, project, env, customer, "--join", "newsletter")
    assert joined.returncode == 0, joined.stderr
    assert "newsletter       subscribed    subscribed" in joined.stdout


# --- the workflow's channel rule, on the time-skipping server ---------------------------------

TWO_CHANNELS = """
id: news-everywhere
name: News by email and SMS
category: marketing
topic: newsletter
trigger:
  event: Signed Up
steps:
  - send: email
    template: newsletter-welcome
  - wait: 1d
  - send: sms
    template: newsletter-welcome
  - wait: 1d
  - send: email
    template: free-shipping
    topic: surveys
"""


@pytest.mark.parametrize(
    ("signals", "outcome"),
    [
        pytest.param([("newsletter", "email")], ("completed", None), id="one-of-two-channels"),
        pytest.param([("surveys", None)], ("completed", None), id="another-topic"),
        pytest.param(
            [("newsletter", None)], ("exited", "unsubscribed from newsletter"), id="all-channels"
        ),
        pytest.param([(None, None)], ("exited", "unsubscribed"), id="all-marketing"),
    ],
)
async def test_a_run_exits_only_when_its_topic_is_left_on_every_channel_it_sends_it_on(
    time_env: WorkflowEnvironment,
    signals: list[tuple[str | None, str | None]],
    outcome: tuple[str, str | None],
) -> None:
    recorder = RecordingActivities()
    plan = plan_from(TWO_CHANNELS)
    async with running_workers(time_env.client, recorder.all()) as prefix:
        handle = await start_run(
            time_env.client, plan, prefix, event("Signed Up", customer="max"),
            profile=Profile(id="max", email="max@example.com", phone="+4915112345678"),
            workflow_id=f"news-{uuid.uuid4()}",
        )  # fmt: skip
        await time_env.sleep(timedelta(hours=1))
        for topic, channel in signals:
            request = CancelRequest(reason="test", topic=topic, channel=channel)
            await handle.signal("unsubscribed", request)
        result = RunResult.model_validate(await handle.result())
    assert (result.outcome.kind, result.outcome.reason) == outcome
    sends = 3 if outcome[0] == "completed" else 1  # the run's own sends: the policy is not here
    assert len(recorder.sent) == sends
