"""The interpreter is passed through the sandbox by workers (loaded once per process) and checked
inside it by the replay corpus: there, a non-deterministic call in ``workflows.journey`` fails."""

from __future__ import annotations

import sys

import pytest
import temporalio.converter
from temporalio import workflow
from temporalio.api.common.v1 import Payloads
from temporalio.api.failure.v1 import Failure
from temporalio.worker import WorkflowInstanceDetails
from temporalio.worker.workflow_sandbox import RestrictedWorkflowAccessError
from temporalio.worker.workflow_sandbox._runner import _fake_info, _Instance

from workflows.journey import JourneyWorkflow
from workflows.sandbox import INTERPRETER, journey_workflow_runner


def sandboxed(checked: bool) -> _Instance:
    """A new run's sandbox as the runner makes it (what ``prepare_workflow`` does)."""
    runner = journey_workflow_runner(checked=checked)
    details = WorkflowInstanceDetails(
        payload_converter_factory=temporalio.converter.DataConverter.default._new_payload_converter,
        failure_converter_class=temporalio.converter.DataConverter.default.failure_converter_class,
        interceptor_classes=[],
        defn=workflow._Definition.must_from_class(JourneyWorkflow),
        info=_fake_info,
        randomness_seed=-1,
        extern_functions={},
        disable_eager_activity_execution=False,
        worker_level_failure_exception_types=[],
        patch_activation_callback=None,
        last_completion_result=Payloads(),
        last_failure=Failure(),
    )
    instance = runner.create_instance(details)
    assert isinstance(instance, _Instance)
    return instance


def call_the_clock_from_the_interpreter(instance: _Instance, module: str) -> None:
    """``datetime.now()`` as the interpreter module sees it, at workflow run time."""
    instance.importer.restriction_context.is_runtime = True
    try:
        instance._run_code(
            "with __temporal_importer.applied():\n"
            f"  import {module} as interpreter\n"
            "  interpreter.datetime.now()\n",
            __temporal_importer=instance.importer,
        )
    finally:
        instance.importer.restriction_context.is_runtime = False


@pytest.mark.parametrize("module", INTERPRETER)
async def test_workers_load_the_interpreter_once_per_process(module: str) -> None:
    """Shared, so nothing checks it there: the checked sandbox below is what does."""
    instance = sandboxed(checked=False)
    call_the_clock_from_the_interpreter(instance, module)  # not restricted
    assert instance.importer.new_modules[module] is sys.modules[module]


@pytest.mark.parametrize("module", INTERPRETER)
async def test_the_checked_sandbox_loads_the_interpreter_for_each_run_and_restricts_it(
    module: str,
) -> None:
    """The core and its shell alike: a clock read in either fails the replay corpus."""
    instance = sandboxed(checked=True)
    assert instance.importer.new_modules[module] is not sys.modules[module]
    with pytest.raises(RestrictedWorkflowAccessError):
        call_the_clock_from_the_interpreter(instance, module)
