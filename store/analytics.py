"""Journey analytics: the runs, the steps they passed and what providers said of each message,
and the numbers marketers read from them (``touchpoint stats``, the dashboard).

Written by the worker through :class:`workflows.analytics.Recorder` as runs go, idempotently by
key (a run by workflow id, and entry from the second on; a step pass by that key, step and
visit), so retries, replays, worker crashes and continue-as-new count each pass once. Message
numbers come from the ledger (``deliveries``: sent, skipped by reason, failed) joined by message
id with ``message_events`` (SendGrid's Event Webhook: delivered, opened, clicked, bounced, spam
reports, unsubscribes).

The read side is the contract of the dashboard (:mod:`dashboard`) and ``touchpoint stats``:
the dataclasses below. Times are the runs' clocks; days are UTC dates (YYYY-MM-DD).
"""

from __future__ import annotations

import logging
import math
import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Select,
    and_,
    bindparam,
    case,
    distinct,
    func,
    or_,
    select,
    update,
)

from store.atomic import dialect_insert, insert_new
from store.database import deliveries, journey_runs, message_events, plans, step_passes, utc
from store.prepared import Prepared
from workflows.analytics import Record, RunEnded, RunEntered, StepPassed
from workflows.plan import EndNode, Plan, SendNode, SplitNode

log = logging.getLogger("touchpoint.analytics")


@dataclass(frozen=True)
class StepCount:
    step: str
    passed: int  # runs that left the step (each visit once)
    waiting: int  # runs at the step now (entered it, not left, not ended)


@dataclass(frozen=True)
class EdgeCount:
    source: str
    target: str
    label: str | None  # branch case, split path, "event"/"timeout"; None: the only way on
    passed: int


@dataclass(frozen=True)
class Outcomes:
    active: int = 0
    completed: int = 0
    converted: int = 0
    cancelled: int = 0
    erased: int = 0
    exited: dict[str, int] = field(default_factory=dict)  # by reason
    failed: dict[str, int] = field(default_factory=dict)  # by step

    @property
    def ended(self) -> int:
        return (
            self.completed
            + self.converted
            + self.cancelled
            + self.erased
            + sum(self.exited.values())
            + sum(self.failed.values())
        )


@dataclass(frozen=True)
class Lift:
    """Conversion of a split's treatment vs its holdout: rates, their difference and its 95 %
    confidence interval (normal approximation of the difference of two proportions)."""

    treatment_runs: int
    treatment_converted: int
    holdout_runs: int
    holdout_converted: int
    treatment_rate: float
    holdout_rate: float
    lift: float  # treatment_rate - holdout_rate (absolute, 0.05 = 5 points)
    low: float
    high: float


@dataclass(frozen=True)
class TemplateCount:
    step: str
    template: str
    channel: str
    sent: int = 0
    failed: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # by reason
    deferred: int = 0  # held now by a policy (pending rows with deferred_since)
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    bounced: int = 0
    spam_reported: int = 0
    unsubscribed: int = 0
    dropped: int = 0  # SendGrid did not send it (the address was on its own suppression list)


@dataclass(frozen=True)
class DayCount:
    day: str  # YYYY-MM-DD
    entered: int = 0
    converted: int = 0
    ended: int = 0
    sent: int = 0
    opened: int = 0
    clicked: int = 0


@dataclass(frozen=True)
class TemplateDayCount:
    """One send step's messages on one day: the ledger's by the day each message was created,
    the provider's by the day of the event (messages with such an event that day)."""

    step: str
    template: str
    channel: str
    day: str  # YYYY-MM-DD
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    bounced: int = 0


@dataclass(frozen=True)
class JourneyStats:
    journey_id: str
    versions: list[str]  # the versions runs entered in the window, oldest first
    since: datetime
    until: datetime
    entered: int
    outcomes: Outcomes
    conversion_rate: float  # converted / entered (0.0 when none entered)
    steps: list[StepCount]
    edges: list[EdgeCount]
    templates: list[TemplateCount]
    days: list[DayCount]
    lift: Lift | None = None  # None: the journey has no holdout (or nobody in it yet)
    template_days: list[TemplateDayCount] = field(default_factory=list)  # only days with some

    def template_days_by_step(self) -> list[tuple[str, str, list[TemplateDayCount]]]:
        """Each send step with its template and its days with messages, in the plan's order
        (as ``touchpoint stats`` and the dashboard show them)."""
        by_step: dict[str, list[TemplateDayCount]] = {}
        for day in self.template_days:
            by_step.setdefault(day.step, []).append(day)
        return [(step, days[0].template, days) for step, days in by_step.items()]


@dataclass(frozen=True)
class JourneyOverview:
    journey_id: str
    versions: list[str]
    entered_today: int
    entered_7d: int
    active: int
    converted_today: int
    converted_7d: int


