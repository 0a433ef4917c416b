"""The sample data validation renders structured templates with, and the check itself.

A webhook template (``.json``) must render to JSON for every customer, so ``validate`` renders
each one with the sample below and parses the result. Data whose shape no sample can know — a
trait, an event property, a ``vars``, ``lookups`` or ``events`` value — reads as ``0``, which is
valid JSON both bare and inside quotes, and as a list of two such values when looped over (so a
comma between items shows). A template that cannot render with the sample (a filter that wants a
real date, say) is not judged here: :func:`check_json_template` then says nothing. The sample is
documented in ``docs/journeys.md`` ("What validate checks").
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import ChainableUndefined, Undefined, nodes, pass_context
from jinja2.runtime import Context

from language.problems import Problem
from language.template_env import make_template_environment

if TYPE_CHECKING:
    from language.templates import TemplateFile

SAMPLE_PROFILE: dict[str, Any] = {
    "id": "sample-customer",
    "email": "sample@example.com",
    "phone": "+15555550123",
    "locale": "en",
    "timezone": "UTC",
    "traits": {},
}
SAMPLE_EVENT: dict[str, Any] = {
    "event": "Sample Event",
    "properties": {},
    "timestamp": "2027-01-04T09:00:00+00:00",
    "message_id": "sample-event",
}
SAMPLE_NOW = "2027-01-04T09:00:00+00:00"
MAX_SAMPLE_OUTPUT = 512 * 1024
MAX_SAMPLE_LOOP = 10  # a loop runs this often at most: enough to show its separators
MAX_SAMPLE_ITEMS = 10_000  # loop turns in all, nested loops included: then it is not judged
_MARK = "_touchpoint_sample_mark"
_CAP = "_touchpoint_sample_cap"


class SampleValue(ChainableUndefined):
    """A value the sample cannot know: ``0`` as text and JSON, two of itself when iterated,
    every attribute and item another sample; ``| default(…)`` still picks its fallback."""

    __slots__ = ()

    def __str__(self) -> str:
        return "0"

    def __iter__(self) -> Iterator[Any]:
        return iter((SampleValue(), SampleValue()))

    def __len__(self) -> int:
        return 2

    def __bool__(self) -> bool:
        return True

    def __int__(self) -> int:  # type: ignore[override]
        return 0

    def __float__(self) -> float:  # type: ignore[override]
        return 0.0

    def _compare(self, other: object) -> bool:
        return False

    __lt__ = __le__ = __gt__ = __ge__ = _compare  # type: ignore[assignment]

    def _same(self, *args: object) -> SampleValue:
        return self

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _same  # type: ignore[assignment]
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = _same  # type: ignore[assignment]
    __mod__ = __rmod__ = __pos__ = __neg__ = __call__ = _same  # type: ignore[assignment]

    def _fail_with_undefined_error(self, *args: Any, **kwargs: Any) -> Any:
        return self


def sample_names(locale: str, timezone: str = "UTC") -> dict[str, Any]:
    """What a template sees in the sample render."""
    return {
        "profile": {**SAMPLE_PROFILE, "locale": locale, "traits": {}},
        "event": {**SAMPLE_EVENT, "properties": {}},
        "events": {},
        "vars": {},
        "lookups": {},
        "journey": {"id": "sample-journey", "version": "sample", "name": "Sample Journey"},
        "message": {"id": "sample-message"},
        "step": {"id": "sample-step"},
        "now": SAMPLE_NOW,
        "_locale": locale,
        "_timezone": timezone,
    }


@dataclass(frozen=True)
class _Piece:
    """One piece of a template's output: literal text or the value of ``{{ … }}``."""

    line: int  # in the parsed source
    data: str | None  # the literal text; None for a value
    in_loop: bool
    written: str  # a value's expression as written, when it is a plain name chain


