"""What a deploy would change in a journey: the structural diff of two compiled plans.

Pure: two :class:`workflows.plan.Plan` in, a list of :class:`Change` out — ``touchpoint plan``
(:mod:`ops.planning`) adds the store, Temporal and the output. Steps are matched by id, so a
step without an ``id:`` whose position moves (ids like ``send-3`` are positional) shows as
removed and added: give steps that matter an ``id:``.

Three kinds of change, each with a stable ``what``:

* ``journey``: a journey-level field (trigger, entry, exits, goal, schedule, segment, date,
  category, topic, name, description);
* ``step``: a step added, removed or changed (its kind, template, channel, waits, conditions,
  events, timeouts, split weights, …; the steps it leads to are edges);
* ``edge``: an arrow of the graph (``from --label--> to``; ``start`` for the entry) added or
  removed (an arrow that only got a new label — a split weight, a branch condition — is the
  step's change, not shown again as an edge).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal

from workflows.durations import format_duration
from workflows.plan import Node, Plan, successors

Sign = Literal["+", "-", "~"]

JOURNEY_FIELDS = (
    "name",
    "description",
    "category",
    "trigger",
    "entry",
    "schedule",
    "segment",
    "date_entry",
    "exits",
    "goal",
    "topic",
)
"""The journey-level fields compared, in the order they are reported (``version``, ``format``
and ``event_properties`` follow from the rest; ``start`` and ``nodes`` are steps and edges)."""

EDGE_KEYS = frozenset({"next", "on_event", "on_timeout", "otherwise"})
"""Node fields that name the step that comes next: reported as edges, not as step changes."""

DERIVED_KEYS = frozenset({"id", "reads"})
"""Node fields that follow from others (the id is the match; ``reads`` from the template)."""

START = "start"


@dataclass(frozen=True)
class Change:
    """One line of the diff. ``before``/``after`` are the values (JSON-able) or ``None``."""

    sign: Sign
    what: Literal["journey", "step", "edge"]
    name: str  # the field (journey), step id (step) or ``from -> to`` (edge)
    field: str | None = None  # step changes: the field path (``cases[0].condition``)
    before: Any = None
    after: Any = None
    detail: str = ""  # the line for people, without the sign

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def diff(before: Plan | None, after: Plan) -> list[Change]:
    """Every change from ``before`` (the deployed version; ``None``: nothing deployed, so every
    step is added) to ``after``: journey fields first, then steps in ``after``'s order (removed
    ones where they were), then edges."""
    if before is not None and before.version == after.version:
        return []
    old = before.model_dump(mode="json") if before is not None else {}
    new = after.model_dump(mode="json")
    changes = [] if before is None else list(_journey_changes(old, new))
    old_nodes: dict[str, Any] = old.get("nodes", {})
    for step_id in _step_order(before, after):
        changes += _step_changes(step_id, old_nodes.get(step_id), new["nodes"].get(step_id))
    old_edges = edges(before) if before is not None else []
    new_edges = edges(after)
    removed = [e for e in old_edges if e not in new_edges]
    added = [e for e in new_edges if e not in old_edges]
    relabelled = _relabelled(removed, added, {c.name for c in changes if c.sign == "~"})
    changes += [_edge("-", e) for e in removed if e not in relabelled]
    changes += [_edge("+", e) for e in added if e not in relabelled]
    return changes


def _relabelled(
    removed: list[tuple[str, str, str]], added: list[tuple[str, str, str]], changed: set[str]
) -> set[tuple[str, str, str]]:
    """Edges that only got a new label because their step changed (a split weight, a branch
    condition, the event waited for): the step's ``~`` line says it already, so the arrow
    between the same two steps is not shown removed and added again."""
    pairs: set[tuple[str, str, str]] = set()
    for edge in removed:
        source, _, target = edge
        if source not in changed:
            continue
        twin = next(
            (e for e in added if e[0] == source and e[2] == target and e not in pairs), None
        )
        if twin is not None:
            pairs |= {edge, twin}
    return pairs


def edges(plan: Plan) -> list[tuple[str, str, str]]:
    """``(from, label, to)`` for every arrow of the plan's graph, the entry first."""
    found = [(START, "", plan.start)]
    for step_id, node in plan.nodes.items():
        found += [(step_id, label, target) for label, target in successors(node)]
    return found


