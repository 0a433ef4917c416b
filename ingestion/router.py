"""The router: hands each shop event to the journeys it starts and the runs that wait for it.

* A **trigger** starts a run with signal-with-start (the event is the start signal), after the
  trigger condition, the correlation key, the entry condition and the re-entry policy allow it.
* A **segment** journey (``trigger.segment``) is started by no event: the ingestion service
  hands the router each profile change (:meth:`Router.enter_segments`), and a customer enters
  when the change made the condition true (:mod:`ingestion.segments`), under the same re-entry
  rules and journey state as a trigger.
* A **listener** journey (``wait_for``, ``exit_when``, ``goal``) gets a plain signal at the
  workflow id computed from customer and key; "no such run" is a normal no-op. Runs that cannot
  be named by id (``every_time`` journeys, or a key-less rule in a keyed journey) are found with
  a visibility query on the Touchpoint search attributes.

Workflow ids hash the customer id and key: no personal data in ids. **Data minimisation:** a
run gets only the event properties its journey reads (:attr:`Plan.event_properties`, every
version the router knows of the journey together); the others are never copied into Temporal's
histories. Trigger conditions and keys are evaluated on the whole event first.

**What it routes by** is a :class:`Routes` table: the active version of each journey (triggers
start runs on it) and the earlier versions (their runs still wait for events). An API swaps it
whole when a journey is deployed (:meth:`Router.use`, :mod:`ingestion.deployed`); an event
being routed keeps the table it started with, so it goes to the old or the new version, not
to neither. With ``deployments`` the router also asks the store, at each trigger, whether the
journey is paused or stopped: then the trigger starts nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import Connection
from temporalio.client import Client, WorkflowHandle
from temporalio.common import (
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from ingestion.metrics import RUNS_STARTED
from ingestion.segments import crossed, crossing_tag, segment_trigger
from store.deployments import Deployments, journey_state
from store.entries import Entry, EntryStore
from store.profiles import ProfileChange
from workflows import evaluation, registry
from workflows.models import (
    JOURNEY_QUEUE,
    Event,
    JourneyInput,
    Profile,
    RunSettings,
    customer_hash,
    workflow_id,
)
from workflows.plan import EventMatch, Plan, WaitForNode
from workflows.search import CUSTOMER, JOURNEY_ID, at_start

log = logging.getLogger(__name__)
Action = Literal["started", "signalled", "skipped", "not_running"]
ENTRY_MEMO = "touchpoint_entry"
CROSSING_MEMO = "touchpoint_crossing"  # a segment run's crossing tag (one_at_a_time)
LOST_ANSWER_CHECK_SECONDS = 5.0


@dataclass(frozen=True)
class Routed:
    """What happened to one journey for one event (for logs, metrics and tests)."""

    journey_id: str
    action: Action
    workflow_id: str | None = None
    reason: str | None = None
    run_id: str | None = None  # of a run this event started
    key: str | None = None  # the correlation key of that run


@dataclass(frozen=True)
class Routes:
    """What the router routes by; replaced whole, never changed in place."""

    active: Mapping[str, Plan] = field(default_factory=dict)  # journey id → its active version
    triggers: Mapping[str, tuple[Plan, ...]] = field(default_factory=dict)  # event → active plans
    listeners: Mapping[str, tuple[Plan, ...]] = field(default_factory=dict)  # every version
    # journey id → the event properties any of its versions reads (None: any)
    properties: Mapping[str, frozenset[str] | None] = field(default_factory=dict)
    segments: tuple[Plan, ...] = ()  # active segment journeys: profile changes start them

    @classmethod
    def of(cls, active: Mapping[str, Plan], earlier: Iterable[Plan] = ()) -> Routes:
        """Triggers start ``active`` plans; runs of ``active`` and ``earlier`` versions (of
        the same journeys) get the events they listen for."""
        triggers: dict[str, list[Plan]] = {}
        listeners: dict[str, list[Plan]] = {}
        current = {plan.version for plan in active.values()}
        older = [p for p in earlier if p.journey_id in active and p.version not in current]
        segments: list[Plan] = []
        for plan in active.values():
            if plan.segment is not None:  # started by profile changes (enter_segments)
                segments.append(plan)
            elif plan.schedule is None and plan.date_entry is None:  # started by a schedule
                triggers.setdefault(plan.trigger.event, []).append(plan)
        for plan in [*active.values(), *older]:
            for name in sorted(plan.listened_events()):
                listeners.setdefault(name, []).append(plan)
        properties: dict[str, frozenset[str] | None] = {}
        for plan in [*active.values(), *older]:
            known = properties.get(plan.journey_id, frozenset())
            reads = plan.event_properties
            properties[plan.journey_id] = (
                None if known is None or reads is None else known | frozenset(reads)
            )
        return cls(
            dict(active),
            {name: tuple(found) for name, found in triggers.items()},
            {name: tuple(found) for name, found in listeners.items()},
            properties,
            tuple(sorted(segments, key=lambda plan: plan.journey_id)),
        )

    def for_run(self, journey_id: str, event: Event) -> Event:
        """``event`` as runs of ``journey_id`` get it: only the properties the journey reads."""
        reads = self.properties.get(journey_id)
        if reads is None or reads.issuperset(event.properties):
            return event
        kept = {name: value for name, value in event.properties.items() if name in reads}
        return event.model_copy(update={"properties": kept})


class Router:
    def __init__(
        self,
        client: Client,
        plans: Mapping[str, Plan],
        entries: EntryStore,
        settings: RunSettings,
        clock: Callable[[], Awaitable[datetime]] | None = None,
        deployments: Deployments | None = None,
    ) -> None:
        self.client = client
        self.entries = entries
        self.settings = settings
        self.clock = clock or _utc_now
        self.deployments = deployments  # set: a paused or stopped journey starts nothing
        self.routes = Routes()
        self.use(plans)

    @property
    def plans(self) -> Mapping[str, Plan]:
        """The active version of each journey routed."""
        return self.routes.active

    def use(self, active: Mapping[str, Plan], earlier: Iterable[Plan] = ()) -> None:
        """Route by these plans from now on (see :meth:`Routes.of`), in one assignment."""
        routes = Routes.of(active, earlier)
        registry.register([*routes.active.values(), *earlier])  # an in-process worker runs them
        self.routes = routes

    def routes_for(self, event_name: str) -> tuple[list[str], list[str]]:
        """Journey ids an event name triggers, and journey ids that listen for it."""
        routes = self.routes
        return (
            [p.journey_id for p in routes.triggers.get(event_name, ())],
            list(dict.fromkeys(p.journey_id for p in routes.listeners.get(event_name, ()))),
        )

    async def route(
        self, event: Event, profile: Profile, linked: Sequence[str] = ()
    ) -> list[Routed]:
        """Start the journeys ``event`` triggers and signal the runs that wait for it.

        ``linked`` are other ids of the same customer (anonymous ids linked to them by
        ``alias``): runs that started under those ids get the event too.
        """
        routes = self.routes  # this event's table, whatever a deploy swaps in meanwhile
        now = await self.clock()
        results: list[Routed] = []
        handled: set[str] = set()
        for plan in routes.triggers.get(event.event, ()):
            routed = await self._trigger(plan, event, profile, now, routes)
            results.append(routed)
            if routed.action in ("started", "signalled"):
                handled.add(plan.journey_id)
        versions: dict[str, list[Plan]] = {}
        for plan in routes.listeners.get(event.event, ()):
            if plan.journey_id not in handled:
                versions.setdefault(plan.journey_id, []).append(plan)
        for journey_id, plans in versions.items():
            results += await self._listen(plans, event, linked, routes.for_run(journey_id, event))
        return results

    # --- triggers -------------------------------------------------------------------------

    async def _trigger(
        self, plan: Plan, event: Event, profile: Profile, now: datetime, routes: Routes
    ) -> Routed:
        journey = plan.journey_id
        event_names = {"event": event.names()}
        try:
            if plan.trigger.condition and not evaluation.is_true(
                plan.trigger.condition, event_names
            ):
                return Routed(journey, "skipped", reason="trigger condition is false")
            key = None
            if plan.trigger.key:
                key = evaluation.key_text(evaluation.evaluate(plan.trigger.key, event_names))
                if key is None:
                    return Routed(journey, "skipped", reason="the event has no correlation key")
            entry_names = {"event": event.names(), "profile": profile.model_dump(), "now": now}
            if plan.entry.condition and not evaluation.is_true(plan.entry.condition, entry_names):
                return Routed(journey, "skipped", reason="entry condition is false")
        except evaluation.ExpressionFailed as error:
            return Routed(journey, "skipped", reason=f"cannot evaluate: {error}")

        subject = _subject(event.customer_id, key)
        whole, event = event, routes.for_run(journey, event)  # what the run may keep
        entry = await asyncio.to_thread(self._enter, plan, subject, now)
        if entry.refused is not None:
            return Routed(journey, "skipped", reason=entry.refused)
        sequence, claimed = entry.sequence, entry.claimed
        every_time = plan.entry.policy == "every_time"
        # A keyed journey has one run per customer and key, found by id. An un-keyed every_time
        # journey has one run per triggering event, so a redelivered event finds its own run.
        tagged = every_time and key is None
        target = workflow_id(journey, event.customer_id, key, _event_tag(whole) if tagged else None)
        run_input = JourneyInput(  # a reference to the plan; no profile: steps read it fresh
            journey_id=plan.journey_id,
            plan_version=plan.version,
            customer_id=event.customer_id,
            key=key,
            trigger=event,
            entry_sequence=sequence,
            clock=self.settings.clock(),
        )
        try:
            handle = await self.client.start_workflow(
                "JourneyWorkflow",
                run_input,
                id=target,
                task_queue=self.settings.queue(JOURNEY_QUEUE),
                start_signal="event",
                start_signal_args=[event],
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE
                if every_time
                else WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                search_attributes=self._search_attributes(plan, event.customer_id),
                memo={ENTRY_MEMO: sequence},
            )
            started = await _started(handle, sequence)
        except WorkflowAlreadyStartedError:
            reason = (
                "a run for this key already took place"
                if key
                else ("this event already started a run")
            )
            return Routed(journey, "skipped", target, reason=reason)
        except Exception:
            # The answer may be lost after the server started the run (a timeout under load):
            # then the claim is the run's, and giving it back would let the sender's retry
            # start a second run once this one ended. Only a run carrying this claim's entry
            # number proves it; without that proof the claim goes back and the caller retries.
            run_id = await _started_anyway(self.client, target, sequence)
            if run_id is None:
                if claimed is not None:
                    await asyncio.to_thread(self.entries.undo_entry, journey, subject, claimed)
                raise
            log.warning("a start's answer was lost, but the run %s started: kept", target)
            handle = self.client.get_workflow_handle(target, run_id=run_id)
            started = True
        except BaseException:  # cancelled: nothing can be asked any more
            if claimed is not None:
                await asyncio.to_thread(self.entries.undo_entry, journey, subject, claimed)
            raise
        if not started:
            if claimed is not None:
                await asyncio.to_thread(self.entries.undo_entry, journey, subject, claimed)
            return Routed(journey, "signalled", target, reason="a run is already active")
        if claimed is None:
            await asyncio.to_thread(self.entries.record_entry, journey, subject, now)
        RUNS_STARTED.labels(journey).inc()
        return Routed(journey, "started", target, run_id=handle.result_run_id, key=key)

    def _enter(self, plan: Plan, subject: str, now: datetime) -> Entry:
        """May the subject enter? One trip to the store's thread and one connection: the
        journey's state (read fresh: a pause holds from the moment it is committed), then the
        entry claim."""

        def held(db: Connection) -> str | None:
            state = journey_state(db, plan.journey_id)
            return f"the journey is {state}" if state in ("paused", "stopped") else None

        return self.entries.enter(
            plan.journey_id,
            subject,
            now,
            once=plan.entry.policy == "once",
            cooldown_seconds=plan.entry.cooldown_seconds or 0,
            refuse=held if self.deployments is not None else None,
        )

    def _search_attributes(self, plan: Plan, customer_id: str) -> TypedSearchAttributes | None:
        if not self.settings.index_runs:
            return None
        return at_start(plan.journey_id, plan.version, customer_hash(customer_id))

    # --- segments -------------------------------------------------------------------------

    async def enter_segments(
        self, customer_id: str, change: ProfileChange, message_id: str
    ) -> list[Routed]:
        """Start the segment journeys whose condition ``change`` (one profile update, by the
        call ``message_id``) made true (:mod:`ingestion.segments`)."""
        routes = self.routes
        if not routes.segments:
            return []
        now = await self.clock()
        trigger = segment_trigger(customer_id, message_id, now)
        results: list[Routed] = []
        for plan in routes.segments:
            assert plan.segment is not None
            journey = plan.journey_id
            try:
                if not crossed(plan.segment, change.before, change.after, now):
                    continue
                entry_names = {
                    "event": trigger.names(),
                    "profile": change.after.model_dump(),
                    "now": now,
                }
                if plan.entry.condition and not evaluation.is_true(
                    plan.entry.condition, entry_names
                ):
                    results.append(Routed(journey, "skipped", reason="entry condition is false"))
                    continue
            except evaluation.ExpressionFailed as error:
                results.append(Routed(journey, "skipped", reason=f"cannot evaluate: {error}"))
                continue
            results.append(await self._start_segment_run(plan, trigger, crossing_tag(message_id)))
        return results

    async def _start_segment_run(self, plan: Plan, trigger: Event, tag: str) -> Routed:
        """Enter ``trigger``'s customer, as the re-entry rules allow. ``once`` and
        ``every_time``: a workflow id per crossing (``tag``), never started twice.
        ``one_at_a_time``: one workflow id per customer, so a running run refuses the start;
        the crossing's tag in the run's memo tells a retried call that its run took place."""
        journey, customer = plan.journey_id, trigger.customer_id
        subject = _subject(customer, None)
        per_crossing = plan.entry.policy != "one_at_a_time"
        target = workflow_id(journey, customer, None, tag if per_crossing else None)
        if not per_crossing and await _latest_crossing(self.client, target) == tag:
            return Routed(journey, "skipped", target, reason="this crossing started a run")
        entry = await asyncio.to_thread(self._enter, plan, subject, trigger.timestamp)
        if entry.refused is not None:
            return Routed(journey, "skipped", reason=entry.refused)
        try:
            handle = await self.client.start_workflow(
                "JourneyWorkflow",
                JourneyInput(
                    journey_id=journey,
                    plan_version=plan.version,
                    customer_id=customer,
                    trigger=trigger,
                    entry_sequence=entry.sequence,
                    clock=self.settings.clock(),
                ),
                id=target,
                task_queue=self.settings.queue(JOURNEY_QUEUE),
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE
                if per_crossing
                else WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                search_attributes=self._search_attributes(plan, customer),
                memo={ENTRY_MEMO: entry.sequence, CROSSING_MEMO: tag},
            )
        except WorkflowAlreadyStartedError:
            if per_crossing:  # this crossing's run exists: an earlier attempt started it
                return Routed(journey, "skipped", target, reason="this crossing started a run")
            if entry.claimed is not None:
                await asyncio.to_thread(self.entries.undo_entry, journey, subject, entry.claimed)
            return Routed(journey, "skipped", target, reason="a run is already active")
        except BaseException:
            if entry.claimed is not None:
                await asyncio.to_thread(self.entries.undo_entry, journey, subject, entry.claimed)
            raise
        if entry.claimed is None:
            await asyncio.to_thread(self.entries.record_entry, journey, subject, trigger.timestamp)
        RUNS_STARTED.labels(journey).inc()
        return Routed(journey, "started", target, run_id=handle.result_run_id)

    # --- listeners ------------------------------------------------------------------------

    async def _listen(
        self, versions: Sequence[Plan], event: Event, linked: Sequence[str], sent: Event
    ) -> list[Routed]:
        """Signal the runs of one journey that may wait for ``event``, whichever of its
        ``versions`` they run (the runs themselves decide whether it matches); they get
        ``sent``, the event with only the properties the journey reads."""
        journey = versions[0].journey_id
        customers = [event.customer_id, *linked]
        targets: set[str] = set()
        fan_out = False
        for plan in versions:
            fan_out |= plan.entry.policy == "every_time" and plan.trigger.key is None
            for rule in _rules_for(plan, event.event):
                if rule.key is None:
                    if plan.trigger.key is None:
                        targets.update(workflow_id(journey, c, None, None) for c in customers)
                    else:
                        fan_out = True
                    continue
                try:
                    names = {"event": event.names()}
                    key = evaluation.key_text(evaluation.evaluate(rule.key, names))
                except evaluation.ExpressionFailed:
                    key = None
                if key is not None:
                    targets.update(workflow_id(journey, c, key, None) for c in customers)
        if fan_out:
            return await self._signal_all_running(versions[0], sent, customers)
        return [await self._signal(journey, target, sent) for target in sorted(targets)]

    async def _signal(self, journey: str, target: str, event: Event) -> Routed:
        try:
            await self.client.get_workflow_handle(target).signal("event", event)
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return Routed(journey, "not_running", target)
            raise
        return Routed(journey, "signalled", target)

    async def _signal_all_running(
        self, plan: Plan, event: Event, customers: Sequence[str]
    ) -> list[Routed]:
        if not self.settings.index_runs:
            log.warning(
                "journey %s needs search attributes to route %s", plan.journey_id, event.event
            )
            return [Routed(plan.journey_id, "skipped", reason="run index is off")]
        hashes = ", ".join(f"'{customer_hash(c)}'" for c in customers)
        query = (
            f"{JOURNEY_ID.name} = '{plan.journey_id}' AND "
            f"{CUSTOMER.name} IN ({hashes}) AND "
            "ExecutionStatus = 'Running'"
        )
        results = [
            await self._signal(plan.journey_id, run.id, event)
            async for run in self.client.list_workflows(query)
        ]
        return results or [Routed(plan.journey_id, "not_running")]


def _rules_for(plan: Plan, event_name: str) -> list[EventMatch]:
    rules: list[EventMatch] = [rule for rule in plan.exits if rule.event == event_name]
    if plan.goal is not None and plan.goal.event == event_name:
        rules.append(plan.goal)
    rules += [
        node.match
        for node in plan.nodes.values()
        if isinstance(node, WaitForNode) and node.match.event == event_name
    ]
    return rules


def _subject(customer_id: str, key: str | None) -> str:
    return customer_hash(customer_id if key is None else f"{customer_id}\x00{key}")


async def _started(handle: WorkflowHandle, sequence: int) -> bool:
    """Did signal-with-start start a new run (rather than signal a running one)?

    Recent servers say so in the response; where it says no (or an older server leaves the
    field unset), the run's memo tells whose entry number it was started with.
    """
    response = getattr(handle, "_start_workflow_response", None)
    if getattr(response, "started", False):
        return True
    return await _run_carrying(handle, sequence) is not None


async def _started_anyway(client: Client, workflow_id: str, sequence: int) -> str | None:
    """After a failed start: the newest run with ``workflow_id`` if it carries entry
    ``sequence``, else ``None`` (asked once, briefly; any failure to answer is "no proof")."""
    try:
        return await asyncio.wait_for(
            _run_carrying(client.get_workflow_handle(workflow_id), sequence),
            LOST_ANSWER_CHECK_SECONDS,
        )
    except Exception:
        return None


async def _run_carrying(handle: WorkflowHandle, sequence: int) -> str | None:
    """The run id of ``handle``'s run if its memo holds entry number ``sequence``."""
    description = await handle.describe()
    if await description.memo_value(ENTRY_MEMO, default=None) == sequence:
        return description.run_id
    return None


async def _latest_crossing(client: Client, workflow_id: str) -> str | None:
    """The crossing tag of the latest run with ``workflow_id`` (``None``: no run)."""
    try:
        description = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    found = await description.memo_value(CROSSING_MEMO, default=None)
    return None if found is None else str(found)


async def _utc_now() -> datetime:
    return datetime.now(UTC)


def _event_tag(event: Event) -> str:
    return hashlib.sha256(f"touchpoint-event:{event.message_id}".encode()).hexdigest()[:16]