@dataclass(frozen=True)
class RunRow:
    workflow_id: str
    journey_id: str
    version: str
    entered_at: datetime
    current_step: str | None
    outcome: str | None
    reason: str | None
    failed_step: str | None
    ended_at: datetime | None
    entry: int = 1  # the customer's n-th entry with this workflow id (ids are used again)


@dataclass(frozen=True)
class MessageEvent:
    message_id: str
    event: str
    provider: str
    at: datetime


EVENT_FIELDS = {
    "delivered": "delivered",
    "open": "opened",
    "click": "clicked",
    "bounce": "bounced",
    "dropped": "dropped",
    "spamreport": "spam_reported",
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "unsubscribed",
}
"""SendGrid's event names (as ``message_events.event`` keeps them) → the :class:`TemplateCount`
field that counts the messages with such an event (``deferred`` is kept, not counted)."""
ENTRY_MARK = "#"
"""Between a run's workflow id and its entry number in its key, from the second entry on
(``journey/welcome/3f…#2``): a customer's later entry reuses the workflow id."""
REASON_LENGTH = 500
EDGE_LENGTH = 200
FILLED_DAYS = 366  # a window up to a year long lists every day; a longer one, days with numbers
OUTCOME_KEYS = ("active", "completed", "converted", "exited", "failed", "cancelled", "erased")
Z_95 = 1.959963984540054  # the standard normal's 97.5th percentile


