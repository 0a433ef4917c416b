"""The workflows that keep personal data only as long as it is needed.

* :class:`ErasureWorkflow` — ``touchpoint forget``: one durable run per customer erasure, its
  steps activities that are idempotent, so a run killed half-way (a worker gone, a store
  briefly down) resumes where it stopped, and a second request for the same customer does
  the same again without harm. Order matters: the addresses are kept as keyed hashes first,
  runs end and are deleted before the profile goes (a running send still finds whom not to
  write to), the profile goes last.
* :class:`RetentionWorkflow` — run by the retention Schedule: deletes what is older than the
  configured retention.

Sandbox-only: temporalio and the passed-through models, no store, no files.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from workflows.privacy_models import (
        APPLY_RETENTION,
        BEGIN_ERASURE,
        COMPLETE_ERASURE,
        ERASE_MESSAGES,
        ERASE_PROFILE,
        ERASE_RUNS,
        ErasureRequest,
        ErasureResult,
        ErasureSubjects,
        RetentionRequest,
        RetentionResult,
    )

STEP_TIMEOUT = timedelta(minutes=10)
RETRIES = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))


@workflow.defn(name="ErasureWorkflow")
class ErasureWorkflow:
    @workflow.run
    async def run(self, request: ErasureRequest) -> ErasureResult:
        subjects = await workflow.execute_activity(
            BEGIN_ERASURE,
            request,
            result_type=ErasureSubjects,
            start_to_close_timeout=STEP_TIMEOUT,
            retry_policy=RETRIES,
        )
        runs = await self._step(ERASE_RUNS, subjects)
        messages = await self._step(ERASE_MESSAGES, subjects)
        await self._step(ERASE_PROFILE, subjects)
        await self._step(COMPLETE_ERASURE, subjects)
        return ErasureResult(customer=subjects.customer, runs=runs, messages=messages)

    async def _step(self, name: str, subjects: ErasureSubjects) -> int:
        return await workflow.execute_activity(
            name,
            subjects,
            result_type=int,
            start_to_close_timeout=STEP_TIMEOUT,
            heartbeat_timeout=timedelta(minutes=1),
            retry_policy=RETRIES,
        )


@workflow.defn(name="RetentionWorkflow")
class RetentionWorkflow:
    @workflow.run
    async def run(self, request: RetentionRequest) -> RetentionResult:
        return await workflow.execute_activity(
            APPLY_RETENTION,
            request,
            result_type=RetentionResult,
            start_to_close_timeout=timedelta(hours=1),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=RETRIES,
        )
