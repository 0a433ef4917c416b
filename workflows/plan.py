"""The compiled plan: everything the interpreter workflow ever sees of a journey.

A plan is a flat, immutable graph ``{step id → node}``; every node names the step(s) that come
next, ``end`` being the reserved id of the implicit final node. Node ``type`` strings are part of
the interface: they never change once released, even if a class is renamed, because running
workflows carry plans in their history. Durations are seconds; expressions are Jinja2 source text
that the workflow evaluates over its recorded state.

This module imports only pydantic and the standard library so that the workflow sandbox can load
it (pass it through with ``workflow.unsafe.imports_passed_through()``).
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from workflows.policy_models import SendPolicies

PLAN_FORMAT = 1
"""Bumped when the plan's shape changes incompatibly (a worker refuses a plan of a newer
format: :func:`workflows.registry.plan`)."""
END = "end"
BROADCAST_EVENT = "touchpoint.broadcast"
"""The trigger of a scheduled journey's runs: the occurrence, not a shop event."""
DATE_STEP = "_date"
"""The id of the wait a date read from the trigger event (``trigger.date.property``) compiles
to: the run's first step. Not a valid step id, so it never clashes with one."""
SEGMENT_EVENT = "touchpoint.segment"
"""The trigger of a segment journey's runs: the customer started matching, not a shop event."""
SEND_CONTEXT = ("event", "events", "vars", "lookups")
"""What of the run a send may hand its template (``now`` always goes: the step's time)."""


