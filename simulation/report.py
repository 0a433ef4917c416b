"""What a simulation shows: one timeline for a customer, a funnel for a population, and the
JSON of both (``{runs: [{journey, key, outcome, timeline: [{at, step, kind, …}]}]}``).

Times are shown to the second (JSON, in UTC) and to the minute (text, in the customer's time
zone): the time-skipping server's clock also moves with real time while a step is being
worked on, a few milliseconds that must not make two runs of the same scenario differ.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from simulation.simulator import SimulatedRun, SimulationResult
from workflows.models import Outcome, TimelineEntry
from workflows.plan import EndNode, Plan

OUTCOMES = ("completed", "converted", "exited", "failed", "cancelled", "running")
SKIPPED_FAILURE = "failed, skipped: "  # a send with skip_on_failure that failed (the workflow's)
HELD_KINDS = ("skipped", "deferred")
_HELD_DETAIL = re.compile(r"\((?:skipped|deferred): (?P<reason>.*?)(?: until (?P<until>\S+))?\)$")


@dataclass(frozen=True)
class Line:
    """One thing that happened in a run, as reports show it."""

    at: datetime
    journey: str
    key: str | None
    customer: str
    step: str
    kind: str  # entered, sent, skipped, held_out, waited, event, timeout, branch, split, set,
    # looked_up, failed, and the outcome: completed, converted, exited, cancelled, running
    channel: str | None = None
    to: str | None = None
    subject: str | None = None
    template: str | None = None
    locale: str | None = None
    body: str | None = None  # an email or chat text; the JSON text a webhook receiver gets
    detail: str = ""
    until: datetime | None = None  # a deferred message: when it is asked again

    def as_json(self) -> dict[str, Any]:
        item: dict[str, Any] = {"at": iso(self.at), "step": self.step, "kind": self.kind}
        for name in ("channel", "to", "subject", "template", "locale"):
            value = getattr(self, name)
            if value is not None:
                item[name] = value
        if self.detail:
            item["detail"] = self.detail
        return item


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def run_lines(run: SimulatedRun, result: SimulationResult) -> list[Line]:
    """The run's timeline: its entry, every recorded step, and how it ended."""
    base: dict[str, Any] = {
        "journey": run.journey_id,
        "key": run.key,
        "customer": run.customer_id,
    }
    lines = [Line(run.entered_at, step="(trigger)", kind="entered", detail=run.trigger, **base)]
    outcome = run.outcome
    for entry in run.timeline:
        if _told_by_outcome(entry, outcome):
            continue  # the run's outcome says it: each failure is listed once
        kind = entry.kind.replace(" ", "_")
        message = result.messages.get(entry.message_id or "")
        lines.append(
            Line(
                entry.at,
                step=entry.step,
                kind=kind,
                channel=entry.channel,
                to=entry.to,
                subject=entry.subject,
                template=entry.template,
                locale=message.locale if message else None,
                body=result.bodies.get(entry.message_id or "")
                or (message.text if message and message.text else None),
                detail=entry.detail,
                until=entry.until,
                **base,
            )
        )
    if outcome is None:
        detail = f"at {run.current}"
        if run.waiting_until is not None:
            detail += f", waiting until {iso(run.waiting_until)}"
        lines.append(
            Line(result.end, step=run.current or "", kind="running", detail=detail, **base)
        )
    else:
        detail = outcome.reason or outcome.error or ""
        at = outcome.at or result.end
        lines.append(
            Line(
                at, step=outcome.step or run.current or "", kind=outcome.kind, detail=detail, **base
            )
        )
    return lines


def _told_by_outcome(entry: TimelineEntry, outcome: Outcome | None) -> bool:
    """The step's ``failed`` record of a run whose outcome is that very failure."""
    return (
        entry.kind == "failed"
        and outcome is not None
        and outcome.kind == "failed"
        and entry.step == outcome.step
        and entry.detail == (outcome.error or "")
    )


@dataclass(frozen=True)
class Held:
    """A message a delivery policy held back: skipped (not sent) or deferred (until a moment)."""

    action: str  # skipped or deferred
    reason: str
    until: datetime | None = None


def held(line: Line) -> Held | None:
    """What the policies decided about ``line``'s message, if they held it (a send that failed
    and was skipped with ``skip_on_failure`` is not held by a policy)."""
    if line.kind not in HELD_KINDS or line.detail.startswith(SKIPPED_FAILURE):
        return None
    found = _HELD_DETAIL.search(line.detail)
    if found is None:
        return Held(line.kind, line.detail)
    until = line.until  # recorded with the deferral (before 2026-12-07: only in the text)
    if until is None and found["until"]:
        try:
            until = datetime.fromisoformat(found["until"])
        except ValueError:
            until = None
    return Held(line.kind, found["reason"], until)


