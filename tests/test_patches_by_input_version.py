"""Input version 3: a run started by code that has every patch of ``PATCHES_OF_VERSION_3`` takes
them without asking ``workflow.patched`` — no marker, no ``TemporalChangeVersion`` upsert in its
history. Runs of versions 1 and 2 ask as before: their histories hold the markers their replay
needs (``tests/test_replay.py`` replays both kinds from the corpus).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner
from temporalio.workflow import NondeterminismError

from simulation.recording import RecordingActivities
from tests import corpus
from tests.conftest import ROOT
from tests.temporal import event, plan_from, running_workers, start_run
from workflows.journey import PATCHES_OF_VERSION_3, JourneyWorkflow, started_with_patch
from workflows.models import INPUT_VERSION, JourneyInput, Profile, RunResult, RunSettings
from workflows.registry import Deployment

DAY_A_SECOND = 1 / 86_400
SERIES = """
id: series-{tag}
name: A short series
category: marketing
trigger:
  event: Signed Up
steps:
  - id: hello
    send: email
    template: newsletter-welcome
  - id: pause
    wait: 2d
  - id: interested
    branch:
      - if: "'laptops' in profile.traits.interests | default([])"
        goto: picks
    else: end
  - id: picks
    send: email
    template: newsletter-recommendations
