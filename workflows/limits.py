"""How much work one template render or one journey expression may do, counted while it runs.

Every hook of the sandbox (:mod:`workflows.jinja_limits`) reports here: a call, an attribute, a
filter, a comparison, a loop iteration, the size of what it builds. The :class:`Budget` of the
render or evaluation in progress (a context variable, so each thread and each evaluation has its
own) counts it and raises :class:`LimitExceeded` as soon as a limit is passed:

- ``operations``: a deterministic count of work (one per hook, plus one per 64 characters or
  per item a hook handles or builds). Expressions run inside the workflow, where only a count
  — never the clock — may decide: the same run replays to the same failure.
- ``iterations``: ``{% for %}`` loop iterations, all loops of the render together.
- ``seconds``: a deadline on the CPU clock of the rendering thread, for message templates
  (never in a workflow).

Two sizes hold everywhere, budget or not (also while Jinja folds constants at compile time;
only runs replaying from before the limits, under :data:`OFF`, go without):
a string built by a template holds at most :data:`MAX_TEXT` characters, a list at most
:data:`MAX_ITEMS` items, and nothing is turned into text that would be longer than
:data:`MAX_TEXT`. Builders are checked *before* they build (``center(10**9)`` is refused
without allocating a byte).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from types import NoneType

from jinja2.sandbox import SecurityError
from jinja2.utils import Namespace

MAX_TEXT = 512 * 1024
"""Characters one string may hold: the size of the largest message."""
MAX_ITEMS = 100_000
"""Items one list, tuple or dict built by a template may hold (Jinja's ``range`` cap)."""
CHARACTERS_PER_OPERATION = 64
CLOCK_EVERY = 64  # operations between two readings of the clock (about 100 µs of work)
_CONTAINERS = (list, tuple, dict, set, frozenset)


class LimitExceeded(SecurityError):
    """A template or expression did more work, or built more, than it may. Never worth a
    retry: the same data makes it fail the same way."""


@dataclass(frozen=True)
class Limits:
    operations: int | None = None
    iterations: int | None = None
    seconds: float | None = None
    what: str = "render"  # "render" (one message) or "expression": for messages


TEMPLATE_LIMITS = Limits(operations=500_000, iterations=100_000, seconds=1.0, what="message")
"""One message (subject, preheader, bodies) renders in about a second, at most, and builds at
most some 32 million characters in all (temporary values included)."""
EXPRESSION_LIMITS = Limits(operations=50_000, iterations=10_000, what="expression")
"""One journey expression (or lookup path, query, body) inside the workflow."""


class Budget:
    """The work done so far by one render or evaluation, against its :class:`Limits`.

    The deadline is on the CPU clock of the thread that renders (a render runs in one thread):
    a busy machine slows a message down, but does not make it fail.
    """

    __slots__ = ("_clock_at", "_most", "deadline", "iterations", "limits", "operations")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.operations = 0
        self.iterations = 0
        self._most = limits.operations if limits.operations is not None else sys.maxsize
        self.deadline = None if limits.seconds is None else time.thread_time() + limits.seconds
        self._clock_at = 0  # the clock is read every CLOCK_EVERY operations

    def spend(self, operations: int = 1) -> None:
        self.operations += operations
        if self.operations > self._most:
            raise LimitExceeded(
                f"the {self.limits.what} ran more than {self._most:,} operations (each call, "
                "filter, comparison, item handled or 64 characters built is one; the limit per "
                f"{self.limits.what})"
            )
        if self.deadline is not None and self.operations >= self._clock_at:
            self.check_time()

    def check_time(self) -> None:
        self._clock_at = self.operations + CLOCK_EVERY
        if self.deadline is not None and time.thread_time() > self.deadline:
            raise LimitExceeded(
                f"rendering took more than {self.limits.seconds:g} s of CPU time "
                f"(the limit per {self.limits.what})"
            )

    def iterate(self) -> None:
        self.iterations += 1
        limit = self.limits.iterations
        if limit is not None and self.iterations > limit:
            raise LimitExceeded(
                f"loops ran more than {limit:,} times (the limit per {self.limits.what})"
            )
        self.spend()


OFF = Budget(Limits())
"""No budget and none of the size checks: how expressions ran before they were bounded (runs
recorded then replay this way)."""
_current: ContextVar[Budget | None] = ContextVar("touchpoint_budget", default=None)


current = _current.get
"""The budget counting now: ``None`` outside any render or evaluation, :data:`OFF` when
replaying an evaluation from before the limits."""


@contextmanager
def bounded(limits: Limits | None, *, unless_bounded: bool = False) -> Iterator[Budget]:
    """Count the work done inside the block against ``limits`` (``None``: :data:`OFF`).
    ``unless_bounded``: keep the budget already counting, if there is one."""
    running = _current.get()
    if unless_bounded and running is not None:
        yield running
        return
    budget = Budget(limits) if limits is not None else OFF
    token = _current.set(budget)
    try:
        yield budget
    finally:
        _current.reset(token)


def spend(operations: int = 1) -> None:
    budget = _current.get()
    if budget is not None and budget is not OFF:
        budget.spend(operations)


def checking() -> bool:
    """Whether size checks apply (always, except for runs replaying from before the limits)."""
    return _current.get() is not OFF


def cost(value: object) -> int:
    """Operations that handling ``value`` (copying, comparing, scanning it) is worth."""
    if isinstance(value, str):
        return len(value) // CHARACTERS_PER_OPERATION
    if isinstance(value, list | tuple | dict | set | frozenset | range):
        return len(value)
    if isinstance(value, bytes | bytearray):
        return len(value) // CHARACTERS_PER_OPERATION
    return 0


def check_text(size: int, what: str, *, so_far: bool = False) -> None:
    """``size``: what ``what`` would build; ``so_far``: what it has added up before stopping."""
    if size > MAX_TEXT:
        amount = f"more than {MAX_TEXT:,}" if so_far else f"{size:,}"
        raise LimitExceeded(
            f"{what} would build {amount} characters (at most {MAX_TEXT:,} in one value)"
        )


def check_items(size: int, what: str) -> None:
    if size > MAX_ITEMS:
        raise LimitExceeded(
            f"{what} would build {size:,} items (at most {MAX_ITEMS:,} in one list)"
        )


def check_value(value: object, what: str) -> None:
    """A value just built: not larger than a value may be."""
    if isinstance(value, str | bytes | bytearray):
        check_text(len(value), what)
    elif isinstance(value, list | tuple | dict | set | frozenset):
        check_items(len(value), what)


def text_size(value: object, limit: int = MAX_TEXT) -> int:
    """About how many characters ``str(value)`` writes, counted up to just past ``limit``.

    A list of 100,000 references to one list of 100,000 items is small to hold and huge to
    print, compare, sort or hash: everything that walks a value deeply asks this first. The walk
    itself is paid for as it goes (one operation per 32 characters counted).
    """
    if isinstance(value, str):
        return len(value)
    if isinstance(value, int | float | NoneType):
        return _scalar_size(value)
    total, stack, paid = 0, [value], 0
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, Mapping):
            total += 2 + 2 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            total += 2
            for inner in item:  # scalars here, containers later
                kind = type(inner)
                if kind is int:
                    total += 3 + inner.bit_length() * 3 // 10
                elif kind is str:
                    total += 4 + len(inner)
                else:
                    total += 2
                    stack.append(inner)
                if total > limit:
                    break
        else:
            total += _item_size(item, stack)
        if total - paid > 4096:
            spend((total - paid) // 32)
            paid = total
    spend((total - paid) // 32)
    return total


def _item_size(item: object, stack: list[object]) -> int:
    """The size of one item that is not a list or a dict; a namespace's items go on ``stack``."""
    if isinstance(item, str):
        return len(item) + 2
    if isinstance(item, bytes | bytearray):
        return 4 * len(item) + 3
    if isinstance(item, int | float | NoneType):
        return _scalar_size(item)
    inner = _namespace_items(item)
    if inner is not None:
        stack.append(inner)
        return 12
    return 24  # a date, a macro's repr …


def _scalar_size(value: int | float | None) -> int:
    if isinstance(value, int):  # its digits, without writing them (a huge one may not be)
        return value.bit_length() * 3 // 10 + 1
    return 24 if value is not None else 4


def check_text_size(value: object, what: str) -> None:
    """``value`` may be turned into text (printed, joined, formatted, compared deeply)."""
    if isinstance(value, str):
        return
    if text_size(value) > MAX_TEXT:
        raise LimitExceeded(
            f"{what}: the value is too large (as text, more than {MAX_TEXT:,} characters)"
        )


def pay_for_comparing(left: object, right: object) -> None:
    """Comparing two containers walks them both (deeply, for nested ones); a scalar against a
    container or a string scans it."""
    if isinstance(left, _CONTAINERS) and isinstance(right, _CONTAINERS):
        check_text_size(left, "comparing")
        check_text_size(right, "comparing")
        spend()
    else:
        spend(1 + cost(left) + cost(right))


def _namespace_items(value: object) -> dict[str, object] | None:
    """The attributes of a Jinja ``namespace()`` (printed as a dict)."""
    if not isinstance(value, Namespace):
        return None
    attrs = object.__getattribute__(value, "_Namespace__attrs")
    return attrs if isinstance(attrs, dict) else None
