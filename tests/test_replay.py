"""Recorded histories replay against today's interpreter, and the corpus covers what the
interpreter claims: every ``workflow.patched`` branch, exits, the goal, continue-as-new between
steps and inside a wait, cancel, a holdout and a long retry, from runs of input version 2 and
from runs recorded before it (version 1).

An interpreter change that would alter the commands of runs already running fails here; such a
change goes behind ``workflow.patched()`` (docs/operations.md, "Changing the interpreter").
Re-record the corpus with ``make histories`` after an intended, patched change; the layout and
the recorder are in ``tests/corpus.py``.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from functools import cache
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner
from temporalio.workflow import NondeterminismError

from simulation.recording import RecordingActivities
from tests import corpus
from tests.conftest import ROOT
from tests.temporal import event, plan_from, running_workers, start_run
from workflows import registry
from workflows.journey import (
    PATCHES_OF_VERSION_3,
    SEND_RETRY,
    JourneyWorkflow,
    started_with_patch,
)
from workflows.models import SEND_ACTIVITIES, CancelRequest, JourneyInput, RunResult
from workflows.plan import Node
from workflows.privacy_models import erasure_cancel

HISTORIES = corpus.entries()
EXAMPLES = ("newsletter-welcome", "laptop-recommendation", "post-purchase-accessories")


@cache
def history(name: str) -> WorkflowHistory:
    return corpus.entry(name).history()


def started(name: str) -> JourneyInput:
    return corpus.run_input(history(name))


def v2() -> list[str]:
    return [e.name for e in HISTORIES if started(e.name).input_version >= 2]


def results() -> dict[str, RunResult]:
    return {n: r for n in v2() if (r := corpus.result_of(history(n))) is not None}


# --- every history replays ----------------------------------------------------------------------


@pytest.mark.parametrize("entry", HISTORIES, ids=lambda e: e.name)
async def test_a_recorded_history_replays(entry: corpus.Entry) -> None:
    result = await corpus.replay_entry(entry)
    assert result.replay_failure is None, result.replay_failure


def test_every_history_says_how_it_was_recorded() -> None:
    for entry in HISTORIES:
        recording = entry.recording
        attributes = history(entry.name).events[0].workflow_execution_started_event_attributes
        assert recording.run_id == attributes.original_execution_run_id, entry.name
        if attributes.workflow_id:  # the time-skipping server leaves it out
            assert recording.workflow_id == attributes.workflow_id, entry.name
        assert recording.recorded_on in (corpus.DEV_SERVER, corpus.TIME_SKIPPING), entry.name
        assert (recording.deployment is None) == (started(entry.name).settings is not None), (
            f"{entry.name}: version 2 runs get their settings from the worker: store them"
        )


# --- names ------------------------------------------------------------------------------------


def test_each_history_is_named_for_its_journey_and_holds_its_own_run() -> None:
    runs: dict[str, str] = {}
    for entry in HISTORIES:
        run = started(entry.name)
        journey = run.plan.journey_id if run.plan is not None else run.journey_id
        assert Path(entry.name).name.startswith(f"{journey}-"), entry.name
        other = runs.setdefault(history(entry.name).run_id, entry.name)
        assert other == entry.name, f"{entry.name} and {other} hold the same run"


def test_the_recorder_refuses_a_second_run_under_a_name_it_recorded() -> None:
    name = f"journey-{uuid.uuid4().hex[:6]}"
    corpus.claim(name, "run-1")
    corpus.claim(name, "run-1")  # the same run again: fine
    with pytest.raises(corpus.NameTaken, match="already the history of run run-1"):
        corpus.claim(name, "run-2")


async def test_recording_two_runs_under_one_scenario_fails_before_writing(
    time_env: WorkflowEnvironment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the time-skipping server, recording into a scratch corpus: the first run is stored
    (and replays from the stored files), the second with the same scenario is refused."""
    monkeypatch.setattr(corpus, "RECORDING", True)
    monkeypatch.setattr(corpus, "CORPUS", tmp_path)
    monkeypatch.setattr(corpus, "PLANS", tmp_path / "plans")
    plan = plan_from(f"""
id: note-{uuid.uuid4().hex[:6]}
name: A note
category: transactional
trigger:
  event: Signed Up
steps:
  - send: email
    template: newsletter-welcome
""")
    scenario = "the-same-story"
    async with running_workers(time_env.client, RecordingActivities().all()) as prefix:
        handles = [
            await start_run(time_env.client, plan, prefix, event("Signed Up"), by_reference=True)
            for _ in range(2)
        ]
        for handle in handles:
            await handle.result()
        [name] = await corpus.record(
            time_env.client, handles[0].id, scenario, "one note",
            recorded_on=corpus.TIME_SKIPPING, plans=[plan],
        )  # fmt: skip
        with pytest.raises(corpus.NameTaken):
            await corpus.record(
                time_env.client, handles[1].id, scenario, "another note",
                recorded_on=corpus.TIME_SKIPPING, plans=[plan],
            )  # fmt: skip
    assert name == f"{plan.journey_id}-{scenario}"
    [stored] = corpus.entries()
    assert stored.recording.run_id == handles[0].result_run_id
    assert sorted(p.name for p in (tmp_path / "plans").iterdir()) == [f"{plan.version}.json"]
    registry._plans.pop(plan.version)  # the replay must find it in the scratch corpus
    assert (await corpus.replay_entry(stored)).replay_failure is None


