"""Jinja2 expressions in journeys: checked at validation time, evaluated by the interpreter.

Expressions are the same language as the templates. Checking one finds, with its position inside
the expression: syntax errors, unknown names (``profil`` → "did you mean profile?") and unknown
filters or tests.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from functools import cache

from jinja2 import meta, nodes
from jinja2.exceptions import TemplateSyntaxError
from jinja2.lexer import TokenStream
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

from language.analysis import data_reads, refusals
from language.problems import suggestion
from workflows.jinja_sandbox import make_expression_environment
from workflows.models import Profile

STEP_NAMES = ("profile", "event", "events", "vars", "lookups", "now")
"""Names an expression inside the steps may use."""
MATCH_NAMES = ("event", "profile", "events", "vars", "lookups", "now")
"""Names an ``if`` on wait_for / exit_when / goal may use (``event`` is the event matched)."""
EVENT_NAMES = ("event",)
"""Names a trigger condition and every ``key`` may use: only the event itself."""
AUDIENCE_NAMES = ("profile", "now")
"""Names a scheduled journey's audience may use: who the customer is, and the occurrence."""
ENTRY_NAMES = ("profile", "event", "now")
"""Names the entry condition may use (``event`` is the trigger)."""
TEMPLATE_NAMES = (
    "profile",
    "event",
    "events",
    "vars",
    "lookups",
    "journey",
    "message",
    "step",
    "now",
)
"""Names every message template sees (what :mod:`activities.rendering` gives it)."""
MARKETING_EMAIL_NAMES = ("unsubscribe_url",)
"""Names only a marketing email's template sees."""
RENDERER_NAMES = ("_locale", "_timezone")
"""Names the renderer sets for the locale-aware filters (readable, not advertised)."""
PROFILE_KEYS: tuple[str, ...] = tuple(Profile.model_fields)
EVENT_KEYS = ("event", "properties", "timestamp", "message_id")
SHAPES: dict[str, tuple[str, ...]] = {
    "profile": PROFILE_KEYS,
    "event": EVENT_KEYS,
    "journey": ("id", "version", "name"),
    "message": ("id",),
    "step": ("id",),
}
"""What each name with a fixed shape holds: ``profile.first_name`` is always missing."""
SHAPE_HINTS = {
    "profile": "a customer's own data is under profile.traits, e.g. profile.traits.first_name",
    "event": "an event's data is under event.properties, e.g. event.properties.order_id",
}


_EXPRESSION_HINT = (
    "an expression is one value or comparison, e.g. event.properties.total > 100; "
    "see Expressions in docs/journeys.md"
)
_FILTER_EXAMPLES = "default, length, lower, upper, int, round, join, money, number and date"
_TEST_EXAMPLES = "defined, none, number, string, even, odd and in"
_UNQUOTED_DATE = re.compile(r"\d{4}-\d{1,2}-\d{1,2}([T ][0-9:.+\-Z]*)?")


@cache
def expression_environment() -> ImmutableSandboxedEnvironment:
    """The one Jinja2 environment expressions compile in (sandboxed, strict about missing data)."""
    return make_expression_environment()


@dataclass(frozen=True)
class ExpressionIssue:
    message: str
    offset: int  # character inside the expression the issue is at
    hint: str | None = None


def check_expression(source: str, allowed_names: Collection[str]) -> ExpressionIssue | None:
    """The first thing wrong with ``source`` as an expression, or ``None``."""
    env = expression_environment()
    if not source.strip():
        return ExpressionIssue("the expression is empty", 0, _EXPRESSION_HINT)
    if "{{" in source or "{%" in source:
        return ExpressionIssue(
            "an expression is written without {{ }}",
            source.find("{"),
            f"write {_strip_braces(source)!r} instead",
        )
    if _UNQUOTED_DATE.fullmatch(source.strip()):
        return ExpressionIssue(
            f"{source.strip()} is read as arithmetic, not as a date",
            0,
            f"a fixed date is text in quotes inside quotes: \"'{source.strip()}'\"",
        )
    syntax = _syntax_issue(source)
    if syntax:
        return syntax
    try:
        tree = env.parse("{{ (" + source + ") }}")
        return (
            _unknown_name(tree, source, allowed_names)
            or _refused(tree, source)
            or _shape_issue(tree, source, allowed_names)
        )
    except TemplateSyntaxError as error:  # an assertion: unknown filter or test
        return _assertion_issue(error, source)


def parse_expression(source: str) -> nodes.Template:
    """The syntax tree of expression ``source`` (checked with :func:`check_expression`)."""
    return expression_environment().parse("{{ (" + source + ") }}")


