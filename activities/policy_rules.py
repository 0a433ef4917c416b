"""The delivery policies a shop writes: frequency caps, quiet hours, and the defer limit.

The rules for one message are the project's (``touchpoint.yaml`` ``policies:``) without the
ones its journey or step is ``exempt`` from, plus the journey's own (one with a project rule's
name replaces it), each with the ``action`` the journey or step may set
(:class:`workflows.policy_models.SendPolicies`, carried in ``SendRequest.policies``).

* :class:`QuietHoursPolicy` — a message inside a window of the customer's local time is
  deferred until the window ends (or skipped); the maths is in :mod:`activities.quiet_hours`.
* :class:`FrequencyCapPolicy` — at most ``limit`` messages per customer in any window of
  ``per``, counted from the ledger across all journeys and taken in the same transaction
  (:meth:`store.ledger.Ledger.take_slot`). A message no cap covers costs no store trip.
* :class:`DeferLimit` — a message whose deferral would end more than ``defer_max`` after its
  first deferral is skipped, with the reason that held it.

Every moment is the run's clock at the step (``Message.now``), never the worker's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from activities.policies import Decision, Message
from activities.quiet_hours import describe_end, quiet_until
from config.policies import PolicySettings
from config.project import ProjectConfig
from store.ledger import Counted, Ledger
from workflows.durations import format_duration, parse_duration
from workflows.models import SendRequest, customer_hash
from workflows.policy_models import (
    DEFAULT_DEFER_MAX_SECONDS,
    CapRule,
    QuietRule,
    SendPolicies,
)
from workflows.timing import zone

R = TypeVar("R", CapRule, QuietRule)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
FOLDED_LIMIT = 4096  # steps with policies of their own a worker keeps folded


@dataclass(frozen=True)
class Rules:
    """The policies that apply to one send step's messages."""

    caps: tuple[CapRule, ...]
    quiet: tuple[QuietRule, ...]
    defer_max_seconds: int
    all_caps: tuple[CapRule, ...]  # with the exempt ones: a message any of them covers counts


@dataclass
class ProjectPolicies:
    """The project's policies, converted once per worker; :meth:`for_request` folds a send
    step's own settings over them."""

    caps: tuple[CapRule, ...] = ()
    quiet: tuple[QuietRule, ...] = ()
    defer_max_seconds: int = DEFAULT_DEFER_MAX_SECONDS
    default_timezone: str = "UTC"
    _plain: Rules = field(init=False)
    _folded: dict[tuple[str, str], tuple[SendPolicies, Rules]] = field(init=False)

    def __post_init__(self) -> None:
        self._plain = Rules(self.caps, self.quiet, self.defer_max_seconds, self.caps)
        self._folded = {}

    @classmethod
    def from_settings(cls, settings: PolicySettings, default_timezone: str) -> ProjectPolicies:
        return cls(
            caps=tuple(cap.rule() for cap in settings.frequency_caps),
            quiet=tuple(quiet.rule() for quiet in settings.quiet_hours),
            defer_max_seconds=parse_duration(settings.defer_max),
            default_timezone=default_timezone,
        )

    @classmethod
    def for_project(cls, config: ProjectConfig) -> ProjectPolicies:
        return cls.from_settings(config.policies, config.defaults.timezone)

    def for_request(self, request: SendRequest) -> Rules:
        """The rules of ``request``'s step: folded once per plan version and step (a plan
        never changes), not once per policy and message."""
        own = request.policies
        if own is None:
            return self._plain
        key = (request.journey_version, request.step_id)
        known = self._folded.get(key)
        if known is not None and known[0] == own:
            return known[1]
        if len(self._folded) >= FOLDED_LIMIT:
            self._folded.clear()
        rules = self._fold(own)
        self._folded[key] = (own, rules)
        return rules

    def _fold(self, own: SendPolicies) -> Rules:
        caps = _fold(self.caps, own.caps, own)
        quiet = _fold(self.quiet, own.quiet, own)
        every_cap = _fold(self.caps, own.caps, SendPolicies(actions=own.actions))
        limit = own.defer_max_seconds or self.defer_max_seconds
        return Rules(caps, quiet, limit, every_cap)


def _fold(project: tuple[R, ...], journey: tuple[R, ...], own: SendPolicies) -> tuple[R, ...]:
    replaced = {rule.name for rule in journey}
    kept: list[R] = [r for r in project if r.name not in replaced and r.name not in own.exempt]
    rules = kept + list(journey)
    return tuple(
        rule.model_copy(update={"action": own.actions[rule.name]})
        if rule.name in own.actions
        else rule
        for rule in rules
    )


