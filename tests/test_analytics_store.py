"""The analytics store on a real SQLite file and a real PostgreSQL: records written twice count
once, where each run is now, outcomes, edges, lift, templates joined with provider events, days,
and the background retry of a write the store refused."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, update

from store.analytics import Analytics, RetryingRecorder, lift_of
from store.database import deliveries
from store.erasure import ErasureStore
from store.ledger import Ledger
from store.plans import PlanStore
from tests.conftest import Database
from tests.temporal import plan_from
from workflows.analytics import Record, RunEnded, RunEntered, StepPassed
from workflows.models import customer_hash

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
PLAN = plan_from(
    """
id: welcome
name: Welcome
category: marketing
trigger:
  event: Signed Up
goal:
  event: Order Completed
steps:
  - id: hello
    send: email
    template: newsletter-welcome
  - id: pick
    split:
      - name: offer
        percent: 50
      - name: control
        percent: 50
        holdout: true
  - id: offer
    send: email
    template: first-order-discount
  - id: later
    wait: 2d
"""
)


@pytest.fixture
def store(database: Database) -> Analytics:
    engine = database.connect()
    PlanStore(engine).publish([PLAN])
    return Analytics(engine)


def entered(run: str, at: datetime = T0, customer: str = "c-hash") -> RunEntered:
    return RunEntered(run, "welcome", PLAN.version, customer, at)


def passed(
    run: str, step: str, following: str, at: datetime = T0, visit: int = 1, **extra: Any
) -> StepPassed:
    return StepPassed(run, "welcome", PLAN.version, step, visit, at, following, **extra)


def through_split(run: str, holdout: bool, at: datetime = T0) -> list[Record]:
    path = "control" if holdout else "offer"
    return [
        entered(run, at),
        passed(run, "hello", "pick", at),
        passed(run, "pick", "offer", at, edge=path, holdout=holdout),
        passed(run, "offer", "later", at + timedelta(seconds=1)),
    ]


def test_records_written_twice_count_once(store: Analytics) -> None:
    records = through_split("r1", holdout=False)
    store.record(records)
    store.record(records)
    store.record(records[1:3])
    stats = store.journey("welcome", T0 - timedelta(days=1))
    assert stats.entered == 1
    assert {s.step: (s.passed, s.waiting) for s in stats.steps} == {
        "hello": (1, 0),
        "pick": (1, 0),
        "offer": (1, 0),
        "later": (0, 1),
    }
    assert [(e.source, e.target, e.label, e.passed) for e in stats.edges] == [
        ("hello", "pick", None, 1),
        ("offer", "later", None, 1),
        ("pick", "offer", "offer", 1),
    ]


def test_a_second_visit_is_a_second_pass(store: Analytics) -> None:
    store.record([entered("r1"), passed("r1", "hello", "pick")])
    store.record([passed("r1", "hello", "pick", T0 + timedelta(hours=1), visit=2)])
    [hello, *_] = store.journey("welcome", T0 - timedelta(days=1)).steps
    assert hello.passed == 2


def test_a_run_is_where_its_newest_pass_sent_it(store: Analytics) -> None:
    later = passed("r1", "offer", "later", T0 + timedelta(minutes=5))
    store.record([entered("r1"), later])
    store.record([passed("r1", "hello", "pick", T0)])  # an older pass written late
    waiting = {s.step: s.waiting for s in store.journey("welcome", T0).steps}
    assert waiting["later"] == 1 and waiting["pick"] == 0


def test_a_run_nobody_saw_pass_a_step_waits_at_the_start(store: Analytics) -> None:
    store.record([entered("r1")])
    steps = {s.step: s.waiting for s in store.journey("welcome", T0).steps}
    assert steps["hello"] == 1


def test_outcomes_and_conversion_rate(store: Analytics) -> None:
    store.record([entered(f"r{i}") for i in range(8)])
    store.record(
        [
            RunEnded("r0", "converted", T0 + timedelta(days=1), reason="Order Completed"),
            RunEnded("r1", "converted", T0 + timedelta(days=1)),
            RunEnded("r2", "completed", T0 + timedelta(days=2)),
            RunEnded("r3", "exited", T0, reason="unsubscribed"),
            RunEnded("r4", "failed", T0, reason="provider said no", failed_step="hello"),
            RunEnded("r5", "cancelled", T0),
            RunEnded("r6", "erased", T0),
            RunEnded("r6", "completed", T0 + timedelta(days=3)),  # the first end wins
        ]
    )
    stats = store.journey("welcome", T0 - timedelta(hours=1))
    outcomes = stats.outcomes
    assert (outcomes.active, outcomes.converted, outcomes.completed) == (1, 2, 1)
    assert (outcomes.cancelled, outcomes.erased) == (1, 1)
    assert outcomes.exited == {"unsubscribed": 1} and outcomes.failed == {"hello": 1}
    assert outcomes.ended == 7
    assert stats.conversion_rate == 2 / 8
    [failing] = store.failing()
    assert (failing.workflow_id, failing.failed_step, failing.reason) == (
        "r4",
        "hello",
        "provider said no",
    )


def test_the_window_and_the_version_choose_the_runs(store: Analytics) -> None:
    store.record([entered("old", T0 - timedelta(days=10)), entered("new", T0)])
    store.record([RunEntered("other", "welcome", "v-other", "c", T0)])
    assert store.journey("welcome", T0 - timedelta(days=7)).entered == 2
    assert store.journey("welcome", T0 - timedelta(days=30), T0).entered == 1
    only = store.journey("welcome", T0 - timedelta(days=30), version=PLAN.version)
    assert only.entered == 2 and only.versions == [PLAN.version]


def test_lift_compares_treatment_with_holdout(store: Analytics) -> None:
    for i in range(40):
        store.record(through_split(f"t{i}", holdout=False))
    for i in range(20):
        store.record(through_split(f"h{i}", holdout=True))
    store.record([RunEnded(f"t{i}", "converted", T0 + timedelta(days=1)) for i in range(10)])
    store.record([RunEnded(f"h{i}", "converted", T0 + timedelta(days=1)) for i in range(2)])
    store.record([entered("not-yet-split")])
    lift = store.journey("welcome", T0 - timedelta(days=1)).lift
    assert lift is not None
    assert (lift.treatment_runs, lift.treatment_converted) == (40, 10)
    assert (lift.holdout_runs, lift.holdout_converted) == (20, 2)
    assert lift.lift == pytest.approx(0.25 - 0.10)
    se = (0.25 * 0.75 / 40 + 0.1 * 0.9 / 20) ** 0.5
    assert (lift.low, lift.high) == pytest.approx((0.15 - 1.96 * se, 0.15 + 1.96 * se), abs=1e-3)


def test_no_lift_without_a_holdout_group() -> None:
    assert lift_of(10, 3, 0, 0) is None
    found = lift_of(100, 50, 100, 50)
    assert found is not None and found.lift == 0 and found.low < 0 < found.high


def test_templates_join_the_ledger_with_provider_events(store: Analytics) -> None:
    ledger = Ledger(store.engine)
    for n, status in enumerate(["sent", "sent", "sent", "failed", "skipped", "skipped"]):
        message = f"msg_{n}"
        ledger.claim(message, "welcome", "hello", "email", "c-hash")
        reason = "no email address" if status == "skipped" else None
        ledger.mark(message, status, reason=reason)  # type: ignore[arg-type]
    ledger.claim("msg_held", "welcome", "offer", "email", "c-hash")
    ledger.first_deferral("msg_held", T0)
    for event_id, message, event in [
        ("e1", "msg_0", "delivered"),
        ("e2", "msg_1", "delivered"),
        ("e3", "msg_0", "open"),
        ("e4", "msg_0", "open"),  # a second open of one message: one opened message
        ("e5", "msg_0", "click"),
        ("e6", "msg_2", "bounce"),
        ("e7", "msg_1", "spamreport"),
        ("e8", "msg_1", "group_unsubscribe"),
        ("e9", "msg_2", "dropped"),
    ]:
        assert store.record_message_event(event_id, message, event, "sendgrid", T0)
    assert not store.record_message_event("e1", "msg_0", "delivered", "sendgrid", T0)
    stats = store.journey("welcome", datetime.now(UTC) - timedelta(days=1))
    hello, offer = stats.templates
    assert (hello.step, hello.template, hello.channel) == ("hello", "newsletter-welcome", "email")
    assert (hello.sent, hello.failed, hello.skipped) == (3, 1, {"no email address": 2})
    assert (hello.delivered, hello.opened, hello.clicked, hello.bounced) == (2, 1, 1, 1)
    assert (hello.spam_reported, hello.unsubscribed, hello.dropped) == (1, 1, 1)
    assert (offer.template, offer.deferred, offer.sent) == ("first-order-discount", 1, 0)
    today = datetime.now(UTC).date().isoformat()
    assert {d.day: d.sent for d in stats.days if d.sent} == {today: 3}
    events = store.message_events(["msg_0", "msg_9"])
    assert [e.event for e in events["msg_0"]] == ["delivered", "open", "open", "click"]
    assert "msg_9" not in events


def test_days_count_what_happened_on_each_day(store: Analytics) -> None:
    store.record([entered("r1", T0), entered("r2", T0 + timedelta(days=1))])
    store.record([RunEnded("r1", "converted", T0 + timedelta(days=2))])
    Ledger(store.engine).claim("msg_1", "welcome", "hello", "email", "c-hash")
    for n, event in enumerate(["open", "open", "click", "delivered"]):
        store.record_message_event(f"e{n}", "msg_1", event, "sendgrid", T0 + timedelta(days=1))
    stats = store.journey("welcome", T0, T0 + timedelta(days=3))
    days = {d.day: (d.entered, d.converted, d.ended, d.opened, d.clicked) for d in stats.days}
    assert days == {
        "2026-12-01": (1, 0, 0, 0, 0),
        "2026-12-02": (1, 0, 0, 1, 1),
        "2026-12-03": (0, 1, 1, 0, 0),
        "2026-12-04": (0, 0, 0, 0, 0),
    }


def test_template_days_count_each_send_steps_messages_per_day(store: Analytics) -> None:
    ledger = Ledger(store.engine)
    for message, step, status, day in [
        ("msg_old", "hello", "sent", -2),  # created before the window; opened in it
        ("msg_a", "hello", "sent", 0),
        ("msg_b", "hello", "sent", 1),
        ("msg_c", "hello", "skipped", 1),
        ("msg_d", "hello", "failed", 1),
        ("msg_e", "offer", "sent", 2),
        ("msg_f", "hello", "pending", 0),  # in flight: not counted
        ("msg_late", "offer", "sent", 5),  # after the window
    ]:
        ledger.claim(message, "welcome", step, "email", "c-hash")
        if status != "pending":
            ledger.mark(message, status, reason="no email address" if status == "skipped" else None)  # type: ignore[arg-type]
        with store.engine.begin() as db:
            db.execute(
                update(deliveries)
                .where(deliveries.c.message_id == message)
                .values(created_at=T0 + timedelta(days=day))
            )
    for n, (message, event, day) in enumerate(
        [
            ("msg_a", "delivered", 0),
            ("msg_a", "open", 1),
            ("msg_a", "open", 1),  # twice on one day: one opened message
            ("msg_a", "click", 1),
            ("msg_old", "open", 1),
            ("msg_b", "bounce", 1),
            ("msg_b", "spamreport", 1),  # not a per-day number
            ("msg_a", "open", 2),  # opened again the next day: opened that day too
            ("msg_e", "open", 2),
        ]
    ):
        at = T0 + timedelta(days=day, hours=1)
        assert store.record_message_event(f"e{n}", message, event, "sendgrid", at)
    stats = store.journey("welcome", T0, T0 + timedelta(days=3))
    numbers = {
        (d.step, d.day): (d.sent, d.skipped, d.failed, d.delivered, d.opened, d.clicked, d.bounced)
        for d in stats.template_days
    }
    assert list(numbers) == [
        ("hello", "2026-12-01"),
        ("hello", "2026-12-02"),
        ("hello", "2026-12-03"),
        ("offer", "2026-12-03"),
    ], "the plan's send steps in order, each day with something"
    assert numbers == {
        ("hello", "2026-12-01"): (1, 0, 0, 1, 0, 0, 0),
        ("hello", "2026-12-02"): (1, 1, 1, 0, 2, 1, 1),
        ("hello", "2026-12-03"): (0, 0, 0, 0, 1, 0, 0),
        ("offer", "2026-12-03"): (1, 0, 0, 0, 1, 0, 0),
    }
    first = stats.template_days[0]
    assert (first.template, first.channel) == ("newsletter-welcome", "email")
    for day in stats.days:  # the journey's days are the sums of its templates' days
        of_day = [t for t in stats.template_days if t.day == day.day]
        assert (day.sent, day.opened, day.clicked) == (
            sum(t.sent for t in of_day),
            sum(t.opened for t in of_day),
            sum(t.clicked for t in of_day),
        ), day.day


def test_overview_and_a_customers_runs(store: Analytics) -> None:
    now = T0 + timedelta(hours=2)
    store.record([entered("r1", T0, "c1"), entered("r2", T0 - timedelta(days=3), "c1")])
    store.record([entered("r3", T0 - timedelta(days=9), "c2")])
    store.record([RunEnded("r2", "converted", T0)])
    [welcome] = store.overview(now)
    assert (welcome.journey_id, welcome.versions) == ("welcome", [PLAN.version])
    assert (welcome.entered_today, welcome.entered_7d, welcome.active) == (1, 2, 2)
    assert (welcome.converted_today, welcome.converted_7d) == (1, 1)
    assert [r.workflow_id for r in store.runs_of_customer("c1")] == ["r1", "r2"]
    assert store.runs_of_customer("nobody") == []


def test_an_unknown_journey_is_not_known(store: Analytics) -> None:
    assert store.known("welcome") and not store.known("nope")


class Flaky(Analytics):
    """The store refuses the first ``failures`` writes (as one that is down would)."""

    def __init__(self, engine: Engine, failures: int) -> None:
        super().__init__(engine)
        self.failures = failures

    def record(self, records: Sequence[Record]) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("the store is down")
        super().record(records)


def test_a_refused_write_is_retried_in_the_background_and_in_order(
    store: Analytics, caplog: pytest.LogCaptureFixture
) -> None:
    flaky = Flaky(store.engine, failures=3)
    recorder = RetryingRecorder(flaky, retry_seconds=0.05)
    try:
        recorder.record([entered("r1")])  # refused: kept
        recorder.record([RunEnded("r1", "completed", T0)])  # behind it, not before it
        deadline = time.monotonic() + 10
        while recorder.backlog and time.monotonic() < deadline:
            time.sleep(0.02)
        assert recorder.backlog == 0
    finally:
        recorder.close()
    stats = store.journey("welcome", T0 - timedelta(days=1))
    assert stats.entered == 1 and stats.outcomes.completed == 1
    assert "could not record 1 analytics record(s): ConnectionError" in caplog.text
    assert "c-hash" not in caplog.text


class Slow(Analytics):
    def record(self, records: Sequence[Record]) -> None:
        time.sleep(1.5)
        super().record(records)


def test_a_slow_store_holds_a_workflow_task_up_only_so_long(store: Analytics) -> None:
    recorder = RetryingRecorder(Slow(store.engine), wait_seconds=0.2)
    try:
        started = time.monotonic()
        recorder.record([entered("r1")])
        assert time.monotonic() - started < 1.0, "it waited for the write no longer than 0.2 s"
        assert store.journey("welcome", T0 - timedelta(days=1)).entered == 0
    finally:
        recorder.close()
    assert store.journey("welcome", T0 - timedelta(days=1)).entered == 1, "written all the same"


def test_a_write_is_done_when_record_returns(store: Analytics) -> None:
    recorder = RetryingRecorder(store)
    try:
        for n in range(20):
            recorder.record([entered(f"r{n}")])
            assert store.journey("welcome", T0 - timedelta(days=1)).entered == n + 1
    finally:
        recorder.close()


def test_a_full_backlog_drops_its_oldest(store: Analytics) -> None:
    flaky = Flaky(store.engine, failures=10**6)
    recorder = RetryingRecorder(flaky, capacity=2, retry_seconds=5)
    try:
        for i in range(4):
            recorder.record([entered(f"r{i}")])
        assert (recorder.backlog, recorder.lost) == (2, 2)
    finally:
        recorder.close(timeout=0.1)


class Reported:
    """What a recorder reports to its metrics (the worker's are Prometheus series)."""

    def __init__(self) -> None:
        self.drops = 0
        self.backlogs: list[int] = []

    def dropped(self, batches: int) -> None:
        self.drops += batches

    def backlog(self, batches: int) -> None:
        self.backlogs.append(batches)


def test_the_recorder_reports_its_drops_and_its_backlog_until_the_store_takes_it(
    store: Analytics,
) -> None:
    reported = Reported()
    recorder = RetryingRecorder(
        Flaky(store.engine, failures=3), capacity=2, retry_seconds=0.05, metrics=reported
    )
    try:
        for i in range(3):
            recorder.record([entered(f"r{i}")])
        deadline = time.monotonic() + 10
        while recorder.backlog and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        recorder.close()
    assert reported.drops == recorder.lost == 1
    assert max(reported.backlogs) == 2 and reported.backlogs[-1] == 0
    assert store.journey("welcome", T0 - timedelta(days=1)).entered == 2


def test_records_from_many_threads_count_once(database: Database) -> None:
    engines = [database.connect() for _ in range(3)]
    PlanStore(engines[0]).publish([PLAN])
    records = through_split("r1", holdout=True)
    gate = threading.Barrier(6)
    failed: list[BaseException] = []

    def write(engine: Engine) -> None:
        gate.wait()
        try:
            Analytics(engine).record(records)
        except BaseException as error:  # reported by the assertion below
            failed.append(error)

    threads = [threading.Thread(target=write, args=(engines[i % 3],)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failed == []
    stats = Analytics(engines[0]).journey("welcome", T0 - timedelta(days=1))
    assert stats.entered == 1 and sum(s.passed for s in stats.steps) == 3
    assert stats.lift is None  # a holdout and no treatment yet: nothing to compare


def test_forgetting_a_customer_keeps_the_counts_without_them(store: Analytics) -> None:
    max_hash, other = customer_hash("max-1"), customer_hash("someone-else")
    store.record([*through_split("r1", holdout=False), entered("r2", customer=max_hash)])
    store.record([entered("r3", customer=other)])
    store.record([RunEntered("r1b", "welcome", PLAN.version, max_hash, T0)])
    store.record(
        [RunEnded("r1b", "failed", T0, reason="max@example.com: mailbox full", failed_step="x")]
    )
    before = store.journey("welcome", T0 - timedelta(days=1))
    ErasureStore(store.engine, b"0123456789abcdef-secret").delete_customer(["max-1"], [])
    assert store.runs_of_customer(max_hash) == []
    assert [r.workflow_id for r in store.runs_of_customer(other)] == ["r3"]
    [failed] = store.failing()
    assert failed.workflow_id == "r1b" and failed.reason is None and failed.failed_step == "x"
    after = store.journey("welcome", T0 - timedelta(days=1))
    assert (after.entered, after.steps, after.outcomes) == (
        before.entered,
        before.steps,
        before.outcomes,
    )
