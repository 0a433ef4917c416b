"""What a run tells the analytics store as it goes: it entered, it left a step (and by which
edge), it ended. The interpreter hands these records to the recorder the worker registered for
its journey task queue (:func:`register`); the store writes them (:mod:`store.analytics`).

Records are keyed so that writing one twice is writing it once: a run by its workflow id (and,
from a customer's second entry on, its entry number: ``journey/welcome/3f…#2``, as a later entry
reuses the workflow id), a step pass by (that key, step, visit). A workflow task that runs
again (a worker crashed before its completion reached the server) records the same keys again;
replays record nothing.

Passed through the workflow sandbox (one registry per process, shared by every run).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class RunEntered:
    workflow_id: str
    journey_id: str
    version: str
    customer: str  # customer_hash: no personal data
    at: datetime  # the run's clock


@dataclass(frozen=True)
class StepPassed:
    """A run left ``step_id`` (its ``visit``-th time there) for ``next_step``."""

    workflow_id: str
    journey_id: str
    version: str
    step_id: str
    visit: int
    at: datetime
    next_step: str | None
    edge: str | None = None  # the branch case, split path, or "event"/"timeout" of a wait_for
    holdout: bool = False  # the path taken was a split's holdout


@dataclass(frozen=True)
class RunEnded:
    workflow_id: str
    outcome: str  # an OutcomeKind: completed, converted, exited, failed, cancelled, erased
    at: datetime
    reason: str | None = None
    failed_step: str | None = None


Record = RunEntered | StepPassed | RunEnded


class Recorder(Protocol):
    def record(self, records: Sequence[Record]) -> None:
        """Write ``records`` (idempotently, by their keys) before returning."""


_recorders: dict[str, Recorder] = {}
_lock = threading.Lock()


def register(task_queue: str, recorder: Recorder) -> None:
    with _lock:
        _recorders[task_queue] = recorder


def unregister(task_queue: str) -> None:
    with _lock:
        _recorders.pop(task_queue, None)


def recorder_for(task_queue: str) -> Recorder | None:
    return _recorders.get(task_queue)
