"""What a worker process knows that runs do not carry: compiled plans by version, and the
deployment settings of each journey task queue.

Runs carry a *reference* to their plan (journey id and version, a content hash), not the plan:
the worker registers the plans it compiled and those published to the store
(:class:`store.plans.PlanStore`), and the interpreter looks its plan up here. A version never
changes, so the lookup is deterministic. A version this process does not know yet is a
:class:`PlanNotLoaded` — the workflow task fails and is retried, by which time the worker has
loaded it (:func:`missing` tells the worker what to fetch).

Deployment settings (search attributes on or off, history limit, default time zone and locale,
how long sends are retried) come from the worker that runs the journey task queue, not from the
run's input: :func:`settings_for` is keyed by that queue.

Passed through the workflow sandbox (one registry per process, shared by every run).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from workflows.plan import Plan


class PlanNotLoaded(RuntimeError):
    """This worker has not loaded the plan version a run needs (yet): fail the workflow task,
    so it is retried once the worker has fetched it."""


_plans: dict[str, Plan] = {}
_missing: set[str] = set()
_wanted = threading.Event()
_lock = threading.Lock()


def register(plans: Iterable[Plan]) -> None:
    with _lock:
        for plan in plans:
            _plans[plan.version] = plan
            _missing.discard(plan.version)


def plan(journey_id: str, version: str) -> Plan:
    found = _plans.get(version)
    if found is None or found.journey_id != journey_id:
        with _lock:
            _missing.add(version)
        _wanted.set()
        raise PlanNotLoaded(f"plan {journey_id}@{version} is not loaded in this worker yet")
    return found


def missing() -> set[str]:
    """Versions runs asked for that this process has not loaded (the worker fetches them)."""
    with _lock:
        return set(_missing)


def wait_for_missing(timeout: float) -> bool:
    """Block until a run asks for an unknown version (or ``timeout``): the worker's fetcher."""
    found = _wanted.wait(timeout)
    _wanted.clear()
    return found


@dataclass(frozen=True)
class Deployment:
    """The settings a worker gives the runs on its journey task queue."""

    index_runs: bool = True  # upsert search attributes (needs them registered on the server)
    history_limit: int | None = None  # continue-as-new past this many events (tests lower it)
    default_timezone: str = "UTC"
    default_locale: str = "en"
    send_retry_hours: dict[str, float] = field(default_factory=dict)  # by channel; default 24
    # Channels whose sends keep a task queue of their own (the server rate-limits it); every
    # other send and lookup goes on the run's own journey queue, where the server hands it to
    # the worker with the workflow task's answer (eager dispatch) when that worker runs it.
    queued_channels: frozenset[str] = frozenset()


DEFAULT_SEND_RETRY_HOURS = 24.0
_deployments: dict[str, Deployment] = {}


def deploy(task_queue: str, deployment: Deployment) -> None:
    _deployments[task_queue] = deployment


def settings_for(task_queue: str) -> Deployment:
    return _deployments.get(task_queue, Deployment())
