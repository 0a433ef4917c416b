"""Run journeys for simulated customers on Temporal's time-skipping test server.

The real router decides entries (conditions, keys, re-entry rules, on a throw-away SQLite
store), the real interpreter workflow runs each journey, the real renderer writes each message;
only the last hop to a provider is recorded instead (:mod:`simulation.delivery`). Journeys that
start without an event (scheduled ones) enter at the moments :mod:`simulation.entry` gives,
through the broadcast's own entry (:class:`SimulatedBroadcast`).
Between events the server skips time, so 90 days pass in about a second.

The test server's clock starts at today's date; runs get ``clock_offset_seconds`` so that their
clock reads the simulation's start instead (any date, past or future: waits, time zones, DST
and the ``now`` of expressions follow it).

**Exact.** The server's clock also moves with real time while steps are worked on, by an amount
that differs from one run to the next. None of it reaches a decision: the router decides
entries (cooldowns, ``once``) at the moment of the event it routes, and runs keep simulated
time (:class:`~workflows.models.RunClock` ``simulated``) — the moment of the event they handle,
the end of the timer that fired. Steps take no simulated time. The server skips to each event's
moment (every timer before it fires, and its work is done, on the way); a run's timer fires a
little after the end it stands for (:data:`~workflows.models.SIMULATED_TIMER_LAG_SECONDS`), so
that an event at that very moment comes first, and a run holds an event that comes while it is
busy, or before a timer that ends earlier, until it waits again.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from temporalio.api.testservice.v1 import SleepRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

from activities.audience import AudienceActivities, run_tag
from activities.messages import RenderedMessage
from config.project import ProjectConfig
from ingestion.router import Routed, Router
from ingestion.segments import segment_trigger
from ingestion.service import Ingestion
from ops.binaries import find_binary
from simulation.delivery import SimulatedDelivery
from simulation.entry import NOT_THEIR_DAY, EntryMoment, refusal
from simulation.scenario import EventSpec, ProfileSpec
from store.database import metadata as store_metadata
from store.database import scratch_store
from store.entries import EntryStore
from store.processed import ProcessedMessages
from store.profiles import ProfileStore
from workflows.broadcast_models import occurrence_tag
from workflows.models import (
    SIMULATED_TIMER_LAG_SECONDS,
    Event,
    Outcome,
    Profile,
    RunResult,
    RunSettings,
    RunView,
    TimelineEntry,
    customer_hash,
    workflow_id,
)
from workflows.plan import BROADCAST_EVENT, Plan
from workflows.registry import Deployment

if TYPE_CHECKING:  # the fast simulator imports this module but starts no server or worker
    from temporalio.testing import WorkflowEnvironment

QUEUE_PREFIX = "simulation-"
BUILD_ID = "touchpoint-simulation"
SLEEP_DEADLINE = timedelta(hours=2)
ROUTING_CONCURRENCY = 32
PROGRESS_STEPS = 30  # the wait after the last event is skipped in this many slices
SETTLE = timedelta(seconds=SIMULATED_TIMER_LAG_SECONDS + 0.5)  # see _SimulatedClock.settle


@dataclass
class Scenario:
    plans: list[Plan]
    customers: list[ProfileSpec]
    events: list[tuple[datetime, EventSpec]]  # in time order
    start: datetime
    until: timedelta
    lookups: Mapping[str, Any] = field(default_factory=dict)
    entries: list[EntryMoment] = field(default_factory=list)  # entry without an event
    # rows the store starts with, by table of store.database (a replay: the customers'
    # consent, topic consent and suppressions as they are today)
    consent: Mapping[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def end(self) -> datetime:
        return self.start + self.until


@dataclass
class SimulatedRun:
    journey_id: str
    customer_id: str
    key: str | None
    workflow_id: str
    entered_at: datetime
    trigger: str
    run_id: str | None = None
    outcome: Outcome | None = None  # None: still running when the simulation ended
    current: str | None = None
    timeline: list[TimelineEntry] = field(default_factory=list)
    waiting_until: datetime | None = None


@dataclass(frozen=True)
class NotEntered:
    at: datetime
    journey_id: str
    customer_id: str
    event: str
    reason: str


@dataclass
class SimulationResult:
    start: datetime
    end: datetime
    plans: list[Plan]
    customers: list[ProfileSpec]
    runs: list[SimulatedRun]
    not_entered: list[NotEntered]
    messages: dict[str, RenderedMessage]  # what would have been sent, by message id
    bodies: dict[str, str] = field(default_factory=dict)  # webhooks: the receiver's JSON text
    entries: list[EntryMoment] = field(default_factory=list)  # the scenario's, played


Progress = Callable[[str, float, float], None]  # (phase, done, total)


_runtime: Runtime | None = None


def quiet_runtime() -> Runtime:
    """One Temporal runtime per process whose core logs only errors: a simulation's output is
    its timeline, not the SDK's notes about the test server."""
    global _runtime
    if _runtime is None:
        quiet = TelemetryFilter(core_level="ERROR", other_level="ERROR")
        _runtime = Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(filter=quiet)))
    return _runtime


