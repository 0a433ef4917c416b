"""What a parsed expression or template does with data, found without running it.

Two questions, asked of the same Jinja syntax tree by :mod:`language.expressions` (journey
expressions) and :mod:`language.templates` (message templates):

* **which data does it read?** — :func:`data_reads` lists every use of a name from the run
  (``vars.score``, ``events.clicked``, ``profil``) with its line and whether the author made it
  optional (``| default(…)``, ``is defined``), so validation can check each one exists where it is
  read;
* **what would the sandbox refuse?** — :func:`refusals` lists what can never run: attributes
  that start with ``_`` (``profile.__class__``), methods that change data (``list.append``,
  ``dict.update``), format strings that reach for internals, and constant ``range()``,
  repetition and powers past the sandbox's limits.
"""

from __future__ import annotations

import string
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

from jinja2 import nodes
from jinja2.sandbox import MAX_RANGE, SecurityError, _mutable_spec

from workflows.jinja_sandbox import LimitedSandbox

MUTATING_METHODS: frozenset[str] = frozenset().union(*(names for _, names in _mutable_spec))
"""Methods of lists, dicts and sets that change them: the immutable sandbox refuses each."""
DICT_METHODS = frozenset(name for name in dir(dict) if not name.startswith("_"))
"""``vars.items()`` & co.: read through a mapping's method, not one of its keys."""
OPTIONAL_FILTERS = ("default", "d")
OPTIONAL_TESTS = ("defined", "undefined")
_FIX_FOR_METHOD = {
    "append": "join lists with +, e.g. list + [item]",
    "extend": "join lists with +, e.g. list + other",
    "sort": "use the | sort filter",
    "reverse": "use the | reverse filter",
    "update": "store values with a set step",
    "setdefault": "give a fallback with | default(…)",
    "pop": "read the value, e.g. x[0] or x['key']",
}


@dataclass(frozen=True)
class DataRead:
    """One read of run data: ``vars.score`` is root ``vars``, key ``score``."""

    root: str
    key: str | None  # the name read inside the root, when written out (not x[variable])
    line: int  # line inside the parsed source, 1-based
    optional: bool  # under | default or an is defined test (here or elsewhere in the source)

    @property
    def text(self) -> str:
        return f"{self.root}.{self.key}" if self.key else self.root


@dataclass(frozen=True)
class Refusal:
    """Something the sandbox refuses every time it runs."""

    message: str
    hint: str
    needle: str  # the text it is written as, to point at its column
    line: int


def data_reads(tree: nodes.Node, roots: Collection[str]) -> list[DataRead]:
    """Every read of a name in ``roots`` (names the source does not define itself)."""
    parents = _parents(tree)
    found: list[tuple[str, str | None, int, bool]] = []
    for node in tree.find_all(nodes.Name):
        if node.ctx != "load" or node.name not in roots:
            continue
        key: str | None = None
        top: nodes.Node = node
        parent = parents.get(id(node))
        if isinstance(parent, nodes.Getattr | nodes.Getitem) and parent.node is node:
            key = _constant_key(parent)
            if key in DICT_METHODS and isinstance(parents.get(id(parent)), nodes.Call):
                key = None  # vars.items(): a method of the mapping, not a key
            top = parent if key is not None else node
        found.append((node.name, key, node.lineno, _is_optional(top, parents.get(id(top)))))
    optional_texts = {root if key is None else f"{root}.{key}" for root, key, _, o in found if o}
    return [
        DataRead(
            root,
            key,
            line,
            optional or root in optional_texts or f"{root}.{key}" in optional_texts,
        )
        for root, key, line, optional in found
    ]


EVENT_FIELDS = frozenset({"event", "timestamp", "message_id"})
"""What of an event a run sees besides its properties (:meth:`workflows.models.Event.names`)."""


def event_properties(tree: nodes.Node, roots: Collection[str]) -> frozenset[str] | None:
    """The names of event properties ``tree`` reads (``event.properties.order_id``,
    ``events.answer.properties.score``), for the roots in ``roots`` it does not define itself;
    ``None`` when it may read any (``event.properties`` whole, ``event.properties[name]``, an
    event handed to a macro): then every property must reach the run."""
    parents = _parents(tree)
    found: set[str] = set()

    def key_of(node: nodes.Node) -> tuple[nodes.Node, str | None] | None:
        parent = parents.get(id(node))
        if isinstance(parent, nodes.Getattr | nodes.Getitem) and parent.node is node:
            return parent, _constant_key(parent)
        return None

    for node in tree.find_all(nodes.Name):
        if node.ctx != "load" or node.name not in roots or node.name not in ("event", "events"):
            continue
        top: nodes.Node = node
        if node.name == "events":  # events.<step> is one event
            step = key_of(node)
            if step is None or step[1] is None:
                return None
            top = step[0]
        field = key_of(top)
        if field is None or field[1] is None:
            return None
        if field[1] != "properties":
            continue  # event.event, event.timestamp …: no property
        name = key_of(field[0])
        if name is None or name[1] is None or name[1] in DICT_METHODS:
            return None
        found.add(name[1])
    return frozenset(found)


def refusals(tree: nodes.Node) -> list[Refusal]:
    """What the sandbox would refuse in ``tree``, in source order."""
    found: list[Refusal] = []
    for node in tree.find_all(nodes.Expr):
        if isinstance(node, nodes.Getattr):
            found += _attribute_refusals(node)
        elif isinstance(node, nodes.Call):
            found += _call_refusals(node)
        elif isinstance(node, nodes.Mul | nodes.Pow):
            refusal = _size_refusal(node)
            if refusal is not None:
                found.append(refusal)
    unique = {(r.line, r.needle, r.message): r for r in found}
    return list(unique.values())


