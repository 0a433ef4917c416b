"""Frequency caps on SQLite and PostgreSQL: counted from the ledger across journeys, taken in
the same transaction as they are counted (concurrent sends to one customer: exactly ``limit``
go), a window that slides on the run's clock, per channel or together, by category; retries
are not counted twice; and the defer limit. Through the real send path as well."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

from activities.delivery import DeliveryActivities
from activities.email.maildir import MaildirProvider, list_messages
from activities.http import make_client
from activities.policies import Decision, Message, PolicyChain
from activities.policy_rules import (
    DeferLimit,
    FrequencyCapPolicy,
    ProjectPolicies,
    QuietHoursPolicy,
)
from activities.rendering import Renderer
from config.policies import PolicySettings
from language.validator import validate
from store.database import connect
from store.ledger import Ledger
from tests.conftest import ROOT, Database, at_once, processes_at_once
from workflows.channels import CHANNELS
from workflows.models import Profile, SendRequest, customer_hash
from workflows.policy_models import CapRule, MessageCategory, QuietRule, SendPolicies

T0 = datetime(2027, 1, 13, 9, 0, tzinfo=UTC)
DAILY = CapRule(name="marketing-email-daily", limit=2, window_seconds=86_400, channels=("email",))


def request(
    message_id: str,
    channel: str = "email",
    category: MessageCategory = "marketing",
    customer: str = "max",
    journey: str = "welcome",
    at: datetime = T0,
    policies: SendPolicies | None = None,
) -> SendRequest:
    return SendRequest(
        message_id=message_id,
        journey_id=journey,
        journey_version="v",
        category=category,
        step_id="s",
        channel=channel,
        template="newsletter-welcome",
        customer_id=customer,
        profile=Profile(id=customer, email=f"{customer}@example.com", phone="+4915112345678"),
        context={"now": at.isoformat()},
        policies=policies,
    )


def ask(policy: FrequencyCapPolicy, message_id: str, at: datetime = T0, **kw: object) -> Decision:
    """What the delivery activity does: claim the message, ask the cap, record the answer."""
    sent = request(message_id, at=at, **kw)  # type: ignore[arg-type]
    ledger = policy.ledger
    ledger.claim(
        sent.message_id, sent.journey_id, "s", sent.channel, customer_hash(sent.customer_id)
    )
    decision = policy.decide(Message(sent, CHANNELS[sent.channel], "x", at)) or Decision("send")
    status = {"send": "sent", "skip": "skipped", "defer": "deferred"}[decision.action]
    ledger.mark(message_id, status, reason=decision.reason)  # type: ignore[arg-type]
    return decision


def caps(database: Database, *rules: CapRule) -> FrequencyCapPolicy:
    return FrequencyCapPolicy(ProjectPolicies(caps=rules), Ledger(database.connect()))


def test_two_a_day_the_third_is_skipped_with_its_reason(database: Database) -> None:
    policy = caps(database, DAILY)
    assert ask(policy, "m1").action == "send"
    assert ask(policy, "m2", T0 + timedelta(hours=1), journey="cart").action == "send"
    third = ask(policy, "m3", T0 + timedelta(hours=2), journey="survey")
    assert (third.action, third.reason) == (
        "skip",
        'frequency cap "marketing-email-daily" (2 per 24h)',
    )
    assert ask(policy, "m4", T0 + timedelta(hours=2), customer="eva").action == "send"
    row = policy.ledger.get("m1")
    assert row is not None and row.counted_at == T0 and row.category == "marketing"
    skipped = policy.ledger.get("m3")
    assert skipped is not None and skipped.counted_at is None
    assert skipped.reason == third.reason


def test_the_window_slides_a_message_stops_counting_exactly_per_after_it(
    database: Database,
) -> None:
    policy = caps(database, DAILY.model_copy(update={"action": "defer"}))
    ask(policy, "m1", T0)
    ask(policy, "m2", T0 + timedelta(hours=5))
    held = ask(policy, "m3", T0 + timedelta(hours=24) - timedelta(seconds=1))
    assert (held.action, held.until) == ("defer", T0 + timedelta(hours=24)), "when m1 leaves"
    assert ask(policy, "m3", T0 + timedelta(hours=24)).action == "send", "exactly at T + per"
    again = ask(policy, "m4", T0 + timedelta(hours=24, minutes=1))
    assert again.until == T0 + timedelta(hours=29), "now m2 is the oldest counted"


def test_the_run_clock_counts_not_the_wall_clock(database: Database) -> None:
    policy = caps(database, DAILY)
    past = datetime(2020, 5, 1, 12, 0, tzinfo=UTC)  # a simulation's date
    assert ask(policy, "m1", past).action == "send"
    assert ask(policy, "m2", past).action == "send"
    assert ask(policy, "m3", past + timedelta(hours=1)).action == "skip"
    assert ask(policy, "m4", past + timedelta(days=1)).action == "send"


def test_channels_are_counted_together_or_each_on_its_own(database: Database) -> None:
    together = caps(database, CapRule(name="any", limit=2, window_seconds=3600))
    assert ask(together, "a1", channel="email").action == "send"
    assert ask(together, "a2", channel="sms").action == "send"
    assert ask(together, "a3", channel="chat").action == "skip"
    each = caps(database, CapRule(name="each", limit=1, window_seconds=3600, per_channel=True))
    assert ask(each, "b1", channel="email", customer="eva").action == "send"
    assert ask(each, "b2", channel="sms", customer="eva").action == "send"
    assert ask(each, "b3", channel="email", customer="eva").action == "skip"
    listed = caps(database, CapRule(name="listed", limit=1, window_seconds=3600, channels=("sms",)))
    assert ask(listed, "c1", channel="email", customer="ida").action == "send"
    assert ask(listed, "c2", channel="sms", customer="ida").action == "send", "email not counted"
    assert ask(listed, "c3", channel="sms", customer="ida").action == "skip"


def test_transactional_messages_are_exempt_unless_a_cap_lists_them(database: Database) -> None:
    policy = caps(database, DAILY)
    for n in range(3):
        assert ask(policy, f"order-{n}", category="transactional").action == "send"
    assert ask(policy, "m1").action == "send"
    assert ask(policy, "m2").action == "send", "the order mails took no marketing slot"
    both = caps(
        database,
        DAILY.model_copy(update={"name": "all", "categories": ("marketing", "transactional")}),
    )
    assert ask(both, "t1", category="transactional", customer="eva").action == "send"
    assert ask(both, "t2", customer="eva").action == "send"
    assert ask(both, "t3", category="transactional", customer="eva").action == "skip"


def test_a_retry_keeps_its_slot_and_is_not_counted_twice(database: Database) -> None:
    policy = caps(database, DAILY)
    ledger = policy.ledger
    assert ask(policy, "m1").action == "send"
    first = request("m2")
    message = Message(first, CHANNELS["email"], "x", T0)
    ledger.claim("m2", "welcome", "s", "email", customer_hash("max"))
    assert policy.decide(message) is None
    ledger.mark("m2", "retrying", reason="provider down")  # keeps its slot meanwhile
    for _ in range(3):  # the activity retried: the same message id, claimed again
        ledger.claim("m2", "welcome", "s", "email", customer_hash("max"))
        assert policy.decide(message) is None
    ledger.mark("m2", "sent")
    assert ask(policy, "m3").action == "skip", "two counted, not five"


def test_a_message_skipped_or_failed_after_its_count_gives_the_slot_back(
    database: Database,
) -> None:
    policy = caps(database, DAILY)
    ledger = policy.ledger
    ledger.claim("m1", "welcome", "s", "email", customer_hash("max"))
    assert policy.decide(Message(request("m1"), CHANNELS["email"], "x", T0)) is None
    ledger.mark("m1", "failed", reason="550 no such user")
    assert ask(policy, "m2").action == "send"
    assert ask(policy, "m3").action == "send"
    assert ask(policy, "m4").action == "skip"


def test_journey_caps_exemptions_and_actions_fold_over_the_projects(database: Database) -> None:
    policy = caps(database, DAILY)
    strict = SendPolicies(caps=(DAILY.model_copy(update={"limit": 1}),))
    assert ask(policy, "m1", policies=strict).action == "send"
    assert ask(policy, "m2", policies=strict).action == "skip", "the journey's own limit: 1"
    deferring = SendPolicies(actions={"marketing-email-daily": "defer"})
    assert ask(policy, "m3").action == "send"
    assert ask(policy, "m4", policies=deferring).action == "defer"
    exempt = SendPolicies(exempt=("marketing-email-daily",))
    assert ask(policy, "m5", policies=exempt).action == "send", "not held …"
    assert policy.ledger.get("m5").counted_at == T0, "… but counted"  # type: ignore[union-attr]


def test_no_cap_for_the_message_costs_no_store_trip() -> None:
    class NoStore(Ledger):
        def __init__(self) -> None:
            pass

        def take_slot(self, *args: object, **kw: object) -> None:
            raise AssertionError("the store was asked")

    sms_only = CapRule(name="sms", limit=1, window_seconds=60, channels=("sms",))
    policy = FrequencyCapPolicy(ProjectPolicies(caps=(sms_only,)), NoStore())
    message = Message(request("m1"), CHANNELS["email"], "x", T0)
    assert policy.decide(message) is None
    assert FrequencyCapPolicy(ProjectPolicies(), NoStore()).decide(message) is None


RACERS = 16


def test_concurrent_sends_to_one_customer_exactly_limit_go(database: Database) -> None:
    rule = CapRule(name="burst", limit=3, window_seconds=3600)
    policies = [caps(database, rule) for _ in range(4)]  # an engine each, as processes have
    decisions = at_once(
        [partial(ask, policies[i % 4], f"m{i}", journey=f"j{i}") for i in range(RACERS)]
    )
    assert [d.action for d in decisions].count("send") == 3
    assert [d.action for d in decisions].count("skip") == RACERS - 3
    counted = [r for r in policies[0].ledger.list(limit=100) if r.counted_at is not None]
    assert len(counted) == 3


def test_concurrent_sends_from_processes_exactly_limit_go(database: Database) -> None:
    setup = f"""
