"""Draw a compiled journey as Mermaid (renders on GitHub) or Graphviz DOT.

Every step is drawn, edges carry their meaning (event, timeout, branch condition, split share),
and steps are grouped by stage. Goal and exit rules, which apply at any moment, stand apart.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from language.schedules import describe_date, describe_schedule
from workflows.durations import format_duration
from workflows.plan import (
    BranchNode,
    EndNode,
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

DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
STAGE_ORDER = ("awareness", "consideration", "conversion", "retention", "advocacy")
TRIGGER_ID = "trigger"


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    label: str
    dashed: bool = False


@dataclass(frozen=True)
class Annotations:
    """Extra text for a drawing: a line under a node's label (by node id, or
    :data:`TRIGGER_ID`), a suffix to an edge's label (by the :class:`Edge` of :func:`edges`).
    The dashboard puts its live counts there; ``touchpoint graph`` passes none."""

    nodes: Mapping[str, str] = field(default_factory=dict)
    edges: Mapping[Edge, str] = field(default_factory=dict)


NO_ANNOTATIONS = Annotations()


def describe(node: Node) -> str:
    """One line that says what a step does, for diagrams and timelines."""
    match node:
        case SendNode():
            where = f" → {node.destination}" if node.destination else ""
            return f"{node.channel}{where}: {node.template}"
        case WaitNode():
            return f"wait {format_duration(node.seconds)}"
        case WaitUntilNode():
            return _describe_wait_until(node)
        case WaitForNode():
            return f"wait for {node.match.event} (up to {format_duration(node.timeout_seconds)})"
        case BranchNode():
            return "branch"
        case SplitNode():
            return "random split"
        case LookupNode():
            return f"lookup {node.connection}: {node.method} {node.path} → lookups.{node.save_as}"
        case SetNode():
            return "set " + ", ".join(f"vars.{name}" for name in node.assignments)
        case EndNode():
            return "end"
    raise TypeError(node)  # pragma: no cover


def _describe_wait_until(node: WaitUntilNode) -> str:
    if node.date is not None:
        offset = f" {format_duration(node.offset_seconds)}" if node.offset_seconds else ""
        at = f" at {node.time}" if node.time else ""
        if offset and not offset.strip().startswith("-"):
            offset = " +" + offset.strip()
        return f"until {node.date}{offset}{at}"
    days = "" if len(node.days) == 7 else " " + _day_ranges(node.days)
    return f"until {node.time} local{days}"


def _day_ranges(days: tuple[int, ...]) -> str:
    ranges: list[str] = []
    start = previous = days[0]
    for day in [*days[1:], -2]:
        if day != previous + 1:
            ranges.append(
                DAY_NAMES[start]
                if start == previous
                else f"{DAY_NAMES[start]}–{DAY_NAMES[previous]}"
            )
            start = day
        previous = day
    return ", ".join(ranges)


def edges(plan: Plan) -> Iterator[Edge]:
    yield Edge(TRIGGER_ID, plan.start, "")
    for node in plan.nodes.values():
        match node:
            case WaitForNode():
                yield Edge(node.id, node.on_event, node.match.event)
                yield Edge(
                    node.id,
                    node.on_timeout,
                    f"timeout {format_duration(node.timeout_seconds)}",
                    True,
                )
            case BranchNode():
                for case in node.cases:
                    yield Edge(node.id, case.next, f"if {case.condition}")
                yield Edge(node.id, node.otherwise, "else")
            case SplitNode():
                for path in node.paths:
                    holdout = " (holdout)" if path.holdout else ""
                    yield Edge(node.id, path.next, f"{path.name} {path.percent}%{holdout}")
            case EndNode():
                pass
            case _:
                yield Edge(node.id, node.next, "")


def _trigger_label(plan: Plan) -> str:
    if plan.schedule is not None:
        audience = f" to {plan.schedule.audience}" if plan.schedule.audience else " to everyone"
        return f"{describe_schedule(plan.schedule)}{audience}"
    if plan.segment is not None:
        return f"when {plan.segment} turns true"
    if plan.date_entry is not None:
        rule = plan.date_entry
        return describe_date(rule) + (f" if {rule.audience}" if rule.audience else "")
    key = f" per {plan.trigger.key}" if plan.trigger.key else ""
    condition = f" if {plan.trigger.condition}" if plan.trigger.condition else ""
    return f"{plan.trigger.event}{condition}{key}"


def _anytime_rules(plan: Plan) -> list[tuple[str, str]]:
    rules = []
    if plan.goal:
        within = (
            f" within {format_duration(plan.goal.within_seconds)}"
            if plan.goal.within_seconds
            else ""
        )
        rules.append(("goal", f"goal: {plan.goal.event}{within} → converted"))
    for i, rule in enumerate(plan.exits):
        rules.append((f"exit_{i}", f"exit on {rule.event} → exited ({rule.reason})"))
    return rules


def _by_stage(plan: Plan) -> tuple[dict[str, list[Node]], list[Node]]:
    staged: dict[str, list[Node]] = {}
    loose: list[Node] = []
    for node in plan.nodes.values():
        (staged.setdefault(node.stage, []) if node.stage else loose).append(node)
    ordered = {stage: staged[stage] for stage in STAGE_ORDER if stage in staged}
    return ordered, loose


# --- Mermaid --------------------------------------------------------------------------------


def to_mermaid(plan: Plan, annotations: Annotations = NO_ANNOTATIONS) -> str:
    """The journey as a Mermaid flowchart; ``annotations`` add text to nodes and edges (every
    piece of text, from the YAML or the annotations, escaped for Mermaid)."""
    notes = annotations.nodes
    lines = [f"%% {_mcomment(plan.name)} ({plan.journey_id}, version {plan.version})"]
    lines.append("flowchart TD")
    trigger = _mtext(_trigger_label(plan)) + _mnote(notes.get(TRIGGER_ID))
    lines.append(f'  {_mid(TRIGGER_ID)}(["⚡ {trigger}"])')
    staged, loose = _by_stage(plan)
    for stage, nodes in staged.items():
        lines.append(f'  subgraph {_mid("stage_" + stage)[2:]}["{_mtext(stage.title())}"]')
        lines += [f"    {_mermaid_node(node, notes.get(node.id))}" for node in nodes]
        lines.append("  end")
    lines += [f"  {_mermaid_node(node, notes.get(node.id))}" for node in loose]
    rules = _anytime_rules(plan)
    if rules:
        lines.append('  subgraph anytime["At any step"]')
        lines += [f'    {_mid(rule_id)}[/"{_mtext(text)}"/]' for rule_id, text in rules]
        lines.append("  end")
    for edge in edges(plan):
        arrow = "-.->" if edge.dashed else "-->"
        text = " ".join(part for part in (edge.label, annotations.edges.get(edge)) if part)
        label = f'|"{_mtext(text)}"|' if text else ""
        lines.append(f"  {_mid(edge.source)} {arrow}{label} {_mid(edge.target)}")
    return "\n".join(lines) + "\n"


def _mermaid_node(node: Node, note: str | None = None) -> str:
    text = _mtext(f"{node.id}: {describe(node)}" if not isinstance(node, EndNode) else "end")
    text += _mnote(note)
    shapes = {
        "branch": ("{", "}"),
        "split": ("{{", "}}"),
        "end": ("((", "))"),
        "wait": ("[(", ")]"),
        "wait_until": ("[(", ")]"),
        "wait_for": ("[(", ")]"),
        "lookup": ("[[", "]]"),
    }
    left, right = shapes.get(node.type, ("[", "]"))
    return f'{_mid(node.id)}{left}"{text}"{right}'


def _mid(identifier: str) -> str:
    """A Mermaid-safe node id (``end`` and dashes are not)."""
    return "n_" + re.sub(r"[^A-Za-z0-9_]", "_", identifier)


_MERMAID_ESCAPES = {
    "&": "#amp;",
    '"': "#quot;",
    "<": "#lt;",
    ">": "#gt;",
    "{": "#123;",
    "}": "#125;",
    "|": "#124;",
}


def _mtext(text: str) -> str:
    """Label text with Mermaid's entity codes for characters its parser treats specially."""
    return "".join(_MERMAID_ESCAPES.get(char, char) for char in text)


