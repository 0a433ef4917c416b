"""The fast simulator: the interpreter's core on a discrete-event loop, many customers in one
process, no Temporal server.

What is the same as the exact simulator (:mod:`simulation.simulator`): the router (entry
conditions, keys, re-entry rules on a throw-away SQLite store), the ingestion service, the
delivery activities (ledger, policies, consent, rendering; the last hop recorded), the
broadcasts' entry, and the run's every decision — :class:`workflows.core.JourneyCore`, the
code production workers run inside :class:`~workflows.journey.JourneyWorkflow`.

What is different: the engine. :class:`FastHost` executes the core's commands on a virtual clock
(:class:`VirtualClock`: a clock and a queue of timers) instead of the time-skipping server; a
start or a signal is a method call on the run (:class:`InProcessClient` stands in for
Temporal's client, with its id-reuse and id-conflict rules); an activity is awaited at once
(steps take no simulated time, as in the exact simulator). There is no history, so nothing
continues as new and no patch is asked: a new run takes every patch, as it does on a worker.

Failed activities fail at once: a retryable provider failure is retried for hours on a
worker; the simulated delivery has no provider to fail, and a lookup without a fixture is a
refusal. The conformance suite (``tests/conformance``) runs the journey test files and
generated journeys on both simulators and compares their timelines.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, NoReturn

from temporalio.client import WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import ActivityEnvironment

from simulation.delivery import SimulatedDelivery
from simulation.simulator import (
    QUEUE_PREFIX,
    SETTLE,
    Progress,
    Scenario,
    SimulationResult,
    Simulator,
)
from workflows import analytics, registry
from workflows.core import JourneyCore, Retry
from workflows.models import JOURNEY_QUEUE, JourneyInput, RunResult, RunView
from workflows.plan import Plan, SendNode

JOURNEY_TASK_QUEUE = QUEUE_PREFIX + JOURNEY_QUEUE
CONFORMED_STEPS = frozenset(
    {"send", "wait", "wait_until", "wait_for", "branch", "split", "set", "lookup", "end"}
)
CONFORMED_CHANNELS = frozenset({"email", "webhook", "chat", "sms"})
"""The step kinds and channels the conformance suite (``tests/conformance``) runs on both
simulators. A journey with anything else — a construct added to the language later — runs on
the time-skipping server in ``touchpoint test`` until the suite covers it."""


def not_conformed(plans: Sequence[Plan]) -> str | None:
    """Why ``plans`` are not covered by the conformance suite (``None``: they are)."""
    for plan in plans:
        for node in plan.nodes.values():
            if node.type not in CONFORMED_STEPS:
                return f"{plan.journey_id}: {node.type} steps are not in the conformance suite"
            if isinstance(node, SendNode) and node.channel not in CONFORMED_CHANNELS:
                return (
                    f"{plan.journey_id}: the {node.channel} channel is not in the conformance suite"
                )
    return None


class _Inline(ThreadPoolExecutor):
    """Runs what is submitted at once, on the caller's thread (it starts no thread)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        done: Future[Any] = Future()
        try:
            done.set_result(fn(*args, **kwargs))
        except BaseException as error:  # as a thread would: handed to the awaiting caller
            done.set_exception(error)
        return done


