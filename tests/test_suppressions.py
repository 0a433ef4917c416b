"""Address suppressions: the store and its audit on a real SQLite file, SendGrid's feedback
turned into suppressions, and the real delivery activities skipping every email to a
suppressed address (transactional included)."""

from __future__ import annotations

import json
import mailbox
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from temporalio.testing import WorkflowEnvironment

from activities.delivery import DeliveryActivities
from activities.email.maildir import MaildirProvider
from activities.http import make_client
from activities.rendering import Renderer
from activities.sendgrid_events import parse_events
from runtime.suppressions import record_sendgrid_feedback
from store.database import connect, suppression_audit
from store.ingestion import ConsentStore
from store.ledger import Ledger
from store.suppressions import Suppressions, normalise
from tests.conftest import ROOT
from tests.temporal import event, plan_from, running_workers, start_run
from workflows.language import validate
from workflows.models import Profile, RunResult


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return connect(f"sqlite:///{tmp_path / 'touchpoint.db'}")


@pytest.fixture
def store(engine: Engine) -> Suppressions:
    return Suppressions(engine)


# --- the store ------------------------------------------------------------------------------


def test_an_address_is_stored_normalised_and_added_once(store: Suppressions) -> None:
    assert store.add(
        " Max@Example.COM ", "bounce", detail="550 5.1.1", source="sendgrid", actor="sendgrid"
    )
    again = store.add(
        "max@example.com", "bounce", detail="550", source="sendgrid", actor="sendgrid"
    )
    assert again is False, "idempotent: a repeated bounce changes nothing"
    found = store.get("MAX@example.com")
    assert found is not None
    assert (found.address, found.reason, found.detail, found.source) == (
        "max@example.com",
        "bounce",
        "550 5.1.1",
        "sendgrid",
    )
    assert found.since.tzinfo is UTC and datetime.now(UTC) - found.since < timedelta(minutes=1)
    [added] = store.audit("max@example.com")
    assert (added.action, added.actor, added.why) == ("added", "sendgrid", "bounce: 550 5.1.1")


def test_removal_is_audited_and_an_unknown_address_is_false(store: Suppressions) -> None:
    store.add("ana@example.com", "spamreport", source="sendgrid", actor="sendgrid")
    assert store.remove("nobody@example.com", actor="anna", why="asked") is False
    assert store.audit("nobody@example.com") == [], "nothing recorded for a no-op"
    assert store.remove("ANA@example.com", actor="anna", why="customer asked by phone") is True
    assert store.get("ana@example.com") is None
    assert store.remove("ana@example.com", actor="anna", why="again") is False
    store.add("ana@example.com", "manual", detail="wrote in", source="cli", actor="bob")
    trail = [(e.action, e.actor, e.why) for e in store.audit("ana@example.com")]
    assert trail == [
        ("added", "sendgrid", "spamreport"),
        ("removed", "anna", "customer asked by phone"),
        ("added", "bob", "manual: wrote in"),
    ]
    times = [e.at for e in store.audit("ana@example.com")]
    assert times == sorted(times) and all(t.tzinfo is UTC for t in times)


def test_the_list_is_newest_first_and_limited(store: Suppressions) -> None:
    for n in range(5):
        store.add(f"c{n}@example.com", "bounce", source="sendgrid", actor="sendgrid")
    assert [s.address for s in store.list(3)] == [f"c{n}@example.com" for n in (4, 3, 2)]
    assert store.count() == 5


def test_the_reason_a_send_is_blocked_names_no_address(store: Suppressions) -> None:
    assert store.blocked("max@example.com") is None
    store.add("max@example.com", "bounce", source="sendgrid", actor="sendgrid")
    assert store.blocked("Max@Example.com") == "the address is suppressed (bounce)"
    assert store.blocked("not an address") is None


@pytest.mark.parametrize("address", ["", "   ", "max", "@example.com", "max@", "a b@example.com"])
def test_what_is_not_an_address_is_refused(store: Suppressions, address: str) -> None:
    with pytest.raises(ValueError, match="is not an email address"):
        store.add(address, "manual", source="cli", actor="anna")


def test_an_overlong_address_is_refused() -> None:
    with pytest.raises(ValueError, match="at most 320 characters"):
        normalise("a" * 320 + "@example.com")


def test_the_audit_outlives_the_suppression_in_its_own_table(
    store: Suppressions, engine: Engine
) -> None:
    store.add("max@example.com", "bounce", source="sendgrid", actor="sendgrid")
    store.remove("max@example.com", actor="anna", why="mailbox fixed")
    with engine.connect() as db:
        rows = db.execute(select(suppression_audit.c.action, suppression_audit.c.actor)).all()
    assert [tuple(row) for row in rows] == [("added", "sendgrid"), ("removed", "anna")]


# --- SendGrid's feedback --------------------------------------------------------------------


def sendgrid_event(event: str, n: int, **fields: object) -> dict[str, object]:
    return {
        "email": "Max@Example.com",
        "timestamp": 1700000000 + n,
        "event": event,
        "sg_event_id": f"evt-{n}",
        **fields,
    }


