"""What the ops commands do (``touchpoint emit``, ``touchpoint runs``), kept out of the CLI."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio.service import RPCError, RPCStatusCode

from config.errors import NoSuchRun
from config.project import ProjectConfig
from config.settings import connect, load_settings
from ingestion.router import Routed, Router
from language.validator import require_valid
from store.database import connect as connect_store
from store.entries import EntryStore
from store.profiles import ProfileStore
from workflows.models import CancelRequest, Event, Outcome, Profile, RunView, customer_hash
from workflows.search import CUSTOMER, JOURNEY_ID, JOURNEY_OUTCOME, JOURNEY_STEP


def _project(project: Path) -> tuple[dict[str, Any], ProjectConfig]:
    report = require_valid(project)
    return report.plans, report.config


@dataclass
class Emitter:
    """Routes events the way the API does: profiles from the store, the router for the rest."""

    router: Router
    profiles: ProfileStore

    @classmethod
    async def for_project(cls, project: Path) -> Emitter:
        plans, config = _project(project)
        settings = load_settings(config)
        engine = connect_store(settings.database_url)
        router = Router(await connect(settings), plans, EntryStore(engine), settings.run_settings())
        return cls(router, ProfileStore(engine))

    async def identify(self, customer: str, traits: dict[str, Any]) -> Profile:
        return await asyncio.to_thread(self.profiles.upsert, customer, traits)

    async def emit(
        self, name: str, customer: str, properties: dict[str, Any], message_id: str | None = None
    ) -> list[Routed]:
        profile = await asyncio.to_thread(self.profiles.get, customer) or Profile(id=customer)
        event = Event(
            message_id=message_id or str(uuid.uuid4()),
            event=name,
            customer_id=customer,
            properties=properties,
            timestamp=datetime.now(UTC),
        )
        return await self.router.route(event, profile)


def read_calls(path: Path) -> list[dict[str, Any]]:
    """Segment-shaped calls, one JSON object a line (``type`` identify or track)."""
    calls = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            call = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not JSON: {error.msg}") from None
        if not isinstance(call, dict) or call.get("type", "track") not in ("identify", "track"):
            raise ValueError(f"{path}:{number}: expected {{type: identify|track, userId, …}}")
        if not call.get("userId"):
            raise ValueError(f"{path}:{number}: userId is missing")
        if call.get("type", "track") == "track" and not call.get("event"):
            raise ValueError(f"{path}:{number}: event is missing")
        calls.append(call)
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
    _, config = _project(project)
    client = await connect(load_settings(config))
    clauses = ["WorkflowType = 'JourneyWorkflow'"]
    if journey:
        clauses.append(f"{JOURNEY_ID.name} = '{_quote(journey)}'")
    if customer:
        clauses.append(f"{CUSTOMER.name} = '{customer_hash(customer)}'")
    if outcome:
        clauses.append(f"{JOURNEY_OUTCOME.name} = '{_quote(outcome)}'")
    if running:
        clauses.append("ExecutionStatus = 'Running'")
    rows = []
    async for run in client.list_workflows(" AND ".join(clauses), limit=limit):
        attributes = run.typed_search_attributes
        rows.append(
            [
                run.id,
                run.status.name.lower() if run.status else "?",
                attributes.get(JOURNEY_STEP) or "-",
                attributes.get(JOURNEY_OUTCOME) or "-",
                run.start_time.isoformat(timespec="seconds"),
            ]
        )
    return rows


async def show_run(project: Path, workflow_id: str) -> str:
    _, config = _project(project)
    client = await connect(load_settings(config))
    try:
        state = await client.get_workflow_handle(workflow_id).query("state")
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
    lines += [
        f"  {e.at.isoformat(timespec='seconds')}  {e.step:<24} {e.kind:<10} {e.detail}"
        for e in view.timeline
    ]
    return "\n".join(lines)


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
