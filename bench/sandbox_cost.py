"""What the workflow sandbox costs per new run (not in ``make bench``): CPU and memory of
creating N sandboxed instances — what a worker does for every run it starts or loads back into
its cache — for ``JourneyWorkflow`` as workers run it and for the hand-written ``RawJourney``.
No server: the instance is created, not activated.

    PYTHONPATH=. python bench/sandbox_cost.py      # BENCH_RUNS=200 instances per side

Run it with the bytecode cache on (no ``PYTHONDONTWRITEBYTECODE``), as workers run."""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc

import temporalio.converter
from raw_workflow import RawJourney
from report import env_int, header, table
from temporalio import workflow
from temporalio.api.common.v1 import Payloads
from temporalio.api.failure.v1 import Failure
from temporalio.worker import WorkflowInstanceDetails, WorkflowRunner
from temporalio.worker.workflow_sandbox._runner import _fake_info

from workflows.journey import JourneyWorkflow
from workflows.sandbox import journey_workflow_runner


def details(cls: type) -> WorkflowInstanceDetails:
    """A new run's details as the runner's own ``prepare_workflow`` makes them."""
    return WorkflowInstanceDetails(
        payload_converter_factory=temporalio.converter.DataConverter.default._new_payload_converter,
        failure_converter_class=temporalio.converter.DataConverter.default.failure_converter_class,
        interceptor_classes=[],
        defn=workflow._Definition.must_from_class(cls),
        info=_fake_info,
        randomness_seed=-1,
        extern_functions={},
        disable_eager_activity_execution=False,
        worker_level_failure_exception_types=[],
        patch_activation_callback=None,
        last_completion_result=Payloads(),
        last_failure=Failure(),
    )


def measure(runner: WorkflowRunner, cls: type, count: int) -> tuple[float, float]:
    """CPU ms per instance (untraced pass), KiB held per instance (traced pass)."""
    run = details(cls)
    runner.create_instance(run)  # warm: modules passed through are loaded once
    began = time.process_time()
    kept = [runner.create_instance(run) for _ in range(count)]
    cpu_ms = (time.process_time() - began) * 1000 / count
    del kept
    gc.collect()
    tracemalloc.start()
    kept = [runner.create_instance(run) for _ in range(count)]
    gc.collect()
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del kept
    return cpu_ms, held / 1024 / count


async def main() -> None:
    count = env_int("BENCH_RUNS", 200)
    header("Sandbox cost per new run: instance creation", f"{count} instances per row")
    rows = []
    for name, runner, cls in (
        ("hand-written (RawJourney)", journey_workflow_runner(), RawJourney),
        (
            "JourneyWorkflow, checked (the replay corpus)",
            journey_workflow_runner(checked=True),
            JourneyWorkflow,
        ),
        ("JourneyWorkflow, as workers run it", journey_workflow_runner(), JourneyWorkflow),
    ):
        cpu_ms, kib = measure(runner, cls, count)
        rows.append((name, f"{cpu_ms:.2f}", f"{kib:.1f}"))
    print(table(("workflow", "CPU ms per instance", "KiB held per instance"), rows))


if __name__ == "__main__":
    asyncio.run(main())
