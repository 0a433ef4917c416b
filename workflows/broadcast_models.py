"""What a broadcast (one occurrence of a scheduled journey) carries: its input, the request
and answer of one audience page, and the counts. Pure pydantic, passed through the sandbox;
fields are only ever added, with defaults (they are part of recorded histories)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict

BROADCAST_QUEUE = "touchpoint-broadcasts"
BROADCAST_WORKFLOW = "BroadcastWorkflow"
BROADCAST_PAGE = "broadcast_page"
BROADCAST_SCHEDULE = "touchpoint-broadcast/"
"""The prefix of each scheduled journey's Temporal Schedule id (then the journey id)."""
SCHEDULED_START = "TemporalScheduledStartTime"
"""The search attribute Temporal sets on a workflow a schedule started: the occurrence."""
PAGE_SIZE = 500
PAGES_PER_EXECUTION = 20
"""Pages one execution reads before it continues as new (about 150 history events). Each new
execution waits for the server's ``workflowIdReuseMinimalInterval`` (1 s by default) before its
first task: one page per execution capped a broadcast at 500 profiles a second (BENCHMARKS.md,
issue 19)."""
DEFAULT_STARTS_PER_SECOND = 50.0


class Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class BroadcastCounts(Model):
    """What became of the profiles one occurrence read."""

    read: int = 0  # profiles read from the store
    matched: int = 0  # in the audience (and past the entry condition)
    started: int = 0  # a run started
    already_started: int = 0  # this occurrence had started their run before (a retry, a replay)
    refused: int = 0  # re-entry rules (once, cooldown, a run still active) or a paused journey
    failed: int = 0  # the audience could not be evaluated on the profile (its data)
    unreadable_dates: int = 0  # a date journey: the profile's date is not a date (skipped)

    def plus(self, other: BroadcastCounts) -> BroadcastCounts:
        return BroadcastCounts(
            **{name: getattr(self, name) + getattr(other, name) for name in type(self).model_fields}
        )


class BroadcastInput(Model):
    """The one input of :class:`~workflows.broadcast.BroadcastWorkflow`. The schedule gives
    ``journey_id`` and ``plan_version``; ``occurrence`` is left out there (the workflow reads
    the schedule's time, :data:`SCHEDULED_START`) and set from the first page on, with
    ``cursor`` (the last customer id read) and the counts so far: continue-as-new carries them."""

    input_version: int = 1
    journey_id: str
    plan_version: str
    occurrence: datetime | None = None
    cursor: str | None = None
    counts: BroadcastCounts = BroadcastCounts()
    pages: int = 0
    page_size: int = PAGE_SIZE
    starts_per_second: float | None = None  # None: the plan's rate, else the project's
    pages_per_execution: int = PAGES_PER_EXECUTION


class PageRequest(Model):
    journey_id: str
    plan_version: str
    occurrence: datetime
    after: str | None = None
    page_size: int = PAGE_SIZE
    starts_per_second: float | None = None


class PageResult(Model):
    counts: BroadcastCounts = BroadcastCounts()
    cursor: str | None = None  # the last customer id of the page; None: the audience is done


class BroadcastResult(Model):
    journey_id: str
    plan_version: str
    occurrence: datetime
    pages: int
    counts: BroadcastCounts


def occurrence_tag(occurrence: datetime) -> str:
    """The part of a broadcast run's workflow id that names the occurrence (UTC, to the second)."""
    return "b" + occurrence.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def broadcast_message_id(journey_id: str, occurrence: datetime | str, customer_id: str) -> str:
    """The trigger id of one customer's run in one occurrence, or (a date journey) on one of
    their local dates, given as its run tag (no personal data)."""
    tag = occurrence if isinstance(occurrence, str) else occurrence_tag(occurrence)
    source = f"touchpoint-broadcast:{journey_id}|{tag}|{customer_id}"
    return "bc_" + hashlib.sha256(source.encode()).hexdigest()[:32]
