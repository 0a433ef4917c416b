"""The replay corpus: histories of real runs on real Temporal servers, kept in ``tests/histories``
and replayed against today's interpreter in CI (``tests/test_replay.py``).

Layout::

    tests/histories/<journey>-<scenario>.json            a run's history (Temporal's JSON)
    tests/histories/<journey>-<scenario>.recording.json  how it was recorded (story, worker
                                                         settings the run got, server)
    tests/histories/plans/<version>.json                 the compiled plans those runs
                                                         referenced, by version
    tests/histories/input-v1/…                           runs recorded before input version 2
                                                         (plan and settings in the input);
                                                         never re-recorded
    tests/histories/input-v<n>/…                         where a recording of a newer input
                                                         version moves the history it replaces

Runs of input version 3 record no ``workflow.patched`` markers (they take every patch they were
started with); the histories of version 1 and 2 runs are the ones that show the patched
branches with their markers, and the coverage test in ``tests/test_replay.py`` wants both.

A run of input version 2 or later carries only a reference to its plan, so the plan is stored beside
the history and checked against its version (a content hash) before a replay: a journey file
that changed since cannot silently replay a different plan. The worker's settings the run got
(``workflows.registry.Deployment``: search attributes on or off, history limit, …) change the
commands it issues, so they are stored too and handed to the replayer.

Histories are written by tests marked ``records_history`` when ``RECORD_HISTORIES=1``
(``make histories``); without it those tests still run their story and check that the fresh
history replays. A name belongs to one run per session: recording a different run under a
name already recorded fails (:class:`NameTaken`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, WorkflowReplayResult

from workflows import registry
from workflows.journey import JourneyWorkflow
from workflows.models import JourneyInput, RunResult
from workflows.plan import Plan
from workflows.registry import Deployment
from workflows.sandbox import journey_workflow_runner

CORPUS = Path(__file__).parent / "histories"
PLANS = CORPUS / "plans"
SIDECAR = ".recording.json"
RECORDING = os.environ.get("RECORD_HISTORIES") == "1"
SCENARIO = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
DEV_SERVER = "dev server"
TIME_SKIPPING = "time-skipping server"


class CorpusError(Exception):
    """The corpus is not what replays need: a missing or changed plan, a name taken twice."""


class NameTaken(CorpusError):
    """Two runs recorded under one name in one session: the second would overwrite the first."""


class Recording(BaseModel):
    """``<name>.recording.json``: how a history was recorded."""

    model_config = ConfigDict(extra="forbid")

    story: str  # what happens in the run, in a sentence
    workflow_id: str
    run_id: str
    recorded_on: str  # DEV_SERVER or TIME_SKIPPING
    deployment: dict[str, Any] | None = None  # the worker's settings; none: in the input (v1)

    def worker_settings(self) -> Deployment:
        return Deployment(**(self.deployment or {}))


@dataclass(frozen=True)
class Entry:
    """One history of the corpus."""

    name: str  # its path under tests/histories, without ``.json``
    path: Path

    @property
    def recording(self) -> Recording:
        sidecar = self.path.with_name(self.path.name.removesuffix(".json") + SIDECAR)
        if not sidecar.exists():
            raise CorpusError(f"{self.name}: no {sidecar.name} beside it (how it was recorded)")
        return Recording.model_validate_json(sidecar.read_text())

    def history(self) -> WorkflowHistory:
        return WorkflowHistory.from_json(self.name, json.loads(self.path.read_text()))


def entries() -> list[Entry]:
    """Every history in the corpus, by name."""
    found = [
        Entry(str(path.relative_to(CORPUS).with_suffix("")), path)
        for path in CORPUS.rglob("*.json")
        if not path.name.endswith(SIDECAR) and path.parent != PLANS
    ]
    return sorted(found, key=lambda e: e.name)


def entry(name: str) -> Entry:
    [found] = [e for e in entries() if e.name == name]
    return found


# --- what a history says ----------------------------------------------------------------------


def run_input(history: WorkflowHistory) -> JourneyInput:
    started = history.events[0].workflow_execution_started_event_attributes
    return _decode(started.input.payloads, JourneyInput)


def result_of(history: WorkflowHistory) -> RunResult | None:
    """The run's result, if it completed (not continued as new, cancelled, …)."""
    last = history.events[-1]
    if last.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
        return None
    return _decode(last.workflow_execution_completed_event_attributes.result.payloads, RunResult)