def outcome_of(run: SimulatedRun) -> str:
    return run.outcome.kind if run.outcome else "running"


# --- JSON -------------------------------------------------------------------------------------


def as_json(result: SimulationResult, funnels: list[Funnel] | None = None) -> dict[str, Any]:
    document: dict[str, Any] = {
        "start": iso(result.start),
        "end": iso(result.end),
        "runs": [
            {
                "journey": run.journey_id,
                "customer": run.customer_id,
                "key": run.key,
                "outcome": outcome_of(run),
                "timeline": [line.as_json() for line in run_lines(run, result)],
            }
            for run in sorted_runs(result)
        ],
        "not_entered": [
            {
                "at": iso(n.at),
                "journey": n.journey_id,
                "customer": n.customer_id,
                "event": n.event,
                "reason": n.reason,
            }
            for n in result.not_entered
        ],
    }
    if funnels is not None:
        document["funnels"] = [f.as_json() for f in funnels]
    return document


def sorted_runs(result: SimulationResult) -> list[SimulatedRun]:
    return sorted(
        result.runs, key=lambda r: (r.customer_id, r.entered_at, r.journey_id, r.key or "")
    )


# --- text: one customer's timeline --------------------------------------------------------


def display_zone(result: SimulationResult, default: str) -> tzinfo:
    zones = {c.timezone for c in result.customers if c.timezone}
    name = zones.pop() if len(zones) == 1 else default
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError):
        return ZoneInfo(default)


def timeline_text(result: SimulationResult, zone: tzinfo) -> list[str]:
    lines = sorted(
        (line for run in result.runs for line in run_lines(run, result)),
        key=lambda line: (line.at.replace(microsecond=0), line.journey),
    )
    width = max((len(_journey_label(line)) for line in lines), default=10)
    step_width = max((len(line.step) for line in lines), default=8)
    start_day = result.start.astimezone(zone).date()
    text = []
    for line in lines:
        local = line.at.astimezone(zone)
        day = (local.date() - start_day).days
        when = f"{local:%a %Y-%m-%d %H:%M}  day {day:<3}"
        label = f"{_journey_label(line):<{width}}  {line.step:<{step_width}}"
        text.append(f"{when}  {label}  {describe(line, zone)}")
    return text


def _journey_label(line: Line) -> str:
    return f"{line.journey} [{line.key}]" if line.key else line.journey


def describe(line: Line, zone: tzinfo = UTC) -> str:
    """What happened, in a marketer's words (moments in ``zone``)."""
    kind = line.kind
    if kind == "entered":
        return f"▶ entered on {line.detail}"
    if kind == "sent":
        if line.channel == "email":
            return f'✉ email to {line.to}: "{line.subject}" ({line.template}, {line.locale})'
        return f"→ {line.channel} to {line.to} ({line.template})"
    decision = held(line)
    if decision is not None:
        what = f"{line.channel} ({line.template})" if line.channel and line.template else "message"
        if decision.until is not None:
            until = f"{decision.until.astimezone(zone):%a %Y-%m-%d %H:%M}"
            return f"⏸ deferred {what} until {until}: {decision.reason}"
        return f"⊘ {decision.action} {what}: {decision.reason}"
    if kind in ("held_out", "skipped", "duplicate"):
        return f"· {kind.replace('_', ' ')}: {line.detail}"
    if kind == "waited":
        if line.detail.startswith("until "):
            target = datetime.fromisoformat(line.detail.removeprefix("until "))
            return f"⏱ waited until {target.astimezone(zone):%a %H:%M}"
        return f"⏱ {line.detail}"
    if kind == "event":
        return f"⚡ received {line.detail}"
    if kind == "timeout":
        return f"⏱ timed out: {line.detail}"
    if kind == "branch":
        return f"⑂ took {line.detail}"
    if kind == "split":
        return f"⑂ split path {line.detail}"
    if kind == "looked_up":
        return f"⇄ looked up {line.detail}"
    if kind == "set":
        return f"= set {line.detail}"
    if kind == "failed":
        return f"✗ failed: {line.detail}"
    if kind == "running":
        return f"… still running {line.detail}"
    reason = f": {line.detail}" if line.detail else ""
    return {"converted": "★ converted", "exited": "■ exited", "completed": "■ completed"}.get(
        kind, f"■ {kind}"
    ) + reason


# --- populations: the funnel --------------------------------------------------------------


@dataclass
class StepRow:
    step: str
    kind: str
    reached: int = 0
    sent: int = 0
    converted: int = 0
    exited: int = 0
    failed: int = 0


