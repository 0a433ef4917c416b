"""Delivery policies as the plan and a send request carry them: frequency caps, quiet hours,
and what each does with a message it holds (``skip`` or ``defer``).

The project's policies live in ``touchpoint.yaml`` (``policies:``, :mod:`config.policies`) and
reach the worker through its configuration; a journey (``policies:``) or a send step may add
its own caps and quiet hours, exempt itself from a project policy by name, and change a
policy's action or the defer limit. The compiler folds the journey's and the step's settings
into one :class:`SendPolicies` per send step (``SendNode.policies``), and the workflow hands it
to the send activity in ``SendRequest.policies``. Unset: the project's policies as they are.

Pydantic and the standard library only: the workflow sandbox loads this module.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Action = Literal["skip", "defer"]
"""``skip``: the message is not sent, the run goes on. ``defer``: the run waits until the
policy would let it through (the window opens, the cap frees a slot), then asks again."""
MessageCategory = Literal["marketing", "transactional"]


class Frozen(BaseModel):
    """As :class:`workflows.plan.Frozen` (that module imports this one)."""

    model_config = ConfigDict(frozen=True, extra="ignore")


DEFAULT_DEFER_MAX_SECONDS = 3 * 86_400
"""A message deferred for longer than this (counted from its first deferral) is skipped."""


class CapRule(Frozen):
    """At most ``limit`` messages per customer in any window of ``window_seconds`` (sliding:
    the window ends at the moment of the message), counted from the delivery ledger across all
    journeys. ``channels`` empty: every channel, counted together; ``per_channel``: each listed
    channel (or each channel) has its own count."""

    name: str
    limit: int
    window_seconds: int
    channels: tuple[str, ...] = ()
    per_channel: bool = False
    categories: tuple[MessageCategory, ...] = ("marketing",)
    action: Action = "skip"


class QuietRule(Frozen):
    """No message (of ``categories`` on ``channels``) in the customer's local time from
    ``start`` ("HH:MM") until ``end`` (exclusive: a message at exactly ``end`` goes), on the
    ``days`` the window starts on (0 = Monday). ``start`` > ``end``: the window runs over
    midnight. No ``start``/``end``: the whole of each listed day."""

    name: str
    start: str | None = None
    end: str | None = None
    days: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)
    channels: tuple[str, ...] = ()
    categories: tuple[MessageCategory, ...] = ("marketing",)
    action: Action = "defer"


class SendPolicies(Frozen):
    """A send step's own policy settings, over the project's (``touchpoint.yaml``)."""

    caps: tuple[CapRule, ...] = ()  # the journey's own caps (same name as a project cap: replaced)
    quiet: tuple[QuietRule, ...] = ()  # the journey's own quiet hours (same: replaced)
    exempt: tuple[str, ...] = ()  # project policies that do not hold this send, by name
    actions: dict[str, Action] = Field(default_factory=dict)  # a policy's action, by name
    defer_max_seconds: int | None = None  # None: the project's (default 3 days)
