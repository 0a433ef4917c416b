"""The replay half of ``touchpoint plan``: the last days' recorded events under the active
version and under the folder's, side by side.

Pure: two :class:`~simulation.replay.JourneyReplay` in (``before``: ``None`` for a journey never
deployed), a :class:`ReplayComparison` out — messages per template per week, runs reaching
each step, and the steps the new version never reaches. :mod:`ops.planning` runs the replays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from simulation.replay import JourneyReplay

WEEK_DAYS = 7


@dataclass(frozen=True)
class TemplateRate:
    """Messages of one template per week, before and after (``None``: the version does not
    send it at all)."""

    channel: str
    template: str
    before: float | None
    after: float | None

    @property
    def delta(self) -> float:
        return (self.after or 0.0) - (self.before or 0.0)

    def as_json(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "template": self.template,
            "before": _rounded(self.before),
            "after": _rounded(self.after),
            "delta": round(self.delta, 1),
        }


@dataclass(frozen=True)
class StepReach:
    """Runs that reached a step, before and after (``None``: the version has no such step)."""

    step: str
    before: int | None
    after: int | None

    @property
    def change(self) -> float | None:
        """The relative change (0.03: 3 % more runs reach it); ``None`` without a base."""
        if not self.before or self.after is None:
            return None
        return (self.after - self.before) / self.before

    def as_json(self) -> dict[str, Any]:
        change = self.change
        return {
            "step": self.step,
            "before": self.before,
            "after": self.after,
            "change": None if change is None else round(change, 4),
        }


@dataclass
class ReplayComparison:
    days: float
    customers: int
    events: int
    simulator: str
    before: JourneyReplay | None
    after: JourneyReplay
    messages: list[TemplateRate] = field(default_factory=list)
    reach: list[StepReach] = field(default_factory=list)
    never_reached: list[str] = field(default_factory=list)  # steps of the new version

    def per_channel(self) -> dict[str, float]:
        """The change in messages per week, per channel."""
        found: dict[str, float] = {}
        for rate in self.messages:
            found[rate.channel] = found.get(rate.channel, 0.0) + rate.delta
        return found

    def as_json(self) -> dict[str, Any]:
        def side(replay: JourneyReplay | None) -> dict[str, Any] | None:
            if replay is None:
                return None
            return {
                "version": replay.version,
                "entered": replay.funnel.entered,
                "outcomes": replay.funnel.outcomes,
                "converted": replay.converted,
                "sent": replay.sent,
            }

        return {
            "days": round(self.days, 2),
            "simulator": self.simulator,
            "customers": self.customers,
            "events": self.events,
            "before": side(self.before),
            "after": side(self.after),
            "messages_per_week": [rate.as_json() for rate in self.messages],
            "messages_per_week_by_channel": {
                channel: round(delta, 1) for channel, delta in sorted(self.per_channel().items())
            },
            "reach": [step.as_json() for step in self.reach],
            "never_reached": self.never_reached,
        }


def compare(
    before: JourneyReplay | None,
    after: JourneyReplay,
    *,
    days: float,
    customers: int,
    events: int,
    simulator: str,
) -> ReplayComparison:
    """``after`` against ``before`` over a window of ``days``: per-week rates of each template
    either sends, runs reaching each step either has (changed ones only, unless ``before`` is
    ``None``), and ``after``'s steps that no run reached while runs entered."""
    scale = WEEK_DAYS / days if days > 0 else 0.0
    templates = sorted(set(after.messages) | set(before.messages if before else ()))
    messages = [
        TemplateRate(
            channel,
            template,
            None if before is None else before.messages.get((channel, template), 0) * scale,
            after.messages.get((channel, template), 0) * scale,
        )
        for channel, template in templates
    ]
    old = {row.step: row.reached for row in before.funnel.steps} if before else {}
    new = {row.step: row.reached for row in after.funnel.steps}
    order = [*new, *(step for step in old if step not in new)]
    reach = [
        StepReach(step, old.get(step) if before else None, new.get(step))
        for step in order
        if before is None or old.get(step) != new.get(step)
    ]
    never = [step for step, count in new.items() if count == 0] if after.funnel.entered else []
    return ReplayComparison(
        days, customers, events, simulator, before, after, messages, reach, never
    )


def comparison_lines(comparison: ReplayComparison) -> list[str]:
    """The side-by-side replay as ``touchpoint plan`` prints it, indented under the journey."""
    c = comparison
    before, after = c.before, c.after
    lines = [
        f"  replay: the last {c.days:g} days' recorded events ({c.customers:,} customers, "
        f"{c.events:,} calls; {c.simulator} simulator)"
        + (" under both versions" if before is not None else " under the new version")
    ]
    if before is not None:
        lines.append(
            f"    runs entered {before.funnel.entered:,} → {after.funnel.entered:,}; "
            f"converted {before.converted:,} → {after.converted:,}; "
            f"messages {before.sent:,} → {after.sent:,}"
        )
        for channel, delta in sorted(c.per_channel().items()):
            if round(delta, 1):
                lines.append(f"    {_rate(delta, signed=True)} {channel}s per week")
    else:
        lines.append(
            f"    runs entered {after.funnel.entered:,}; converted {after.converted:,}; "
            f"messages {after.sent:,}"
        )
    for rate in c.messages:
        if before is not None and round(rate.delta, 1) == 0:
            continue
        was = "" if rate.before is None else f"{_rate(rate.before)} → "
        lines.append(
            f"      {rate.channel} {rate.template}: {was}{_rate(rate.after or 0.0)} per week"
            + (f" ({_rate(rate.delta, signed=True)})" if before is not None else "")
        )
    for step in c.reach:
        lines.append("    " + _reach_line(step, before is not None))
    if c.never_reached:
        lines.append(f"    never reached under the new version: {', '.join(c.never_reached)}")
    return lines


def _reach_line(step: StepReach, side_by_side: bool) -> str:
    if not side_by_side:
        return f"{step.after:,} run(s) reach {step.step}"
    if step.before is None:
        return f"{step.after:,} run(s) reach {step.step} (a new step)"
    if step.after is None:
        return f"{step.before:,} run(s) reached {step.step}, which the new version removes"
    change = step.change
    if change is None:
        return f"{step.before:,} → {step.after:,} run(s) reach {step.step}"
    more = "more" if change > 0 else "fewer"
    percent = f"{abs(change) * 100:.0f} %"
    return f"{percent} {more} reach {step.step} ({step.before:,} → {step.after:,} runs)"


def _rate(value: float, signed: bool = False) -> str:
    """Messages per week: whole numbers from 10 up, one decimal below (``1.5``, ``+1,240``)."""
    sign = "+" if signed else ""
    return f"{value:{sign},.0f}" if abs(value) >= 10 else f"{value:{sign},.1f}"


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
