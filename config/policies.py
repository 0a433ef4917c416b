"""``touchpoint.yaml`` ``policies:`` and ``topics:`` — the project's delivery policies and the
subscription topics customers can choose between.

```yaml
policies:
  defer_max: 3d                 # a deferred message still held after this is skipped
  frequency_caps:
    - name: marketing-email-daily
      limit: 2                  # at most 2 …
      per: 24h                  # … in any 24 hours (a sliding window)
      channels: [email]         # none: all channels, counted together
      categories: [marketing]   # the default: transactional messages are exempt
      action: skip              # or defer: until the oldest counted message leaves the window
  quiet_hours:
    - name: evenings
      channels: [sms, chat]
      from: "21:00"             # customer's local time (profile timezone, else defaults.timezone)
      to: "08:00"               # exclusive: a message at 08:00 goes
      action: defer             # the default for quiet hours
    - name: sundays
      channels: [email]
      days: [sun]               # no from/to: the whole day
topics:
  newsletter: {name: Newsletter, description: Our weekly news}
```

A journey's ``policies:`` (and a send step's) may add caps and quiet hours of its own, exempt
itself from a project policy (``exempt: [evenings]``), change an action
(``actions: {evenings: skip}``) and the ``defer_max``. See docs/journeys.md "Delivery policies".
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, WithJsonSchema, field_validator, model_validator

from language.fields import Duration, Model, Slug, Text, TimeOfDay
from workflows.channels import CHANNELS, known_channel
from workflows.durations import parse_duration
from workflows.policy_models import Action, CapRule, QuietRule

ChannelName = Annotated[
    str, AfterValidator(known_channel), WithJsonSchema({"type": "string", "enum": list(CHANNELS)})
]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Category = Literal["marketing", "transactional"]


def _marketing() -> list[Category]:
    return ["marketing"]


class FrequencyCap(Model):
    name: Slug
    limit: int = Field(
        description="at most this many messages per customer …", json_schema_extra={"minimum": 1}
    )
    per: Duration = Field(description="… in any window this long (sliding), e.g. 24h or 7d")
    channels: list[ChannelName] = Field(
        default_factory=list, description="the channels counted (none: all, counted together)"
    )
    per_channel: bool = Field(False, description="each channel has its own count")
    categories: list[Category] = Field(
        default_factory=_marketing,
        description="the categories counted and held (transactional is exempt unless listed)",
    )
    action: Action = Field("skip", description="skip the message, or defer it until a slot frees")

    def rule(self) -> CapRule:
        """The cap as plans carry it and the worker applies it."""
        return CapRule(
            name=self.name,
            limit=self.limit,
            window_seconds=parse_duration(self.per),
            channels=tuple(self.channels),
            per_channel=self.per_channel,
            categories=tuple(self.categories),
            action=self.action,
        )

    @field_validator("limit")
    @classmethod
    def _at_least_one(cls, limit: int) -> int:
        if limit < 1:
            raise ValueError(f"a cap lets at least 1 message through, got {limit}")
        return limit


class QuietHours(Model):
    name: Slug
    from_: TimeOfDay | None = Field(None, alias="from", description="local time the window opens")
    to: TimeOfDay | None = Field(None, description="local time it ends (exclusive)")
    days: list[Weekday] | None = Field(
        None, min_length=1, description="the days the window starts on (none: every day)"
    )
    channels: list[ChannelName] = Field(default_factory=list, description="none: all channels")
    categories: list[Category] = Field(default_factory=_marketing)
    action: Action = Field("defer", description="defer until the window ends, or skip")

    @model_validator(mode="after")
    def _window(self) -> QuietHours:
        if (self.from_ is None) != (self.to is None):
            raise ValueError("write both from and to (or neither, with days, for whole days)")
        if self.from_ is None and self.days is None:
            raise ValueError("write from and to, or days (whole days), or both")
        if self.from_ is not None and self.from_ == self.to:
            raise ValueError("from and to are the same time: the window would be empty")
        return self

    def rule(self) -> QuietRule:
        """The window as plans carry it and the worker applies it."""
        days = tuple(WEEKDAYS.index(day) for day in self.days) if self.days else tuple(range(7))
        return QuietRule(
            name=self.name,
            start=self.from_,
            end=self.to,
            days=days,
            channels=tuple(self.channels),
            categories=tuple(self.categories),
            action=self.action,
        )


class PolicySettings(Model):
    """The project's delivery policies (``touchpoint.yaml`` ``policies:``)."""

    defer_max: Duration = Field("3d", description="a message deferred longer than this is skipped")
    frequency_caps: list[FrequencyCap] = Field(default_factory=list)
    quiet_hours: list[QuietHours] = Field(default_factory=list)

    @field_validator("quiet_hours")
    @classmethod
    def _unique_quiet(cls, rules: list[QuietHours]) -> list[QuietHours]:
        _unique([rule.name for rule in rules])
        return rules

    @field_validator("frequency_caps")
    @classmethod
    def _unique_caps(cls, rules: list[FrequencyCap]) -> list[FrequencyCap]:
        _unique([rule.name for rule in rules])
        return rules


class JourneyPolicies(Model):
    """A journey's (or a send step's) ``policies:`` over the project's."""

    frequency_caps: list[FrequencyCap] = Field(default_factory=list)
    quiet_hours: list[QuietHours] = Field(default_factory=list)
    exempt: list[Slug] = Field(default_factory=list, description="project policies, by name")
    actions: dict[Slug, Action] = Field(default_factory=dict, description="name: skip or defer")
    defer_max: Duration | None = None


class StepPolicies(Model):
    """A send step's ``policies:``: over the journey's, for this one message. Caps and quiet
    hours are the project's and the journey's; a step only exempts itself from them, changes
    an action or the defer limit."""

    exempt: list[Slug] = Field(
        default_factory=list, description="policies that do not hold this message, by name"
    )
    actions: dict[Slug, Action] = Field(default_factory=dict, description="name: skip or defer")
    defer_max: Duration | None = None


class Topic(Model):
    name: Text = Field(description="what customers see on the preferences page")
    description: str | None = None


def _unique(names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"two policies are named {name!r}: names must be unique")
        seen.add(name)