def check_template_text(source: str, allowed_names: Collection[str]) -> ExpressionIssue | None:
    """Check a short templated string (a lookup path or query value) with ``{{ }}`` placeholders."""
    env = expression_environment()
    try:
        tree = env.parse(source)
    except TemplateSyntaxError as error:
        return ExpressionIssue(
            f"invalid template: {error.message}",
            0,
            "write each placeholder as {{ name }}, e.g. {{ profile.id }}",
        )
    try:
        return (
            _unknown_name(tree, source, allowed_names)
            or _refused(tree, source)
            or _shape_issue(tree, source, allowed_names)
        )
    except TemplateSyntaxError as error:  # an assertion: unknown filter or test
        return _assertion_issue(error, source)


def _shape_issue(
    tree: nodes.Template, source: str, allowed: Collection[str]
) -> ExpressionIssue | None:
    """``profile.first_name``: a key that a name of fixed shape never holds."""
    shaped = [name for name in allowed if name in SHAPES]
    for read in data_reads(tree, shaped):
        keys = SHAPES[read.root]
        if read.optional or read.key is None or read.key.startswith("_") or read.key in keys:
            continue
        near = suggestion(read.key, keys)
        match = re.search(rf"\b{re.escape(read.root)}\s*\.\s*({re.escape(read.key)})\b", source)
        holds = f"{read.root} holds {', '.join(keys)}"
        return ExpressionIssue(
            f'{read.root} has no "{read.key}"{near}',
            match.start(1) if match else 0,
            holds if near else SHAPE_HINTS.get(read.root, holds),
        )
    return None


def _refused(tree: nodes.Template, source: str) -> ExpressionIssue | None:
    """The first construct the sandbox would refuse on every run."""
    for refusal in refusals(tree):
        at = source.find(refusal.needle)
        offset = at + 1 if at >= 0 and refusal.needle.startswith(".") else max(at, 0)
        return ExpressionIssue(refusal.message, offset, refusal.hint)
    return None


def _syntax_issue(source: str) -> ExpressionIssue | None:
    """Parse ``source`` as one expression and locate the token the parser stopped at."""
    env = expression_environment()
    offsets: list[int] = []

    def raw_tokens() -> Iterator[tuple[int, str, str]]:
        offset = 0
        for token in env.lexer.tokeniter(source, None, None, "variable"):
            offsets.append(offset)
            offset += len(token[2])
            yield token

    def current_offset() -> int:
        return offsets[-1] if offsets else 0

    try:
        parser = Parser(env, source, state="variable")
        parser.stream = TokenStream(env.lexer.wrap(raw_tokens()), None, None)
        parser.parse_expression()
        if not parser.stream.eos:
            return ExpressionIssue(
                f"unexpected {_describe(parser.stream.current.value)} after the expression",
                current_offset(),
                "an expression is a single value or comparison; join conditions with and / or",
            )
    except TemplateSyntaxError as error:
        message = error.message or "invalid expression"
        offset = len(source.rstrip()) if "end of" in message else current_offset()
        return ExpressionIssue(
            f"invalid expression: {_marketer_words(message)}", offset, _EXPRESSION_HINT
        )
    return None


def _unknown_name(
    tree: nodes.Template, source: str, allowed: Collection[str]
) -> ExpressionIssue | None:
    """Names used but not allowed here; unknown filters and tests raise TemplateAssertionError."""
    for name in sorted(meta.find_undeclared_variables(tree)):
        if name in allowed:
            continue
        match = re.search(rf"\b{re.escape(name)}\b", source)
        names = ", ".join(allowed)
        return ExpressionIssue(
            f'unknown name "{name}"{suggestion(name, allowed)}',
            match.start() if match else 0,
            f"available here: {names}",
        )
    return None


def _assertion_issue(error: TemplateSyntaxError, source: str) -> ExpressionIssue:
    env = expression_environment()
    found = re.search(r"No (filter|test) named '([^']+)'", error.message or "")
    if not found:
        return ExpressionIssue(f"invalid expression: {error.message}", 0, _EXPRESSION_HINT)
    kind, name = found.groups()
    known = env.filters if kind == "filter" else env.tests
    match = re.search(rf"\b{re.escape(name)}\b", source)
    examples = _FILTER_EXAMPLES if kind == "filter" else _TEST_EXAMPLES
    return ExpressionIssue(
        f'unknown {kind} "{name}"{suggestion(name, known)}',
        match.start() if match else 0,
        f"{kind}s include {examples}",
    )


def _describe(value: str) -> str:
    return f"'{value}'" if value else "end of expression"


def _marketer_words(message: str) -> str:
    message = message.rstrip(".")
    for jinja_words in ("end of template", "end of print statement"):
        message = message.replace(jinja_words, "end of expression")
    return message.replace("unexpected 'end of expression'", "the expression ends too early")


def _strip_braces(source: str) -> str:
    return re.sub(r"\{\{\s*|\s*\}\}", "", source).strip()
