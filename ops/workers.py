"""Build the Temporal workers that run journeys: one for the interpreter workflow and one per
activity task queue (one per channel of :mod:`workflows.channels`, and lookups), so each can
be scaled and rate-limited on its own."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    Worker,
)

from workflows.channels import CHANNELS
from workflows.journey import JourneyWorkflow
from workflows.models import JOURNEY_QUEUE, LOOKUP_ACTIVITY, LOOKUP_QUEUE
from workflows.sandbox import journey_workflow_runner

Role = Literal["all", "workflows", "activities"]
log = logging.getLogger("touchpoint.worker")


@dataclass
class WorkerOptions:
    queue_prefix: str = ""
    max_cached_workflows: int = 1000
    max_concurrent_activities: int = 100
    rate_limits: dict[str, float] = field(default_factory=dict)  # channel → activities/second
    graceful_shutdown_seconds: float = 10.0
    build_id: str | None = None  # default: a hash of every loaded module (slow to compute)


def build_workers(
    client: Client,
    activities: Sequence[Callable[..., Any]],
    options: WorkerOptions,
    role: Role = "all",
) -> list[Worker]:
    """Workers for ``role``: the workflow worker and/or one activity worker per queue."""
    workers: list[Worker] = []
    prefix = options.queue_prefix
    if role in ("all", "workflows"):
        workers.append(
            Worker(
                client,
                task_queue=prefix + JOURNEY_QUEUE,
                workflows=[JourneyWorkflow],
                workflow_runner=journey_workflow_runner(),
                max_cached_workflows=options.max_cached_workflows,
                build_id=options.build_id,
            )
        )
    if role in ("all", "activities"):
        by_name = {getattr(fn, "__temporal_activity_definition").name: fn for fn in activities}
        queues = {c.activity: (c.queue, c.name) for c in CHANNELS.values()}
        queues[LOOKUP_ACTIVITY] = (LOOKUP_QUEUE, "")
        for name, (queue, channel) in queues.items():
            if name not in by_name:
                continue
            workers.append(
                Worker(
                    client,
                    task_queue=prefix + queue,
                    activities=[by_name[name]],
                    max_concurrent_activities=options.max_concurrent_activities,
                    interceptors=[ExpectedRetries()],
                    max_task_queue_activities_per_second=options.rate_limits.get(channel),
                    graceful_shutdown_timeout=_seconds(options.graceful_shutdown_seconds),
                    build_id=options.build_id,
                )
            )
    return workers


class ExpectedRetries(Interceptor):
    """An activity that raises a retryable ``BENIGN`` failure (:func:`activities.errors.retryable`:
    a busy provider, another attempt holding the message) is logged as one warning line; the SDK
    itself logs those only at DEBUG. Anything else keeps the SDK's warning and traceback."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _LogExpectedRetries(next)


class _LogExpectedRetries(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        try:
            return await super().execute_activity(input)
        except ApplicationError as error:
            if error.category == ApplicationErrorCategory.BENIGN and not error.non_retryable:
                info = activity.info()
                delay = error.next_retry_delay
                log.warning(
                    "%s attempt %d for %s will be retried%s: %s: %s",
                    info.activity_type,
                    info.attempt,
                    info.workflow_id,
                    f" in {delay.total_seconds():.0f} s" if delay else "",
                    error.type,
                    error.message,
                )
            raise


def _seconds(value: float) -> Any:
    from datetime import timedelta

    return timedelta(seconds=value)