class Analytics:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # --- written by the worker and the API ----------------------------------------------

    def record(self, records: Sequence[Record]) -> None:
        """Write a run's records, idempotently by key (the worker's Recorder), in one
        transaction: runs entered (kept if present), steps passed (a key written before is
        ignored), where each run is now (only from a pass newer than the one it has), runs
        ended (the first end wins; the step it was at stays, for "exited at")."""
        with self.engine.begin() as db:
            for record in records:
                if isinstance(record, StepPassed):
                    insert_new(db, step_passes, _pass_row(record))
                    _MOVE.run(db, _move_values(record))
                    if record.holdout:
                        _HELD_OUT.run(db, {"b_run": record.workflow_id, "b_holdout": True})
                elif isinstance(record, RunEntered):
                    insert_new(db, journey_runs, _run_row(record))
                else:
                    _END.run(db, _end_values(record))

    def record_message_event(
        self, event_id: str, message_id: str, event: str, provider: str, at: datetime
    ) -> bool:
        """Keep a provider's event about a message; False when ``event_id`` was kept before."""
        moment = at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)
        values = {
            "event_id": event_id[:200],
            "message_id": message_id[:64],
            "event": event[:32],
            "provider": provider[:32],
            "at": moment,
            "day": moment.date().isoformat(),
        }
        with self.engine.begin() as db:
            statement = dialect_insert(db)(message_events).values(**values)
            kept = db.execute(
                statement.on_conflict_do_nothing().returning(message_events.c.event_id)
            ).first()
        return kept is not None

    # --- read by `touchpoint stats` and the dashboard ------------------------------------

    def known(self, journey_id: str) -> bool:
        """Has ``journey_id`` a published plan or any run in the store?"""
        with self.engine.connect() as db:
            published = db.execute(
                select(plans.c.version).where(plans.c.journey_id == journey_id).limit(1)
            ).first()
            if published is not None:
                return True
            run = db.execute(
                select(journey_runs.c.workflow_id)
                .where(journey_runs.c.journey_id == journey_id)
                .limit(1)
            ).first()
        return run is not None

    def journey_ids(self) -> list[str]:
        """Every journey with a published plan or a run, sorted."""
        with self.engine.connect() as db:
            published = set(db.scalars(select(plans.c.journey_id).distinct()))
            entered = set(db.scalars(select(journey_runs.c.journey_id).distinct()))
        return sorted(str(j) for j in published | entered)

    def journey(
        self,
        journey_id: str,
        since: datetime,
        until: datetime | None = None,
        version: str | None = None,
        unpublished: Plan | None = None,
    ) -> JourneyStats:
        """The numbers of runs that entered ``journey_id`` in [since, until) (until: now).

        Entered, outcomes, steps, edges, waiting and lift are of those runs (a cohort);
        templates count the journey's messages created in the window, days what happened on
        each day of it. Without ``until`` nothing later is cut off (a time-skipping or
        simulated clock may run ahead of the wall clock). ``unpublished``: the plan whose
        steps and templates to show when the store has none of the journey (a journey of the
        project not deployed yet: its numbers are zeros)."""
        since = _utc(since)
        end = _utc(until) if until is not None else None
        cohort = _cohort(journey_id, since, end, version)
        with self.engine.connect() as db:
            versions = [
                str(row.version)
                for row in db.execute(
                    select(journey_runs.c.version, func.min(journey_runs.c.entered_at).label("f"))
                    .where(*cohort)
                    .group_by(journey_runs.c.version)
                    .order_by("f")
                )
            ]
            known_plans = _plans_of(db, journey_id, [version] if version else versions)
            if not known_plans and unpublished is not None:
                known_plans = [unpublished]
            entered = db.scalar(select(func.count()).select_from(journey_runs).where(*cohort)) or 0
            outcomes = _outcomes(db, cohort)
            steps = _steps(db, cohort, known_plans)
            edges = _edges(db, cohort)
            templates = _templates(db, journey_id, since, end, known_plans)
            days = _days(db, journey_id, since, end, version, cohort)
            template_days = _template_days(db, journey_id, since, end, templates)
            lift = _lift(db, cohort, known_plans)
        return JourneyStats(
            journey_id=journey_id,
            versions=versions,
            since=since,
            until=end or datetime.now(UTC),
            entered=entered,
            outcomes=outcomes,
            conversion_rate=outcomes.converted / entered if entered else 0.0,
            steps=steps,
            edges=edges,
            templates=templates,
            days=days,
            lift=lift,
            template_days=template_days,
        )

    def overview(self, now: datetime) -> list[JourneyOverview]:
        """Every journey with runs: entered/active/converted today (UTC) and in 7 days."""
        now = _utc(now)
        today, week = now.date().isoformat(), now - timedelta(days=7)
        runs = journey_runs.c
        converted = runs.outcome == "converted"
        with self.engine.connect() as db:
            versions: dict[str, list[str]] = defaultdict(list)
            for row in db.execute(
                select(runs.journey_id, runs.version, func.min(runs.entered_at).label("first"))
                .group_by(runs.journey_id, runs.version)
                .order_by(runs.journey_id, "first")
            ):
                versions[str(row.journey_id)].append(str(row.version))
            rows = db.execute(
                select(
                    runs.journey_id,
                    _count_if(runs.entered_day == today).label("entered_today"),
                    _count_if(runs.entered_at >= week).label("entered_7d"),
                    _count_if(runs.outcome.is_(None)).label("active"),
                    _count_if(and_(converted, runs.ended_day == today)).label("converted_today"),
                    _count_if(and_(converted, runs.ended_at >= week)).label("converted_7d"),
                )
                .group_by(runs.journey_id)
                .order_by(runs.journey_id)
            ).all()
        return [
            JourneyOverview(
                journey_id=str(row.journey_id),
                versions=versions[str(row.journey_id)],
                entered_today=int(row.entered_today or 0),
                entered_7d=int(row.entered_7d or 0),
                active=int(row.active or 0),
                converted_today=int(row.converted_today or 0),
                converted_7d=int(row.converted_7d or 0),
            )
            for row in rows
        ]

    def runs_of_customer(self, customer_hash: str) -> list[RunRow]:
        """A customer's runs (by ``workflows.models.customer_hash``), newest first."""
        with self.engine.connect() as db:
            rows = db.execute(
                select(journey_runs)
                .where(journey_runs.c.customer == customer_hash)
                .order_by(journey_runs.c.entered_at.desc(), journey_runs.c.workflow_id)
            ).all()
        return [_run_of(row) for row in rows]

    def latest_runs(self, workflow_ids: Sequence[str]) -> dict[str, RunRow]:
        """Per workflow id, the newest run the store has under it (a customer's later entries
        use the id again, stored as ``<id>#<entry>``): where a run is and how it ended, for
        runs that keep it here and not in search attributes (input version 4 on)."""
        ids = list(dict.fromkeys(workflow_ids))
        if not ids:
            return {}
        wanted = set(ids)
        found: dict[str, RunRow] = {}
        with self.engine.connect() as db:
            for chunk in (ids[i : i + 200] for i in range(0, len(ids), 200)):
                key = journey_runs.c.workflow_id
                clauses: list[ColumnElement[bool]] = [key.in_(chunk)]
                clauses += [  # "<id>#<entry>" as a range of the key (a LIKE scans the table)
                    and_(key > f"{i}{ENTRY_MARK}", key < f"{i}{chr(ord(ENTRY_MARK) + 1)}")
                    for i in chunk
                ]
                for row in db.execute(select(journey_runs).where(or_(*clauses))):
                    run = _run_of(row)
                    if run.workflow_id not in wanted:
                        continue
                    kept = found.get(run.workflow_id)
                    if kept is None or (run.entry, run.entered_at) > (kept.entry, kept.entered_at):
                        found[run.workflow_id] = run
            starting = [r for r in found.values() if r.current_step is None and r.outcome is None]
            for journey_id in {r.journey_id for r in starting}:  # none passed yet: at the start
                starts = _starts(db, journey_id, {r.version for r in starting})
                for run in starting:
                    if run.journey_id == journey_id and run.version in starts:
                        found[run.workflow_id] = replace(run, current_step=starts[run.version])
        return found

    def running_by_step(self, journey_id: str) -> dict[tuple[str, str], int]:
        """How many of a journey's runs are running, per (version, step they are at) — a run
        that has passed no step yet is at its plan's start (known from the stored plans)."""
        with self.engine.connect() as db:
            rows = db.execute(
                select(journey_runs.c.version, journey_runs.c.current_step, func.count())
                .where(journey_runs.c.journey_id == journey_id, journey_runs.c.outcome.is_(None))
                .group_by(journey_runs.c.version, journey_runs.c.current_step)
            ).all()
            starts = _starts(db, journey_id, {str(row[0]) for row in rows})
        counts: dict[tuple[str, str], int] = defaultdict(int)
        for version, step, n in rows:
            at = step or starts.get(str(version))
            if at is not None:
                counts[(str(version), str(at))] += int(n)
        return dict(counts)

    def failing(self, limit: int = 50) -> list[RunRow]:
        """Runs that ended ``failed``, newest first."""
        with self.engine.connect() as db:
            rows = db.execute(
                select(journey_runs)
                .where(journey_runs.c.outcome == "failed")
                .order_by(journey_runs.c.ended_at.desc(), journey_runs.c.workflow_id)
                .limit(limit)
            ).all()
        return [_run_of(row) for row in rows]

    def message_events(self, message_ids: Sequence[str]) -> dict[str, list[MessageEvent]]:
        """Provider events of these messages, each list oldest first."""
        found: dict[str, list[MessageEvent]] = {}
        wanted = list(dict.fromkeys(message_ids))
        with self.engine.connect() as db:
            for start in range(0, len(wanted), 500):  # an IN list of bounded length
                rows = db.execute(
                    select(message_events)
                    .where(message_events.c.message_id.in_(wanted[start : start + 500]))
                    .order_by(message_events.c.at, message_events.c.event_id)
                )
                for row in rows:
                    found.setdefault(str(row.message_id), []).append(
                        MessageEvent(
                            message_id=str(row.message_id),
                            event=str(row.event),
                            provider=str(row.provider),
                            at=utc(row.at),
                        )
                    )
        return found