def step_summary(node: Node | dict[str, Any]) -> str:
    """``send email newsletter-welcome`` / ``wait 2d`` / ``wait_for Order Completed (3d)``."""
    data = node if isinstance(node, dict) else node.model_dump(mode="json")
    kind = data["type"]
    match kind:
        case "send":
            return f"send {data['channel']} {data['template']}"
        case "wait":
            return f"wait {format_duration(data['seconds'])}"
        case "wait_until":
            at = data.get("date") or ""
            when = " ".join(p for p in (at, data.get("time") or "") if p)
            return f"wait_until {when}".rstrip()
        case "wait_for":
            timeout = format_duration(data["timeout_seconds"])
            return f"wait_for {data['match']['event']} ({timeout})"
        case "branch":
            return f"branch ({len(data['cases'])} case(s) and else)"
        case "split":
            weights = ", ".join(f"{p['name']} {p['percent']}%" for p in data["paths"])
            return f"split ({weights})"
        case "lookup":
            return f"lookup {data['connection']} {data['method']} {data['path']}"
        case "set":
            return f"set {', '.join(sorted(data['assignments']))}"
    return str(kind)


def show(value: Any, field: str = "") -> str:
    """A value as a line shows it: durations as ``2d``, missing as ``none``, the rest as
    compact JSON (strings quoted, so a blank is visible)."""
    if value is None:
        return "none"
    if field.endswith("seconds") and isinstance(value, int) and not isinstance(value, bool):
        return format_duration(value)
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), sort_keys=True)


def _journey_changes(old: dict[str, Any], new: dict[str, Any]) -> Iterator[Change]:
    for name in JOURNEY_FIELDS:
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        parts = [
            f"{path or name}: {show(a, path)} → {show(b, path)}"
            for path, a, b in _field_changes(before, after, name)
        ]
        yield Change("~", "journey", name, None, before, after, "; ".join(parts))


def _step_order(before: Plan | None, after: Plan) -> list[str]:
    """``after``'s steps in order, each removed step right after the step it followed."""
    order = list(after.nodes)
    if before is None:
        return order
    previous = ""
    for step_id in before.nodes:
        if step_id not in after.nodes:
            at = order.index(previous) + 1 if previous in order else 0
            order.insert(at, step_id)
        previous = step_id
    return order


def _step_changes(step_id: str, old: Any, new: Any) -> list[Change]:
    if old is None:
        return [Change("+", "step", step_id, None, None, new, f"{step_id}: {step_summary(new)}")]
    if new is None:
        return [Change("-", "step", step_id, None, old, None, f"{step_id}: {step_summary(old)}")]
    if old["type"] != new["type"]:
        detail = f"{step_id}: {step_summary(old)} → {step_summary(new)}"
        return [Change("~", "step", step_id, "type", old["type"], new["type"], detail)]
    return [
        Change(
            "~",
            "step",
            step_id,
            path,
            a,
            b,
            f"{step_id}: {path}: {show(a, path)} → {show(b, path)}",
        )
        for path, a, b in _field_changes(_shape(old), _shape(new), "")
    ]


def _shape(node: dict[str, Any]) -> dict[str, Any]:
    """A node without its edges and derived fields (edges are reported as edges)."""
    shaped = {k: v for k, v in node.items() if k not in EDGE_KEYS | DERIVED_KEYS}
    for key in ("cases", "paths"):
        if key in shaped:
            shaped[key] = [{k: v for k, v in item.items() if k != "next"} for item in shaped[key]]
    return shaped


def _field_changes(before: Any, after: Any, path: str) -> Iterator[tuple[str, Any, Any]]:
    """``(path, before, after)`` for each leaf that differs (``cases[0].condition``)."""
    if isinstance(before, dict) and isinstance(after, dict):
        for key in [*before, *(k for k in after if k not in before)]:
            if before.get(key) != after.get(key):
                yield from _field_changes(
                    before.get(key), after.get(key), f"{path}.{key}" if path else key
                )
    elif isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        for index, (a, b) in enumerate(zip(before, after, strict=True)):
            if a != b:
                yield from _field_changes(a, b, f"{path}[{index}]")
    else:
        yield path, before, after


def _edge(sign: Sign, edge: tuple[str, str, str]) -> Change:
    source, label, target = edge
    arrow = f" --{label}--> " if label else " --> "
    return Change(
        sign, "edge", f"{source} -> {target}", label or None, None, None, f"{source}{arrow}{target}"
    )


def step_fate(old: Plan, new: Plan, step_id: str) -> str:
    """What ``new`` does to a step of ``old`` (a run waits there): ``removed``, ``changed``
    (the step itself or where it leads) or ``kept``."""
    if step_id not in new.nodes:
        return "removed"
    before, after = old.nodes[step_id], new.nodes[step_id]
    if before.type != after.type or _step_changes(
        step_id, before.model_dump(mode="json"), after.model_dump(mode="json")
    ):
        return "changed"
    return "changed" if successors(before) != successors(after) else "kept"
