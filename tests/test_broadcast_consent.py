"""Consent in a broadcast: an occurrence starts a run for everyone in the audience, and each
run's send asks the policy chain as any run does — a customer who left the journey's topic
(on email or on every channel), who withdrew marketing email, or whose address is suppressed
gets nothing, with the reason in the ledger. The real BroadcastWorkflow, page activity,
JourneyWorkflow and delivery activity (to a maildir) on Temporal's time-skipping server, over
a real SQLite store."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine
from temporalio.testing import WorkflowEnvironment

from activities.audience import AudienceActivities
from activities.delivery import DeliveryActivities
from activities.email.maildir import MaildirProvider, list_messages
from activities.http import make_client
from activities.rendering import Renderer
from language.validator import validate
from store.consent import ConsentStore
from store.database import connect
from store.ledger import Ledger
from store.profiles import ProfileStore
from store.suppressions import Suppressions
from store.topic_consent import ALL, UNSUBSCRIBED, TopicConsent
from tests.conftest import ROOT
from tests.temporal import deployed_from, finish, running_workers
from tests.test_broadcast import broadcast
from workflows.broadcast_models import (
    occurrence_tag,
)
from workflows.models import RunSettings, customer_hash, workflow_id
from workflows.plan import Plan

MONDAY = datetime(2027, 3, 1, 8, 0, tzinfo=UTC)  # 09:00 in Berlin

NEWSLETTER = """
id: news-{tag}
name: Monday laptop newsletter
category: marketing
topic: newsletter
trigger:
  schedule:
    every: monday 09:00
    timezone: Europe/Berlin
    rate: 100000/s
  audience: "'laptops' in profile.traits.interests | default([])"
entry:
  reentry: every_time
steps:
  - id: newsletter
    send: email
    template: monday-newsletter
"""

CUSTOMERS = {
    "anna": "subscribed",
    "bert": "left the newsletter topic on email",
    "cleo": "left the newsletter topic on every channel",
    "dirk": "withdrew marketing email",
    "emma": "address suppressed (a bounce)",
}


def shop(tmp_path: Path) -> Engine:
    engine = connect(f"sqlite:///{tmp_path / 'touchpoint.db'}")
    profiles = ProfileStore(engine)
    for name in CUSTOMERS:
        profiles.upsert(
            name,
            {"email": f"{name}@example.com", "first_name": name.title(), "interests": ["laptops"]},
            locale="en",
            timezone="Europe/Berlin",
        )
    topics = TopicConsent(engine)
    topics.choose("bert", "newsletter", "email", UNSUBSCRIBED, "preferences page")
    topics.choose("cleo", "newsletter", ALL, UNSUBSCRIBED, "preferences page")
    ConsentStore(engine).withdraw("dirk", "one-click unsubscribe")
    Suppressions(engine).add("emma@example.com", "bounce", source="test", actor="test")
    return engine


def deployed(engine: Engine) -> Plan:
    return deployed_from(engine, NEWSLETTER.replace("{tag}", uuid.uuid4().hex[:8]))


async def test_a_broadcast_skips_whoever_withdrew_consent_with_the_reason_in_the_ledger(
    time_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    engine = shop(tmp_path)
    plan = deployed(engine)
    config = validate((), root=ROOT).config
    ledger = Ledger(engine)
    delivery = DeliveryActivities(
        config=config,
        ledger=ledger,
        renderer=Renderer.for_project(ROOT, config),
        email=MaildirProvider(tmp_path / "outbox"),
        http=make_client(),
        unsubscribe_secret=b"test-secret",
        environ={},
        consent=ConsentStore(engine),  # as DeliveryActivities.for_project gives the worker's
        suppressions=Suppressions(engine),
    )
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    audience = AudienceActivities(
        time_env.client, engine, RunSettings(queue_prefix=prefix, index_runs=False)
    )
    async with running_workers(time_env.client, [*delivery.all(), *audience.all()], prefix):
        result, _ = await broadcast(time_env, prefix, plan, MONDAY)
        for name in CUSTOMERS:
            run = workflow_id(plan.journey_id, name, None, occurrence_tag(MONDAY))
            assert (await finish(time_env, run)).outcome.kind == "completed"
    await delivery.http.aclose()

    assert (result.counts.matched, result.counts.started) == (5, 5), "everyone enters"
    ledger_rows = {
        d.customer: (d.status, d.reason) for d in ledger.list(journey_id=plan.journey_id)
    }
    assert {name: ledger_rows[customer_hash(name)] for name in CUSTOMERS} == {
        "anna": ("sent", None),
        "bert": ("skipped", "unsubscribed from topic 'newsletter' on email (preferences page)"),
        "cleo": (
            "skipped",
            "unsubscribed from topic 'newsletter' on all channels (preferences page)",
        ),
        "dirk": ("skipped", "unsubscribed (one-click unsubscribe)"),
        "emma": ("skipped", "the address is suppressed (bounce)"),
    }
    [email] = list_messages(tmp_path / "outbox")
    assert "anna@example.com" in str(email)