class RecorderMetrics(Protocol):
    """Where a :class:`RetryingRecorder` reports what it drops and holds (the worker's
    Prometheus metrics: :class:`activities.metrics.AnalyticsMetrics`)."""

    def dropped(self, batches: int) -> None: ...

    def backlog(self, batches: int) -> None: ...


class RetryingRecorder:
    """The worker's :class:`workflows.analytics.Recorder`: one writer thread writes the batches
    of every workflow task in order, several at once in one transaction when they queue up.

    :meth:`record` waits until its batch is written — so in the normal case the write is part
    of the workflow task, and a worker that crashes after the task completed loses nothing —
    but never longer than ``wait_seconds`` (a workflow task must not stall: the SDK takes one
    that keeps its thread for 2 s for a deadlock). A write the store refuses (down, locked) is
    logged — its error's type only, never its values — and the batches stay in a bounded
    backlog that the thread writes, oldest first, once the store takes them; meanwhile
    :meth:`record` returns at once. Never raises: analytics must not fail or hold up a run.
    Beyond ``capacity`` batches the oldest are dropped, counted in :attr:`lost`. ``metrics``
    hears of each drop, and of the backlog's length after each write the thread tried (off the
    workflow tasks' path)."""

    def __init__(
        self,
        analytics: Analytics,
        capacity: int = 10_000,
        retry_seconds: float = 1.0,
        wait_seconds: float = 1.0,
        group: int = 200,
        metrics: RecorderMetrics | None = None,
    ) -> None:
        self.analytics = analytics
        self.metrics = metrics
        self.capacity = capacity
        self.retry_seconds = retry_seconds
        self.wait_seconds = wait_seconds
        self.group = group  # at most this many batches in one transaction
        self.lost = 0
        self._backlog: list[tuple[list[Record], threading.Event]] = []
        self._failing = False
        self._changed = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(
            target=self._write_forever, name="touchpoint-analytics", daemon=True
        )
        self._thread.start()

    @property
    def backlog(self) -> int:
        with self._changed:
            return len(self._backlog)

    def record(self, records: Sequence[Record]) -> None:
        batch = list(records)
        if not batch:
            return
        written = threading.Event()
        with self._changed:
            if len(self._backlog) >= self.capacity:
                self._backlog.pop(0)[1].set()
                self.lost += 1
                if self.metrics is not None:
                    self.metrics.dropped(1)
                if self.lost == 1 or self.lost % 1000 == 0:
                    log.warning("analytics backlog full: %d batch(es) dropped", self.lost)
            self._backlog.append((batch, written))
            self._changed.notify_all()
            if self._failing or self._closed:
                return
        written.wait(self.wait_seconds)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the writer once it wrote the backlog (or ``timeout`` passed)."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self._thread.join(timeout)
        left = self.backlog
        if left:
            log.warning("%d analytics batch(es) not written at shutdown", left)

    def _write_forever(self) -> None:
        pause = self.retry_seconds
        while True:
            with self._changed:
                while not self._backlog and not self._closed:
                    self._changed.wait()
                if not self._backlog:
                    return
                taken = self._backlog[: self.group]
            try:
                self.analytics.record([record for batch, _ in taken for record in batch])
            except Exception as error:
                log.warning(
                    "could not record %d analytics record(s): %s; retrying in the background",
                    sum(len(batch) for batch, _ in taken),
                    type(error).__name__,
                )
                with self._changed:
                    self._failing = True
                    for _, written in self._backlog:
                        written.set()  # their tasks go on; the batches stay here
                    held = len(self._backlog)
                    if self._closed:
                        return
                self._report_backlog(held)
                with self._changed:
                    if not self._closed:
                        self._changed.wait(pause)
                pause = min(pause * 2, 30.0)
                continue
            pause = self.retry_seconds
            done = {id(item) for item in taken}
            with self._changed:
                self._backlog = [item for item in self._backlog if id(item) not in done]
                self._failing = False
                held = len(self._backlog)
            for _, written in taken:
                written.set()
            self._report_backlog(held)

    def _report_backlog(self, batches: int) -> None:
        if self.metrics is not None:
            self.metrics.backlog(batches)


