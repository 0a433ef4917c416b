"""Retention: the Temporal Schedule that runs the retention workflow, and the check of the
namespace's retention of closed runs. Both happen when a worker starts (the activity role,
which runs the privacy queue): registering the schedule is idempotent — the first worker
creates it, the others update it to their ``touchpoint.yaml``'s interval.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from config.settings import Settings
from workflows.privacy_models import (
    PRIVACY_QUEUE,
    RETENTION_SCHEDULE,
    RETENTION_WORKFLOW,
    RetentionRequest,
)

log = logging.getLogger("touchpoint.retention")


def retention_schedule(settings: Settings) -> Schedule:
    every = timedelta(hours=settings.config.retention.every_hours)
    return Schedule(
        action=ScheduleActionStartWorkflow(
            RETENTION_WORKFLOW,
            RetentionRequest(),
            id=settings.queue_prefix + RETENTION_SCHEDULE,
            task_queue=settings.queue_prefix + PRIVACY_QUEUE,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(
            overlap=ScheduleOverlapPolicy.SKIP, catchup_window=min(every, timedelta(days=1))
        ),
    )


async def register_schedule(client: Client, settings: Settings) -> str:
    """Create the retention schedule, or bring an existing one to these settings; its id."""
    schedule_id = settings.queue_prefix + RETENTION_SCHEDULE
    schedule = retention_schedule(settings)
    try:
        await client.create_schedule(schedule_id, schedule)
    except ScheduleAlreadyRunningError:

        def update(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(schedule_id).update(update)
    return schedule_id


async def namespace_retention(client: Client) -> timedelta | None:
    """How long the namespace keeps closed runs (``None`` if it does not say)."""
    response = await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=client.namespace)
    )
    ttl = response.config.workflow_execution_retention_ttl
    if not ttl.seconds and not ttl.nanos:
        return None
    return ttl.ToTimedelta()


def retention_warning(kept: timedelta | None, settings: Settings) -> str | None:
    """What to say when the namespace keeps closed runs longer than ``retention`` allows."""
    allowed = timedelta(days=settings.config.retention.closed_runs_days)
    if kept is None or kept <= allowed:
        return None
    return (
        f"namespace {settings.namespace} keeps closed runs (their inputs and events) for "
        f"{kept.days} day(s), longer than retention.closed_runs_days ({allowed.days}); set it: "
        f"temporal operator namespace update --namespace {settings.namespace} "
        f"--retention {allowed.days}d"
    )


async def start_retention(client: Client, settings: Settings) -> None:
    """At worker start: register the schedule and warn about the namespace's retention."""
    schedule_id = await register_schedule(client, settings)
    log.info(
        "retention schedule %s: every %d hour(s)",
        schedule_id,
        settings.config.retention.every_hours,
    )
    warning = retention_warning(await namespace_retention(client), settings)
    if warning is not None:
        log.warning("%s", warning)