def continued_with(history: WorkflowHistory) -> JourneyInput | None:
    """The input the run continued as new with, if it did."""
    last = history.events[-1]
    if last.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
        return None
    attributes = last.workflow_execution_continued_as_new_event_attributes
    return _decode(attributes.input.payloads, JourneyInput)


def patches(history: WorkflowHistory) -> list[str]:
    """The ``workflow.patched`` ids the run recorded (each one: the new branch was taken)."""
    found = []
    for event in history.events:
        if event.event_type != EventType.EVENT_TYPE_MARKER_RECORDED:
            continue
        marker = event.marker_recorded_event_attributes
        if marker.marker_name == "core_patch":
            found.append(json.loads(marker.details["patch-data"].payloads[0].data)["id"])
    return found


def upserted(history: WorkflowHistory) -> list[str]:
    """The search attributes the run's upserts set, one name per time (``TemporalChangeVersion``
    each time a ``workflow.patched`` id was first taken)."""
    upserts = events_of(history, EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES)
    attributes = [e.upsert_workflow_search_attributes_event_attributes for e in upserts]
    return [name for a in attributes for name in a.search_attributes.indexed_fields]


def events_of(history: WorkflowHistory, kind: EventType.ValueType) -> list[HistoryEvent]:
    return [e for e in history.events if e.event_type == kind]


def _decode(payloads: Sequence[Any], kind: type) -> Any:
    [value] = pydantic_data_converter.payload_converter.from_payloads(list(payloads), [kind])
    return value


# --- plans --------------------------------------------------------------------------------------


def stored_plan(version: str) -> Plan:
    """The plan stored under ``version``, checked against its content hash."""
    path = PLANS / f"{version}.json"
    if not path.exists():
        raise CorpusError(f"no plan {version} in {PLANS}: record the history again")
    plan = Plan.model_validate_json(path.read_text())
    if plan.version != version or plan.content_hash() != version:
        raise CorpusError(
            f"{path.name}: its content hashes to {plan.content_hash()}, not {version}: a stored "
            "plan never changes (record the history again instead)"
        )
    return plan


def plans_needed(history: WorkflowHistory) -> list[str]:
    """The plan versions a replay of ``history`` needs from the registry (none: in the input)."""
    started = run_input(history)
    return [] if started.plan is not None else [started.plan_version]


# --- replaying ----------------------------------------------------------------------------------


async def replay(
    history: WorkflowHistory,
    recording: Recording,
    plans: Iterable[Plan] | None = None,
    workflows: Sequence[type] = (JourneyWorkflow,),
    runner: Any = None,
) -> WorkflowReplayResult:
    """Replay ``history`` as the worker that ran it would: its plans (``plans``, else those
    stored in the corpus) in the registry, and its settings on the replayer's task queue."""
    given = {plan.version: plan for plan in plans} if plans is not None else None
    needed = []
    for version in plans_needed(history):
        plan = given.get(version) if given is not None else stored_plan(version)
        if plan is None:
            raise CorpusError(f"{history.workflow_id}: needs plan {version}, which was not given")
        needed.append(plan)
    registry.register(needed)
    # The replayer runs the workflow on the task queue "replay-<build id>" (temporalio's
    # Replayer): give that queue the settings the recording worker gave the run.
    build_id = f"corpus-{uuid.uuid4().hex[:12]}"
    registry.deploy(f"replay-{build_id}", recording.worker_settings())
    replayer = Replayer(
        workflows=list(workflows),
        workflow_runner=runner or journey_workflow_runner(checked=True),
        data_converter=pydantic_data_converter,
        build_id=build_id,
    )
    return await replayer.replay_workflow(history, raise_on_replay_failure=False)


async def replay_entry(
    found: Entry, workflows: Sequence[type] = (JourneyWorkflow,), runner: Any = None
) -> WorkflowReplayResult:
    return await replay(found.history(), found.recording, workflows=workflows, runner=runner)


# --- recording ----------------------------------------------------------------------------------