# --- writing -------------------------------------------------------------------------------


# A run's records are written on every workflow task that moved it: the statements are
# compiled once and run on the driver's cursor (store/prepared.py; new rows by insert_new).
_MOVE = Prepared(
    update(journey_runs)
    .where(
        journey_runs.c.workflow_id == bindparam("b_run"),
        or_(
            journey_runs.c.step_since.is_(None),
            journey_runs.c.step_since <= bindparam("b_at"),
        ),
    )
    .values(current_step=bindparam("b_step"), step_since=bindparam("b_at"))
)
"""Where a run is now: the step a pass went to, unless the run has a newer pass already."""
_HELD_OUT = Prepared(
    update(journey_runs)
    .where(journey_runs.c.workflow_id == bindparam("b_run"))
    .values(holdout=bindparam("b_holdout"))
)
_END = Prepared(
    update(journey_runs)
    .where(journey_runs.c.workflow_id == bindparam("b_run"), journey_runs.c.outcome.is_(None))
    .values(
        outcome=bindparam("b_outcome"),
        reason=bindparam("b_reason"),
        failed_step=bindparam("b_failed_step"),
        ended_at=bindparam("b_at"),
        ended_day=bindparam("b_day"),
    )
)
"""A run's end: the first one written wins."""


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _run_row(run: RunEntered) -> dict[str, Any]:
    at = _utc(run.at)
    return {
        "workflow_id": run.workflow_id,
        "journey_id": run.journey_id,
        "version": run.version,
        "customer": run.customer,
        "holdout": False,
        "entered_at": at,
        "entered_day": at.date().isoformat(),
        "current_step": None,
        "step_since": None,
        "outcome": None,
        "reason": None,
        "failed_step": None,
        "ended_at": None,
        "ended_day": None,
    }


def _pass_row(step: StepPassed) -> dict[str, Any]:
    at = _utc(step.at)
    return {
        "workflow_id": step.workflow_id,
        "step_id": step.step_id,
        "visit": step.visit,
        "journey_id": step.journey_id,
        "version": step.version,
        "at": at,
        "day": at.date().isoformat(),
        "next_step": step.next_step,
        "edge": step.edge[:EDGE_LENGTH] if step.edge is not None else None,
    }


def _move_values(step: StepPassed) -> dict[str, Any]:
    return {"b_run": step.workflow_id, "b_step": step.next_step, "b_at": _utc(step.at)}


def _end_values(end: RunEnded) -> dict[str, Any]:
    at = _utc(end.at)
    return {
        "b_run": end.workflow_id,
        "b_outcome": end.outcome,
        "b_reason": end.reason[:REASON_LENGTH] if end.reason is not None else None,
        "b_failed_step": end.failed_step,
        "b_at": at,
        "b_day": at.date().isoformat(),
    }


# --- reading ---------------------------------------------------------------------------------


def _cohort(
    journey_id: str, since: datetime, until: datetime | None, version: str | None
) -> list[Any]:
    runs = journey_runs.c
    where: list[Any] = [runs.journey_id == journey_id, runs.entered_at >= since]
    if until is not None:
        where.append(runs.entered_at < until)
    if version is not None:
        where.append(runs.version == version)
    return where


