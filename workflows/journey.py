"""``JourneyWorkflow``: one customer's run through one compiled journey plan, on Temporal.

The run's decisions are :class:`workflows.core.JourneyCore`'s; this module is the thin shell
that executes them on Temporal (:class:`TemporalHost`): waits become durable timers and
conditions, sends and lookups activities on their own task queues, the profile read a local
activity, indexing search-attribute upserts. Goal, exit, unsubscribe and cancel arrive as
signals at any moment and go straight to the core; the ``state`` query reads it.

Determinism: the core reaches the clock, randomness and the history only through the host,
and the host only through ``workflow``. Changes that alter the commands the core issues go
behind ``workflow.patched()`` (see ``docs/operations.md``) and are caught by the replay tests of
recorded histories.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, NoReturn

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

# The core is imported as the shell is: passed through by workers, loaded into the sandbox
# (and its restrictions) where the interpreter is checked (workflows/sandbox.py).
from workflows.core import (
    LOOKUP_RETRY,
    OUTAGE_RETRY,
    PATCHES_OF_VERSION_3,
    PROFILE_RETRY,
    SEND_RETRY,
    JourneyCore,
    Retry,
    started_with_patch,
)

with workflow.unsafe.imports_passed_through():
    from workflows import analytics
    from workflows.models import CancelRequest, Event, JourneyInput, RunResult, RunView
    from workflows.search import JOURNEY_OUTCOME, JOURNEY_STAGE, JOURNEY_STEP

__all__ = [
    "LOOKUP_RETRY",
    "OUTAGE_RETRY",
    "PATCHES_OF_VERSION_3",
    "PROFILE_RETRY",
    "SEND_RETRY",
    "JourneyWorkflow",
    "TemporalHost",
    "started_with_patch",
]


@workflow.defn(name="JourneyWorkflow")
class JourneyWorkflow:
    @workflow.init
    def __init__(self, run_input: JourneyInput) -> None:
        self.core = JourneyCore(run_input, TemporalHost())

    @workflow.signal(name="event")
    def on_event(self, event: Event) -> None:
        """A shop event routed to this run: maybe an exit, the goal, or one a wait_for wants."""
        self.core.on_event(event)

    @workflow.signal(name="unsubscribed")
    def on_unsubscribed(self, request: CancelRequest) -> None:
        self.core.on_unsubscribed(request)

    @workflow.signal(name="cancel")
    def on_cancel(self, request: CancelRequest) -> None:
        self.core.on_cancel(request)

    @workflow.query(name="state")
    def query_state(self) -> RunView:
        return self.core.query_state()

    @workflow.run
    async def run(self, run_input: JourneyInput) -> RunResult:
        return await self.core.run()


class TemporalHost:
    """The core's commands as Temporal workflow calls (see :class:`workflows.core.Host`)."""

    def now(self) -> datetime:
        return workflow.now()

    def patched(self, patch_id: str) -> bool:
        return workflow.patched(patch_id)

    def wait_condition(
        self, ready: Callable[[], bool], timeout: timedelta | None = None
    ) -> Awaitable[None]:
        return workflow.wait_condition(ready, timeout=timeout)

    def all_handlers_finished(self) -> bool:
        return workflow.all_handlers_finished()

    def start_activity(
        self,
        name: str,
        arg: Any,
        queue: str,
        retry: Retry,
        result_type: type,
        attempt_seconds: int,
        deadline: timedelta | None,
    ) -> Awaitable[Any]:
        return workflow.execute_activity(
            name,
            arg,
            task_queue=queue,
            result_type=result_type,
            retry_policy=_policy(retry),
            start_to_close_timeout=timedelta(seconds=attempt_seconds),
            schedule_to_close_timeout=deadline,
        )

    def local_activity(
        self, name: str, arg: Any, result_type: type, seconds: int, retry: Retry
    ) -> Awaitable[Any]:
        return workflow.execute_local_activity(
            name,
            arg,
            result_type=result_type,
            start_to_close_timeout=timedelta(seconds=seconds),
            retry_policy=_policy(retry),
        )

    def activity_failure(self, error: Exception) -> str:
        if not isinstance(error, ActivityError):
            raise error
        cause = error.cause
        while isinstance(cause, ActivityError | ApplicationError) and cause.cause is not None:
            if isinstance(cause, ApplicationError):
                break
            cause = cause.cause
        return str(cause) if cause is not None else str(error)

    def continue_as_new(self, run_input: JourneyInput) -> NoReturn:
        workflow.continue_as_new(run_input)

    def history_full(self, limit: int | None) -> bool:
        info = workflow.info()
        if limit is not None and info.get_current_history_length() >= limit:
            return True
        return info.is_continue_as_new_suggested()

    def workflow_id(self) -> str:
        return workflow.info().workflow_id

    def task_queue(self) -> str:
        return workflow.info().task_queue

    def index_step(self, step: str, stage: str) -> None:
        workflow.upsert_search_attributes(
            [JOURNEY_STEP.value_set(step), JOURNEY_STAGE.value_set(stage)]
        )

    def index_outcome(self, kind: str) -> None:
        workflow.upsert_search_attributes([JOURNEY_OUTCOME.value_set(kind)])

    def count_end(self, journey_id: str, outcome: str) -> None:
        """``touchpoint_runs_ended_total{journey, outcome}`` on the worker's metrics endpoint.

        The workflow's metric meter records nothing while replaying and issues no command (no
        history, no patch): the end is counted by the workflow task that ends the run, once —
        twice only if that task runs again because its completion never reached the server."""
        workflow.metric_meter().create_counter(
            "touchpoint_runs_ended_total", "Runs ended, by journey and outcome"
        ).add(1, {"journey": journey_id, "outcome": outcome})

    def replaying(self) -> bool:
        return workflow.unsafe.is_replaying()

    def write_records(
        self, recorder: analytics.Recorder, records: Sequence[analytics.Record]
    ) -> None:
        try:
            with workflow.unsafe.sandbox_unrestricted():
                recorder.record(list(records))
        except Exception as error:  # a recorder of tests; the worker's never raises
            workflow.logger.warning(
                "analytics: %d record(s) not written: %s", len(records), type(error).__name__
            )


def _policy(retry: Retry) -> RetryPolicy:
    return RetryPolicy(
        initial_interval=retry.initial_interval,
        backoff_coefficient=retry.backoff_coefficient,
        maximum_interval=retry.maximum_interval,
        maximum_attempts=retry.maximum_attempts,
    )


if __name__ == "__main__":
    raise SystemExit("JourneyWorkflow runs inside a Temporal worker: see worker.py")