def test_hard_bounces_and_spam_reports_suppress_the_address_and_nothing_else_does(
    store: Suppressions,
) -> None:
    body = json.dumps(
        [
            sendgrid_event("bounce", 1, type="blocked", reason="421 try later"),
            sendgrid_event("dropped", 2, reason="Bounced Address"),
            sendgrid_event("unsubscribe", 3),
            sendgrid_event("group_unsubscribe", 4, asm_group_id=7),
            sendgrid_event("open", 5),
            sendgrid_event("bounce", 6, type="bounce", reason="550 5.1.1 unknown user"),
            sendgrid_event("bounce", 7, type="bounce", reason="550 again"),
            {**sendgrid_event("spamreport", 8), "email": "ana@example.com"},
        ]
    ).encode()
    outcomes = [record_sendgrid_feedback(store, e) for e in parse_events(body)]
    assert outcomes == [False, False, False, False, False, True, False, True]
    assert [(s.address, s.reason, s.detail, s.source) for s in store.list(10)] == [
        ("ana@example.com", "spamreport", None, "sendgrid"),
        ("max@example.com", "bounce", "550 5.1.1 unknown user", "sendgrid"),
    ]
    [added] = store.audit("max@example.com")
    assert (added.actor, added.why) == ("sendgrid", "bounce: 550 5.1.1 unknown user")


# --- delivery -------------------------------------------------------------------------------

TRANSACTIONAL = """
id: order-confirmation
name: Order confirmation
category: transactional
trigger:
  event: Order Completed
steps:
  - id: confirm
    send: email
    template: laptop-setup
"""
MARKETING = """
id: welcome
name: Welcome
category: marketing
trigger:
  event: Signed Up
steps:
  - id: welcome
    send: email
    template: newsletter-welcome
"""


def outbox(path: Path) -> list[mailbox.MaildirMessage]:
    return list(mailbox.Maildir(path, create=False)) if (path / "new").exists() else []


async def test_every_email_to_a_suppressed_address_is_skipped_until_it_is_removed(
    time_env: WorkflowEnvironment, tmp_path: Path, engine: Engine
) -> None:
    """The real delivery activities and Maildir: a hard bounce (as SendGrid posts it) stops the
    order confirmation and the marketing email alike; once support lifts it, mail goes out."""
    store, ledger = Suppressions(engine), Ledger(engine)
    activities = DeliveryActivities(
        config=validate((), root=ROOT).config,
        ledger=ledger,
        renderer=Renderer(ROOT / "templates", "en"),
        email=MaildirProvider(tmp_path / "outbox"),
        http=make_client(),
        unsubscribe_secret=b"unsubscribe-secret",
        environ={},
        consent=ConsentStore(engine),
        suppressions=store,
    )
    [bounce] = parse_events(
        json.dumps([sendgrid_event("bounce", 1, type="bounce", reason="550 5.1.1")]).encode()
    )
    assert record_sendgrid_feedback(store, bounce)
    profile = Profile(id="max-1", email="max@example.com")

    async def run(prefix: str, plan_text: str, trigger: str, key: str) -> RunResult:
        handle = await start_run(
            time_env.client,
            plan_from(plan_text),
            prefix,
            event(trigger, customer="max-1", order_id=key, products=[]),
            profile=profile,
            key=key,
        )
        return RunResult.model_validate(await handle.result())

    async with running_workers(time_env.client, activities.all()) as prefix:
        order = await run(prefix, TRANSACTIONAL, "Order Completed", "O-1")
        welcome = await run(prefix, MARKETING, "Signed Up", "S-1")
        assert outbox(tmp_path / "outbox") == []
        assert store.remove("max@example.com", actor="anna", why="mailbox fixed")
        after = await run(prefix, TRANSACTIONAL, "Order Completed", "O-2")

    assert [(e.kind, e.step) for e in order.timeline if e.channel == "email"] == [
        ("skipped", "confirm")
    ]
    assert order.outcome.kind == "completed", "a skipped send does not fail the run"
    assert [e.kind for e in welcome.timeline if e.channel == "email"] == ["skipped"]
    assert "max@example.com" not in str(order.timeline), "no address in the run's history"
    assert [e.kind for e in after.timeline if e.channel == "email"] == ["sent"]
    assert len(outbox(tmp_path / "outbox")) == 1
    rows = sorted((r.journey_id, r.status, r.reason) for r in ledger.list())
    assert rows == [
        ("order-confirmation", "sent", None),
        ("order-confirmation", "skipped", "the address is suppressed (bounce)"),
        ("welcome", "skipped", "the address is suppressed (bounce)"),
    ]


def test_the_worker_checks_suppressions(tmp_path: Path) -> None:
    """What ``touchpoint worker`` builds: the delivery activities with the store's suppressions."""
    ledger = Ledger(connect(f"sqlite:///{tmp_path / 'touchpoint.db'}"))
    built = DeliveryActivities.for_project(validate((), root=ROOT).config, ROOT, ledger, {})
    assert isinstance(built.suppressions, Suppressions)
    assert built.suppressions.engine is ledger.engine