def _count_if(condition: Any) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _starts(db: Connection, journey_id: str, versions: set[str]) -> dict[str, str]:
    """The first step of each stored plan of ``versions``: where a run that has passed no
    step yet is."""
    if not versions:
        return {}
    return {plan.version: plan.start for plan in _plans_of(db, journey_id, sorted(versions))}


def _plans_of(db: Connection, journey_id: str, versions: Sequence[str]) -> list[Plan]:
    """The plans of ``versions`` (oldest first), or, when there are none, the journey's newest
    published plan (so a journey nobody entered yet still shows its steps)."""
    query: Select[Any] = select(plans.c.version, plans.c.plan).where(
        plans.c.journey_id == journey_id
    )
    if versions:
        rows = {
            str(row.version): row.plan
            for row in db.execute(query.where(plans.c.version.in_(versions)))
        }
        return [Plan.model_validate(rows[v]) for v in versions if v in rows]
    newest = db.execute(query.order_by(plans.c.published_at.desc()).limit(1)).first()
    return [Plan.model_validate(newest.plan)] if newest is not None else []


def _outcomes(db: Connection, cohort: list[Any]) -> Outcomes:
    runs = journey_runs.c
    counts: dict[str, int] = defaultdict(int)
    exited: dict[str, int] = defaultdict(int)
    failed: dict[str, int] = defaultdict(int)
    rows = db.execute(
        select(runs.outcome, runs.reason, runs.failed_step, func.count().label("n"))
        .where(*cohort)
        .group_by(runs.outcome, runs.reason, runs.failed_step)
    )
    for row in rows:
        n = int(row.n)
        if row.outcome is None:
            counts["active"] += n
        elif row.outcome == "exited":
            exited[str(row.reason or "unknown")] += n
        elif row.outcome == "failed":
            failed[str(row.failed_step or "unknown")] += n
        else:
            counts[str(row.outcome)] += n
    return Outcomes(
        active=counts["active"],
        completed=counts["completed"],
        converted=counts["converted"],
        cancelled=counts["cancelled"],
        erased=counts["erased"],
        exited=dict(sorted(exited.items())),
        failed=dict(sorted(failed.items())),
    )


def _step_order(known_plans: Sequence[Plan]) -> list[str]:
    """The steps of the newest plan in its order, then those only older plans have."""
    order: dict[str, None] = {}
    for plan in reversed(known_plans):
        for node in plan.nodes.values():
            if not isinstance(node, EndNode):
                order.setdefault(node.id, None)
    return list(order)


def _steps(db: Connection, cohort: list[Any], known_plans: Sequence[Plan]) -> list[StepCount]:
    runs = journey_runs.c
    passed = {
        str(row.step_id): int(row.n)
        for row in db.execute(
            select(step_passes.c.step_id, func.count().label("n"))
            .select_from(
                step_passes.join(journey_runs, step_passes.c.workflow_id == runs.workflow_id)
            )
            .where(*cohort)
            .group_by(step_passes.c.step_id)
        )
    }
    starts = {plan.version: plan.start for plan in known_plans}
    waiting: dict[str, int] = defaultdict(int)
    for row in db.execute(
        select(runs.current_step, runs.version, func.count().label("n"))
        .where(*cohort, runs.outcome.is_(None))
        .group_by(runs.current_step, runs.version)
    ):
        step = row.current_step or starts.get(str(row.version))  # none passed yet: at the start
        if step is not None:
            waiting[str(step)] += int(row.n)
    order = _step_order(known_plans)
    order += sorted((set(passed) | set(waiting)) - set(order) - {"end"})
    return [StepCount(step, passed.get(step, 0), waiting.get(step, 0)) for step in order]


def _edges(db: Connection, cohort: list[Any]) -> list[EdgeCount]:
    passes = step_passes.c
    rows = db.execute(
        select(passes.step_id, passes.next_step, passes.edge, func.count().label("n"))
        .select_from(
            step_passes.join(journey_runs, passes.workflow_id == journey_runs.c.workflow_id)
        )
        .where(*cohort)
        .group_by(passes.step_id, passes.next_step, passes.edge)
        .order_by(passes.step_id, passes.next_step, passes.edge)
    )
    return [
        EdgeCount(str(row.step_id), str(row.next_step or "end"), row.edge, int(row.n))
        for row in rows
    ]