@dataclass
class FailureRow:
    """Runs that failed at a step for one reason (or sends that failed and were skipped)."""

    step: str
    reason: str
    runs: int = 0


@dataclass
class PathRow:
    split: str
    path: str
    customers: int = 0
    converted: int = 0

    @property
    def rate(self) -> float:
        return self.converted / self.customers if self.customers else 0.0


@dataclass
class Funnel:
    journey: str
    entered: int
    outcomes: dict[str, int]
    steps: list[StepRow] = field(default_factory=list)
    paths: list[PathRow] = field(default_factory=list)
    failures: list[FailureRow] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "journey": self.journey,
            "entered": self.entered,
            "outcomes": self.outcomes,
            "steps": [vars(row) for row in self.steps],
            "paths": [{**vars(row), "conversion_rate": round(row.rate, 4)} for row in self.paths],
            "failures": [vars(row) for row in self.failures],
        }


def funnel(plan: Plan, runs: list[SimulatedRun]) -> Funnel:
    mine = [run for run in runs if run.journey_id == plan.journey_id]
    outcomes = Counter(outcome_of(run) for run in mine)
    order = {node_id: index for index, node_id in enumerate(plan.nodes)}
    rows = {
        node.id: StepRow(node.id, node.type)
        for node in plan.nodes.values()
        if not isinstance(node, EndNode)
    }
    paths: dict[tuple[str, str], PathRow] = {}
    failures: dict[tuple[str, str], FailureRow] = {}

    def failure(step: str, reason: str) -> None:
        row = failures.setdefault((step, reason), FailureRow(step, reason))
        row.runs += 1

    for run in mine:
        converted = outcome_of(run) == "converted"
        reached = {entry.step for entry in run.timeline}
        if run.current:
            reached.add(run.current)
        for step in reached & rows.keys():
            rows[step].reached += 1
            rows[step].converted += converted
        for entry in run.timeline:
            if entry.kind == "sent" and entry.step in rows:
                rows[entry.step].sent += 1
            if entry.kind == "split":
                name = entry.detail.removesuffix(" (holdout)")
                row = paths.setdefault((entry.step, name), PathRow(entry.step, name))
                row.customers += 1
                row.converted += converted
            if entry.kind == "skipped" and entry.detail.startswith(SKIPPED_FAILURE):
                failure(entry.step, entry.detail)
        if outcome_of(run) == "exited" and run.current in rows:
            rows[run.current].exited += 1
        if run.outcome is not None and run.outcome.kind == "failed":
            step = run.outcome.step or run.current or ""
            if step in rows:
                rows[step].failed += 1
            failure(step, run.outcome.error or "")
    return Funnel(
        plan.journey_id,
        len(mine),
        {name: outcomes.get(name, 0) for name in OUTCOMES},
        list(rows.values()),
        sorted(paths.values(), key=lambda p: (p.split, p.path)),
        sorted(failures.values(), key=lambda f: (order.get(f.step, len(order)), -f.runs, f.reason)),
    )


def funnel_text(funnel: Funnel) -> list[str]:
    outcomes = ", ".join(f"{count} {name}" for name, count in funnel.outcomes.items() if count)
    text = [f"{funnel.journey}: {funnel.entered} entered" + (f" — {outcomes}" if outcomes else "")]
    width = max((len(row.step) for row in funnel.steps), default=4)
    kinds = max((len(row.kind) for row in funnel.steps), default=4)
    header = f"{'reached':>8} {'sent':>6} {'converted':>9} {'exited':>6} {'failed':>6}"
    text.append(f"  {'step':<{width}}  {'kind':<{kinds}} {header}")
    for row in funnel.steps:
        text.append(
            f"  {row.step:<{width}}  {row.kind:<{kinds}} {row.reached:>8} {row.sent:>6} "
            f"{row.converted:>9} {row.exited:>6} {row.failed:>6}"
        )
    if funnel.paths:
        text.append("")
        text.append(
            f"  {'split / path':<{width + 10}} {'customers':>9} {'converted':>9} {'rate':>7}"
        )
        for path in funnel.paths:
            label = f"{path.split} / {path.path}"
            text.append(
                f"  {label:<{width + 10}} {path.customers:>9} {path.converted:>9} {path.rate:>7.1%}"
            )
    if funnel.failures:
        text.append("")
        text.append("  failures by step")
        step_width = max(len(failure.step) for failure in funnel.failures)
        for failure in funnel.failures:
            text.append(f"  {failure.step:<{step_width}}  {failure.runs:>6} × {failure.reason}")
    return text