SIMULATION_SCOPE = "sim"  # the source of simulated calls, for deduplication


class SimulationRouter(Router):
    """The router, finding the runs of ``every_time`` journeys from its own record (a
    time-skipping server has no search index)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.started: dict[tuple[str, str], list[str]] = {}

    async def _signal_all_running(
        self, plan: Plan, event: Event, customers: Sequence[str]
    ) -> list[Routed]:
        targets = [t for c in customers for t in self.started.get((plan.journey_id, c), [])]
        results = [await self._signal(plan.journey_id, target, event) for target in targets]
        return results or [Routed(plan.journey_id, "not_running")]


@dataclass
class SimulatedBroadcast(AudienceActivities):
    """A scheduled journey's entry as production does it (the re-entry rules in the entry
    store; one run per customer per occurrence, its id naming the occurrence), finding the runs
    still going for ``one_at_a_time`` in the simulation's own record (no search index)."""

    started: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    async def enter(
        self, plan: Plan, customer_id: str, occurrence: datetime, tag: str
    ) -> str | None:
        """Start ``customer_id``'s run of ``occurrence`` (its id tagged ``tag``); ``None``, else
        why it did not start."""
        busy = await self._running(plan, [customer_id])
        outcome = await self._enter(plan, customer_id, occurrence, busy, tag)
        if outcome == "started":
            return None
        if outcome == "already_started":
            return "this occurrence already started a run"
        if busy:
            return "a run is still going (reentry: one_at_a_time)"
        if plan.entry.policy == "once":
            return "entered before (reentry: once)"
        return "within the re-entry cooldown"

    async def _running(self, plan: Plan, customers: Iterable[str]) -> set[str]:
        if plan.entry.policy != "one_at_a_time":
            return set()
        busy = set()
        for customer in customers:
            for target in self.started.get((plan.journey_id, customer), []):
                description = await self.client.get_workflow_handle(target).describe()
                if description.status == WorkflowExecutionStatus.RUNNING:
                    busy.add(customer_hash(customer))
        return busy


Environment = Callable[[], Awaitable["WorkflowEnvironment"]]


async def time_skipping_server() -> WorkflowEnvironment:
    from temporalio.testing import WorkflowEnvironment

    return await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(find_binary("temporal-test-server")),
        data_converter=pydantic_data_converter,
        runtime=quiet_runtime(),
    )