def _mnote(note: str | None) -> str:
    """An annotation as a second line of a label (Mermaid's line break, then escaped text)."""
    return f"<br>{_mtext(note)}" if note else ""


def _mcomment(text: str) -> str:
    """Comment text kept on its one line."""
    return re.sub(r"[\r\n]+", " ", text)


# --- Graphviz DOT ---------------------------------------------------------------------------


def to_dot(plan: Plan) -> str:
    lines = [
        f"digraph {_dq(plan.journey_id)} {{",
        f"  label={_dq(plan.name)};",
        "  labelloc=t;",
        "  node [shape=box, style=rounded, fontname=Helvetica];",
        "  edge [fontname=Helvetica, fontsize=10];",
        f"  {_dq(TRIGGER_ID)} [shape=oval, label={_dq('⚡ ' + _trigger_label(plan))}];",
    ]
    staged, loose = _by_stage(plan)
    for stage, nodes in staged.items():
        lines.append(f"  subgraph {_dq('cluster_' + stage)} {{")
        lines.append(f"    label={_dq(stage.title())};")
        lines += [f"    {_dot_node(node)}" for node in nodes]
        lines.append("  }")
    lines += [f"  {_dot_node(node)}" for node in loose]
    rules = _anytime_rules(plan)
    if rules:
        lines.append(f"  subgraph {_dq('cluster_anytime')} {{")
        lines.append(f"    label={_dq('At any step')};")
        lines += [f"    {_dq(rule_id)} [shape=note, label={_dq(text)}];" for rule_id, text in rules]
        lines.append("  }")
    for edge in edges(plan):
        attrs = [f"label={_dq(edge.label)}"] if edge.label else []
        if edge.dashed:
            attrs.append("style=dashed")
        suffix = f" [{', '.join(attrs)}]" if attrs else ""
        lines.append(f"  {_dq(edge.source)} -> {_dq(edge.target)}{suffix};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_node(node: Node) -> str:
    shapes = {"branch": "diamond", "split": "hexagon", "end": "doublecircle"}
    label = "end" if isinstance(node, EndNode) else f"{node.id}\\n{describe(node)}"
    return f"{_dq(node.id)} [shape={shapes.get(node.type, 'box')}, label={_dq(label, raw=True)}];"


def _dq(text: str, raw: bool = False) -> str:
    escaped = text.replace("\\", "\\\\") if not raw else text
    return '"' + escaped.replace('"', '\\"') + '"'
