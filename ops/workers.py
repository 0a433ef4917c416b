"""Build the Temporal workers that run journeys: one for the interpreter workflow and one per
activity task queue (one per channel of :mod:`workflows.channels`, and lookups), so each can
be scaled and rate-limited on its own.

Sends and lookups of channels without a rate limit are scheduled on the run's own journey
queue: in a worker of role ``all`` the journey worker runs them itself and the server hands
each to it with the answer to the workflow task that scheduled it (eager dispatch, no trip
through matching); a worker of role ``activities`` polls the journey queue for them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from sqlalchemy import Engine
from temporalio import activity
from temporalio.client import Client
from temporalio.common import MetricMeter
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    Worker,
)

from activities.metrics import AnalyticsMetrics
from config.settings import Settings
from store.analytics import Analytics, RetryingRecorder
from store.plans import PlanStore
from workflows import analytics, registry
from workflows.broadcast import BroadcastWorkflow
from workflows.broadcast_models import BROADCAST_PAGE, BROADCAST_QUEUE
from workflows.channels import CHANNELS
from workflows.journey import JourneyWorkflow
from workflows.models import JOURNEY_QUEUE, LOOKUP_ACTIVITY, LOOKUP_QUEUE, READ_PROFILE_ACTIVITY
from workflows.privacy import ErasureWorkflow, RetentionWorkflow
from workflows.privacy_models import PRIVACY_ACTIVITIES, PRIVACY_QUEUE
from workflows.registry import Deployment
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
    deployment: Deployment = field(default_factory=Deployment)  # what runs on the queue get
    analytics: bool = True  # runs on the journey queue record what they do (store.analytics)


PAYLOAD_LOGGERS = ("temporalio.worker._activity", "temporalio.worker._workflow")
"""Loggers of the Temporal SDK whose DEBUG lines print whole payloads (an activity's result:
a send's address and subject; workflow activations): personal data, never in a log."""


def keep_payloads_out_of_logs() -> None:
    """Cap :data:`PAYLOAD_LOGGERS` at INFO, whatever level the process logs at (docs/privacy.md:
    logs carry ids, never personal data)."""
    for name in PAYLOAD_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(max(logger.getEffectiveLevel(), logging.INFO))


def build_workers(
    client: Client,
    activities: Sequence[Callable[..., Any]],
    options: WorkerOptions,
    role: Role = "all",
) -> list[Worker]:
    """Workers for ``role``: the workflow worker and/or one activity worker per queue; with
    the privacy activities (:class:`activities.privacy.PrivacyActivities`) among
    ``activities``, the erasure and retention worker too (with the activity workers), and
    with ``broadcast_page`` (:class:`activities.audience.AudienceActivities`) the worker of
    scheduled journeys' broadcasts."""
    workers: list[Worker] = []
    prefix = options.queue_prefix
    by_name = {getattr(fn, "__temporal_activity_definition").name: fn for fn in activities}
    journeys = prefix + JOURNEY_QUEUE
    # a rate-limited channel keeps its own queue: the server enforces the limit per queue
    deployment = replace(
        options.deployment,
        queued_channels=options.deployment.queued_channels | frozenset(options.rate_limits),
    )
    queues = {c.activity: (c.queue, c.name) for c in CHANNELS.values()}
    queues[LOOKUP_ACTIVITY] = (LOOKUP_QUEUE, "")
    # Sends and lookups go on the run's own journey queue unless their channel is rate-limited
    # (core.JourneyCore._activity_queue); the channel queues stay polled for those and for
    # activities scheduled there before.
    on_journey_queue = [
        by_name[name]
        for name, (_, channel) in queues.items()
        if name in by_name and channel not in deployment.queued_channels
    ]
    activity_options: dict[str, Any] = {
        "max_concurrent_activities": options.max_concurrent_activities,
        "interceptors": [ExpectedRetries()],
        "graceful_shutdown_timeout": _seconds(options.graceful_shutdown_seconds),
        "build_id": options.build_id,
    }
    if role in ("all", "workflows"):
        registry.deploy(journeys, deployment)
        local = [by_name[READ_PROFILE_ACTIVITY]] if READ_PROFILE_ACTIVITY in by_name else []
        # With the activities in this process too, they run in the journey worker itself:
        # the server hands each to it in the answer to the workflow task that scheduled it.
        here = on_journey_queue if role == "all" else []
        workers.append(
            Worker(
                client,
                task_queue=journeys,
                workflows=[JourneyWorkflow],
                activities=local + here,  # read_profile runs as a local activity
                workflow_runner=journey_workflow_runner(),
                max_cached_workflows=options.max_cached_workflows,
                # role workflows: never take the journey queue's sends (it has not got them)
                no_remote_activities=not here,
                **(activity_options if here else {"build_id": options.build_id}),
            )
        )
    if role in ("all", "activities"):
        if role == "activities" and on_journey_queue:  # the journey queue's activities
            workers.append(
                Worker(client, task_queue=journeys, activities=on_journey_queue, **activity_options)
            )
        for name, (queue, channel) in queues.items():
            if name not in by_name:
                continue
            workers.append(
                Worker(
                    client,
                    task_queue=prefix + queue,
                    activities=[by_name[name]],
                    max_task_queue_activities_per_second=options.rate_limits.get(channel),
                    **activity_options,
                )
            )
        privacy = [by_name[name] for name in PRIVACY_ACTIVITIES if name in by_name]
        if privacy:
            workers.append(
                Worker(
                    client,
                    task_queue=prefix + PRIVACY_QUEUE,
                    workflows=[ErasureWorkflow, RetentionWorkflow],
                    activities=privacy,
                    workflow_runner=journey_workflow_runner(),
                    graceful_shutdown_timeout=_seconds(options.graceful_shutdown_seconds),
                    build_id=options.build_id,
                )
            )
        if BROADCAST_PAGE in by_name:  # scheduled journeys: each occurrence and its pages
            workers.append(
                Worker(
                    client,
                    task_queue=prefix + BROADCAST_QUEUE,
                    workflows=[BroadcastWorkflow],
                    activities=[by_name[BROADCAST_PAGE]],
                    workflow_runner=journey_workflow_runner(),
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


def worker_options(settings: Settings) -> WorkerOptions:
    """The worker's options from the project's settings (``touchpoint.yaml`` and environment)."""
    worker = settings.config.worker
    return WorkerOptions(
        queue_prefix=settings.queue_prefix,
        max_cached_workflows=worker.max_cached_workflows,
        max_concurrent_activities=worker.max_concurrent_activities,
        rate_limits=dict(worker.rate_limits),
        analytics=worker.analytics,
        deployment=Deployment(
            index_runs=worker.index_runs,
            default_timezone=settings.config.defaults.timezone,
            default_locale=settings.config.defaults.locale,
            send_retry_hours=dict(worker.send_retry_hours),
        ),
    )


@contextmanager
def analytics_recorded(
    journey_queue: str, store: Engine, meter: MetricMeter | None = None
) -> Iterator[RetryingRecorder]:
    """Runs on ``journey_queue`` (its prefix included) record into ``store`` while inside;
    on the way out the recorder is taken off the queue and writes what it still holds. Enter
    it before the workers start and leave it after they stopped. ``meter``: the runtime's, on
    which the recorder counts what it drops and holds (none: not counted)."""
    metrics = AnalyticsMetrics(meter) if meter is not None else None
    recorder = RetryingRecorder(Analytics(store), metrics=metrics)
    analytics.register(journey_queue, recorder)
    try:
        yield recorder
    finally:
        analytics.unregister(journey_queue)
        recorder.close()


async def fetch_missing_plans(plans: PlanStore, stop: asyncio.Event) -> None:
    """Load the plan versions runs ask for that this worker did not compile itself (a journey
    deployed by a newer API process), until ``stop``. A run that asked fails its workflow task
    meanwhile, and Temporal retries it."""
    while not stop.is_set():
        if not await asyncio.to_thread(registry.wait_for_missing, 1.0):
            continue
        found = [
            plan for v in registry.missing() if (plan := await asyncio.to_thread(plans.get, v))
        ]
        if found:
            registry.register(found)
            log.info("loaded %d plan version(s) from the store", len(found))