@contextmanager
def blocking_calls_inline(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """While a fast simulation runs, the production code's blocking calls handed to a thread
    (``asyncio.to_thread``: the store, the policies) run at once on the loop's thread: one
    process simulates, so there is nothing to overlap them with, and each hop to a thread and
    back cost about a third of a customer's CPU. Every call finishes its transaction before it
    returns, so none waits for another. A simulation started inside another finds the calls
    inline already and leaves them so; the outer one gives the loop its own executor back."""
    previous = getattr(loop, "_default_executor", None)  # no public getter
    if isinstance(previous, _Inline):
        yield
        return
    loop.set_default_executor(_Inline())
    try:
        yield
    finally:
        loop._default_executor = previous  # type: ignore[attr-defined]


class FastSimulator(Simulator):
    """Runs scenarios on the fast engine (same interface as :class:`Simulator`).

    ``render``: ``"all"`` renders every message as the exact simulator does; ``"subjects"``
    renders subjects (and chat texts) but not email bodies — for populations, where the
    question is who gets what when."""

    def __init__(self, *args: Any, render: str = "all", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if render not in ("all", "subjects"):
            raise ValueError(f"render must be 'all' or 'subjects', not {render!r}")
        self.render = render

    async def run(self, scenario: Scenario, progress: Progress | None = None) -> SimulationResult:
        report = progress or (lambda phase, done, total: None)
        async with AsyncExitStack() as stack:
            stack.enter_context(blocking_calls_inline(asyncio.get_running_loop()))
            clock = VirtualClock()
            client = InProcessClient(clock)
            parts = await self._prepare(stack, scenario, client, clock, report)
            client.serve(parts.delivery.all())
            registry.deploy(JOURNEY_TASK_QUEUE, self.deployment())
            try:
                return await self._play(parts, scenario, clock, client, report)
            finally:
                await client.stop()

    def delivery(self, engine: Any, scenario: Scenario, names: Any) -> SimulatedDelivery:
        delivery = super().delivery(engine, scenario, names)
        delivery.renderer.subjects_only = self.render == "subjects"
        delivery.renderer.inline = True
        return delivery


# --- the virtual clock ------------------------------------------------------------------------


@dataclass(order=True)
class _Timer:
    moment: datetime
    order: int
    fire: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)


class VirtualClock:
    """Simulated time: it moves only from one timer or event to the next, once every run has
    done all it can at the moment before (:meth:`settle`)."""

    real_time = False

    def __init__(self) -> None:
        self.moment: datetime | None = None
        self._timers: list[_Timer] = []
        self._order = itertools.count()
        self._busy = 0  # runs that can go on, and activities in progress
        self._deliveries: list[Callable[[], None]] = []
        self._idle = asyncio.Event()
        self._idle.set()

    # the session's and the router's side (simulation.simulator.Clock)

    async def start_at(self, start: datetime) -> float:
        self.moment = start
        return 0.0  # runs read this clock as it is: no offset

    async def now(self) -> datetime:
        assert self.moment is not None, "start_at first"
        return self.moment

    async def advance_to(self, moment: datetime) -> None:
        """Let the runs take what the events of the moment before brought them, then fire every
        timer up to ``moment``, in order, each once the runs have done all they could before
        it; then ``now()`` reads ``moment``. Staying at the moment does nothing: the events of
        one moment are all routed before any run takes them (on the server, routing an event
        takes a moment, a run's start or next step many)."""
        assert self.moment is not None, "start_at first"
        if moment <= self.moment:
            return
        await self.settled()
        while self._timers and self._timers[0].moment <= moment:
            timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            self.moment = max(self.moment, timer.moment)
            timer.fire()
            await self.settled()
        self.moment = moment

    async def settle(self) -> None:
        """Let the timers that end at the last moment fire too (they end a little after the
        moment they stand for, as on the server: see ``SIMULATED_TIMER_LAG_SECONDS``)."""
        assert self.moment is not None
        await self.advance_to(self.moment + SETTLE)

    # the runs' side

    def read(self) -> datetime:
        assert self.moment is not None, "start_at first"
        return self.moment

    def after(self, delay: timedelta, fire: Callable[[], None]) -> _Timer:
        timer = _Timer(self.read() + max(delay, timedelta(0)), next(self._order), fire)
        heapq.heappush(self._timers, timer)
        return timer

    def later(self, delivery: Callable[[], None]) -> None:
        """A start or a signal the router made: delivered to its run when the clock moves on
        (:meth:`advance_to`), in the order they were made."""
        self._deliveries.append(delivery)

    def busy(self) -> None:
        self._busy += 1
        self._idle.clear()

    def done(self) -> None:
        self._busy -= 1
        if self._busy == 0:
            self._idle.set()

    async def settled(self) -> None:
        """Deliver the starts and signals made meanwhile, then wait until no run can go on
        without a timer or an event."""
        while self._deliveries:
            deliveries, self._deliveries = self._deliveries, []
            for deliver in deliveries:
                deliver()
            await asyncio.sleep(0)
        while self._busy:
            await self._idle.wait()
            await asyncio.sleep(0)  # a run woken meanwhile counts itself busy first


# --- one run ----------------------------------------------------------------------------------


@dataclass
class _Waiter:
    ready: Callable[[], bool]
    future: asyncio.Future[None]
    timer: _Timer | None = None


class FastRun:
    """One run (one workflow execution): its core, its task, what it waits for."""

    def __init__(
        self,
        client: InProcessClient,
        workflow_id: str,
        run_id: str,
        run_input: JourneyInput,
        memo: dict[str, Any],
    ) -> None:
        self.client = client
        self.id = workflow_id
        self.run_id = run_id
        self.memo = memo
        self.result: RunResult | None = None
        self.failure: BaseException | None = None
        self.waiter: _Waiter | None = None
        self.core = JourneyCore(run_input, FastHost(self))
        self.task: asyncio.Task[None] | None = None

    @property
    def status(self) -> WorkflowExecutionStatus:
        if self.result is not None:
            return WorkflowExecutionStatus.COMPLETED
        if self.failure is not None:
            return WorkflowExecutionStatus.FAILED
        return WorkflowExecutionStatus.RUNNING

    @property
    def running(self) -> bool:
        return self.status == WorkflowExecutionStatus.RUNNING

    def start(self, events: Sequence[Any] = ()) -> None:
        """Start the run; a signal-with-start's event comes first."""
        for event in events:
            self.core.on_event(event)
        self.client.clock.busy()
        self.task = asyncio.ensure_future(self._main())

    async def _main(self) -> None:
        try:
            self.result = await self.core.run()
        except asyncio.CancelledError:
            self.failure = RuntimeError("the simulation ended")
        except Exception as error:  # a bug: the exact simulator's task would fail and retry
            self.failure = error
        finally:
            self.client.clock.done()

    def signal(self, name: str, arg: Any) -> None:
        handlers: dict[str, Callable[[Any], None]] = {
            "event": self.core.on_event,
            "unsubscribed": self.core.on_unsubscribed,
            "cancel": self.core.on_cancel,
        }
        handlers[name](arg)
        self.wake()

    def wake(self) -> None:
        """Something changed (a signal, an activity's answer): go on if what the run waits for
        is there now."""
        waiter = self.waiter
        if waiter is not None and not waiter.future.done() and waiter.ready():
            self._resume(waiter)

    def _resume(self, waiter: _Waiter, error: BaseException | None = None) -> None:
        self.waiter = None
        if waiter.timer is not None:
            waiter.timer.cancelled = True
        self.client.clock.busy()
        if error is None:
            waiter.future.set_result(None)
        else:
            waiter.future.set_exception(error)

    async def wait_condition(self, ready: Callable[[], bool], timeout: timedelta | None) -> None:
        if ready():
            return
        clock = self.client.clock
        waiter = _Waiter(ready, asyncio.get_running_loop().create_future())
        if timeout is not None:
            waiter.timer = clock.after(timeout, lambda: self._timed_out(waiter))
        self.waiter = waiter
        clock.done()  # parked: the clock may move on
        await waiter.future  # _resume counted the run busy again

    def _timed_out(self, waiter: _Waiter) -> None:
        if self.waiter is waiter and not waiter.future.done():
            self._resume(waiter, TimeoutError())


class FastHost:
    """The core's commands on the virtual clock (see :class:`workflows.core.Host`)."""

    def __init__(self, run: FastRun) -> None:
        self.run = run

    def now(self) -> datetime:
        return self.run.client.clock.read()

    def patched(self, patch_id: str) -> bool:
        return True  # a new run, as on a worker today: every change applies

    def wait_condition(
        self, ready: Callable[[], bool], timeout: timedelta | None = None
    ) -> Awaitable[None]:
        return self.run.wait_condition(ready, timeout)

    def all_handlers_finished(self) -> bool:
        return True  # signal handlers are plain calls here

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
        clock, run = self.run.client.clock, self.run
        task = asyncio.ensure_future(run.client.activity(name, arg))
        clock.busy()  # now, not when the task first runs: the run parks on it at once

        def answered(_: asyncio.Future[Any]) -> None:
            run.wake()  # the run goes on (busy) before the activity counts itself done
            clock.done()

        task.add_done_callback(answered)
        return task

    def local_activity(
        self, name: str, arg: Any, result_type: type, seconds: int, retry: Retry
    ) -> Awaitable[Any]:
        return self.run.client.activity(name, arg)  # awaited at once: the run stays busy

    def activity_failure(self, error: Exception) -> str:
        if isinstance(error, ActivityFailed):
            return error.text
        raise error

    def continue_as_new(self, run_input: JourneyInput) -> NoReturn:
        raise AssertionError("a fast run has no history: it never continues as new")

    def history_full(self, limit: int | None) -> bool:
        return False

    def workflow_id(self) -> str:
        return self.run.id

    def task_queue(self) -> str:
        return JOURNEY_TASK_QUEUE

    def index_step(self, step: str, stage: str) -> None:
        return None

    def index_outcome(self, kind: str) -> None:
        return None

    def count_end(self, journey_id: str, outcome: str) -> None:
        return None

    def replaying(self) -> bool:
        return False

    def write_records(
        self, recorder: analytics.Recorder, records: Sequence[analytics.Record]
    ) -> None:
        return None  # nobody records simulated runs


class ActivityFailed(Exception):
    """An activity's failure, as the run sees it (its text)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


# --- Temporal's client, in process ------------------------------------------------------------


class InProcessClient:
    """What the router, the broadcast entry and the result collection ask of Temporal's
    client: start (with signal-with-start, id reuse and id conflict rules), signal, describe,
    query and result — for runs in this process."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.latest: dict[str, FastRun] = {}  # by workflow id
        self.runs: dict[str, FastRun] = {}  # by run id
        self.activities: dict[str, Callable[..., Any]] = {}
        self._run_ids = itertools.count(1)
        self._environment = ActivityEnvironment()

    def serve(self, activities: Sequence[Callable[..., Any]]) -> None:
        for fn in activities:
            self.activities[getattr(fn, "__temporal_activity_definition").name] = fn

    async def activity(self, name: str, arg: Any) -> Any:
        """Run an activity now (steps take no simulated time); its failure, at once."""
        try:
            return await self._environment.run(self.activities[name], arg)
        except ApplicationError as error:
            raise ActivityFailed(str(error)) from None
        except Exception as error:
            raise ActivityFailed(f"{type(error).__name__}: {error}") from None

    async def start_workflow(
        self,
        workflow: str,
        arg: JourneyInput,
        *,
        id: str,
        task_queue: str,
        start_signal: str | None = None,
        start_signal_args: Sequence[Any] = (),
        id_reuse_policy: WorkflowIDReusePolicy = WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        id_conflict_policy: WorkflowIDConflictPolicy = WorkflowIDConflictPolicy.UNSPECIFIED,
        memo: dict[str, Any] | None = None,
        **_: Any,
    ) -> InProcessHandle:
        current = self.latest.get(id)
        if current is not None and current.running:
            if id_conflict_policy != WorkflowIDConflictPolicy.USE_EXISTING:
                raise WorkflowAlreadyStartedError(id, workflow, run_id=current.run_id)
            if start_signal is not None:
                self.clock.later(partial(current.signal, start_signal, *start_signal_args))
            return InProcessHandle(self, id, current.run_id, started=False)
        if current is not None and id_reuse_policy == WorkflowIDReusePolicy.REJECT_DUPLICATE:
            raise WorkflowAlreadyStartedError(id, workflow, run_id=current.run_id)
        run = FastRun(self, id, f"fast-{next(self._run_ids)}", arg, dict(memo or {}))
        self.latest[id] = self.runs[run.run_id] = run
        self.clock.later(partial(run.start, start_signal_args if start_signal else ()))
        return InProcessHandle(self, id, run.run_id, started=True)

    def get_workflow_handle(
        self, workflow_id: str, *, run_id: str | None = None, **_: Any
    ) -> InProcessHandle:
        return InProcessHandle(self, workflow_id, run_id)

    def find(self, workflow_id: str, run_id: str | None) -> FastRun:
        run = self.runs.get(run_id) if run_id else self.latest.get(workflow_id)
        if run is None or run.id != workflow_id:
            raise RPCError(f"workflow {workflow_id} not found", RPCStatusCode.NOT_FOUND, b"")
        return run

    async def stop(self) -> None:
        """Runs still waiting when the simulation ends stop here (their state was read)."""
        tasks = [run.task for run in self.runs.values() if run.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@dataclass
class _Started:
    started: bool


@dataclass
class _Description:
    run: FastRun

    @property
    def status(self) -> WorkflowExecutionStatus:
        return self.run.status

    @property
    def run_id(self) -> str:
        return self.run.run_id

    async def memo_value(self, key: str, default: Any = None) -> Any:
        return self.run.memo.get(key, default)


class InProcessHandle:
    def __init__(
        self,
        client: InProcessClient,
        workflow_id: str,
        run_id: str | None,
        started: bool | None = None,
    ) -> None:
        self.client = client
        self.id = workflow_id
        self.run_id = run_id
        self.result_run_id = run_id
        if started is not None:
            self._start_workflow_response = _Started(started)

    async def signal(self, name: str, arg: Any) -> None:
        run = self.client.find(self.id, self.run_id)
        if not run.running:
            raise RPCError("workflow execution already completed", RPCStatusCode.NOT_FOUND, b"")
        self.client.clock.later(partial(run.signal, name, arg))

    async def describe(self) -> _Description:
        return _Description(self.client.find(self.id, self.run_id))

    async def query(self, name: str, **_: Any) -> RunView:
        assert name == "state"
        return self.client.find(self.id, self.run_id).core.query_state()

    async def result(self) -> RunResult:
        run = self.client.find(self.id, self.run_id)
        if run.result is None:
            raise RuntimeError(f"run {self.id} failed: {run.failure!r}")
        return run.result


if __name__ == "__main__":
    raise SystemExit("the fast simulator runs under `touchpoint simulate`: see cli.py")
