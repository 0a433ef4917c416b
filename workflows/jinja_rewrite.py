"""What the sandbox does not see of a template, made visible: each compiled template is
rewritten (:func:`rewrite`) so that

- a ``{% for %}`` loop counts its iterations against the budget (:class:`LoopItems`);
- ``~`` adds up the size of its parts before joining them (:func:`concat`);
- a comparison (``==``, ``in`` …) pays for the values it compares, and refuses to walk huge
  nested ones (:func:`compare`).

And the environment sends every ``{{ value }}`` through :func:`finalize` and joins blocks,
macros' bodies and whole renders with :func:`join_output`: both check sizes first.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from jinja2 import nodes
from jinja2.runtime import markup_join, str_join
from jinja2.utils import pass_eval_context

from workflows.limits import (
    MAX_TEXT,
    OFF,
    Budget,
    LimitExceeded,
    check_text,
    check_text_size,
    checking,
    cost,
    current,
    pay_for_comparing,
    spend,
    text_size,
)

Made = TypeVar("Made", bound=nodes.Node)


class LoopItems:
    """What a ``{% for %}`` loop iterates over: each iteration counts against the budget."""

    __slots__ = ("_budget", "_items", "_source")

    def __init__(self, source: Iterable[Any], budget: Budget) -> None:
        self._source, self._items, self._budget = source, iter(source), budget

    def __iter__(self) -> LoopItems:
        return self

    def __next__(self) -> Any:
        item = next(self._items)
        self._budget.iterate()
        return item

    def __len__(self) -> int:  # loop.length without reading the items ahead
        return len(self._source)  # type: ignore[arg-type]  # a TypeError: Jinja reads ahead

    def __bool__(self) -> bool:
        return True


def loop_items(source: Any) -> Any:
    budget = current()
    if budget is None or budget is OFF:
        return source
    return LoopItems(source, budget)


# --- comparing and joining -------------------------------------------------------------------

_COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "lteq": operator.le,
    "gt": operator.gt,
    "gteq": operator.ge,
    "in": lambda a, b: a in b,
    "notin": lambda a, b: a not in b,
}


def compare(operator_name: str, left: Any, right: Any) -> Any:
    if checking():
        pay_for_comparing(left, right)
    return _COMPARISONS[operator_name](left, right)


@pass_eval_context
def concat(eval_ctx: Any, items: list[Any]) -> str:
    """``a ~ b ~ c``: the parts' sizes are checked before they are joined."""
    if checking():
        total = 0
        for item in items:
            total += text_size(item)
            check_text(total, "~", so_far=True)
    join = markup_join if eval_ctx.autoescape else str_join
    return join(items)


def join_output(parts: Iterable[str]) -> str:
    """``Environment.concat``: a block, a macro's body, a whole render, joined once its size is
    known to be within :data:`MAX_TEXT`."""
    if not checking():
        return "".join(parts)
    chunks, total = [], 0
    for part in parts:
        total += len(part)
        if total > MAX_TEXT:
            raise LimitExceeded(f"the template would write more than {MAX_TEXT:,} characters")
        chunks.append(part)
    spend(total // 64)
    return "".join(chunks)


def finalize(value: Any) -> Any:
    """Every ``{{ value }}``: paid for by its size; a list or dict is not printed if its text
    would be huge."""
    if isinstance(value, str):
        spend(cost(value))
    elif checking():
        check_text_size(value, "printing a value")
    return value


# --- the rewrite of each compiled template ---------------------------------------------------

LOOP_FILTER = "~loop"
CONCAT_FILTER = "~concat"
COMPARE_FILTER = "~compare"
INTERNAL_FILTERS: dict[str, Callable[..., Any]] = {
    LOOP_FILTER: loop_items,
    CONCAT_FILTER: concat,
    COMPARE_FILTER: compare,
}
"""Names no template can write (``~`` cannot start a filter name): only :func:`rewrite` uses
them."""


def rewrite(node: nodes.Node) -> nodes.Node:
    """A copy of the tree in which loops, ``~`` and comparisons go through the hooks above.
    (A copy: validation walks the tree it parsed after compiling it.)"""
    node = copy.copy(node)
    for field in node.fields:
        value = getattr(node, field, None)
        if isinstance(value, nodes.Node):
            setattr(node, field, rewrite(value))
        elif isinstance(value, list):
            setattr(node, field, [rewrite(v) if isinstance(v, nodes.Node) else v for v in value])
    if isinstance(node, nodes.For):
        node.iter = _filter(node, LOOP_FILTER, node.iter)  # type: ignore[arg-type]
    elif isinstance(node, nodes.Concat):
        return _filter(node, CONCAT_FILTER, _made(nodes.List(node.nodes), node))
    elif isinstance(node, nodes.Compare) and len(node.ops) == 1:  # a < b < c: left as it is
        operand = node.ops[0]
        operator_name = _made(nodes.Const(operand.op), node)
        return _filter(node, COMPARE_FILTER, operator_name, node.expr, operand.expr)
    return node


def _filter(at: nodes.Node, name: str, value: nodes.Expr, *args: nodes.Expr) -> nodes.Filter:
    """``value | name(*args)``, where ``at`` was."""
    return _made(nodes.Filter(value, name, list(args), [], None, None), at)


def _made(node: Made, at: nodes.Node) -> Made:
    """``node``, new, with the line and environment of ``at`` (its children have theirs)."""
    node.lineno = at.lineno
    node.environment = getattr(at, "environment", None)
    return node
