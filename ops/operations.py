"""What the ops commands do (``touchpoint emit``, ``touchpoint runs``), kept out of the CLI."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from temporalio.client import WorkflowExecution, WorkflowExecutionDescription
from temporalio.service import RPCError, RPCStatusCode

from config.errors import NoSuchRun, StoreUnavailable
from config.project import ProjectConfig
from config.settings import connect, load_settings, warn_about_time_scale
from ingestion.body import parse_json
from ingestion.calls import read_typed_call
from ingestion.errors import BadRequest
from ingestion.router import Routed
from ingestion.segment import Ingest
from ingestion.service import Applied, Ingestion
from language.validator import require_valid
from store.analytics import Analytics
from store.database import connect as connect_store
from store.entries import EntryStore
from store.event_log import event_log_of
from store.processed import ProcessedMessages
from store.profiles import ProfileStore
from workflows.models import CancelRequest, Outcome, Profile, RunView, customer_hash
from workflows.search import CUSTOMER, JOURNEY_ID, JOURNEY_OUTCOME, JOURNEY_STEP


def _project(project: Path) -> tuple[dict[str, Any], ProjectConfig]:
    report = require_valid(project)
    return report.plans, report.config


CLI_SCOPE = "cli"  # the source of calls from the command line, for deduplication


@dataclass
class Emitter:
    """Applies calls the way the API does: through the one ingestion service."""

    service: Ingestion

    @classmethod
    async def for_project(cls, project: Path) -> Emitter:
        """Routes what the API would: the journeys deployed in the store (see
        :mod:`ops.journeys` for what it does with the folder's)."""
        from ops.journeys import start_routing

        plans, config = _project(project)
        settings = load_settings(config)
        warn_about_time_scale(settings)  # runs record it: say so before any starts
        engine = connect_store(settings.database_url)
        deployed = start_routing(engine, project, plans, False, "touchpoint emit")
        router = deployed.router(
            await connect(settings), EntryStore(engine), settings.run_settings()
        )
        return cls(
            Ingestion(
                ProfileStore(engine),
                ProcessedMessages(engine),
                router.route,
                max_profile_bytes=config.profiles.max_bytes,
                enter_segments=router.enter_segments,
                event_log=event_log_of(engine, config.event_log),
            )
        )

    async def apply(self, call: Ingest) -> Applied:
        return await self.service.apply(call, CLI_SCOPE)

    async def identify(self, customer: str, traits: dict[str, Any]) -> Profile:
        return (await self.identify_entering(customer, traits))[0]

    async def identify_entering(
        self, customer: str, traits: dict[str, Any]
    ) -> tuple[Profile, list[Routed]]:
        """The profile after the identify, and what became of the segment journeys it made
        the customer enter."""
        applied = await self.service.identify(customer, traits, CLI_SCOPE)
        profile = await asyncio.to_thread(self.service.profiles.get, customer)
        assert profile is not None
        return profile, applied.routed

    async def emit(self, name: str, customer: str, properties: dict[str, Any]) -> list[Routed]:
        return (await self.service.track(customer, name, properties, CLI_SCOPE)).routed


def read_calls(path: Path) -> list[tuple[str, Ingest]]:
    """Segment calls, one JSON object a line, each with its ``type`` (identify, track, page,
    screen, group, alias), checked like a batch item of the API; ``ValueError`` names the line
    and the field."""
    calls = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            calls.append(read_typed_call(parse_json(line.encode())))
        except BadRequest as problem:
            raise ValueError(f"{path}:{number}: {problem.message}") from None
    return calls


async def cancel_run(project: Path, workflow_id: str, reason: str) -> None:
    _, config = _project(project)
    client = await connect(load_settings(config))
    try:
        await client.get_workflow_handle(workflow_id).signal("cancel", CancelRequest(reason=reason))
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:  # also "workflow execution already completed"
            raise NoSuchRun(
                f"no running run {workflow_id!r} ({error.message}); "
                "`touchpoint runs list --running` shows the runs"
            ) from None
        raise


RUN_COLUMNS = ["WORKFLOW ID", "STATUS", "STEP", "OUTCOME", "STARTED"]
"""What ``list_runs`` says of each run: Temporal's status, and Touchpoint's step and outcome."""


async def list_runs(
    project: Path,
    journey: str | None,
    customer: str | None,
    outcome: str | None,
    running: bool,
    limit: int,
) -> list[list[str]]:
    """Runs from Temporal's visibility (journey and customer are search attributes set at the
    start), with the step and outcome each is at: from its search attributes if it was started
    before input version 4, else from the analytics store, which is where those runs keep them
    (``outcome`` then filters what visibility finds, page by page, until ``limit`` match)."""
    _, config = _project(project)
    settings = load_settings(config)
    client = await connect(settings)
    unread: list[str] = []  # why the store's columns are missing, said once on stderr
    try:
        analytics: Analytics | None = Analytics(connect_store(settings.database_url))
    except StoreUnavailable as error:
        analytics, unread = None, [str(error)]
        print(f"! step and outcome not read from the store: {error}", file=sys.stderr)
    clauses = ["WorkflowType = 'JourneyWorkflow'"]
    if journey:
        clauses.append(f"{JOURNEY_ID.name} = '{_quote(journey)}'")
    if customer:
        clauses.append(f"{CUSTOMER.name} = '{customer_hash(customer)}'")
    if outcome:
        clauses.append("ExecutionStatus != 'Running'")  # an outcome is had once it ended
    if running:
        clauses.append("ExecutionStatus = 'Running'")
    rows: list[list[str]] = []
    page: list[WorkflowExecution] = []

    async def take(executions: list[WorkflowExecution]) -> None:
        stored: dict[str, Any] = {}
        if analytics is not None and not unread:
            try:
                ids = [e.id for e in executions]
                stored = await asyncio.to_thread(analytics.latest_runs, ids)
            except SQLAlchemyError as error:  # the list still comes, without those columns
                unread.append(type(error).__name__)
                print(f"! step and outcome not read from the store: {unread[0]}", file=sys.stderr)
        for execution in executions:
            attributes = execution.typed_search_attributes
            run = stored.get(execution.id)
            step = attributes.get(JOURNEY_STEP) or (run.current_step if run else None)
            ended = attributes.get(JOURNEY_OUTCOME) or (run.outcome if run else None)
            if outcome and ended != outcome:
                continue
            if len(rows) < limit:
                rows.append(
                    [
                        execution.id,
                        execution.status.name.lower() if execution.status else "?",
                        step or "-",
                        ended or "-",
                        execution.start_time.isoformat(timespec="seconds"),
                    ]
                )

    listing = client.list_workflows(" AND ".join(clauses), limit=None if outcome else limit)
    async for execution in listing:
        page.append(execution)
        if len(page) == 100:
            await take(page)
            page = []
            if len(rows) >= limit:
                break
    await take(page)
    return rows


async def show_run(project: Path, workflow_id: str) -> str:
    _, config = _project(project)
    client = await connect(load_settings(config))
    handle = client.get_workflow_handle(workflow_id)
    try:
        state = await handle.query("state")
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            raise NoSuchRun(
                f"no run {workflow_id!r} in namespace {client.namespace}; "
                "`touchpoint runs list` shows the runs"
            ) from None
        raise
    view = RunView.model_validate(state)
    if view.outcome is not None:
        lines = [
            f"{view.journey_id} (version {view.journey_version})",
            f"outcome: {describe_outcome(view.outcome, view.current)}",
        ]
    else:
        lines = [
            f"{view.journey_id} (version {view.journey_version}) at {view.current}",
            "outcome: running",
        ]
        if view.waiting_for:
            lines.append(f"waiting for: {view.waiting_for}")
        if view.waiting_until:
            lines.append(f"next wake-up: {view.waiting_until.isoformat(timespec='seconds')}")
        lines += retrying(await handle.describe(), view)
    lines += [
        f"  {e.at.isoformat(timespec='seconds')}  {e.step:<24} {e.kind:<10} {e.detail}"
        for e in view.timeline
    ]
    return "\n".join(lines)


def retrying(description: WorkflowExecutionDescription, view: RunView) -> list[str]:
    """``retrying since …, attempt n, last error …`` for each send or lookup Temporal is still
    retrying (a provider outage is waited out for hours)."""
    lines = []
    for pending in description.raw_description.pending_activities:
        if pending.attempt <= 1 and not pending.HasField("last_failure"):
            continue  # a first attempt under way: not retrying
        since = view.step_started_at.isoformat(timespec="seconds") if view.step_started_at else "?"
        error = pending.last_failure.message if pending.HasField("last_failure") else "none yet"
        lines.append(
            f"retrying {pending.activity_type.name} since {since}, attempt {pending.attempt}, "
            f"last error: {error}"
        )
    return lines


def describe_outcome(outcome: Outcome, step: str) -> str:
    """How a run ended, where and when: ``converted (goal Order Completed) at wait-2, …``."""
    if outcome.kind == "converted":
        what = f"converted (goal {outcome.reason})"
    elif outcome.kind == "failed":
        what = f"failed ({outcome.error})"
        step = outcome.step or step
    elif outcome.reason:
        what = f"{outcome.kind} ({outcome.reason})"
    else:
        what = outcome.kind
    when = f", {outcome.at.isoformat(timespec='seconds')}" if outcome.at else ""
    return f"{what} at {step}{when}"


def _quote(value: str) -> str:
    return value.replace("'", "")
