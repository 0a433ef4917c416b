"""Journey analytics: the runs, the steps they passed and what providers said of each message,
and the numbers marketers read from them (``touchpoint stats``, the dashboard).

Written by the worker through :class:`workflows.analytics.Recorder` as runs go, idempotently by
key (a run by workflow id; a step pass by workflow id, step and visit), so retries, replays,
worker crashes and continue-as-new count each pass once. Message numbers come from the ledger
(``deliveries``: sent, skipped by reason, failed) joined by message id with ``message_events``
(SendGrid's Event Webhook: delivered, opened, clicked, bounced, spam reports, unsubscribes).

The read side is the contract of the dashboard (:mod:`dashboard`) and ``touchpoint stats``:
the dataclasses below. Times are the runs' clocks; days are UTC dates (YYYY-MM-DD).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine

from workflows.analytics import Record


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


@dataclass(frozen=True)
class MessageEvent:
    message_id: str
    event: str
    provider: str
    at: datetime


class Analytics:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # --- written by the worker and the API ----------------------------------------------

    def record(self, records: Sequence[Record]) -> None:
        """Write a run's records, idempotently by key (the worker's Recorder)."""
        raise NotImplementedError

    def record_message_event(
        self, event_id: str, message_id: str, event: str, provider: str, at: datetime
    ) -> bool:
        """Keep a provider's event about a message; False when ``event_id`` was kept before."""
        raise NotImplementedError

    # --- read by `touchpoint stats` and the dashboard ------------------------------------

    def journey(
        self,
        journey_id: str,
        since: datetime,
        until: datetime | None = None,
        version: str | None = None,
    ) -> JourneyStats:
        """The numbers of runs that entered ``journey_id`` in [since, until) (until: now)."""
        raise NotImplementedError

    def overview(self, now: datetime) -> list[JourneyOverview]:
        """Every journey with runs: entered/active/converted today (UTC) and in 7 days."""
        raise NotImplementedError

    def runs_of_customer(self, customer_hash: str) -> list[RunRow]:
        """A customer's runs (by ``workflows.models.customer_hash``), newest first."""
        raise NotImplementedError

    def failing(self, limit: int = 50) -> list[RunRow]:
        """Runs that ended ``failed``, newest first."""
        raise NotImplementedError

    def message_events(self, message_ids: Sequence[str]) -> dict[str, list[MessageEvent]]:
        """Provider events of these messages, each list oldest first."""
        raise NotImplementedError