# --- what the corpus covers -------------------------------------------------------------------


def claimed_patches() -> set[str]:
    """The patch ids the interpreter's core asks for (``self._patched`` or ``host.patched``)."""
    source = (ROOT / "workflows" / "core.py").read_text()
    return set(re.findall(r'(?:host\.|self\._)patched\("([^"]+)"\)', source))


def test_every_patched_branch_has_a_history_that_takes_it() -> None:
    """With its marker, in a run of input version 2 (version 3 runs take the patches they were
    started with without markers, so their histories cannot show them); a patch added after
    version 3 is asked by every run, so a history of any version may show it."""
    claimed = claimed_patches()
    assert {"index-waiting-steps-only", "long-send-retries"} <= claimed, "the pattern finds them"
    taken = {
        patch
        for name in v2()
        for patch in corpus.patches(history(name))
        if not started_with_patch(started(name).input_version, patch)
    }
    assert claimed <= taken, f"no history takes {sorted(claimed - taken)} with its marker"


def test_version_3_histories_take_their_patches_without_markers() -> None:
    """And the corpus holds such runs."""
    v3 = [name for name in v2() if started(name).input_version >= 3]
    assert v3, "no history of input version 3"
    for name in v3:
        markers = [p for p in corpus.patches(history(name)) if p in PATCHES_OF_VERSION_3]
        assert markers == [], f"{name} recorded markers of {markers}"
        if not corpus.patches(history(name)):  # a patch added later is asked for, as usual
            assert "TemporalChangeVersion" not in corpus.upserted(history(name)), name


def test_a_long_retry_is_recorded() -> None:
    """A send that succeeded after more attempts than the old policy allowed (ten)."""
    attempts = {
        name: event.activity_task_started_event_attributes.attempt
        for name in v2()
        if "long-send-retries" in corpus.patches(history(name))
        for event in corpus.events_of(history(name), EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED)
    }
    assert max(attempts.values()) > SEND_RETRY.maximum_attempts, attempts
    sends = [
        e
        for name in v2()
        for e in corpus.events_of(history(name), EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)
    ]
    assert {e.activity_task_scheduled_event_attributes.activity_type.name for e in sends} >= {
        SEND_ACTIVITIES["email"]
    }


@pytest.mark.parametrize("kind", ["completed", "converted", "exited", "cancelled", "erased"])
def test_each_way_a_run_ends_is_recorded(kind: str) -> None:
    assert kind in {r.outcome.kind for r in results().values()}


def test_a_cancel_requested_in_temporal_is_recorded() -> None:
    last = {history(n).events[-1].event_type for n in v2()}
    assert EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED in last