def _covers(rule: CapRule | QuietRule, message: Message) -> bool:
    return message.request.category in rule.categories and (
        not rule.channels or message.channel.name in rule.channels
    )


@dataclass
class QuietHoursPolicy:
    """No message of a window's categories on its channels while the customer's local clock
    (profile timezone, else ``defaults.timezone``) is inside the window."""

    project: ProjectPolicies
    name: str = "quiet-hours"

    def decide(self, message: Message) -> Decision | None:
        rules = [r for r in self.project.for_request(message.request).quiet if _covers(r, message)]
        if not rules:
            return None
        now = message.now.astimezone(UTC)
        local = zone(message.request.customer.timezone, self.project.default_timezone)
        held = [(rule, end) for rule in rules if (end := quiet_until(now, local, rule))]
        for rule, _end in held:
            if rule.action == "skip":
                return Decision.skip(f'quiet hours "{rule.name}"')
        if not held:
            return None
        rule, end = max(held, key=lambda pair: pair[1])
        reason = f'quiet hours "{rule.name}" until {describe_end(end, now, local)}'
        return Decision.defer(reason, end)


@dataclass
class FrequencyCapPolicy:
    """At most ``limit`` messages per customer in any window of ``per`` (sliding: a message
    counted at T counts until T + per, exclusive), counted and taken in one transaction."""

    project: ProjectPolicies
    ledger: Ledger
    name: str = "frequency-cap"

    def decide(self, message: Message) -> Decision | None:
        rules = self.project.for_request(message.request)
        holding = [cap for cap in rules.caps if _covers(cap, message)]
        if not holding and not any(_covers(cap, message) for cap in rules.all_caps):
            return None  # no cap counts this message: no store trip
        now = message.now.astimezone(UTC)
        longest = max((cap.window_seconds for cap in holding), default=0)
        request = message.request

        def refuse(counted: list[Counted]) -> Decision | None:
            full = [
                (cap, until)
                for cap in holding
                if (until := _slot_frees(cap, counted, message.channel.name, now)) is not None
            ]
            for cap, _until in full:
                if cap.action == "skip":
                    return Decision.skip(_describe(cap))
            if not full:
                return None
            cap, until = max(full, key=lambda pair: pair[1])
            return Decision.defer(_describe(cap), until)

        return self.ledger.take_slot(
            request.message_id,
            customer_hash(request.customer_id),
            request.category,
            now,
            now - timedelta(seconds=longest),
            refuse,
        )


def _slot_frees(
    cap: CapRule, counted: list[Counted], channel: str, now: datetime
) -> datetime | None:
    """``None`` when the cap has a free slot at ``now``; else when one frees: when enough of the
    counted messages have left the window (``counted`` is oldest first)."""
    window = timedelta(seconds=cap.window_seconds)
    inside = [
        c.counted_at
        for c in counted
        if c.counted_at > now - window
        and c.category in cap.categories
        and (
            c.channel == channel
            if cap.per_channel
            else (not cap.channels or c.channel in cap.channels)
        )
    ]
    if len(inside) < cap.limit:
        return None
    return inside[len(inside) - cap.limit] + window


def _describe(cap: CapRule) -> str:
    return f'frequency cap "{cap.name}" ({cap.limit} per {_window(cap.window_seconds)})'


def _window(seconds: int) -> str:
    """``24h`` and ``7d``, as people say them (not ``1d``, not ``1w``)."""
    if seconds % 86_400 == 0 and seconds >= 2 * 86_400:
        return f"{seconds // 86_400}d"
    if seconds % 3_600 == 0:
        return f"{seconds // 3_600}h"
    return format_duration(seconds)


@dataclass
class DeferLimit:
    """A deferral that would end more than ``defer_max`` after the message's first deferral
    (kept on its ledger row) becomes a skip, naming what held it."""

    project: ProjectPolicies
    ledger: Ledger

    def check(self, message: Message, decision: Decision) -> Decision:
        if decision.action != "defer" or decision.until is None:
            return decision
        limit = self.project.for_request(message.request).defer_max_seconds
        now = message.now.astimezone(UTC)
        since = self.ledger.first_deferral(message.request.message_id, now)
        if decision.until - since <= timedelta(seconds=limit):
            return decision
        held_by = (decision.reason or decision.policy or "a policy").split(" until ")[0]
        reason = f"still held after {format_duration(limit)} ({held_by})"
        return Decision("skip", reason, None, decision.policy)
