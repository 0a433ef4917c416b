"""One occurrence of a scheduled journey: :class:`BroadcastWorkflow`.

Its Temporal Schedule (:mod:`ops.broadcasts`) starts it with the journey id and version. It
reads the occurrence — the time the schedule meant to fire, not when the worker got to it —
from the ``TemporalScheduledStartTime`` search attribute Temporal sets on every workflow a
schedule starts (``workflow.info().typed_search_attributes``); started by hand without it, the
occurrence is the input's, else the workflow's start time.

Then it pages through the profiles in customer id order, one activity per page
(:mod:`activities.audience`: the audience is evaluated there, on one page at a time, and each
match enters as a trigger would enter them), and continues as new every
``pages_per_execution`` pages (:data:`~workflows.broadcast_models.PAGES_PER_EXECUTION`, or when
Temporal suggests it) with the cursor and the counts: its history stays bounded whatever the
audience's size, and a crash resumes at the page it was on. (Until 2026-12 it continued after
every page; such executions replay as they ran, ``broadcast-pages-per-execution``.)
Every run it starts has a workflow id per customer and
occurrence, so a page that is retried, or an occurrence run twice, starts nobody twice.

Sandbox-only: temporalio and the passed-through models, no store, no clock but Temporal's.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey

with workflow.unsafe.imports_passed_through():
    from workflows.broadcast_models import (
        BROADCAST_PAGE,
        DEFAULT_STARTS_PER_SECOND,
        SCHEDULED_START,
        BroadcastInput,
        BroadcastResult,
        PageRequest,
        PageResult,
    )

SCHEDULED_START_KEY = SearchAttributeKey.for_datetime(SCHEDULED_START)
RETRIES = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))
HEARTBEAT_TIMEOUT = timedelta(seconds=30)
"""A page heartbeats after every profile: a worker gone for this long has its page retried
elsewhere, from the last profile it reported."""
PAGE_MARGIN = timedelta(minutes=5)
"""A page may take its starts at the start rate, plus this for the store and Temporal."""


def page_timeout(request: BroadcastInput) -> timedelta:
    rate = request.starts_per_second or DEFAULT_STARTS_PER_SECOND
    return timedelta(seconds=request.page_size / rate) + PAGE_MARGIN


@workflow.defn(name="BroadcastWorkflow")
class BroadcastWorkflow:
    @workflow.run
    async def run(self, request: BroadcastInput) -> BroadcastResult:
        occurrence = request.occurrence or self._occurrence()
        counts, pages, cursor = request.counts, request.pages, request.cursor
        read_here = 0
        while True:
            page = await workflow.execute_activity(
                BROADCAST_PAGE,
                PageRequest(
                    journey_id=request.journey_id,
                    plan_version=request.plan_version,
                    occurrence=occurrence,
                    after=cursor,
                    page_size=request.page_size,
                    starts_per_second=request.starts_per_second,
                ),
                result_type=PageResult,
                start_to_close_timeout=page_timeout(request),
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
                retry_policy=RETRIES,
            )
            counts, pages, cursor = counts.plus(page.counts), pages + 1, page.cursor
            read_here += 1
            if cursor is None:
                return BroadcastResult(
                    journey_id=request.journey_id,
                    plan_version=request.plan_version,
                    occurrence=occurrence,
                    pages=pages,
                    counts=counts,
                )
            # patched 2026-12: several pages per execution (one each waited 1 s for the next)
            if (
                not workflow.patched("broadcast-pages-per-execution")
                or read_here >= request.pages_per_execution
                or workflow.info().is_continue_as_new_suggested()
            ):
                workflow.continue_as_new(
                    request.model_copy(
                        update={
                            "occurrence": occurrence,
                            "cursor": cursor,
                            "counts": counts,
                            "pages": pages,
                        }
                    )
                )

    @staticmethod
    def _occurrence() -> datetime:
        info = workflow.info()
        scheduled = info.typed_search_attributes.get(SCHEDULED_START_KEY)
        return scheduled if scheduled is not None else info.start_time
