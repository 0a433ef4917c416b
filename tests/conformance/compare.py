"""Whether two simulations of one scenario tell the same story, and where they do not.

Runs are paired by journey, customer and key, in the order they entered; each pair is compared
field by field (entry, outcome, current step, every timeline entry and the message each send
produced), then the customers who did not enter. Times are compared to the second, as the
simulation's JSON shows them: the time-skipping server's clock moves by milliseconds while a
step is worked on, which no report shows and no decision reads.

Message ids are not compared: they name the run, and two simulators may name runs differently.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from itertools import zip_longest
from typing import Any

from simulation.report import iso
from simulation.simulator import NotEntered, SimulatedRun, SimulationResult
from workflows.models import TimelineEntry

RunKey = tuple[str, str, str | None]  # journey, customer, key
ENTRY_FIELDS = ("at", "step", "kind", "detail", "channel", "to", "subject", "template", "until")


def timeline_differences(a: SimulationResult, b: SimulationResult) -> list[str]:
    """Readable differences between ``a`` and ``b`` (``a`` first); empty when they agree."""
    differences: list[str] = []
    runs_a, runs_b = _by_key(a.runs), _by_key(b.runs)
    for key in sorted(runs_a.keys() | runs_b.keys(), key=_sortable):
        pairs = zip_longest(runs_a.get(key, []), runs_b.get(key, []))
        for number, (run_a, run_b) in enumerate(pairs, start=1):
            label = _label(key, number)
            if run_b is None:
                assert run_a is not None
                differences.append(f"{label}: only in a (entered {_at(run_a.entered_at)})")
            elif run_a is None:
                differences.append(f"{label}: only in b (entered {_at(run_b.entered_at)})")
            else:
                differences += [f"{label}: {d}" for d in _run_differences(run_a, run_b, a, b)]
    differences += _not_entered_differences(a.not_entered, b.not_entered)
    extra_a, extra_b = _unreferenced(a), _unreferenced(b)
    if extra_a or extra_b:
        differences.append(
            f"messages no timeline mentions: {len(extra_a)} in a, {len(extra_b)} in b"
        )
    return differences


def _by_key(runs: Iterable[SimulatedRun]) -> dict[RunKey, list[SimulatedRun]]:
    grouped: dict[RunKey, list[SimulatedRun]] = {}
    for run in runs:
        grouped.setdefault((run.journey_id, run.customer_id, run.key), []).append(run)
    for group in grouped.values():
        group.sort(key=lambda run: run.entered_at)  # stable: the order they were noted
    return grouped


def _sortable(key: RunKey) -> tuple[str, str, str]:
    return key[0], key[1], key[2] or ""


def _label(key: RunKey, number: int) -> str:
    journey, customer, run_key = key
    return f"{journey} {customer}" + (f" [{run_key}]" if run_key else "") + f" run {number}"


def _at(moment: datetime | None) -> str:
    return "-" if moment is None else iso(moment)


def _value(value: Any) -> Any:
    return _at(value) if isinstance(value, datetime) else value


def _run_differences(
    run_a: SimulatedRun, run_b: SimulatedRun, a: SimulationResult, b: SimulationResult
) -> list[str]:
    differences = []
    for name in ("entered_at", "trigger", "current", "waiting_until"):
        value_a, value_b = _value(getattr(run_a, name)), _value(getattr(run_b, name))
        if value_a != value_b:
            differences.append(f"{name}: {value_a!r} ≠ {value_b!r}")
    outcome_a = _outcome(run_a)
    outcome_b = _outcome(run_b)
    if outcome_a != outcome_b:
        differences.append(f"outcome: {outcome_a} ≠ {outcome_b}")
    entries = zip_longest(run_a.timeline, run_b.timeline)
    for index, (entry_a, entry_b) in enumerate(entries):
        where = f"timeline[{index}]"
        if entry_b is None:
            assert entry_a is not None
            differences.append(f"{where}: only in a: {_entry(entry_a, a)}")
        elif entry_a is None:
            differences.append(f"{where}: only in b: {_entry(entry_b, b)}")
        else:
            fields_a, fields_b = _fields(entry_a, a), _fields(entry_b, b)
            changed = [
                f"{name} {fields_a[name]!r} ≠ {fields_b[name]!r}"
                for name in fields_a
                if fields_a[name] != fields_b[name]
            ]
            if changed:
                differences.append(
                    f"{where} ({entry_a.step} {entry_a.kind}): " + "; ".join(changed)
                )
    return differences


def _outcome(run: SimulatedRun) -> str:
    outcome = run.outcome
    if outcome is None:
        return "running"
    parts: list[str] = [outcome.kind]
    parts += [
        f"{name}={getattr(outcome, name)!r}"
        for name in ("reason", "step", "error")
        if getattr(outcome, name) is not None
    ]
    if outcome.at is not None:
        parts.append(f"at={_at(outcome.at)}")
    return " ".join(parts)


def _fields(entry: TimelineEntry, result: SimulationResult) -> dict[str, Any]:
    """The entry's fields, and for a send the message it produced (or that none was)."""
    fields = {name: _value(getattr(entry, name)) for name in ENTRY_FIELDS}
    if entry.message_id is not None and entry.kind == "sent":
        message = result.messages.get(entry.message_id)
        fields["message"] = (
            "missing"
            if message is None
            else f"{message.template}/{message.locale}: {message.subject}"
        )
    return fields


def _entry(entry: TimelineEntry, result: SimulationResult) -> str:
    fields = _fields(entry, result)
    return " ".join(
        f"{name}={value!r}" for name, value in fields.items() if value not in (None, "")
    )


def _not_entered_differences(a: list[NotEntered], b: list[NotEntered]) -> list[str]:
    def lines(items: list[NotEntered]) -> Counter[str]:
        return Counter(
            f"{_at(n.at)} {n.journey_id} {n.customer_id} ({n.event}): {n.reason}" for n in items
        )

    only_a = sorted((lines(a) - lines(b)).elements())
    only_b = sorted((lines(b) - lines(a)).elements())
    return [f"not entered, only in a: {line}" for line in only_a] + [
        f"not entered, only in b: {line}" for line in only_b
    ]


def _unreferenced(result: SimulationResult) -> list[str]:
    """Messages delivered that no run's timeline records (a send no one can account for)."""
    mentioned = {entry.message_id for run in result.runs for entry in run.timeline}
    return sorted(set(result.messages) - mentioned)