import os
from datetime import datetime
from activities.policies import Message
from activities.policy_rules import FrequencyCapPolicy, ProjectPolicies
from store.database import connect
from store.ledger import Ledger
from workflows.channels import CHANNELS
from workflows.models import SendRequest, customer_hash
from workflows.policy_models import CapRule
ledger = Ledger(connect({database.url!r}))
policy = FrequencyCapPolicy(
    ProjectPolicies(caps=(CapRule(name="burst", limit=2, window_seconds=3600),)), ledger
)
mine = f"p{{os.getpid()}}"
ledger.claim(mine, "j", "s", "email", customer_hash("max"))
sent = SendRequest(
    message_id=mine, journey_id=mine, journey_version="v", category="marketing", step_id="s",
    channel="email", template="t", customer_id="max",
)
message = Message(sent, CHANNELS["email"], "x", datetime.fromisoformat({T0.isoformat()!r}))
"""
    race = (
        "decision = policy.decide(message)\nprint('sent' if decision is None else decision.action)"
    )
    finished = processes_at_once(setup, race, count=4)
    assert all(f.returncode == 0 for f in finished), [f.stderr for f in finished]
    answers = [f.stdout.split()[-1] for f in finished]
    assert sorted(answers) == ["sent", "sent", "skip", "skip"]


def test_the_defer_limit_skips_a_message_held_too_long(database: Database) -> None:
    ledger = Ledger(database.connect())
    limit = DeferLimit(ProjectPolicies(defer_max_seconds=3 * 86_400), ledger)
    ledger.claim("m1", "welcome", "s", "email", customer_hash("max"))
    message = partial(Message, request("m1"), CHANNELS["email"], "x")
    held = Decision("defer", 'quiet hours "evenings" until 08:00 Europe/Berlin', T0, "quiet-hours")
    first = limit.check(message(T0 - timedelta(hours=10)), held)
    assert first is held
    last = T0 - timedelta(hours=10) + timedelta(days=3)  # 3d after the first deferral
    later = Decision("defer", held.reason, last, held.policy)
    assert limit.check(message(T0 + timedelta(days=2)), later) is later, "exactly 3d: still waits"
    too_late = Decision("defer", held.reason, last + timedelta(seconds=1), held.policy)
    skipped = limit.check(message(T0 + timedelta(days=2)), too_late)
    assert (skipped.action, skipped.reason) == (
        "skip",
        'still held after 3d (quiet hours "evenings")',
    )
    row = ledger.get("m1")
    assert row is not None and row.deferred_since == T0 - timedelta(hours=10)
    short = SendPolicies(defer_max_seconds=3600)
    ledger.claim("m2", "welcome", "s", "email", customer_hash("max"))
    own = Message(request("m2", policies=short), CHANNELS["email"], "x", T0)
    assert limit.check(own, Decision("defer", "held", T0 + timedelta(hours=2))).action == "skip"


def settings_with(policies: dict[str, object]) -> object:
    return validate((), root=ROOT).config.model_copy(
        update={"policies": PolicySettings.model_validate(policies)}
    )


async def test_the_real_send_path_counts_across_journeys(tmp_path: Path) -> None:
    config = settings_with(
        {
            "frequency_caps": [
                {"name": "marketing-email-daily", "limit": 2, "per": "24h", "channels": ["email"]}
            ]
        }
    )
    activities = DeliveryActivities(
        config=config,  # type: ignore[arg-type]
        ledger=Ledger(connect(f"sqlite:///{tmp_path / 'touchpoint.db'}")),
        renderer=Renderer.for_project(ROOT, config),  # type: ignore[arg-type]
        email=MaildirProvider(tmp_path / "outbox"),
        http=make_client(),
        unsubscribe_secret=b"s" * 32,
        environ={},
    )
    assert isinstance(activities.policies, PolicyChain)
    results = [
        await activities._deliver(request(f"m{n}", journey=f"j{n}", at=T0 + timedelta(hours=n)))
        for n in range(3)
    ]
    assert [r.status for r in results] == ["sent", "sent", "skipped"]
    assert results[2].reason == 'frequency cap "marketing-email-daily" (2 per 24h)'
    again = await activities._deliver(request("m1", at=T0 + timedelta(hours=1)))
    assert again.reason == "sent by an earlier attempt"
    assert len(list_messages(tmp_path / "outbox")) == 2
    rows = {row.message_id: row for row in activities.ledger.list()}
    assert (rows["m2"].status, rows["m2"].reason) == ("skipped", results[2].reason)
    order = await activities._deliver(request("o1", category="transactional", journey="order"))
    assert order.status == "sent", "transactional: exempt"


def test_a_message_held_by_quiet_hours_takes_no_slot(database: Database) -> None:
    project = ProjectPolicies(
        caps=(DAILY.model_copy(update={"limit": 1}),),
        quiet=(QuietRule(name="evenings", start="21:00", end="08:00"),),
    )
    ledger = Ledger(database.connect())
    chain = PolicyChain(
        [QuietHoursPolicy(project), FrequencyCapPolicy(project, ledger)],  # the standard order
        DeferLimit(project, ledger),
    )
    night = datetime(2027, 1, 13, 22, 0, tzinfo=UTC)
    ledger.claim("m1", "welcome", "s", "email", customer_hash("max"))
    held = chain.decide(Message(request("m1", at=night), CHANNELS["email"], "x", night))
    assert (held.action, held.policy, held.until) == (
        "defer",
        "quiet-hours",
        datetime(2027, 1, 14, 8, 0, tzinfo=UTC),
    )
    ledger.mark("m1", "deferred", reason=held.reason)
    row = ledger.get("m1")
    assert row is not None and row.counted_at is None and row.deferred_since == night
    morning = datetime(2027, 1, 14, 8, 0, tzinfo=UTC)
    ledger.claim("m1", "welcome", "s", "email", customer_hash("max"))
    assert (
        chain.decide(Message(request("m1", at=morning), CHANNELS["email"], "x", morning)).action
        == "send"
    )
    assert ledger.get("m1").counted_at == morning  # type: ignore[union-attr]
