"""The interpreter's core: what one customer's run through one plan *decides*.

:class:`JourneyCore` holds a run's plan and state and reacts to its inputs — the start, an
event, an unsubscribe, a cancel, a timer that ended, an activity's answer — by changing its
state and issuing commands to its :class:`Host`: wait (until a moment, or until a condition
holds), send or look up (activities), read the profile, index the run, continue as new, finish.
It imports nothing of Temporal's: the host is where commands become timers, activities and
search attributes. Two hosts run it:

* :class:`workflows.journey.JourneyWorkflow` — the Temporal workflow (workers, the exact
  simulator on the time-skipping server, the replay corpus);
* :class:`simulation.fast.FastHost` — the fast simulator's discrete-event loop, many customers
  in one process, no server.

Same core, same decisions: the conformance suite (``tests/conformance``) checks that both
give identical timelines. docs/interpreter.md lists the inputs and commands.

Determinism: nothing here does I/O or reads the clock except through the host; expression
evaluation and time-zone arithmetic live in pure helper modules. Changes that alter the
commands this code issues must go behind ``host.patched()`` (see ``docs/operations.md``) and
are caught by the replay tests of recorded histories. Runs of input version 3 take the patches
they were started with without asking (:func:`started_with_patch`): each ``patched()`` a run
asks costs it a marker and a search-attribute upsert.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, Protocol

from workflows import analytics, evaluation, lookup_paths, registry, timing
from workflows.channels import CHANNELS
from workflows.durations import format_duration
from workflows.models import CHANNEL_QUEUES as _CHANNEL_QUEUES
from workflows.models import (
    INBOX_LIMIT,
    INPUT_VERSION,
    JOURNEY_QUEUE,
    LOOKUP_ACTIVITY,
    LOOKUP_QUEUE,
    READ_PROFILE_ACTIVITY,
    SEEN_IDS_LIMIT,
    SEND_ACTIVITIES,
    SEND_ATTEMPT_SECONDS,
    SIMULATED_TIMER_LAG_SECONDS,
    TIMELINE_LIMIT,
    CancelRequest,
    Event,
    JourneyInput,
    LookupRequest,
    LookupResult,
    Outcome,
    OutcomeKind,
    Profile,
    ProfileAnswer,
    ProfileRequest,
    RunClock,
    RunResult,
    RunState,
    RunView,
    SendRequest,
    SendResult,
    TimelineEntry,
    WaitResume,
    customer_hash,
    message_id,
)
from workflows.plan import (
    DATE_STEP,
    END,
    BranchNode,
    EndNode,
    EventMatch,
    LookupNode,
    Node,
    Plan,
    SendNode,
    SetNode,
    SplitNode,
    WaitForNode,
    WaitNode,
    WaitUntilNode,
)


@dataclass(frozen=True)
class Retry:
    """How an activity is retried (the host turns it into its engine's retry policy)."""

    initial_interval: timedelta = timedelta(seconds=1)
    backoff_coefficient: float = 2.0
    maximum_interval: timedelta | None = None
    maximum_attempts: int = 0  # 0: no limit but the deadline


class Host(Protocol):
    """What the core asks of whatever executes it. Every method is a command or a read of
    the execution's recorded facts (time, patch decisions, history size), never I/O."""

    def now(self) -> datetime:
        """The execution's clock (Temporal's: the workflow task's time)."""

    def patched(self, patch_id: str) -> bool:
        """Does this run take the change ``patch_id``? (Temporal: ``workflow.patched``.)"""

    def wait_condition(
        self, ready: Callable[[], bool], timeout: timedelta | None = None
    ) -> Awaitable[None]:
        """Wait until ``ready()`` (checked after every input) or ``timeout`` (a durable timer);
        ``TimeoutError`` when the timer ended first."""

    def all_handlers_finished(self) -> bool: ...

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
        """Schedule an activity now; the awaitable gives its result or raises its failure
        (see :meth:`activity_failure`). Cancelling it cancels the activity."""

    def local_activity(
        self, name: str, arg: Any, result_type: type, seconds: int, retry: Retry
    ) -> Awaitable[Any]: ...

    def activity_failure(self, error: Exception) -> str:
        """The text of an activity's failure; raises ``error`` again if it is none."""

    def continue_as_new(self, run_input: JourneyInput) -> NoReturn: ...

    def history_full(self, limit: int | None) -> bool:
        """Should the run continue as new (its history reached ``limit`` events, or the
        engine suggests it)?"""

    def workflow_id(self) -> str: ...

    def task_queue(self) -> str: ...

    def index_step(self, step: str, stage: str) -> None: ...

    def index_outcome(self, kind: str) -> None: ...

    def count_end(self, journey_id: str, outcome: str) -> None: ...

    def replaying(self) -> bool: ...

    def write_records(
        self, recorder: analytics.Recorder, records: Sequence[analytics.Record]
    ) -> None:
        """Hand records to the analytics recorder; never raises."""


SEND_RETRY = Retry(  # runs started before 2026-12 (see "long-send-retries")
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
    maximum_attempts=10,
)
OUTAGE_RETRY = Retry(  # a provider outage is waited out: no attempt limit, the deadline
    initial_interval=timedelta(seconds=2),  # is the channel's send_retry_hours (default 24)
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
    maximum_attempts=0,
)
PROFILE_RETRY = Retry(maximum_interval=timedelta(seconds=10), maximum_attempts=10)
LOOKUP_RETRY = Retry(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    maximum_attempts=5,
)
PATCHES_OF_VERSION_3 = frozenset(
    {
        "bounded-expressions",
        "continue-as-new-in-waits",
        "erasure-outcome",
        "index-waiting-steps-only",
        "journey-stop",
        "long-send-retries",
        "lookup-path-values-encoded",
        "wait-until-wall-clock-offset",
    }
)
"""The patches every run of input version 3 or later was started with: it takes them without
asking ``workflow.patched`` (no marker, no ``TemporalChangeVersion`` upsert). Never edited: a
patch added later is asked for as usual, by every run, and older runs ask for these."""
INSTANT_KINDS = ("branch", "split", "set")
QUICK_KINDS = ("send", "lookup")  # not indexed: a run is at them for moments


class Interrupted(Exception):
    """The run ended (goal, exit or cancel) while a step was in progress."""


class ContinueInWait(Exception):
    """The history grew long while the run was waiting: continue as new, and go on waiting
    until ``until`` in the new run."""

    def __init__(self, until: datetime) -> None:
        super().__init__(until)
        self.until = until


class StepFailed(Exception):
    def __init__(self, step: str, error: str) -> None:
        super().__init__(error)
        self.step = step
        self.error = error


class JourneyCore:
    """One customer's run through one plan: every decision, no execution (module docstring)."""

    def __init__(self, run_input: JourneyInput, host: Host) -> None:
        self.input = run_input
        self.host = host
        self.unready: Exception | None = None  # raised by run(): the workflow task retries
        try:
            self.plan = self._plan()
        except RuntimeError as problem:  # not raised here: a failed init leaks a coroutine
            self.unready, self.plan = problem, _placeholder(run_input)
        self.legacy = run_input.settings is not None and run_input.input_version < 2
        self.deployment = self._deployment()
        self.clock: RunClock = (
            run_input.settings.clock() if run_input.settings is not None else run_input.clock
        )
        self.profile: Profile | None = run_input.profile  # version 1 and tests; else read
        self.simulated_now: datetime | None = None  # the run's clock, in simulations
        if self.clock.simulated:
            self.simulated_now = (
                run_input.state.simulated_now
                if run_input.state is not None and run_input.state.simulated_now is not None
                else _aware(run_input.trigger.timestamp)
            )
        self.state = run_input.state or RunState(
            current=self.plan.start,
            entered_at=self._now(),
            seen_ids=[run_input.trigger.message_id],
        )
        self._seen = set(self.state.seen_ids)
        self._waiting_until: datetime | None = None
        self._waiting_for: str | None = None
        self._idle_until: datetime | None = None  # simulated: the end of the wait it is in
        self._held: list[Event] = []  # simulated: events held until the run waits again
        self._date_moved: Event | None = None  # a newer trigger event while waiting for its date
        self._waiting_for_date = False
        self._step_started: datetime | None = None
        self._listened = {
            n.match.event for n in self.plan.nodes.values() if isinstance(n, WaitForNode)
        }
        self._expressions_bounded: bool | None = None
        # how the step that just ran left: its edge's label, and whether it was a holdout path
        self._edge: tuple[str | None, bool] = (None, False)
        self._records: list[analytics.Record] = []  # for the analytics store, not yet written

    # --- signals and queries ---------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        """A shop event routed to this run: maybe an exit, the goal, or one a wait_for wants."""
        if self.state.outcome is not None or event.message_id in self._seen:
            return
        self._remember(event.message_id)
        if self.simulated_now is not None and self._holds(event):
            self._held.append(event)
            return
        self._handle(event)

    def _holds(self, event: Event) -> bool:
        """A simulated run handles events in the order of simulated time, whatever order the
        server delivers them in. Steps take no simulated time: an event that comes while the
        run is busy is held until it waits again. A wait's timer fires a little after its end
        (:data:`SIMULATED_TIMER_LAG_SECONDS`), so that an event at the very end is handled
        first, as in production; an event from after the end, come before the timer, is
        held until the run waits again."""
        return self._idle_until is None or _aware(event.timestamp) > self._idle_until

    def _handle(self, event: Event) -> None:
        if self.simulated_now is not None:  # a simulated run's clock: the event's moment
            self.simulated_now = max(self.simulated_now, _aware(event.timestamp))
        for rule in self.plan.exits:
            if self._matches(rule, event):
                self._finish("exited", reason=rule.reason)
                return
        goal = self.plan.goal
        if goal is not None and self._matches(goal, event) and self._within_goal_window():
            self._finish("converted", reason=goal.event)
            return
        if event.event in self._listened:
            self.state.inbox = [*self.state.inbox, event][-INBOX_LIMIT:]
        if self._waiting_for_date and event.event == self.plan.trigger.event:
            self._date_moved = event  # the same key's event again: its date may have moved

    def on_unsubscribed(self, request: CancelRequest) -> None:
        """The customer withdrew marketing consent: a marketing run exits, others go on. Left
        one topic only: a run of that topic exits if it sends that topic on no channel the
        customer still has; any other run goes on (the consent policy skips its sends of the
        topic on the channels left)."""
        if self.state.outcome is not None or self.plan.category != "marketing":
            return
        # patched 2026-12: leaving one topic ends only the runs of that topic
        if request.topic is not None and self.host.patched("topic-unsubscribe"):
            if request.topic == self.plan.topic and self._sends_topic_only_on(request.channel):
                self._finish("exited", reason=f"unsubscribed from {request.topic}")
            return
        self._finish("exited", reason="unsubscribed")

    def _sends_topic_only_on(self, channel: str | None) -> bool:
        """Do the run's sends of its journey's topic reach the customer on ``channel`` alone
        (``None``: all channels)?"""
        used = {
            node.channel
            for node in self.plan.nodes.values()
            if isinstance(node, SendNode)
            and node.topic == self.plan.topic
            and CHANNELS[node.channel].to_customer
        }
        return channel is None or used <= {channel}

    def on_cancel(self, request: CancelRequest) -> None:
        """An operator's cancel, or an erasure's: the run ends at once and sends nothing more
        (a send being retried is cancelled with it)."""
        if self.state.outcome is not None:
            return
        # patched 2026-12: an erased customer's run ends as `erased`, not `cancelled`
        if request.erased and self._patched("erasure-outcome"):
            self._finish("erased")
        else:
            self._finish("cancelled", reason=request.reason)

    def query_state(self) -> RunView:
        return RunView(
            journey_id=self.plan.journey_id,
            journey_version=self.plan.version,
            current=self.state.current,
            outcome=self.state.outcome,
            vars=self.state.vars,
            timeline=self.state.timeline,
            waiting_until=self._waiting_until,
            waiting_for=self._waiting_for,
            step_started_at=self._step_started,
        )

    # --- the interpreter -------------------------------------------------------------------

    async def run(self) -> RunResult:
        if self.unready is not None:  # fail this workflow task; a retry (or a newer worker,
            raise self.unready  # or this one once it has loaded the plan) will run it
        self._bounded()  # decided here, before any wait condition evaluates an expression
        if self.input.state is None:
            self._note_entered()
        if self._rules_read_profile():
            self._write_records()
            await self._read_profile()
        while self.state.outcome is None:
            node = self.plan.nodes[self.state.current]
            if isinstance(node, EndNode):
                self._finish("completed")
                break
            if self._should_continue_as_new():
                await self._continue_as_new()
            if self.state.resume is None:
                self._index_step(node)
            if node.type not in INSTANT_KINDS:  # it may wait: what the run did so far, now
                self._write_records()
            try:
                following = await self._execute(node)
                self._note_passed(node, following)
                self.state.current = following
            except Interrupted:
                break
            except ContinueInWait as waiting:
                self.state.resume = WaitResume(step=node.id, until=waiting.until)
                await self._continue_as_new()
            except StepFailed as failure:
                self._record(node, "failed", failure.error)
                self._finish("failed", step=failure.step, error=failure.error)
        self._index_outcome()
        self._count_end()
        self._note_ended()
        assert self.state.outcome is not None
        return RunResult(
            outcome=self.state.outcome, timeline=self.state.timeline, current=self.state.current
        )

    async def _continue_as_new(self) -> None:
        await self.host.wait_condition(self.host.all_handlers_finished)
        self._release_held()
        self._write_records()
        self.state.continued += 1
        self.state.simulated_now = self.simulated_now
        self.host.continue_as_new(self.input.model_copy(update={"state": self.state}))

    async def _execute(self, node: Node) -> str:
        self._step_started = self._now()
        if self.state.resume is None or self.state.resume.step != node.id:
            self.state.visits[node.id] = self.state.visits.get(node.id, 0) + 1
        if self._reads_profile(node):
            self._decide_patches(node)
            await self._read_profile()
        match node:
            case SendNode():
                return await self._send(node)
            case WaitNode():
                await self._wait(node.seconds)
                self._record(node, "waited", f"waited {format_duration(node.seconds)}")
                return node.next
            case WaitUntilNode():
                return await self._wait_until(node)
            case WaitForNode():
                return await self._wait_for(node)
            case BranchNode():
                return self._branch(node)
            case SplitNode():
                return self._split(node)
            case LookupNode():
                return await self._lookup(node)
            case SetNode():
                for name, source in node.assignments.items():
                    self.state.vars[name] = self._evaluate(node, source)
                self._record(node, "set", ", ".join(f"vars.{n}" for n in node.assignments))
                return node.next
        raise StepFailed(node.id, f"unknown node type {node.type}")  # pragma: no cover

    async def _send(self, node: SendNode) -> str:
        if self.state.holdout:
            self._record(node, "held out", f"{node.channel}: {node.template}", channel=node.channel)
            return node.next
        request = SendRequest(
            message_id=self._idempotency_key(node),
            journey_id=self.plan.journey_id,
            journey_version=self.plan.version,
            category=self.plan.category,
            step_id=node.id,
            channel=node.channel,
            template=node.template,
            destination=node.destination,
            customer_id=self.input.customer_id,
            profile=self.input.profile,  # none in production: the activity reads it fresh
            context=self._context(node.reads),
            topic=node.topic,
            policies=node.policies,
        )
        queue = self._activity_queue(_CHANNEL_QUEUES[node.channel], node.channel)
        # patched 2026-12: outages are waited out for hours, not ten attempts (~17 minutes)
        if self._patched("long-send-retries"):
            retry, deadline = OUTAGE_RETRY, self._send_deadline(node.channel)
        else:
            retry, deadline = SEND_RETRY, None
        while True:
            try:
                result = await self._activity(
                    SEND_ACTIVITIES[node.channel],
                    request,
                    queue,
                    retry,
                    SendResult,
                    SEND_ATTEMPT_SECONDS,
                    deadline,
                )
            except Exception as error:
                reason = self.host.activity_failure(error)  # anything else: raised again
                if node.skip_on_failure:
                    self._record(
                        node,
                        "skipped",
                        f"failed, skipped: {reason}",
                        channel=node.channel,
                        message_id=request.message_id,
                    )
                    return node.next
                raise StepFailed(node.id, reason) from None
            if result.status != "deferred" or result.deferred_until is None:
                break
            # A delivery policy holds the message: wait (a durable timer that goal, exit and
            # unsubscribe interrupt like any wait), then ask again with the same message id.
            until = result.deferred_until
            held = result.reason or "held"
            if " until " not in held:  # a reason that names its moment says it best
                held += f" until {until.isoformat(timespec='minutes')}"
            self._record(
                node,
                "deferred",
                f"{node.channel}: {node.template} (deferred: {held})",
                channel=node.channel,
                message_id=result.message_id,
                until=until,
            )
            await self._wait((until - self._now()).total_seconds(), scaled=False)
            request = request.model_copy(update={"context": self._context(node.reads)})
        if result.ends_run and self._patched("journey-stop"):
            # The journey was stopped (`touchpoint journeys stop`): end before sending.
            self._record(
                node,
                "stopped",
                f"{node.channel}: {node.template} (not sent: {result.reason})",
                channel=node.channel,
                message_id=result.message_id,
            )
            self._finish("exited", reason=result.reason, step=node.id)
            raise Interrupted
        detail = f"{node.channel}: {node.template}"
        if result.reason:
            detail += (
                f" ({result.reason})"
                if result.status == "sent"
                else f" ({result.status}: {result.reason})"
            )
        self._record(
            node,
            result.status,
            detail,
            channel=node.channel,
            message_id=result.message_id,
            to=result.to,
            subject=result.subject,
        )
        return node.next

    async def _lookup(self, node: LookupNode) -> str:
        names = self._names()
        # patched 2026-12: each value inserted into the path is one percent-encoded segment
        if self._patched("lookup-path-values-encoded"):
            render_path = lookup_paths.render_path
        else:
            render_path = evaluation.render_text
        try:
            request = LookupRequest(
                request_id=self._idempotency_key(node),
                journey_id=self.plan.journey_id,
                step_id=node.id,
                connection=node.connection,
                method=node.method,
                path=render_path(node.path, names, bounded=self._bounded()),
                query=evaluation.render_value(node.query, names, bounded=self._bounded()),
                body=evaluation.render_value(node.body, names, bounded=self._bounded()),
            )
        except evaluation.ExpressionFailed as error:
            raise StepFailed(node.id, str(error)) from None
        queue = self._activity_queue(LOOKUP_QUEUE)
        try:
            result = await self._activity(
                LOOKUP_ACTIVITY, request, queue, LOOKUP_RETRY, LookupResult, 30
            )
        except Exception as error:
            raise StepFailed(node.id, self.host.activity_failure(error)) from None
        self.state.lookups[node.save_as] = result.data
        self._record(node, "looked up", f"{request.method} {request.path} → lookups.{node.save_as}")
        return node.next

    async def _activity(
        self,
        name: str,
        arg: Any,
        queue: str,
        retry: Retry,
        result_type: type,
        seconds: int,
        deadline: timedelta | None = None,
    ) -> Any:
        """Run an activity (attempts of ``seconds``, retried until ``deadline``), abandoning it
        (cancelled) if the run ends meanwhile."""
        task = asyncio.ensure_future(
            self.host.start_activity(name, arg, queue, retry, result_type, seconds, deadline)
        )
        await self.host.wait_condition(lambda: task.done() or self.state.outcome is not None)
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                try:
                    await task
                except Exception as error:
                    self.host.activity_failure(error)  # an activity's failure: as cancelled
            raise Interrupted
        return task.result()

    async def _wait(
        self, seconds: float, ready: Callable[[], bool] | None = None, *, scaled: bool = True
    ) -> bool:
        """Wait ``seconds`` (a durable timer) or until ``ready()``; ``True`` if ready.

        ``scaled``: the run's time scale applies (journey waits); a moment a delivery policy
        names is waited for as it is. A wait that a continue-as-new interrupted goes on until
        its old deadline. Since 2026-12 (patched) a long wait that receives many events
        continues as new from inside the wait, so its history stays under Temporal's limits."""
        if ready is not None and ready():
            return True
        resume, self.state.resume = self.state.resume, None
        if resume is not None and resume.step == self.state.current:
            deadline = resume.until
        else:
            deadline = self._wait_start() + timedelta(
                seconds=self.clock.scaled(seconds) if scaled else seconds
            )
        remaining = (deadline - self.host.now()).total_seconds()
        if self.simulated_now is not None:  # the moment's events first (see _holds)
            if self._run_time(deadline) <= self.simulated_now:
                return False  # a wait that ends before it begins does not wait
            remaining += SIMULATED_TIMER_LAG_SECONDS
        if remaining <= 0:
            self._timer_ended(deadline)
            return False
        if self._held:  # a simulated run waits again: the events that came meanwhile
            self._release_held()
            if self.state.outcome is not None:
                raise Interrupted
            if ready is not None and ready():
                return True
        may_continue = self._patched("continue-as-new-in-waits")
        self._waiting_until = self._run_time(deadline)
        if self.simulated_now is not None:
            self._idle_until = self._waiting_until
        try:
            await self.host.wait_condition(
                lambda: (
                    self.state.outcome is not None
                    or (ready is not None and ready())
                    or (may_continue and self._should_continue_as_new())
                ),
                timeout=timedelta(seconds=remaining),
            )
        except TimeoutError:
            self._timer_ended(deadline)
            return False
        finally:
            self._waiting_until = self._waiting_for = self._idle_until = None
        if self.state.outcome is not None:
            raise Interrupted
        if ready is not None and ready():
            return True
        raise ContinueInWait(deadline)

    async def _wait_until(self, node: WaitUntilNode) -> str:
        now = self._now()
        moved = self.state.events.get(node.id) if node.if_past else None  # _wait_for_date's
        value = self._evaluate(node, node.date, event=moved) if node.date is not None else None
        try:
            tz = timing.zone(self._profile().timezone, self.deployment.default_timezone)
            if node.date is not None:
                # patched 2026-11: offsets move the local wall clock (right across DST)
                wall_clock = self._patched("wait-until-wall-clock-offset")
                target = timing.moment_from(
                    value, tz, node.offset_seconds, node.time, wall_clock=wall_clock
                )
            else:
                assert node.time is not None
                target = timing.next_time_of_day(now, tz, node.time, node.days)
        except (ValueError, OverflowError) as error:  # e.g. 0001-01-01 from a CRM export
            raise StepFailed(node.id, f"cannot compute the moment: {error}") from None
        resumed = self.state.resume is not None and self.state.resume.step == node.id
        if node.if_past == "skip" and target <= now and not resumed:  # the date had gone
            reason = f"the date's moment ({target.isoformat()}) had passed when the run started"
            self._record(node, "skipped", reason)
            self._finish("exited", reason=reason, step=node.id)
            raise Interrupted
        if node.if_past == "skip" and self._patched("date-follows-trigger"):
            return await self._wait_for_date(node, target)
        await self._wait((target - now).total_seconds())
        self._record(node, "waited", f"until {target.isoformat()}")
        return node.next

    async def _wait_for_date(self, node: WaitUntilNode, target: datetime) -> str:
        """A date in the trigger event (``trigger.date.property``): wait for its moment; the
        same key's event again (a corrected warranty date) moves the wait to its date, and
        one whose moment has passed ends the run as the first would have. The newest such
        event is kept in ``state.events`` under the step, so a continue-as-new keeps it."""
        assert node.date is not None
        while True:
            self._waiting_for_date = True
            try:
                moved = await self._wait(
                    (target - self._now()).total_seconds(), lambda: self._date_moved is not None
                )
            finally:
                self._waiting_for_date = False
            if not moved:
                self._record(node, "waited", f"until {target.isoformat()}")
                return node.next
            newer, self._date_moved = self._date_moved, None
            assert newer is not None
            self.state.events[node.id] = newer
            try:
                value = evaluation.evaluate(node.date, self._names(newer), bounded=self._bounded())
                tz = timing.zone(self._profile().timezone, self.deployment.default_timezone)
                moved_to = timing.moment_from(
                    value, tz, node.offset_seconds, node.time, wall_clock=True
                )
            except (evaluation.ExpressionFailed, ValueError, OverflowError):
                continue  # an event without a readable date leaves the wait as it was
            if moved_to == target:
                continue
            target = moved_to
            if target <= self._now():
                reason = f"the date's moment moved to {target.isoformat()}, which had passed"
                self._record(node, "skipped", reason)
                self._finish("exited", reason=reason, step=node.id)
                raise Interrupted
            self._record(node, "moved", f"to {target.isoformat()}")

    async def _wait_for(self, node: WaitForNode) -> str:
        self._waiting_for = node.match.event
        try:
            await self._wait(
                node.timeout_seconds, lambda: self._find_in_inbox(node.match) is not None
            )
        finally:
            self._waiting_for = None
        # Look again after a timeout: an event delivered together with the timer still counts.
        found = self._find_in_inbox(node.match)
        if found is not None:
            self.state.inbox = [e for e in self.state.inbox if e.message_id != found.message_id]
            self.state.events[node.id] = found
            self._record(node, "event", found.event)
            self._edge = ("event", False)
            return node.on_event
        self._record(
            node, "timeout", f"no {node.match.event} within {format_duration(node.timeout_seconds)}"
        )
        self._edge = ("timeout", False)
        return node.on_timeout

    def _branch(self, node: BranchNode) -> str:
        for case in node.cases:
            if self._evaluate(node, case.condition, truth=True):
                self._record(node, "branch", f"if {case.condition}")
                self._edge = (case.condition, False)
                return case.next
        self._record(node, "branch", "else")
        self._edge = ("else", False)
        return node.otherwise

    def _split(self, node: SplitNode) -> str:
        point = self._split_point(node.id)
        total = 0
        for path in node.paths:
            total += path.percent
            if point < total:
                break
        if path.holdout:
            self.state.holdout = True
        self._record(node, "split", f"{path.name}" + (" (holdout)" if path.holdout else ""))
        self._edge = (path.name, path.holdout)
        return path.next

    def _split_point(self, step_id: str) -> float:
        """A number in [0, 100) that puts the customer on a path: a hash of customer, journey
        and step, so the same customer lands on the same path every time (sticky and
        reproducible in simulations) and no replay can ever disagree."""
        source = f"{self.plan.journey_id}|{step_id}|{self.input.customer_id}|{self.input.key}"
        digest = hashlib.sha256(source.encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 * 100

    # --- what the run reads: settings, queues, the profile --------------------------------

    def _plan(self) -> Plan:
        """The run's plan: in the input (version 1, tests) or by reference from the worker's
        registry. ``RuntimeError`` when this worker cannot run it (yet)."""
        if self.input.input_version > INPUT_VERSION:  # a newer worker's run: leave it to one
            raise RuntimeError(
                f"this run's input has version {self.input.input_version}; this worker knows "
                f"versions up to {INPUT_VERSION}"
            )
        return self.input.plan or registry.plan(self.input.journey_id, self.input.plan_version)

    def _deployment(self) -> registry.Deployment:
        """Version 1 inputs carry their settings; later runs get them from the worker that
        runs their journey task queue."""
        settings = self.input.settings
        if self.legacy and settings is not None:
            return registry.Deployment(
                index_runs=settings.index_runs,
                history_limit=settings.history_limit,
                default_timezone=settings.default_timezone,
                default_locale=settings.default_locale,
            )
        return registry.settings_for(self.host.task_queue())

    def _queue(self, name: str) -> str:
        """An activity queue beside the run's own: the run's journey queue sets the prefix (so
        a run keeps its queues whatever TOUCHPOINT_QUEUE_PREFIX says later)."""
        if self.legacy and self.input.settings is not None:
            return self.input.settings.queue(name)
        own = self.host.task_queue()
        prefix = own[: -len(JOURNEY_QUEUE)] if own.endswith(JOURNEY_QUEUE) else ""
        return prefix + name

    def _activity_queue(self, own_queue: str, channel: str = "") -> str:
        """Where a send or lookup is scheduled: the run's own journey queue (the worker that
        answers the workflow task gets the activity with the answer — no trip through the
        server's matching), unless its channel is rate-limited, which its own queue does.
        Replay-safe either way: Temporal checks an activity's id and type on replay, not its
        queue, so a worker may change this (a new rate limit) while runs are in flight."""
        if self.legacy or channel in self.deployment.queued_channels:
            return self._queue(own_queue)
        return self.host.task_queue()

    def _send_deadline(self, channel: str) -> timedelta:
        hours = self.deployment.send_retry_hours.get(channel, registry.DEFAULT_SEND_RETRY_HOURS)
        return timedelta(hours=hours)

    def _profile(self) -> Profile:
        return self.profile or Profile(id=self.input.customer_id)

    def _rules_read_profile(self) -> bool:
        """Do the exit, goal or wait_for conditions read the profile? (They are matched in
        signal handlers, which cannot read it: the run reads it at its start then.)"""
        rules: list[EventMatch] = [*self.plan.exits]
        if self.plan.goal is not None:
            rules.append(self.plan.goal)
        rules += [n.match for n in self.plan.nodes.values() if isinstance(n, WaitForNode)]
        return any(_reads_profile(rule.condition) for rule in rules)

    def _reads_profile(self, node: Node) -> bool:
        match node:
            case WaitUntilNode():
                return True  # the customer's time zone, and maybe a date from the profile
            case BranchNode():
                return any(_reads_profile(case.condition) for case in node.cases)
            case SetNode():
                return any(_reads_profile(source) for source in node.assignments.values())
            case LookupNode():
                return _reads_profile(repr((node.path, node.query, node.body)))
        return False

    def _decide_patches(self, node: Node) -> None:
        """Take the step's ``workflow.patched`` decisions before it reads the profile.

        A local activity's result can reach the workflow one task after the task that recorded
        it, while a replay hands it over at once: a patch first asked right after the read
        would then be asked before its marker is in sight, answered "no", and the replay would
        fail on the marker. Asked first, in the order the step asks them, the answers are the
        same either way (``patched`` remembers its answer for the rest of the run)."""
        match node:
            case WaitUntilNode():
                if node.date is not None:
                    self._patched("wait-until-wall-clock-offset")
                self._patched("continue-as-new-in-waits")
            case LookupNode():
                self._patched("lookup-path-values-encoded")

    async def _read_profile(self) -> None:
        """The customer's profile as the store has it now (a local activity, recorded in the
        history): a run sees the profile as of the step that reads it. Version 1 runs keep
        the snapshot they entered with."""
        if self.legacy:
            return
        try:
            answer = await self.host.local_activity(
                READ_PROFILE_ACTIVITY,
                ProfileRequest(customer_id=self.input.customer_id),
                ProfileAnswer,
                10,
                PROFILE_RETRY,
            )
        except Exception as error:
            self.host.activity_failure(error)  # anything but an activity's failure: raised
            raise StepFailed(self.state.current, "cannot read the customer's profile") from error
        if answer.profile is not None:
            self.profile = answer.profile

    # --- helpers ---------------------------------------------------------------------------

    def _patched(self, patch_id: str) -> bool:
        """``self.host.patched(patch_id)``, except for the patches a run of input version 3 or
        later was started with: those are on, and leave nothing in its history."""
        if started_with_patch(self.input.input_version, patch_id):
            return True
        return self.host.patched(patch_id)

    def _now(self) -> datetime:
        """The run's clock: Temporal's, moved by the settings' offset in simulations (a
        time-skipping server starts at today's date; a simulation may start on any date).
        A simulated run reads its simulated moment instead (see :class:`RunClock`)."""
        if self.simulated_now is not None:
            return self.simulated_now
        return self._run_time(self.host.now())

    def _run_time(self, moment: datetime) -> datetime:
        """A moment of Temporal's clock on the run's clock."""
        offset = self.clock.clock_offset_seconds
        return moment + timedelta(seconds=offset) if offset else moment

    def _wait_start(self) -> datetime:
        """Where a wait counts from, on Temporal's clock: now; in a simulated run, its
        simulated moment (the real time a step took is not part of the wait)."""
        if self.simulated_now is None:
            return self.host.now()
        return self.simulated_now - timedelta(seconds=self.clock.clock_offset_seconds)

    def _timer_ended(self, deadline: datetime) -> None:
        """A simulated run's clock moves to the end of the timer that fired."""
        if self.simulated_now is not None:
            self.simulated_now = max(self.simulated_now, self._run_time(deadline))

    def _release_held(self) -> None:
        """Handle the events a simulated run held (see :meth:`_holds`), in their order."""
        held, self._held = self._held, []
        for event in held:
            if self.state.outcome is None:
                self._handle(event)

    def _idempotency_key(self, node: Node) -> str:
        """Stable across retries and continue-as-new: run id, entry, step and visit."""
        return message_id(
            self.host.workflow_id(), self.input.entry_sequence, node.id, self.state.visits[node.id]
        )

    def _trigger(self) -> Event:
        """The event the run reads as ``event``: its trigger, or for a date in the event the
        newest event of its key that moved the date (:meth:`_wait_for_date`)."""
        return self.state.events.get(DATE_STEP) or self.input.trigger

    def _names(self, event: Event | None = None) -> dict[str, Any]:
        return {
            "profile": self._profile().model_dump(),
            "event": (event or self._trigger()).names(),
            "events": {step: e.names() for step, e in self.state.events.items()},
            "vars": self.state.vars,
            "lookups": self.state.lookups,
            "now": self._now(),
        }

    def _context(self, reads: tuple[str, ...] | None = None) -> dict[str, Any]:
        """What a send hands its template: the names it reads (all, for plans that do not
        say), and always ``now``, the step's time."""
        names = self._names()
        names.pop("profile")
        names["now"] = names["now"].isoformat()
        if reads is not None:
            names = {key: value for key, value in names.items() if key in reads or key == "now"}
        return names

    def _bounded(self) -> bool:
        """Whether expressions count their work (:data:`workflows.limits.EXPRESSION_LIMITS`).
        patched 2026-12: a costly expression fails its step; runs recorded before replay
        without the limits."""
        if self._expressions_bounded is None:
            self._expressions_bounded = self._patched("bounded-expressions")
        return self._expressions_bounded

    def _evaluate(
        self, node: Node, source: str, truth: bool = False, event: Event | None = None
    ) -> Any:
        try:
            value = evaluation.evaluate(source, self._names(event), bounded=self._bounded())
        except evaluation.ExpressionFailed as error:
            raise StepFailed(node.id, str(error)) from None
        return bool(value) if truth else value

    def _matches(self, rule: EventMatch, event: Event) -> bool:
        """Does ``event`` satisfy ``rule``? A condition that cannot be evaluated is a no."""
        if event.event != rule.event:
            return False
        names = self._names(event)
        try:
            bounded = self._bounded()
            if rule.key is not None and (
                evaluation.key_text(evaluation.evaluate(rule.key, names, bounded=bounded))
                != self.input.key
            ):
                return False
            return rule.condition is None or evaluation.is_true(
                rule.condition, names, bounded=bounded
            )
        except evaluation.ExpressionFailed:
            return False

    def _find_in_inbox(self, match: EventMatch) -> Event | None:
        return next((e for e in self.state.inbox if self._matches(match, e)), None)

    def _within_goal_window(self) -> bool:
        goal = self.plan.goal
        if goal is None or goal.within_seconds is None:
            return True
        window = self.clock.scaled(goal.within_seconds)
        return self._now() - self.state.entered_at <= timedelta(seconds=window)

    def _remember(self, message: str) -> None:
        self._seen.add(message)
        self.state.seen_ids = [*self.state.seen_ids, message][-SEEN_IDS_LIMIT:]
        if len(self._seen) > 2 * SEEN_IDS_LIMIT:
            self._seen = set(self.state.seen_ids)

    def _record(self, node: Node, kind: str, detail: str = "", **extra: Any) -> None:
        if isinstance(node, SendNode):
            extra.setdefault("template", node.template)
        entry = TimelineEntry(at=self._now(), step=node.id, kind=kind, detail=detail, **extra)
        self.state.timeline = [*self.state.timeline, entry][-TIMELINE_LIMIT:]

    def _finish(self, kind: OutcomeKind, **details: Any) -> None:
        self.state.outcome = Outcome(kind=kind, at=self._now(), **details)

    def _should_continue_as_new(self) -> bool:
        return self.host.history_full(self.deployment.history_limit)

    def _index_step(self, node: Node) -> None:
        """Show the step a run waits at in its search attributes. Instant steps would only add
        history events; sends and lookups last moments (and, since 2026-11, are not indexed:
        each upsert is a visibility write on the server — see BENCHMARKS.md)."""
        if not self.deployment.index_runs or node.type in INSTANT_KINDS or self._where_in_store:
            return
        if node.type in QUICK_KINDS and self._patched("index-waiting-steps-only"):
            return
        self.host.index_step(node.id, node.stage or "")

    def _count_end(self) -> None:
        """``touchpoint_runs_ended_total{journey, outcome}`` on the worker's metrics endpoint.

        The workflow's metric meter records nothing while replaying and issues no command (no
        history, no patch): the end is counted by the workflow task that ends the run, once —
        twice only if that task runs again because its completion never reached the server."""
        if self.state.outcome is None:
            return
        self.host.count_end(self.plan.journey_id, self.state.outcome.kind)

    # --- analytics (workflows/analytics.py): what the run did, for the store --------------

    def _note_entered(self) -> None:
        self._note(
            analytics.RunEntered(
                workflow_id=self._run_key(),
                journey_id=self.plan.journey_id,
                version=self.plan.version,
                customer=customer_hash(self.input.customer_id),
                at=self.state.entered_at,
            )
        )

    def _note_passed(self, node: Node, following: str) -> None:
        edge, self._edge = self._edge, (None, False)
        self._note(
            analytics.StepPassed(
                workflow_id=self._run_key(),
                journey_id=self.plan.journey_id,
                version=self.plan.version,
                step_id=node.id,
                visit=self.state.visits[node.id],
                at=self._now(),
                next_step=following,
                edge=edge[0],
                holdout=edge[1],
            )
        )

    def _note_ended(self) -> None:
        outcome = self.state.outcome
        if outcome is not None:
            self._note(
                analytics.RunEnded(
                    workflow_id=self._run_key(),
                    outcome=outcome.kind,
                    at=outcome.at or self._now(),
                    reason=outcome.error if outcome.kind == "failed" else outcome.reason,
                    failed_step=outcome.step if outcome.kind == "failed" else None,
                )
            )
        self._write_records()

    def _run_key(self) -> str:
        """The run's key in the analytics store: its workflow id, and from a customer's second
        entry on (a workflow id is used again once the run before it ended) ``#<entry>``."""
        workflow_id = self.host.workflow_id()
        entry = self.input.entry_sequence
        return workflow_id if entry <= 1 else f"{workflow_id}#{entry}"

    def _note(self, record: analytics.Record) -> None:
        """Keep a record for the analytics store, unless nobody records on this queue or this
        is a replay (what a replay did was recorded when it first ran)."""
        if self.host.replaying():
            return
        if analytics.recorder_for(self.host.task_queue()) is not None:
            self._records.append(record)

    def _write_records(self) -> None:
        """Hand the kept records to the queue's recorder, synchronously in this workflow task
        (a worker that crashes after the task completed loses nothing; a task run again writes
        the same keys again). No command, no history: no patch. The recorder never raises
        (:class:`store.analytics.RetryingRecorder`); anything else is logged, never raised."""
        if not self._records:
            return
        records, self._records = self._records, []
        recorder = analytics.recorder_for(self.host.task_queue())
        if recorder is None or self.host.replaying():
            return
        self.host.write_records(recorder, records)

    @property
    def _where_in_store(self) -> bool:
        """Runs of input version 4 on keep where they are and how they ended in the analytics
        store only (``touchpoint runs list``, ``plan``, ``stats`` read it there): no
        ``TouchpointStep``/``TouchpointStage``/``TouchpointOutcome`` upserts, each of which
        was a history event and a visibility write on the server (BENCHMARKS.md, issue 13).
        Decided by the input, so a run does the same on every replay and every worker."""
        return self.input.input_version >= STEP_INDEX_IN_STORE_SINCE

    def _index_outcome(self) -> None:
        if self._where_in_store:
            return
        if self.deployment.index_runs and self.state.outcome is not None:
            self.host.index_outcome(self.state.outcome.kind)


STEP_INDEX_IN_STORE_SINCE = 4
"""The input version from which runs no longer upsert their step and outcome (see
:attr:`JourneyCore._where_in_store`)."""


def started_with_patch(input_version: int, patch_id: str) -> bool:
    """Was a run of ``input_version`` started by code that has ``patch_id``? Version 3 inputs
    come from routers that have every patch of :data:`PATCHES_OF_VERSION_3`; runs of versions 1
    and 2 may have started before any of them, so they ask ``workflow.patched`` (their
    histories hold the markers that answer it on replay)."""
    return input_version >= 3 and patch_id in PATCHES_OF_VERSION_3


def _placeholder(run_input: JourneyInput) -> Plan:
    """A plan that does nothing, standing in while the real one cannot be had: signals and
    queries of a workflow task that is going to fail find something to read."""
    return Plan(
        journey_id=run_input.journey_id or "unknown",
        name="(not loaded)",
        category="transactional",
        trigger=EventMatch(event=run_input.trigger.event),
        start=END,
        nodes={END: EndNode(id=END)},
    )


def _aware(moment: datetime) -> datetime:
    """An event's timestamp on the run's clock: in UTC, like Temporal's (one without an offset
    is UTC already)."""
    return moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _reads_profile(source: str | None) -> bool:
    """Could this expression read the profile? (Textual, so it never misses one.)"""
    return source is not None and "profile" in source