def test_a_holdout_is_recorded() -> None:
    held = [n for n, r in results().items() if any(e.kind == "held out" for e in r.timeline)]
    assert held


@pytest.mark.parametrize("inside_a_wait", [False, True], ids=["between-steps", "inside-a-wait"])
def test_continue_as_new_is_recorded_with_the_run_that_follows(inside_a_wait: bool) -> None:
    continued = {
        n: i for n in v2() if (i := corpus.continued_with(history(n))) is not None and i.state
    }
    chains = [
        n
        for n, next_input in continued.items()
        if next_input.state is not None and (next_input.state.resume is not None) == inside_a_wait
    ]
    assert chains, "no run continued as new " + ("inside a wait" if inside_a_wait else "between")
    followers = [n for n in v2() if started(n).state is not None]
    assert any(f == f"{n}-run-2" for n in chains for f in followers), "and the run after it"


def test_the_post_purchase_history_is_the_six_message_run() -> None:
    runs = {n: r for n, r in results().items() if n.startswith("post-purchase-accessories-")}
    sent = {n: [e.step for e in r.timeline if e.kind == "sent"] for n, r in runs.items()}
    assert any(len(steps) == 6 for steps in sent.values()), sent


def test_each_example_journey_has_histories_from_both_input_versions() -> None:
    for journey in EXAMPLES:
        versions = {
            started(e.name).input_version
            for e in HISTORIES
            if Path(e.name).name.startswith(f"{journey}-")
        }
        assert versions >= {1, 2}, journey
    before_patches = [e.name for e in HISTORIES if not corpus.patches(history(e.name))]
    assert any(started(n).input_version == 1 for n in before_patches), "runs before any patch"


def test_version_2_histories_reference_their_plans() -> None:
    for name in v2():
        run = started(name)
        assert run.plan is None and run.profile is None and run.settings is None, name
        assert corpus.stored_plan(run.plan_version).journey_id == run.journey_id, name


# --- replays are honest -----------------------------------------------------------------------


@workflow.defn(name="JourneyWorkflow")
class InterpreterWithoutStepIndex(JourneyWorkflow):
    """A careless change: stop upserting the current step (fewer commands than recorded)."""

    @workflow.init
    def __init__(self, run_input: JourneyInput) -> None:
        super().__init__(run_input)
        self.core._index_step = self._index_step  # type: ignore[method-assign]

    @workflow.run
    async def run(self, run_input: JourneyInput) -> RunResult:
        return await super().run(run_input)

    def _index_step(self, node: Node) -> None:
        return None


@pytest.mark.parametrize(
    "name",
    [
        "input-v1/newsletter-welcome-completed.before-index-waits",
        "post-purchase-accessories-detractor-six-messages",
    ],
)
async def test_a_careless_interpreter_change_is_caught(name: str) -> None:
    result = await corpus.replay_entry(
        corpus.entry(name),
        workflows=[InterpreterWithoutStepIndex],
        runner=UnsandboxedWorkflowRunner(),
    )
    assert isinstance(result.replay_failure, NondeterminismError), result.replay_failure


async def test_a_history_does_not_replay_against_a_plan_that_changed_since() -> None:
    """Why plans are stored with the histories: had the replay compiled today's journey file,
    a journey changed since would replay as if the run had taken it."""
    name = "post-purchase-accessories-detractor-six-messages"
    recorded = corpus.stored_plan(started(name).plan_version)
    text = (ROOT / "journeys" / "post-purchase-accessories.yaml").read_text()
    without_lookup = re.sub(r"\n  - id: accessories\n(    .*\n)+", "\n", text)
    assert without_lookup != text
    changed = plan_from(without_lookup).model_copy(update={"version": recorded.version})
    try:
        replayed = await corpus.replay(history(name), corpus.entry(name).recording, plans=[changed])
    finally:
        registry.register([recorded])
    assert isinstance(replayed.replay_failure, NondeterminismError), replayed.replay_failure


