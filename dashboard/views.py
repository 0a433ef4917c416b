"""What the journey page shows, made from a plan and its numbers: the map with live counts
(``touchpoint graph``'s drawing, annotated), the funnel's rows, the outcomes, the chart's data.
Pure functions of :mod:`store.analytics`'s dataclasses, so the page shows what ``touchpoint
stats`` prints."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import timedelta

from language.diagram import TRIGGER_ID, Annotations, Edge, describe, edges, to_mermaid
from store.analytics import EdgeCount, JourneyStats, Outcomes
from workflows.plan import BranchNode, EndNode, Plan, SplitNode, WaitForNode

SINCE = {"1d": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30)}
SINCE["90d"] = timedelta(days=90)
OUTCOMES = ("active", "completed", "converted", "exited", "failed", "cancelled", "erased")


@dataclass(frozen=True)
class StepRow:
    step: str
    what: str
    passed: int
    waiting: int


def journey_map(plan: Plan, stats: JourneyStats) -> str:
    """The plan as Mermaid with the live counts: entered on the trigger, passed and waiting on
    each step, passed on each edge."""
    nodes = {TRIGGER_ID: f"entered {stats.entered}"}
    for row in step_rows(plan, stats):
        if row.step in plan.nodes:
            nodes[row.step] = f"passed {row.passed} · waiting {row.waiting}"
    drawn = list(edges(plan))
    on_edges = {edge: f"({n})" for edge, n in edge_counts(plan, drawn, stats.edges).items()}
    trigger = [edge for edge in drawn if edge.source == TRIGGER_ID]
    on_edges |= {edge: f"({stats.entered})" for edge in trigger}
    return to_mermaid(plan, Annotations(nodes=nodes, edges=on_edges))


def edge_counts(plan: Plan, drawn: list[Edge], counted: list[EdgeCount]) -> dict[Edge, int]:
    """The store's edge counts on the drawing's edges. An edge is (source, target); where two
    drawn edges join the same steps (two branch cases to one step), the store's label says
    which one (the case's condition or "else", the split path's name, "event"/"timeout")."""
    found: dict[Edge, int] = {}
    for count in counted:
        same_steps = [e for e in drawn if (e.source, e.target) == (count.source, count.target)]
        if not same_steps:
            continue  # an edge of another version of the journey: the edges table shows it
        chosen = next((e for e in same_steps if count.label in _labels_of(plan, e)), same_steps[0])
        found[chosen] = found.get(chosen, 0) + count.passed
    return found


def _labels_of(plan: Plan, edge: Edge) -> set[str | None]:
    """The labels the store may give the drawn ``edge``."""
    node = plan.nodes.get(edge.source)
    match node:
        case WaitForNode():
            return {"timeout"} if edge.dashed else {"event", node.match.event}
        case BranchNode():
            if edge.label == "else":
                return {"else", "otherwise"}
            index = [f"if {case.condition}" for case in node.cases].index(edge.label)
            return {node.cases[index].condition, edge.label, str(index), f"case {index + 1}"}
        case SplitNode():
            return {path.name for path in node.paths if edge.label.startswith(f"{path.name} ")}
    return {None, ""}


def step_rows(plan: Plan | None, stats: JourneyStats) -> list[StepRow]:
    """Every step of the plan in its order (zeros where no run was), then steps the numbers
    name that the plan does not have (an older version's)."""
    counts = {count.step: count for count in stats.steps}
    rows = []
    for step_id, node in (plan.nodes if plan else {}).items():
        if isinstance(node, EndNode) and step_id not in counts:
            continue  # a run ends there: nothing passes it, nothing waits
        count = counts.pop(step_id, None)
        rows.append(
            StepRow(
                step_id, describe(node), count.passed if count else 0, count.waiting if count else 0
            )
        )
    rows += [StepRow(c.step, "(not in this version)", c.passed, c.waiting) for c in counts.values()]
    return rows


def outcome_counts(outcomes: Outcomes) -> dict[str, tuple[int, str]]:
    """Each outcome's count, and its detail (exits by reason, failures by step)."""

    def detail(by: dict[str, int]) -> str:
        return ", ".join(f"{key}: {n}" for key, n in sorted(by.items()))

    return {
        "active": (outcomes.active, ""),
        "completed": (outcomes.completed, ""),
        "converted": (outcomes.converted, ""),
        "exited": (sum(outcomes.exited.values()), detail(outcomes.exited)),
        "failed": (sum(outcomes.failed.values()), detail(outcomes.failed)),
        "cancelled": (outcomes.cancelled, ""),
        "erased": (outcomes.erased, ""),
    }


def has_holdout(plan: Plan) -> bool:
    """Whether a split of the plan holds customers out (its lift can be measured)."""
    return any(
        isinstance(node, SplitNode) and any(path.holdout for path in node.paths)
        for node in plan.nodes.values()
    )


def percent(rate: float) -> str:
    """``0.125`` → ``12.5 %``."""
    return f"{rate * 100:.1f} %"


def points(difference: float) -> str:
    """``0.05`` → ``+5.0 points``."""
    return f"{difference * 100:+.1f} points"


def daily_json(stats: JourneyStats) -> str:
    """The DayCount list as JSON safe inside ``<script type="application/json">``: ``<``, ``>``
    and ``&`` as ``\\u`` escapes, so no text can close the element."""
    text = json.dumps([asdict(day) for day in stats.days], separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