def check_json_template(root: Path, file: TemplateFile) -> Problem | None:
    """A problem when ``file`` renders with the sample data but not to JSON. It renders twice:
    once with every optional value missing (``| default`` gives its fallback), once with each
    present (so loops over ``… | default([])`` run)."""
    for present in (False, True):
        problem = _check_rendering(root, file, present)
        if problem is not None:
            return problem
    return None


def _check_rendering(root: Path, file: TemplateFile, present: bool) -> Problem | None:
    env = make_template_environment(root, undefined=SampleValue)
    env.policies["json.dumps_kwargs"] = {"sort_keys": True, "default": _json_default}
    turns = [0]

    def cap(value: Any) -> Iterator[Any]:
        for index, item in enumerate(value):
            if index >= MAX_SAMPLE_LOOP:
                return
            turns[0] += 1
            if turns[0] > MAX_SAMPLE_ITEMS:
                raise _TooLong
            yield item

    env.filters[_CAP] = cap
    if present:
        fallback: Any = env.filters["default"]

        def default(value: Any, *args: Any, **kwargs: Any) -> Any:
            return value if isinstance(value, SampleValue) else fallback(value, *args, **kwargs)

        def defined(value: Any) -> bool:
            return not isinstance(value, Undefined) or isinstance(value, SampleValue)

        env.filters["default"] = env.filters["d"] = default
        env.tests["defined"] = defined
        env.tests["undefined"] = lambda value: not defined(value)
    recorded: list[tuple[int, str]] = []

    @pass_context
    def mark(context: Context, value: Any, index: int) -> Any:
        recorded.append((index, str(value)))
        return value

    env.filters[_MARK] = mark
    try:
        tree = env.parse(file.body)
        pieces = _instrument(tree)
        tree.set_environment(env)
        template = env.from_string(tree)
        output = _render(template.generate(sample_names(file.locale)))
    except Exception:  # the sample cannot stand in for the real data here: not judged
        return None
    if output is None:
        return None
    try:
        json.loads(output)
    except RecursionError:  # nested too deeply to read: rendering says so, at run time too
        return None
    except ValueError as error:
        return _json_problem(error, output, recorded, pieces, file)
    return None


def _render(chunks: Iterator[str]) -> str | None:
    parts, size = [], 0
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_SAMPLE_OUTPUT:
            return None
        parts.append(chunk)
    return "".join(parts)


class _TooLong(Exception):
    """The sample render ran too many loop turns: the template is not judged by it."""


def _json_default(value: Any) -> Any:
    if isinstance(value, Undefined):
        return 0
    raise TypeError(f"{type(value).__name__} is not JSON")


def _instrument(tree: nodes.Template) -> list[_Piece]:
    """Wrap each piece of output in a filter that records it, so that a position in the
    output can be traced back to the line that wrote it; and each loop in one that stops it
    after a few turns."""
    pieces: list[_Piece] = []

    def visit(node: nodes.Node, in_loop: bool) -> None:
        if isinstance(node, nodes.Output):
            wrapped: list[nodes.Expr] = []
            for child in node.nodes:
                data = child.data if isinstance(child, nodes.TemplateData) else None
                pieces.append(_Piece(child.lineno, data, in_loop, _written(child)))
                index = nodes.Const(len(pieces) - 1, lineno=child.lineno)
                wrapped.append(
                    nodes.Filter(child, _MARK, [index], [], None, None, lineno=child.lineno)
                )
            node.nodes = wrapped
            return
        if isinstance(node, nodes.For):  # at most a few turns of each loop
            node.iter = nodes.Filter(node.iter, _CAP, [], [], None, None, lineno=node.lineno)
        for inner in node.iter_child_nodes():
            visit(inner, in_loop or isinstance(node, nodes.For))

    visit(tree, False)
    return pieces