async def test_a_history_replays_with_the_settings_its_worker_gave_it() -> None:
    """Why the worker's settings are stored with the histories: the same run replayed as if
    its worker had kept search attributes (it did not) would issue other commands."""
    name = "race-event-and-timeout-in-one-task"
    recording = corpus.entry(name).recording
    assert recording.worker_settings().index_runs is False
    indexed = recording.model_copy(
        update={"deployment": {**(recording.deployment or {}), "index_runs": True}}
    )
    replayed = await corpus.replay(history(name), indexed)
    assert isinstance(replayed.replay_failure, NondeterminismError), replayed.replay_failure


def _erased_by_an_older_worker(name: str) -> WorkflowHistory:
    """``name``'s history with its ``cancel`` signal as an erasure sends it: what a worker
    from before ``erasure-outcome`` recorded (it ignored the flag and cancelled the run)."""
    recorded = corpus.entry(name).path.read_text()
    data = json.loads(recorded)
    [signal] = [
        e["workflowExecutionSignaledEventAttributes"]
        for e in data["events"]
        if e.get("workflowExecutionSignaledEventAttributes", {}).get("signalName") == "cancel"
    ]
    erasure = erasure_cancel().model_dump_json().encode()
    signal["input"]["payloads"][0]["data"] = base64.b64encode(erasure).decode()
    return WorkflowHistory.from_json(name, data)


async def test_a_run_an_older_worker_ended_for_an_erasure_replays_as_cancelled() -> None:
    """A run erased during a rolling deploy, on a worker from before the ``erased`` outcome,
    replays on today's (a query of the closed run, ``touchpoint runs show``): no marker, so the
    old branch, ``cancelled``, as recorded. Temporal does not catch the careless change here —
    a search attribute's value and a result are not compared on replay — so this test does:
    without the patch the replayed run would say ``erased`` where its history says
    ``cancelled``."""
    name = "newsletter-welcome-cancelled-by-an-operator"
    old = _erased_by_an_older_worker(name)
    assert "erasure-outcome" not in corpus.patches(old)
    recording = corpus.entry(name).recording
    outcomes = []
    for interpreter in (ObservedInterpreter, InterpreterWithoutErasurePatch):
        REPLAYED.clear()
        replayed = await corpus.replay(
            old, recording, workflows=[interpreter], runner=UnsandboxedWorkflowRunner()
        )
        assert replayed.replay_failure is None, replayed.replay_failure
        outcomes += REPLAYED
    assert outcomes == ["cancelled", "erased"]


REPLAYED: list[str] = []  # the outcomes the observed interpreters' replays ended with


@workflow.defn(name="JourneyWorkflow")
class ObservedInterpreter(JourneyWorkflow):
    """Today's interpreter, telling the test how a replayed run ended (unsandboxed)."""

    @workflow.init
    def __init__(self, run_input: JourneyInput) -> None:
        super().__init__(run_input)

    @workflow.run
    async def run(self, run_input: JourneyInput) -> RunResult:
        result = await super().run(run_input)
        REPLAYED.append(result.outcome.kind)
        return result


@workflow.defn(name="JourneyWorkflow")
class InterpreterWithoutErasurePatch(ObservedInterpreter):
    """A careless change: end an erased run as ``erased`` without asking the patch."""

    @workflow.init
    def __init__(self, run_input: JourneyInput) -> None:
        super().__init__(run_input)

    @workflow.run
    async def run(self, run_input: JourneyInput) -> RunResult:
        return await super().run(run_input)

    @workflow.signal(name="cancel")
    def on_cancel(self, request: CancelRequest) -> None:
        if self.core.state.outcome is None:
            kind = "erased" if request.erased else "cancelled"
            self.core._finish(kind, reason=request.reason)


def test_a_stored_plan_that_was_edited_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    version = started("post-purchase-accessories-detractor-six-messages").plan_version
    stored = json.loads((corpus.PLANS / f"{version}.json").read_text())
    stored["nodes"]["survey"]["template"] = "referral-request"
    (tmp_path / f"{version}.json").write_text(json.dumps(stored))
    monkeypatch.setattr(corpus, "PLANS", tmp_path)
    with pytest.raises(corpus.CorpusError, match="a stored plan never changes"):
        corpus.stored_plan(version)