class Simulator:
    """Runs scenarios; on the time-skipping server unless ``environment`` says otherwise (the
    benchmark runs the same scenario on the dev server, in real time, to compare)."""

    def __init__(
        self, root: Path, config: ProjectConfig, environment: Environment = time_skipping_server
    ) -> None:
        self.root = root
        self.config = config
        self.environment = environment

    async def run(self, scenario: Scenario, progress: Progress | None = None) -> SimulationResult:
        from ops.workers import WorkerOptions, build_workers

        report = progress or (lambda phase, done, total: None)
        async with AsyncExitStack() as stack:
            env = await stack.enter_async_context(await self.environment())
            clock = _SimulatedClock(env)
            parts = await self._prepare(stack, scenario, env.client, clock, report)
            for worker in build_workers(
                env.client,
                parts.delivery.all(),
                WorkerOptions(
                    queue_prefix=QUEUE_PREFIX, build_id=BUILD_ID, deployment=self.deployment()
                ),
            ):
                await stack.enter_async_context(worker)
            return await self._play(parts, scenario, clock, env.client, report)

    def deployment(self) -> Deployment:
        """The journey worker's settings for the simulated runs."""
        return Deployment(
            index_runs=False,
            default_timezone=self.config.defaults.timezone,
            default_locale=self.config.defaults.locale,
        )

    async def _prepare(
        self,
        stack: AsyncExitStack,
        scenario: Scenario,
        client: Any,
        clock: Clock,
        report: Progress,
    ) -> _Parts:
        """The production parts a simulation runs through, on a throw-away SQLite store."""
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="touchpoint-")))
        engine = scratch_store(folder / "simulation.db")
        stack.callback(engine.dispose)
        names = {plan.journey_id: plan.name for plan in scenario.plans}
        delivery = self.delivery(engine, scenario, names)
        stack.push_async_callback(delivery.close)
        settings = RunSettings(
            default_timezone=self.config.defaults.timezone,
            default_locale=self.config.defaults.locale,
            queue_prefix=QUEUE_PREFIX,
            index_runs=False,
        )
        router = SimulationRouter(
            client,
            {p.journey_id: p for p in scenario.plans},
            EntryStore(engine),
            settings,
            clock=clock.now,
        )
        ingestion = Ingestion(
            ProfileStore(engine),
            ProcessedMessages(engine),
            router.route,
            max_profile_bytes=self.config.profiles.max_bytes,
            enter_segments=router.enter_segments,  # an identify may start segment journeys
        )
        broadcast = SimulatedBroadcast(client, engine, settings, started=router.started)
        session = _Session(router, ingestion, scenario, clock, report, broadcast)
        return _Parts(delivery, router, broadcast, session, settings)

    def delivery(
        self, engine: Any, scenario: Scenario, names: Mapping[str, str]
    ) -> SimulatedDelivery:
        return SimulatedDelivery.create(self.config, self.root, engine, scenario.lookups, names)

    async def _play(
        self,
        parts: _Parts,
        scenario: Scenario,
        clock: Clock,
        client: Any,
        report: Progress,
    ) -> SimulationResult:
        session = parts.session
        await session.add_customers()
        # Set the clock last: real time that passes before the first event moves the
        # server's clock too, and would show as a late start.
        offset = await clock.start_at(scenario.start)
        parts.router.settings = parts.broadcast.settings = parts.settings.model_copy(
            update={"clock_offset_seconds": offset, "simulated": True}
        )
        await session.play()
        runs = await _collect(client, session.runs, report)
        return SimulationResult(
            start=scenario.start,
            end=scenario.end,
            plans=scenario.plans,
            customers=scenario.customers,
            runs=runs,
            not_entered=sorted(  # routed concurrently: in a fixed order
                session.not_entered,
                key=lambda n: (n.at, n.customer_id, n.journey_id, n.event, n.reason),
            ),
            messages=dict(parts.delivery.delivered),
            bodies=dict(parts.delivery.bodies),
            entries=list(scenario.entries),
        )


@dataclass
class _Parts:
    delivery: SimulatedDelivery
    router: SimulationRouter
    broadcast: SimulatedBroadcast
    session: _Session
    settings: RunSettings


class Clock(Protocol):
    """The simulation's time, as the session and the router read and move it."""

    real_time: bool

    async def start_at(self, start: datetime) -> float: ...

    async def now(self) -> datetime: ...

    async def advance_to(self, moment: datetime) -> None: ...

    async def settle(self) -> None: ...


class _SimulatedClock:
    """The simulation's time: the moment of the event being routed. The test server's clock,
    moved to the scenario's start, only tells how far to skip (it also moves with real time)."""

    def __init__(self, env: WorkflowEnvironment) -> None:
        self.env = env
        self.real_time = not env.supports_time_skipping  # e.g. the benchmark's dev server
        self.offset = timedelta(0)
        self.moment: datetime | None = None

    async def start_at(self, start: datetime) -> float:
        """Make ``now()`` read ``start``; returns the offset runs add to their clock."""
        self.offset = start - await self.env.get_current_time()
        self.moment = start
        return self.offset.total_seconds()

    async def now(self) -> datetime:
        """The simulated moment: what the router decides entries and cooldowns at."""
        assert self.moment is not None, "start_at first"
        return self.moment

    async def advance_to(self, moment: datetime) -> None:
        """Let simulated time pass until ``moment``: every timer before it fires on the way and
        its work is done; then ``now()`` reads ``moment``."""
        if self.moment is not None and moment <= self.moment:
            return
        self.moment = moment
        await self._skip_to(moment)

    async def settle(self) -> None:
        """Let the timers that end at the last moment fire too: they fire a little later on
        the server than the moment they stand for (``SIMULATED_TIMER_LAG_SECONDS``)."""
        assert self.moment is not None
        await self._skip_to(self.moment + SETTLE)

    async def _skip_to(self, moment: datetime) -> None:
        ahead = moment - (await self.env.get_current_time() + self.offset)
        if ahead <= timedelta(0):
            return
        if not self.env.supports_time_skipping:
            await asyncio.sleep(ahead.total_seconds())
            return
        request = SleepRequest()
        request.duration.FromTimedelta(ahead)
        # The server answers once every timer on the way has fired and its work is done: for a
        # large population that takes far longer than an RPC's default deadline.
        await self.env.client.test_service.unlock_time_skipping_with_sleep(
            request, timeout=SLEEP_DEADLINE
        )