def _templates(
    db: Connection,
    journey_id: str,
    since: datetime,
    until: datetime | None,
    known_plans: Sequence[Plan],
) -> list[TemplateCount]:
    sends: dict[str, tuple[str, str]] = {}
    for plan in known_plans:  # oldest first: the newest plan's template wins
        for node in plan.nodes.values():
            if isinstance(node, SendNode):
                sends[node.id] = (node.template, node.channel)
    ledger = deliveries.c
    window = [ledger.journey_id == journey_id, ledger.created_at >= since]
    if until is not None:
        window.append(ledger.created_at < until)
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    skipped: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    channels: dict[str, str] = {}
    deferred = ledger.deferred_since.is_not(None)
    for row in db.execute(
        select(
            ledger.step_id,
            ledger.channel,
            ledger.status,
            ledger.reason,
            deferred.label("deferred"),
            func.count().label("n"),
        )
        .where(*window)
        .group_by(ledger.step_id, ledger.channel, ledger.status, ledger.reason, deferred)
    ):
        step, n = str(row.step_id), int(row.n)
        channels.setdefault(step, str(row.channel))
        tally = counts[step]
        if row.status in ("sent", "failed"):
            tally[str(row.status)] += n
        elif row.status == "skipped":
            skipped[step][str(row.reason or "unknown")] += n
        elif row.status == "deferred" or (row.status == "pending" and row.deferred):
            tally["deferred"] += n
    events = message_events.c
    counted = case(
        *((events.event == event, name) for event, name in EVENT_FIELDS.items()), else_=None
    ).label("counted")  # unsubscribe and group_unsubscribe: one unsubscribed message
    for row in db.execute(
        select(ledger.step_id, counted, func.count(distinct(events.message_id)).label("n"))
        .select_from(message_events.join(deliveries, ledger.message_id == events.message_id))
        .where(*window, events.event.in_(EVENT_FIELDS))
        .group_by(ledger.step_id, counted)
    ):
        counts[str(row.step_id)][str(row.counted)] += int(row.n)
    order = [s for s in _step_order(known_plans) if s in sends]
    order += sorted((set(counts) | set(skipped)) - set(order))
    found: list[TemplateCount] = []
    for step in order:
        template, channel = sends.get(step, ("", channels.get(step, "")))
        found.append(
            TemplateCount(
                step=step,
                template=template,
                channel=channel,
                skipped=dict(sorted(skipped.get(step, {}).items())),
                **counts.get(step, {}),
            )
        )
    return found


def _days(
    db: Connection,
    journey_id: str,
    since: datetime,
    until: datetime | None,
    version: str | None,
    cohort: list[Any],
) -> list[DayCount]:
    runs, ledger, events = journey_runs.c, deliveries.c, message_events.c
    tally: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in db.execute(
        select(runs.entered_day, func.count().label("n")).where(*cohort).group_by(runs.entered_day)
    ):
        tally[str(row.entered_day)]["entered"] += int(row.n)
    ended = [runs.journey_id == journey_id, runs.ended_at >= since]
    if until is not None:
        ended.append(runs.ended_at < until)
    if version is not None:
        ended.append(runs.version == version)
    for row in db.execute(
        select(
            runs.ended_day,
            func.count().label("n"),
            _count_if(runs.outcome == "converted").label("converted"),
        )
        .where(*ended)
        .group_by(runs.ended_day)
    ):
        tally[str(row.ended_day)]["ended"] += int(row.n)
        tally[str(row.ended_day)]["converted"] += int(row.converted)
    sent = [ledger.journey_id == journey_id, ledger.status == "sent", ledger.created_at >= since]
    if until is not None:
        sent.append(ledger.created_at < until)
    sent_day = _utc_day(db, ledger.created_at).label("day")
    for row in db.execute(
        select(sent_day, func.count().label("n")).where(*sent).group_by(sent_day)
    ):
        tally[str(row.day)]["sent"] += int(row.n)
    seen = [
        ledger.journey_id == journey_id,
        events.at >= since,
        events.event.in_(("open", "click")),
    ]
    if until is not None:
        seen.append(events.at < until)
    for row in db.execute(
        select(events.day, events.event, func.count(distinct(events.message_id)).label("n"))
        .select_from(message_events.join(deliveries, ledger.message_id == events.message_id))
        .where(*seen)
        .group_by(events.day, events.event)
    ):
        field_name = "opened" if row.event == "open" else "clicked"
        tally[str(row.day)][field_name] += int(row.n)
    days = set(tally)
    last = (until or datetime.now(UTC)).date()
    if (last - since.date()).days <= FILLED_DAYS:
        days |= {
            (since.date() + timedelta(days=n)).isoformat()
            for n in range((last - since.date()).days + 1)
        }
    return [DayCount(day=day, **tally.get(day, {})) for day in sorted(days)]


TEMPLATE_DAY_EVENTS = {"delivered": "delivered", "open": "opened", "click": "clicked",
                       "bounce": "bounced"}  # fmt: skip
"""The provider's events a :class:`TemplateDayCount` counts, by SendGrid's name."""