_claimed: dict[str, str] = {}  # name → run id, in this session


def claim(name: str, run_id: str) -> None:
    """Take ``name`` for the run ``run_id``; a name recorded for another run in this session
    is :class:`NameTaken` (the second recording would overwrite the first)."""
    holder = _claimed.setdefault(name, run_id)
    if holder != run_id:
        raise NameTaken(
            f"{name} is already the history of run {holder} in this session; give the run "
            f"{run_id} its own scenario name"
        )


async def record(
    client: Client,
    workflow_id: str,
    scenario: str,
    story: str,
    *,
    recorded_on: str,
    plans: Iterable[Plan] = (),
    deployment: Deployment | None = None,
) -> list[str]:
    """Replay every run of ``workflow_id`` (a continue-as-new chain: ``<journey>-<scenario>``,
    then ``…-run-2`` …) against this interpreter, and store them in the corpus when
    ``RECORD_HISTORIES=1``. ``plans``: those the runs reference; ``deployment``: the settings
    the worker gave them (default: what this process's worker gives their task queue).
    Returns the names."""
    if not SCENARIO.fullmatch(scenario):
        raise CorpusError(f"scenario {scenario!r}: lowercase words joined by '-'")
    given = {plan.version: plan for plan in plans}
    names = []
    for n, history in enumerate(await _chain(client, workflow_id), start=1):
        started = run_input(history)
        journey = started.plan.journey_id if started.plan is not None else started.journey_id
        name = f"{journey}-{scenario}" + (f"-run-{n}" if n > 1 else "")
        claim(name, history.run_id)
        queue = history.events[0].workflow_execution_started_event_attributes.task_queue.name
        settings = deployment or registry.settings_for(queue)
        recording = Recording(
            story=story if n == 1 else f"{story} (run {n}, after continue-as-new)",
            workflow_id=workflow_id,
            run_id=history.run_id,
            recorded_on=recorded_on,
            deployment=dataclasses.asdict(settings),
        )
        replayed = await replay(history, recording, plans=given.values())
        if replayed.replay_failure is not None:
            raise CorpusError(f"{name} does not replay: {replayed.replay_failure}")
        if RECORDING:
            _write(name, history, recording, [given[v] for v in plans_needed(history)])
        names.append(name)
    return names


async def _chain(client: Client, workflow_id: str) -> list[WorkflowHistory]:
    """The histories of every run of ``workflow_id``, the first run first."""
    histories = [await client.get_workflow_handle(workflow_id).fetch_history()]
    while True:
        started = histories[0].events[0].workflow_execution_started_event_attributes
        if not started.continued_execution_run_id:
            return histories
        handle = client.get_workflow_handle(workflow_id, run_id=started.continued_execution_run_id)
        histories.insert(0, await handle.fetch_history())


def _write(name: str, history: WorkflowHistory, recording: Recording, plans: list[Plan]) -> None:
    PLANS.mkdir(parents=True, exist_ok=True)
    _keep_older_version(name, run_input(history).input_version)
    for plan in plans:
        (PLANS / f"{plan.version}.json").write_text(
            json.dumps(plan.model_dump(mode="json"), indent=1, sort_keys=True) + "\n"
        )
    (CORPUS / f"{name}.json").write_text(history.to_json())
    (CORPUS / f"{name}{SIDECAR}").write_text(recording.model_dump_json(indent=2) + "\n")


def _keep_older_version(name: str, input_version: int) -> None:
    """A history recorded from an older input version is not overwritten by a newer run under
    its name: it moves to ``input-v<n>/`` (and is never re-recorded there). Runs of that
    version may still be running, and only its histories hold the patch markers they
    replay with (see ``workflows.journey.started_with_patch``)."""
    path = CORPUS / f"{name}.json"
    if not path.exists():
        return
    stored = run_input(WorkflowHistory.from_json(name, json.loads(path.read_text())))
    if stored.input_version == input_version:
        return
    keep = CORPUS / f"input-v{stored.input_version}"
    keep.mkdir(exist_ok=True)
    sidecar = CORPUS / f"{name}{SIDECAR}"
    path.rename(keep / path.name)
    if sidecar.exists():
        sidecar.rename(keep / sidecar.name)