class _Session:
    def __init__(
        self,
        router: SimulationRouter,
        ingestion: Ingestion,
        scenario: Scenario,
        clock: Clock,
        report: Progress,
        broadcast: SimulatedBroadcast,
    ) -> None:
        self.router = router
        self.broadcast = broadcast
        self.ingestion = ingestion
        self.profiles = ingestion.profiles
        self.scenario = scenario
        self.clock = clock
        self.report = report
        self.runs: list[SimulatedRun] = []  # outcomes filled in by _collect
        self.not_entered: list[NotEntered] = []
        self._limit = asyncio.Semaphore(ROUTING_CONCURRENCY)

    async def add_customers(self) -> None:
        await asyncio.to_thread(self._store_customers)  # one thread hop for the population

    def _store_customers(self) -> None:
        if any(self.scenario.consent.values()):
            with self.profiles.engine.begin() as db:
                for name, rows in self.scenario.consent.items():
                    if rows:
                        db.execute(store_metadata.tables[name].insert(), rows)
        for customer in self.scenario.customers:
            self.profiles.upsert(
                customer.id,
                customer.identify_traits(),
                locale=customer.locale,
                timezone=customer.timezone,
                max_bytes=self.ingestion.max_profile_bytes,
            )

    async def play(self) -> None:
        scenario = self.scenario
        total = (scenario.end - scenario.start).total_seconds()
        for moment, item in self._happenings():
            if moment > scenario.end:
                break
            await self.clock.advance_to(moment)
            everyone = [c.id for c in scenario.customers]
            if isinstance(item, EntryMoment):
                await self._enter_moment(item, everyone)
            else:
                index, spec = item
                customers = [spec.user] if spec.user else everyone
                await asyncio.gather(
                    *(self._apply(index, moment, spec, customer) for customer in customers)
                )
            self.report("events", (moment - scenario.start).total_seconds(), total)
        if self.clock.real_time:  # real time: stop when all have ended
            assert isinstance(self.clock, _SimulatedClock)
            await self._until_all_closed(self.clock, scenario.end)
            return
        # Skip the rest in slices, so a progress bar can follow the simulated days.
        now = await self.clock.now()
        slice_ = (scenario.end - now) / PROGRESS_STEPS
        for step in range(1, PROGRESS_STEPS + 1):
            moment = now + slice_ * step
            await self.clock.advance_to(moment)
            self.report("time", (moment - scenario.start).total_seconds(), total)
        await self.clock.settle()

    def _happenings(self) -> list[tuple[datetime, tuple[int, EventSpec] | EntryMoment]]:
        """The events and the entry moments in time order; at the same moment the events come
        first (an identify at 09:00 is in the profile a 09:00 broadcast reads)."""
        timed: list[tuple[datetime, int, tuple[int, EventSpec] | EntryMoment]] = [
            (moment, 0, (index, spec)) for index, (moment, spec) in enumerate(self.scenario.events)
        ]
        timed += [(entry.at, 1, entry) for entry in self.scenario.entries]
        ordered = sorted(enumerate(timed), key=lambda item: (item[1][0], item[1][1], item[0]))
        return [(moment, what) for _, (moment, _, what) in ordered]

    async def _enter_moment(self, entry: EntryMoment, everyone: list[str]) -> None:
        """One occurrence: each customer it looks at enters if the profile lets them in and
        the re-entry rules do; runs and refusals are noted in the population's order."""
        plan = self.router.plans[entry.journey_id]
        customers = list(entry.customers) if entry.customers is not None else everyone

        async def one(customer: str) -> tuple[str, str | None, str]:
            async with self._limit:
                profile: Profile | None = await asyncio.to_thread(self.profiles.get, customer)
                tag = run_tag(plan, profile, entry.at) if profile else occurrence_tag(entry.at)
                why = refusal(plan, profile, entry.at)
                if why is None:
                    why = await self.broadcast.enter(plan, customer, entry.at, tag)
                return customer, why, tag

        for customer, why, tag in await asyncio.gather(*(one(c) for c in customers)):
            if why == NOT_THEIR_DAY:
                continue
            if why is not None:
                self.not_entered.append(
                    NotEntered(entry.at, plan.journey_id, customer, entry.label, why)
                )
                continue
            target = workflow_id(plan.journey_id, customer, None, tag)
            self.runs.append(
                SimulatedRun(
                    journey_id=plan.journey_id,
                    customer_id=customer,
                    key=None,
                    workflow_id=target,
                    entered_at=entry.at,
                    trigger=BROADCAST_EVENT,
                )
            )
            self.router.started.setdefault((plan.journey_id, customer), []).append(target)

    async def _until_all_closed(self, clock: _SimulatedClock, end: datetime) -> None:
        client = clock.env.client
        pending = {run.workflow_id for run in self.runs}

        async def closed(workflow_id: str) -> bool:
            async with self._limit:
                description = await client.get_workflow_handle(workflow_id).describe()
            return description.status != WorkflowExecutionStatus.RUNNING

        while pending and await clock.env.get_current_time() + clock.offset < end:
            ids = sorted(pending)
            done = await asyncio.gather(*(closed(i) for i in ids))
            pending -= {i for i, is_closed in zip(ids, done, strict=True) if is_closed}
            if pending:
                await asyncio.sleep(0.25)

    async def _apply(self, index: int, moment: datetime, spec: EventSpec, customer: str) -> None:
        """One event of the scenario, through the production ingestion service."""
        message_id = spec.message_id or f"sim-{index}-{customer}"
        context = {"locale": spec.locale, "timezone": spec.timezone}
        fields = {name: value for name, value in context.items() if value is not None}
        async with self._limit:
            if spec.type == "identify":
                identified = await self.ingestion.identify(
                    customer, spec.traits, SIMULATION_SCOPE, message_id=message_id, **fields
                )
                crossing = segment_trigger(customer, message_id, moment)
                for routed in identified.routed:  # the segment journeys it made them enter
                    self._note(routed, crossing, moment)
                return
            assert spec.event is not None
            applied = await self.ingestion.track(
                customer,
                spec.event,
                spec.properties,
                SIMULATION_SCOPE,
                message_id=message_id,
                timestamp=moment,
                **fields,
                **({"traits": dict(spec.traits)} if spec.traits else {}),
            )
            for routed in applied.routed:
                assert applied.event is not None
                self._note(routed, applied.event, moment)

    def _note(self, routed: Routed, event: Event, moment: datetime) -> None:
        if routed.action == "started" and routed.workflow_id is not None:
            self.runs.append(
                SimulatedRun(
                    journey_id=routed.journey_id,
                    customer_id=event.customer_id,
                    key=routed.key,
                    workflow_id=routed.workflow_id,
                    entered_at=moment,
                    trigger=event.event,
                    run_id=routed.run_id,
                )
            )
            known = self.router.started.setdefault((routed.journey_id, event.customer_id), [])
            known.append(routed.workflow_id)
        elif routed.action == "skipped" and event.event in (
            p.trigger.event for p in self.router.plans.values()
        ):
            self.not_entered.append(
                NotEntered(
                    moment, routed.journey_id, event.customer_id, event.event, routed.reason or ""
                )
            )


