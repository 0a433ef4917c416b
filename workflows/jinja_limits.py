"""What filters, tests and calls may build, checked before they build: the sandbox's hooks that
keep a template or an expression within its :mod:`workflows.limits`.

- every filter and test is wrapped (:class:`BoundedFunctions`): it pays for its work, builders
  check their arguments before building (``center(10**9)``, ``indent``, ``wordwrap``,
  ``replace``, ``join``, ``batch``, ``slice``, ``format`` …), filters that print, compare or
  hash a value check how large it is, and the generators filters return count their items;
- string methods and other builtins called from a template (``"x".ljust(10**9)``,
  ``(1).to_bytes(10**9)``, ``"{:>999999999}".format(1)``, ``"%*d" % (10**9, 1)``) are checked
  the same way (:func:`check_call`, :class:`BoundedFormatter`, :func:`check_percent`).

What the sandbox does not see at all (loops, ``~``, comparisons, printing) goes through
:mod:`workflows.jinja_rewrite`.
"""

from __future__ import annotations

import functools
import re
import types
from collections.abc import Callable, Iterator, Mapping
from itertools import chain
from typing import Any

from jinja2.filters import make_attrgetter
from jinja2.sandbox import SandboxedEscapeFormatter, SandboxedFormatter
from jinja2.utils import _PassArg, generate_lorem_ipsum

from workflows.limits import (
    MAX_ITEMS,
    MAX_TEXT,
    OFF,
    LimitExceeded,
    check_items,
    check_text,
    check_text_size,
    check_value,
    checking,
    cost,
    current,
    pay_for_comparing,
    spend,
    text_size,
)

MAX_WRAPPED_TEXT = 100_000
"""Characters ``wordwrap`` takes (Python's textwrap: about 1.5 µs a character, uncounted)."""
_CONTAINERS = (list, tuple, dict, set, frozenset)
_TEXT = (str, bytes, bytearray)

# --- what filters yield ------------------------------------------------------------------------


class CountedItems:
    """The items a filter's generator yields (``map``, ``select``, ``batch``, ``slice`` …): each
    is paid for, and there are at most :data:`MAX_ITEMS`."""

    __slots__ = ("_count", "_items", "_what")

    def __init__(self, items: Iterator[Any], what: str) -> None:
        self._items, self._what, self._count = items, what, 0

    def __iter__(self) -> CountedItems:
        return self

    def __next__(self) -> Any:
        item = next(self._items)
        self._count += 1
        if self._count > MAX_ITEMS:
            check_items(self._count, self._what)
        spend()
        return item


# --- filters and tests -----------------------------------------------------------------------


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _check_center(passed: Any, value: Any, width: Any = 80) -> None:
    if (w := _int(width)) is not None:
        check_text(max(text_size(value), w), "center")


def _check_indent(
    passed: Any, s: Any, width: Any = 4, first: bool = False, blank: bool = False
) -> None:
    pad = len(width) if isinstance(width, str) else _int(width)
    if pad is not None and isinstance(s, str):
        check_text(len(s) + (s.count("\n") + 1) * max(pad, 0), "indent")


def _check_wordwrap(
    env: Any,
    s: Any,
    width: Any = 79,
    break_long_words: bool = True,
    wrapstring: Any = None,
    break_on_hyphens: bool = True,
) -> None:
    w = _int(width)
    if not isinstance(s, str) or w is None or w < 1:
        return
    if len(s) > MAX_WRAPPED_TEXT:
        raise LimitExceeded(
            f"wordwrap was given {len(s):,} characters (at most {MAX_WRAPPED_TEXT:,})"
        )
    glue = wrapstring if isinstance(wrapstring, str) else getattr(env, "newline_sequence", "\n")
    lines = 2 * len(s) // w + s.count("\n") + 2  # two lines together hold more than ``w``
    check_text(len(s) + lines * len(glue), "wordwrap")


def _check_replace(eval_ctx: Any, s: Any, old: Any, new: Any, count: Any = None) -> None:
    if isinstance(s, str):
        check_replace(s, str(old), str(new), _int(count), "replace")


def check_replace(s: Any, old: Any, new: Any, count: int | None, what: str) -> None:
    try:
        found = s.count(old) if len(old) else len(s) + 1
    except TypeError:
        return  # the call itself will say what is wrong
    if count is not None and count >= 0:
        found = min(found, count)
    check_text(len(s) + found * max(len(new) - len(old), 0), what)