class Frozen(BaseModel):
    """Immutable; unknown fields ignored, so a plan compiled by a newer version (with a new
    optional field) still decodes on an older worker during a rolling deploy."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class EventMatch(Frozen):
    """An event name, plus an optional condition and correlation key expression over it."""

    event: str
    condition: str | None = None
    key: str | None = None


class ScheduleRule(Frozen):
    """When a scheduled journey (a broadcast) goes out, and to whom.

    Either ``cron`` (five fields) or ``weekdays`` (0 = Monday) at ``time`` (``HH:MM``), in
    ``timezone``; ``start``/``end`` are ISO dates or times bounding the occurrences.
    ``audience`` is an expression over ``profile`` (``None``: every profile);
    ``starts_per_second`` bounds how fast one occurrence starts runs (``None``: the project's).
    """

    cron: str | None = None
    weekdays: tuple[int, ...] | None = None
    time: str | None = None
    timezone: str = "UTC"
    start: str | None = None
    end: str | None = None
    audience: str | None = None
    starts_per_second: float | None = None


class DateRule(Frozen):
    """A date-based journey started from the calendar (``trigger.date.profile``): each
    customer enters on the local day when the date at ``path`` in their profile, moved by
    ``offset_days``, falls — at ``time`` in their time zone (``timezone`` for those without
    one). ``every``: ``year`` (birthdays, anniversaries; Feb 29 is Feb 28 in other years) or
    ``once``. ``audience`` is an expression over ``profile`` (``None``: every profile).
    The rules are in :mod:`workflows.dates`."""

    path: str
    every: Literal["year", "once"] = "once"
    offset_days: int = 0
    time: str = "09:00"
    timezone: str = "UTC"
    audience: str | None = None


class EntryRule(Frozen):
    policy: Literal["once", "one_at_a_time", "every_time"] = "one_at_a_time"
    cooldown_seconds: int | None = None
    condition: str | None = None


class ExitRule(EventMatch):
    reason: str


class GoalRule(EventMatch):
    within_seconds: int | None = None


class NodeBase(Frozen):
    id: str
    stage: str | None = None


class SendNode(NodeBase):
    type: Literal["send"] = "send"
    channel: str  # a name from workflows.channels.CHANNELS (the compiler checks it)
    template: str
    destination: str | None = None
    skip_on_failure: bool = False
    reads: tuple[str, ...] | None = None  # what of SEND_CONTEXT its template reads (None: all)
    topic: str | None = None  # the subscription topic (the step's, else the journey's)
    policies: SendPolicies | None = None  # the journey's and step's policy settings, folded
    next: str


class WaitNode(NodeBase):
    type: Literal["wait"] = "wait"
    seconds: int
    next: str


class WaitUntilNode(NodeBase):
    """Either the next ``time`` of day on an allowed weekday (0 = Monday) in the customer's
    timezone, or the moment ``date`` (an expression) plus ``offset_seconds``, optionally moved
    to ``time`` on that day."""

    type: Literal["wait_until"] = "wait_until"
    time: str | None = None
    days: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)
    date: str | None = None
    offset_seconds: int = 0
    # "skip": a moment already past ends the run (exited, with the reason) instead of going on
    # at once — the wait a date trigger read from its event (``trigger.date.property``) starts
    # with. None: go on at once (a plain wait_until).
    if_past: Literal["skip"] | None = None
    next: str


class WaitForNode(NodeBase):
    type: Literal["wait_for"] = "wait_for"
    match: EventMatch
    timeout_seconds: int
    on_event: str
    on_timeout: str


class BranchCase(Frozen):
    condition: str
    next: str


class BranchNode(NodeBase):
    type: Literal["branch"] = "branch"
    cases: tuple[BranchCase, ...]
    otherwise: str


class SplitPath(Frozen):
    name: str
    percent: int
    next: str
    holdout: bool = False


class SplitNode(NodeBase):
    type: Literal["split"] = "split"
    paths: tuple[SplitPath, ...]


class LookupNode(NodeBase):
    type: Literal["lookup"] = "lookup"
    connection: str
    method: str = "GET"
    path: str
    query: dict[str, Any] | None = None
    body: Any = None
    save_as: str
    next: str


class SetNode(NodeBase):
    type: Literal["set"] = "set"
    assignments: dict[str, str]
    next: str


class EndNode(NodeBase):
    type: Literal["end"] = "end"


Node = Annotated[
    SendNode
    | WaitNode
    | WaitUntilNode
    | WaitForNode
    | BranchNode
    | SplitNode
    | LookupNode
    | SetNode
    | EndNode,
    Field(discriminator="type"),
]


def successors(node: Node) -> list[tuple[str, str]]:
    """``(label, next step id)`` for every edge leaving ``node``; labels are for people."""
    match node:
        case WaitForNode():
            return [(f"on {node.match.event}", node.on_event), ("timeout", node.on_timeout)]
        case BranchNode():
            return [(case.condition, case.next) for case in node.cases] + [("else", node.otherwise)]
        case SplitNode():
            return [(f"{path.name} {path.percent}%", path.next) for path in node.paths]
        case EndNode():
            return []
        case _:
            return [("", node.next)]


LATER_OPTIONAL_FIELDS = (
    "event_properties",
    "topic",
    "policies",
    "schedule",
    "segment",
    "date_entry",
    "if_past",
)
"""Fields added after plans were first hashed: left out of the hash while unset, so a journey
that does not use them keeps its version (and its runs' recorded histories stay valid)."""


def _drop_unset(content: dict[str, Any], names: tuple[str, ...]) -> None:
    for name in names:
        if content.get(name, 0) is None:
            del content[name]


class Plan(Frozen):
    """A compiled journey. ``version`` is a hash of everything else: equal content, equal hash."""

    format: int = PLAN_FORMAT
    journey_id: str
    name: str
    description: str | None = None
    category: Literal["marketing", "transactional"]
    version: str = ""
    trigger: EventMatch
    entry: EntryRule = EntryRule()
    exits: tuple[ExitRule, ...] = ()
    goal: GoalRule | None = None
    start: str
    nodes: dict[str, Node]
    # The event properties the journey reads (sorted); None: any. The router hands runs only
    # these: what a journey never reads is not copied into its runs' histories.
    event_properties: tuple[str, ...] | None = None
    topic: str | None = None  # the journey's subscription topic: unsubscribing from it ends runs
    # A scheduled journey (a broadcast): ``trigger`` is then BROADCAST_EVENT, which no shop
    # event starts; each occurrence of the schedule enters the audience.
    schedule: ScheduleRule | None = None
    # A segment journey: ``trigger`` is then SEGMENT_EVENT, which no shop event starts; a
    # customer enters when an identify makes this condition over ``profile`` turn true.
    segment: str | None = None
    # A date-based journey (a date in the profile): ``trigger`` is BROADCAST_EVENT too, and
    # a Temporal Schedule enters, every quarter hour, those whose date is their local today.
    date_entry: DateRule | None = None

    def content_hash(self) -> str:
        content = self.model_dump(mode="json", exclude={"version"})
        _drop_unset(content, LATER_OPTIONAL_FIELDS)
        for node in content["nodes"].values():
            _drop_unset(node, LATER_OPTIONAL_FIELDS)
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def with_version(self) -> Plan:
        return self.model_copy(update={"version": self.content_hash()})

    def listened_events(self) -> set[str]:
        """Events a running journey reacts to: wait_for, exit_when and goal."""
        events = {rule.event for rule in self.exits}
        if self.goal:
            events.add(self.goal.event)
        events.update(n.match.event for n in self.nodes.values() if isinstance(n, WaitForNode))
        return events