async def _collect(
    client: Client, started: Iterable[SimulatedRun], report: Progress
) -> list[SimulatedRun]:
    started = list(started)
    limit = asyncio.Semaphore(ROUTING_CONCURRENCY)
    done = 0
    # A customer can re-enter a journey under the same workflow id once the earlier run has
    # closed: the earlier ones are read by their run id, the latest by id (it may have
    # continued as new since).
    latest = {run.workflow_id: run for run in started}

    async def one(run: SimulatedRun) -> SimulatedRun:
        nonlocal done
        async with limit:
            run_id = None if latest[run.workflow_id] is run else run.run_id
            handle = client.get_workflow_handle(
                run.workflow_id, run_id=run_id, result_type=RunResult
            )
            description = await handle.describe()
            waiting_until = None
            if description.status == WorkflowExecutionStatus.RUNNING:
                view = await handle.query("state", result_type=RunView)
                outcome, current, timeline = view.outcome, view.current, view.timeline
                waiting_until = view.waiting_until
            else:
                result = await handle.result()
                outcome, current, timeline = result.outcome, result.current, result.timeline
            done += 1
            report("collect", done, len(started))
            return replace(
                run,
                outcome=outcome,
                current=current,
                timeline=timeline,
                waiting_until=waiting_until,
            )

    return list(await asyncio.gather(*(one(run) for run in started)))