def _check_format(passed: Any, value: Any, *args: Any, **kwargs: Any) -> None:
    if isinstance(value, str):
        check_percent(value, kwargs or args, "format")


def _check_urlize(
    eval_ctx: Any,
    value: Any,
    trim_url_limit: Any = None,
    nofollow: bool = False,
    target: Any = None,
    rel: Any = None,
    extra_schemes: Any = None,
) -> None:
    if isinstance(value, str):
        extra = 6 * (len(str(target or "")) + len(str(rel or "")))
        check_text(len(value) + (len(value.split()) + 1) * extra, "urlize")


def _check_tojson(eval_ctx: Any, value: Any, indent: Any = None) -> None:
    width = _int(indent)
    if width is None or width <= 0:
        return
    total, stack = 0, [(value, 1)]
    while stack and total <= MAX_TEXT:
        item, depth = stack.pop()
        total += width * depth + text_size(item if not isinstance(item, _CONTAINERS) else ())
        if isinstance(item, Mapping):
            stack.extend((v, depth + 1) for v in chain(item.keys(), item.values()))
        elif isinstance(item, list | tuple):
            stack.extend((v, depth + 1) for v in item)
    spend(total // 32)
    check_text(total, "tojson", so_far=True)


def _check_batch(passed: Any, value: Any, linecount: Any, fill_with: Any = None) -> None:
    if (count := _int(linecount)) is not None:
        check_items(count, "batch")


def _check_slice(passed: Any, value: Any, slices: Any, fill_with: Any = None) -> None:
    if (count := _int(slices)) is not None:
        check_items(count, "slice")


def _join(
    eval_ctx: Any, value: Any, d: Any = "", attribute: Any = None
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``join``: read the items (a generator only once), adding up their text as they come."""
    getter = make_attrgetter(eval_ctx.environment, attribute) if attribute is not None else None
    glue = len(str(d))
    items: list[Any] = []
    total = 0
    for item in value:
        if getter is not None:
            item = getter(item)
        total += text_size(item) + (glue if items else 0)
        check_text(total, "join", so_far=True)
        items.append(item)
    return (items, d), {}


_FILTER_CHECKS: dict[str, Callable[..., Any]] = {
    "center": _check_center,
    "indent": _check_indent,
    "wordwrap": _check_wordwrap,
    "replace": _check_replace,
    "format": _check_format,
    "urlize": _check_urlize,
    "tojson": _check_tojson,
    "batch": _check_batch,
    "slice": _check_slice,
    "join": _join,
}
"""Checks run before a builder filter builds: what Jinja passes it first (the context, the eval
context or the environment; else ``None``), then the filter's own arguments. A check that
returns ``(args, kwargs)`` changes what the filter is called with."""

_DEEP_FILTERS = frozenset(
    {
        *("capitalize", "center", "dictsort", "e", "escape", "forceescape", "format"),
        *("groupby", "indent", "lower", "max", "min", "pprint", "replace", "safe", "sort"),
        *("string", "striptags", "title", "tojson", "trim", "truncate", "unique", "upper"),
        *("urlencode", "urlize", "wordcount", "wordwrap", "xmlattr"),
    }
)
"""Filters that print their value, or compare or hash its items: sized before they run."""


def _sum(environment: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
    """``sum`` of numbers as Jinja does it; of lists or tuples in one pass (Python's ``sum``
    copies the total for each item: 100,000 one-item lists take minutes)."""
    items = list(iterable)
    if attribute is not None:
        items = list(map(make_attrgetter(environment, attribute), items))
    if not isinstance(start, list | tuple):
        spend(len(items))
        return sum(items, start)
    kind = type(start)
    for item in items:
        if not isinstance(item, kind):
            raise TypeError(
                f'can only concatenate {kind.__name__} (not "{type(item).__name__}") '
                f"to {kind.__name__}"
            )
    check_items(len(start) + sum(len(item) for item in items), "sum")
    return kind(chain(start, *items))


_FILTER_REPLACEMENTS: dict[str, Callable[..., Any]] = {"sum": _sum}
_FILTER_PRICES = {"money": 40, "number": 40, "date": 40, "datetime": 40}
"""Operations a call of a slow filter is worth (Babel formats a price in about 50 µs)."""
_SLOW_TEXT_FILTERS = frozenset(
    ("pprint", "striptags", "title", "urlencode", "urlize", "wordcount", "wordwrap", "xmlattr")
)
"""Filters written in Python that take about a microsecond a character (``urlize`` of 500 KB:
a second): one operation per character of their value."""
_COMPARE_TESTS = frozenset(
    {
        *("eq", "equalto", "==", "ne", "!=", "lt", "<", "le", "<=", "gt", ">", "ge", ">="),
        *("greaterthan", "lessthan", "in"),
    }
)


def bounded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` (the filter called ``name``), paying for its work and checking what it builds."""
    skip = 1 if _PassArg.from_obj(func) is not None else 0
    precheck = _FILTER_CHECKS.get(name)
    deep = name in _DEEP_FILTERS
    price = _FILTER_PRICES.get(name, 1)
    slow = name in _SLOW_TEXT_FILTERS
    run = _FILTER_REPLACEMENTS.get(name, func)
    what = f"the filter {name}"

    @functools.wraps(func)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        budget = current()
        if budget is OFF:
            return func(*args, **kwargs)
        value = args[skip] if len(args) > skip else None
        if budget is not None:
            budget.spend(price + cost(value))
        if deep and not isinstance(value, str):
            check_text_size(value, what)
        if slow and budget is not None:
            budget.spend(text_size(value))
        if precheck is not None:
            changed = precheck(args[0] if skip else None, *args[skip:], **kwargs)
            if changed is not None:
                args, kwargs = (*args[:skip], *changed[0]), changed[1]
        return checked_result(run(*args, **kwargs), what)

    return bounded


def bounded_test(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    compares = name in _COMPARE_TESTS

    @functools.wraps(func)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        if checking():
            if compares and len(args) >= 2:
                pay_for_comparing(args[0], args[1])
            else:
                spend()
        return func(*args, **kwargs)

    return bounded


def checked_result(result: Any, what: str) -> Any:
    """What a filter or call returned: not too large; a generator counts its items."""
    if isinstance(result, (*_TEXT, *_CONTAINERS)):
        check_value(result, what)
        spend(cost(result))
    elif isinstance(result, Iterator):
        return CountedItems(result, what)
    return result


class BoundedFunctions(dict[str, Any]):
    """An environment's ``filters`` or ``tests``: what Jinja looks up is the bounded version,
    whenever the function was registered."""

    def __init__(self, functions: Mapping[str, Any], wrap: Callable[[str, Any], Any]) -> None:
        super().__init__(functions)
        self._wrap = wrap
        self._wrapped: dict[str, tuple[Any, Any]] = {}  # name → (function, bounded version)

    def __getitem__(self, name: str) -> Any:
        return self._bounded(name, super().__getitem__(name))

    def get(self, name: str, default: Any = None) -> Any:
        func = super().get(name)
        return default if func is None else self._bounded(name, func)

    def _bounded(self, name: str, func: Any) -> Any:
        known = self._wrapped.get(name)
        if known is not None and known[0] is func:
            return known[1]
        wrapped = func if name.startswith("~") else self._wrap(name, func)
        self._wrapped[name] = (func, wrapped)
        return wrapped


# --- calls: string methods and other builtins ------------------------------------------------

_PADDING = frozenset(("center", "ljust", "rjust"))


def check_call(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Refuse a call that would build too much, before it runs; returns the arguments to call
    with (a generator given to ``join`` is read once, here)."""
    if obj is generate_lorem_ipsum:
        _check_lipsum(*args, **kwargs)
        return args
    owner = getattr(obj, "__self__", None)
    if owner is None or not isinstance(obj, types.BuiltinMethodType | types.MethodType):
        return args
    name = obj.__name__
    what = f"{name}()"
    if isinstance(owner, _TEXT):
        return _check_text_method(owner, name, what, args, kwargs)
    if isinstance(owner, int) and name == "to_bytes":
        length = _int(args[0] if args else kwargs.get("length", 1))
        if length is not None:
            check_text(length, what)
    elif isinstance(owner, list | tuple) and name in ("count", "index"):
        check_text_size(owner, what)
        if args:
            check_text_size(args[0], what)
    return args


def _check_text_method(
    s: Any, name: str, what: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, ...]:
    if name in _PADDING or name == "zfill":
        width = _int(args[0] if args else kwargs.get("width"))
        if width is not None:
            check_text(max(len(s), width), what)
    elif name == "expandtabs":
        size = _int(args[0] if args else kwargs.get("tabsize", 8))
        if size is not None:
            tab = "\t" if isinstance(s, str) else b"\t"
            check_text(len(s) + s.count(tab) * max(size, 0), what)
    elif name == "replace" and len(args) >= 2:
        count = _int(args[2] if len(args) > 2 else kwargs.get("count", -1))
        check_replace(s, args[0], args[1], count, what)
    elif name == "join" and args:
        items: list[Any] = []
        total = 0
        for item in args[0]:
            total += (len(item) if isinstance(item, _TEXT) else 0) + (len(s) if items else 0)
            check_text(total, what, so_far=True)
            items.append(item)
        return (items, *args[1:])
    elif name == "translate" and args and isinstance(args[0], Mapping):
        longest = max((len(v) for v in args[0].values() if isinstance(v, _TEXT)), default=1)
        check_text(len(s) * longest, what)
    return args


def _check_lipsum(n: Any = 5, html: Any = True, min: Any = 20, max: Any = 100) -> None:
    paragraphs, words = _int(n), _int(max)
    if paragraphs is not None and words is not None:
        check_text(paragraphs * words * 12, "lipsum")


def _digits(number: str) -> int:
    """A width or precision written in a format: past any limit when it has many digits."""
    return int(number) if len(number) <= 9 else MAX_TEXT + 1


def callable_name(obj: Any) -> str:
    name = getattr(obj, "__name__", None) or getattr(obj, "name", None) or type(obj).__name__
    return f"{name}()"


# --- str.format and the % operator -----------------------------------------------------------

_FORMAT_SPEC = re.compile(r"(?:.?[<>=^])?[-+ ]?z?#?0?(\d*)[,_]?(?:\.(\d+))?\w?%?", re.ASCII)


class _BoundedFormatting:
    """``str.format``: each field's width and precision, and the text written so far."""

    _written = 0

    def format_field(self, value: Any, format_spec: str) -> Any:
        spend()
        if checking():
            match = _FORMAT_SPEC.fullmatch(format_spec)
            for number in match.groups() if match is not None else ():
                if number:  # a width or a precision
                    check_text(_digits(number), "format()")
            check_text_size(value, "format()")
        text = super().format_field(value, format_spec)  # type: ignore[misc]
        if checking():
            self._written += len(text)
            check_text(self._written, "format()", so_far=True)
        return text

    def vformat(self, format_string: str, args: Any, kwargs: Any) -> str:
        self._written = 0
        return super().vformat(format_string, args, kwargs)  # type: ignore[misc]


class BoundedFormatter(_BoundedFormatting, SandboxedFormatter):
    pass


class BoundedEscapeFormatter(_BoundedFormatting, SandboxedEscapeFormatter):
    pass


_PERCENT = re.compile(
    r"%(?:\((?P<key>[^)]*)\))?[#0\- +]*(?P<width>\*|\d+)?(?:\.(?P<precision>\*|\d+))?[hlL]?"
    r"(?P<kind>.)",
    re.DOTALL,
)


def check_percent(template: Any, values: Any, what: str) -> None:
    """Refuse ``template % values`` if it would be longer than :data:`MAX_TEXT`: its widths and
    precisions (``%*d`` takes its width from the values) and what each field prints, added up
    field by field."""
    positional = values if isinstance(values, tuple) else (values,)
    mapping = values if isinstance(values, Mapping) else None
    taken = 0

    def take() -> Any:
        nonlocal taken
        taken += 1
        return positional[taken - 1] if taken <= len(positional) else None

    total = len(template)
    if isinstance(template, bytes | bytearray):
        template = template.decode("latin-1")
    spend(template.count("%"))
    for field in _PERCENT.finditer(template):
        kind = field["kind"]
        if kind == "%":
            continue
        width = take() if field["width"] == "*" else _digits(field["width"] or "0")
        precision = take() if field["precision"] == "*" else field["precision"]
        if mapping is not None and field["key"] is not None:
            value = mapping.get(field["key"])
        else:
            value = take()
        precision = _int(_digits(precision) if isinstance(precision, str) else precision)
        if kind in "sra":
            size = text_size(value)
            if precision is not None:
                size = min(size, precision)
        else:
            size = (precision or 0) + 330  # a float's digits (1e308) and its sign
        piece = max(abs(_int(width) or 0), size)
        total += piece
        if total > MAX_TEXT:
            check_text(total, what, so_far=piece <= MAX_TEXT)