# --- reads --------------------------------------------------------------------------------------


def _parents(tree: nodes.Node) -> dict[int, nodes.Node]:
    parents: dict[int, nodes.Node] = {}
    todo = [tree]
    while todo:
        node = todo.pop()
        for child in node.iter_child_nodes():
            parents[id(child)] = node
            todo.append(child)
    return parents


def _is_optional(node: nodes.Node, parent: nodes.Node | None) -> bool:
    """Is ``node`` the value of ``| default(…)`` or of an ``is defined`` test? (Only the last
    step of a chain is: ``vars.a.b | default`` still needs ``vars.a``.)"""
    if isinstance(parent, nodes.Filter):
        return parent.name in OPTIONAL_FILTERS and parent.node is node
    if isinstance(parent, nodes.Test):
        return parent.name in OPTIONAL_TESTS and parent.node is node
    return False


def _constant_key(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.Getattr):
        return node.attr
    if (
        isinstance(node, nodes.Getitem)
        and isinstance(node.arg, nodes.Const)
        and isinstance(node.arg.value, str)
    ):
        return node.arg.value
    return None


# --- refusals -----------------------------------------------------------------------------------


def _attribute_refusals(node: nodes.Getattr) -> Iterator[Refusal]:
    name = node.attr
    if name.startswith("__"):
        yield Refusal(
            f'"{name}" reaches into Python\'s internals, which templates and expressions '
            "may not do",
            "read data only: profile, event, vars and the like",
            f".{name}",
            node.lineno,
        )
    elif name.startswith("_"):
        yield Refusal(
            f'".{name}": names that start with _ are not read with a dot',
            f'the sandbox keeps them private; to read a key named "{name}", write it in '
            f"brackets: ['{name}']",
            f".{name}",
            node.lineno,
        )
    elif name in MUTATING_METHODS:
        fix = _FIX_FOR_METHOD.get(name, "templates and expressions only read data")
        yield Refusal(
            f'".{name}" would change data, which templates and expressions may not do',
            f"{fix}; to read a key named \"{name}\", write it in brackets: ['{name}']",
            f".{name}",
            node.lineno,
        )


def _call_refusals(node: nodes.Call) -> Iterator[Refusal]:
    target = node.node
    if (
        isinstance(target, nodes.Getattr)
        and target.attr in ("format", "format_map")
        and isinstance(target.node, nodes.Const)
        and isinstance(target.node.value, str)
    ):
        for field in _format_fields(target.node.value):
            if any(part.startswith("_") for part in field[1:]):
                yield Refusal(
                    f'the format field "{{{".".join(field)}}}" reaches for a name that starts '
                    "with _, which templates and expressions may not do",
                    "format only the values themselves, e.g. {0} or {name}",
                    target.attr,
                    node.lineno,
                )
    if isinstance(target, nodes.Name) and target.name == "range" and not node.kwargs:
        values = [_constant(arg) for arg in node.args]
        if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            try:
                size = len(range(*values))
            except (TypeError, ValueError):
                return
            if size > MAX_RANGE:
                yield Refusal(
                    f"range() may make at most {MAX_RANGE} numbers; this one makes {size}",
                    "loop over the data itself, or a smaller range",
                    "range",
                    node.lineno,
                )


def _format_fields(text: str) -> Iterator[list[str]]:
    """``"{0.__class__[x]}"`` → ``["0", "__class__", "x"]`` for each replacement field."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError:
        return
    for _, field, _, _ in parsed:
        if not field:
            continue
        parts = field.replace("[", ".").replace("]", "").split(".")
        yield parts


_SIZES = LimitedSandbox()


def _size_refusal(node: nodes.Mul | nodes.Pow) -> Refusal | None:
    """``'x' * 10**9`` and ``10 ** 10**8`` written with constants: refused on every run."""
    try:
        _constant(node)
    except SecurityError as error:
        symbol = "*" if isinstance(node, nodes.Mul) else "**"
        return Refusal(
            f"this {symbol} can never run: {error}",
            "the sandbox limits how large a value may grow; build smaller values",
            symbol,
            node.lineno,
        )
    return None


class _NotConstant(Exception):
    pass


def _constant(node: nodes.Node) -> Any:
    """The value of a constant expression built from literals, -, * and ** (the two operators
    the sandbox limits, evaluated under its limits); raises SecurityError past them."""
    try:
        return _fold(node)
    except _NotConstant:
        return None


def _fold(node: nodes.Node) -> Any:
    if isinstance(node, nodes.Const):
        return node.value
    if isinstance(node, nodes.Neg):
        value = _fold(node.node)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return -value
        raise _NotConstant
    if isinstance(node, nodes.List | nodes.Tuple):
        return [_fold(item) for item in node.items]
    if isinstance(node, nodes.Mul | nodes.Pow):
        operator = "*" if isinstance(node, nodes.Mul) else "**"
        left, right = _fold(node.left), _fold(node.right)
        try:
            return _SIZES.call_binop(None, operator, left, right)  # type: ignore[arg-type]
        except SecurityError:
            raise
        except Exception:
            raise _NotConstant from None
    raise _NotConstant