def _template_days(
    db: Connection,
    journey_id: str,
    since: datetime,
    until: datetime | None,
    templates: Sequence[TemplateCount],
) -> list[TemplateDayCount]:
    """Each send step's sent, skipped and failed messages per day of their creation, and its
    messages delivered, opened, clicked and bounced per day of the provider's event (joined
    by message id); only the days with something, in the order of ``templates``."""
    ledger, events = deliveries.c, message_events.c
    tally: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    created = [
        ledger.journey_id == journey_id,
        ledger.status.in_(("sent", "skipped", "failed")),
        ledger.created_at >= since,
    ]
    if until is not None:
        created.append(ledger.created_at < until)
    day = _utc_day(db, ledger.created_at).label("day")
    for row in db.execute(
        select(ledger.step_id, day, ledger.status, func.count().label("n"))
        .where(*created)
        .group_by(ledger.step_id, day, ledger.status)
    ):
        tally[(str(row.step_id), str(row.day))][str(row.status)] += int(row.n)
    seen = [
        ledger.journey_id == journey_id,
        events.at >= since,
        events.event.in_(TEMPLATE_DAY_EVENTS),
    ]
    if until is not None:
        seen.append(events.at < until)
    for row in db.execute(
        select(
            ledger.step_id,
            events.day,
            events.event,
            func.count(distinct(events.message_id)).label("n"),
        )
        .select_from(message_events.join(deliveries, ledger.message_id == events.message_id))
        .where(*seen)
        .group_by(ledger.step_id, events.day, events.event)
    ):
        tally[(str(row.step_id), str(row.day))][TEMPLATE_DAY_EVENTS[str(row.event)]] += int(row.n)
    order = {t.step: n for n, t in enumerate(templates)}
    names = {t.step: (t.template, t.channel) for t in templates}
    found: list[TemplateDayCount] = []
    for step, day in sorted(tally, key=lambda key: (order.get(key[0], len(order)), *key)):
        template, channel = names.get(step, ("", ""))
        found.append(TemplateDayCount(step, template, channel, day, **tally[(step, day)]))
    return found


def _utc_day(db: Connection, moment: Any) -> Any:
    """``YYYY-MM-DD`` of a stored time, in UTC: SQLite keeps UTC times as text, PostgreSQL as
    ``timestamptz`` (its session may be in another zone)."""
    if db.dialect.name == "sqlite":
        return func.substr(moment, 1, 10)
    return func.to_char(func.timezone("UTC", moment), "YYYY-MM-DD")


def _lift(db: Connection, cohort: list[Any], known_plans: Sequence[Plan]) -> Lift | None:
    """Conversion of the runs that passed a split with a holdout path: treatment (any other
    path) against holdout, with the 95 % Wald interval of the difference of the two rates."""
    splits = sorted(
        {
            node.id
            for plan in known_plans
            for node in plan.nodes.values()
            if isinstance(node, SplitNode) and any(path.holdout for path in node.paths)
        }
    )
    if not splits:
        return None
    runs = journey_runs.c
    passed_split = select(step_passes.c.workflow_id).where(step_passes.c.step_id.in_(splits))
    groups = {
        bool(row.holdout): (int(row.n), int(row.converted))
        for row in db.execute(
            select(
                runs.holdout,
                func.count().label("n"),
                _count_if(runs.outcome == "converted").label("converted"),
            )
            .where(*cohort, runs.workflow_id.in_(passed_split))
            .group_by(runs.holdout)
        )
    }
    return lift_of(*groups.get(False, (0, 0)), *groups.get(True, (0, 0)))


def lift_of(
    treatment_runs: int, treatment_converted: int, holdout_runs: int, holdout_converted: int
) -> Lift | None:
    """The lift of a treatment over its holdout: the difference of the conversion rates and
    its 95 % Wald interval, ``d ± 1.96·√(p₁(1−p₁)/n₁ + p₀(1−p₀)/n₀)``; ``None`` while either
    group is empty."""
    if treatment_runs == 0 or holdout_runs == 0:
        return None
    treated = treatment_converted / treatment_runs
    held = holdout_converted / holdout_runs
    error = math.sqrt(treated * (1 - treated) / treatment_runs + held * (1 - held) / holdout_runs)
    difference = treated - held
    return Lift(
        treatment_runs=treatment_runs,
        treatment_converted=treatment_converted,
        holdout_runs=holdout_runs,
        holdout_converted=holdout_converted,
        treatment_rate=treated,
        holdout_rate=held,
        lift=difference,
        low=difference - Z_95 * error,
        high=difference + Z_95 * error,
    )


def _run_of(row: Any) -> RunRow:
    workflow_id, _, entry = str(row.workflow_id).partition(ENTRY_MARK)
    return RunRow(
        workflow_id=workflow_id,
        entry=int(entry) if entry.isdigit() else 1,
        journey_id=str(row.journey_id),
        version=str(row.version),
        entered_at=utc(row.entered_at),
        current_step=row.current_step,
        outcome=row.outcome,
        reason=row.reason,
        failed_step=row.failed_step,
        ended_at=utc(row.ended_at) if row.ended_at is not None else None,
    )