def _written(node: nodes.Node) -> str:
    """``profile.id`` for a plain chain of names, else ``""``."""
    parts: list[str] = []
    while isinstance(node, nodes.Getattr | nodes.Filter):
        if isinstance(node, nodes.Filter):
            return ""
        parts.append(node.attr)
        node = node.node
    if not isinstance(node, nodes.Name):
        return ""
    return ".".join([node.name, *reversed(parts)])


def trailing_comma(output: str, position: int) -> bool:
    """Did JSON parsing of ``output`` stop at a ``}`` or ``]`` right after a comma?"""
    return output[:position].rstrip().endswith(",") and output[position : position + 1] in (
        "}",
        "]",
    )


def json_hint(output: str, error: ValueError) -> str:
    """The fix for rendered text that is not JSON, as far as the text alone tells."""
    if trailing_comma(output, getattr(error, "pos", 0)):
        return "remove the comma after the last item"
    return "write values with | tojson"


def _json_problem(
    error: ValueError,
    output: str,
    recorded: list[tuple[int, str]],
    pieces: list[_Piece],
    file: TemplateFile,
) -> Problem:
    reason = getattr(error, "msg", str(error))
    position = getattr(error, "pos", 0)
    spans: list[tuple[int, int, _Piece, str]] = []
    start = 0
    for index, text in recorded:
        spans.append((start, start + len(text), pieces[index], text))
        start += len(text)
    traced = start == len(output) and "".join(t for _, t in recorded) == output

    before = output[:position].rstrip()
    trailing = trailing_comma(output, position)
    target = len(before) - 1 if trailing else position
    if not traced:
        line = file.body_line + output[:target].count("\n")
        return Problem(
            file.display, line, 1, "", f"not valid JSON with the sample data: {reason}", _HINT
        )
    if not trailing:
        for begin, end, piece, text in spans:
            if piece.data is None and (begin <= target < end or begin == end == target):
                return _value_problem(piece, text, file)
    for begin, end, piece, text in spans:
        if begin <= target < end or (begin == target == end and piece.data is not None):
            offset = target - begin
            line = file.body_line + piece.line - 1 + text[:offset].count("\n")
            column = _column(file, line, text, offset)
            if trailing:
                closer = output[position]
                hint = "remove the comma after the last item"
                if piece.in_loop:
                    hint += "; in a loop, write the comma as {% if not loop.last %},{% endif %}"
                return Problem(
                    file.display,
                    line,
                    column,
                    "",
                    f'not valid JSON with the sample data: a comma before "{closer}"',
                    hint,
                )
            return Problem(
                file.display,
                line,
                column,
                "",
                f"not valid JSON with the sample data: {reason}",
                _HINT,
            )
    line = file.body_line + output[:target].count("\n")
    return Problem(
        file.display, line, 1, "", f"not valid JSON with the sample data: {reason}", _HINT
    )


_HINT = "JSON needs double quotes around keys and text, and a comma between items"


def _value_problem(piece: _Piece, text: str, file: TemplateFile) -> Problem:
    line = file.body_line + piece.line - 1
    written = piece.written or "value"
    shown = text if len(text) <= 40 else text[:37] + "…"
    lines = _file_lines(file)
    source = lines[line - 1] if 0 < line <= len(lines) else ""
    at = source.find("{{")
    return Problem(
        file.display,
        line,
        at + 1 if at >= 0 else 1,
        "",
        f"not valid JSON with the sample data: a value is inserted as {shown!r}, not as JSON",
        f"write values with | tojson, e.g. {{{{ {written} | tojson }}}}",
    )


def _column(file: TemplateFile, line: int, text: str, offset: int) -> int:
    newline = text.rfind("\n", 0, offset)
    if newline >= 0:
        return offset - newline
    lines = _file_lines(file)
    source = lines[line - 1] if 0 < line <= len(lines) else ""
    head = text.split("\n", 1)[0]
    at = source.find(head) if head else -1
    return at + offset + 1 if at >= 0 else 1


def _file_lines(file: TemplateFile) -> list[str]:
    try:
        return file.path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
