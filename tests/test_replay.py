"""Recorded histories of the example journeys replay against today's interpreter.

An interpreter change that would alter the commands of journeys already running fails here;
such a change must go behind ``workflow.patched()`` (docs/operations.md). Refresh the corpus
with ``make histories`` after an intended, patched change.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner
from temporalio.workflow import NondeterminismError

from workflows.journey import JourneyWorkflow
from workflows.models import JourneyInput, RunResult
from workflows.plan import Node
from workflows.sandbox import journey_workflow_runner

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, json.loads(path.read_text()))


def test_there_is_a_history_for_each_example_journey() -> None:
    names = {path.stem for path in HISTORIES}
    assert {
        "newsletter-welcome-completed",
        "laptop-recommendation-completed",
        "laptop-recommendation-converted",
        "post-purchase-accessories-completed",
    } <= names


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_a_recorded_history_replays(path: Path) -> None:
    replayer = Replayer(
        workflows=[JourneyWorkflow],
        workflow_runner=journey_workflow_runner(),
        data_converter=pydantic_data_converter,
    )
    result = await replayer.replay_workflow(load(path))
    assert result.replay_failure is None


@workflow.defn(name="JourneyWorkflow")
class InterpreterWithoutStepIndex(JourneyWorkflow):
    """A careless change: stop upserting the current step (fewer commands than recorded)."""

    @workflow.init
    def __init__(self, run_input: JourneyInput) -> None:
        super().__init__(run_input)

    @workflow.run
    async def run(self, run_input: JourneyInput) -> RunResult:
        return await super().run(run_input)

    def _index_step(self, node: Node) -> None:
        return None


async def test_a_careless_interpreter_change_is_caught() -> None:
    replayer = Replayer(
        workflows=[InterpreterWithoutStepIndex],
        workflow_runner=UnsandboxedWorkflowRunner(),
        data_converter=pydantic_data_converter,
    )
    with pytest.raises(NondeterminismError):
        await replayer.replay_workflow(load(HISTORIES[0]))