"""


def test_version_3_runs_take_the_patches_they_were_started_with() -> None:
    assert INPUT_VERSION == 4, "new runs start with version 4 (the patches of version 3 too)"
    for patch in PATCHES_OF_VERSION_3:
        assert started_with_patch(3, patch) and started_with_patch(4, patch), patch
        assert not started_with_patch(2, patch) and not started_with_patch(1, patch), patch
    assert not started_with_patch(3, "a-patch-added-later"), "asked for, as usual"


def test_the_patches_of_version_3_are_those_it_shipped_with() -> None:
    """Never edited: a patch added to the set later would turn on, on replay, in version 3
    runs that started before it existed (and that took the old branch)."""
    shipped = {
        "bounded-expressions",
        "continue-as-new-in-waits",
        "erasure-outcome",
        "index-waiting-steps-only",
        "journey-stop",
        "long-send-retries",
        "lookup-path-values-encoded",
        "wait-until-wall-clock-offset",
    }
    assert shipped == PATCHES_OF_VERSION_3
    source = (ROOT / "workflows" / "core.py").read_text()
    asked = set(re.findall(r'self\._patched\("([^"]+)"\)', source))
    assert asked >= PATCHES_OF_VERSION_3, "each one is a patch the interpreter asks through"


def change_version_upserts(history: WorkflowHistory) -> int:
    return corpus.upserted(history).count("TemporalChangeVersion")


async def test_a_version_3_run_does_what_a_version_2_run_does_without_markers(
    dev_env: WorkflowEnvironment,
) -> None:
    """The same journey and customer, started as version 2 and as version 3 on the dev server
    with search attributes on (a day lasts a second): the same steps and sends; version 2
    records a marker and a ``TemporalChangeVersion`` upsert per patch it takes, version 3
    neither; both replay."""
    plan = plan_from(SERIES.format(tag=uuid.uuid4().hex[:6]))
    customer = f"max-{uuid.uuid4().hex[:6]}"
    profile = Profile(id=customer, email="max@example.com", traits={"interests": ["laptops"]})
    recorder = RecordingActivities(profiles={customer: profile})
    runs: dict[int, tuple[RunResult, WorkflowHistory]] = {}
    async with running_workers(dev_env.client, recorder.all(), index_runs=True) as prefix:
        for version in (2, 3):
            handle = await start_run(
                dev_env.client,
                plan,
                prefix,
                event("Signed Up", customer),
                settings=RunSettings(queue_prefix=prefix, time_scale=DAY_A_SECOND),
                by_reference=True,
                input_version=version,
            )
            result = RunResult.model_validate(await asyncio.wait_for(handle.result(), 60))
            runs[version] = (result, await handle.fetch_history())
    (old, old_history), (new, new_history) = runs[2], runs[3]
    assert [(e.step, e.kind) for e in new.timeline] == [(e.step, e.kind) for e in old.timeline]
    assert [e.kind for e in new.timeline].count("sent") == 2
    assert [m.template for m in recorder.sent] == 2 * [
        "newsletter-welcome",
        "newsletter-recommendations",
    ]
    taken = corpus.patches(old_history)
    assert set(taken) == {
        "bounded-expressions",
        "index-waiting-steps-only",
        "long-send-retries",
        "continue-as-new-in-waits",
    }
    assert change_version_upserts(old_history) == len(taken)
    assert corpus.patches(new_history) == [] and change_version_upserts(new_history) == 0
    assert len(old_history.events) - len(new_history.events) == 2 * len(taken)
    worker = corpus.Recording(
        story="the same run on two input versions",
        workflow_id="",
        run_id="",
        recorded_on=corpus.DEV_SERVER,
        deployment=dataclasses.asdict(
            Deployment(index_runs=True, default_timezone="Europe/Berlin")
        ),
    )
    for history in (old_history, new_history):
        replayed = await corpus.replay(history, worker, plans=[plan])
        assert replayed.replay_failure is None, replayed.replay_failure


@workflow.defn(name="JourneyWorkflow")
class InterpreterThatNeverAsks(JourneyWorkflow):
    """A careless change: take the patches of version 3 unasked in every run, whatever its
    input version."""

    @workflow.init
    def __init__(self, run_input: JourneyInput) -> None:
        super().__init__(run_input)
        self.core._patched = self._patched  # type: ignore[method-assign]

    @workflow.run
    async def run(self, run_input: JourneyInput) -> RunResult:
        return await super().run(run_input)

    def _patched(self, patch_id: str) -> Any:
        return started_with_patch(INPUT_VERSION, patch_id) or workflow.patched(patch_id)


async def test_a_version_2_history_does_not_replay_without_asking_for_its_patches() -> None:
    """Why version 1 and 2 runs keep asking: the Python SDK does not skip a ``patched`` marker
    that the code no longer asks for (only markers of ``deprecate_patch`` may be left
    unasked); the replay fails."""
    name = "newsletter-welcome-whole-series"
    assert corpus.run_input(corpus.entry(name).history()).input_version == 2
    assert corpus.patches(corpus.entry(name).history()), "it recorded markers"
    result = await corpus.replay_entry(
        corpus.entry(name), workflows=[InterpreterThatNeverAsks], runner=UnsandboxedWorkflowRunner()
    )
    assert isinstance(result.replay_failure, NondeterminismError), result.replay_failure
    assert "Non-deprecated patch marker encountered" in str(result.replay_failure)


def test_recording_a_version_3_run_keeps_the_version_2_history_it_replaces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``make histories`` re-records the stories as version 3 runs; the version 2 histories
    they replace move to ``input-v2/`` (only they show the patch markers)."""
    name = "newsletter-welcome-whole-series"
    original = corpus.entry(name)
    sidecar = original.path.with_name(f"{name}{corpus.SIDECAR}")
    (tmp_path / f"{name}.json").write_text(original.path.read_text())
    (tmp_path / f"{name}{corpus.SIDECAR}").write_text(sidecar.read_text())
    monkeypatch.setattr(corpus, "CORPUS", tmp_path)
    corpus._keep_older_version(name, input_version=2)  # the same version: overwritten in place
    assert (tmp_path / f"{name}.json").exists()
    corpus._keep_older_version(name, input_version=3)
    assert not (tmp_path / f"{name}.json").exists()
    kept = tmp_path / "input-v2" / f"{name}.json"
    assert kept.read_text() == original.path.read_text()
    assert (tmp_path / "input-v2" / f"{name}{corpus.SIDECAR}").exists()
    assert [e.name for e in corpus.entries()] == [f"input-v2/{name}"]
