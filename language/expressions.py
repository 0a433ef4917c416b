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

from language.problems import suggestion
from workflows.jinja_sandbox import make_expression_environment

STEP_NAMES = ("profile", "event", "events", "vars", "lookups", "now")
"""Names an expression inside the steps may use."""
MATCH_NAMES = ("event", "profile", "events", "vars", "lookups", "now")
"""Names an ``if`` on wait_for / exit_when / goal may use (``event`` is the event matched)."""
EVENT_NAMES = ("event",)
"""Names a trigger condition and every ``key`` may use: only the event itself."""
ENTRY_NAMES = ("profile", "event", "now")
"""Names the entry condition may use (``event`` is the trigger)."""


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
        return ExpressionIssue("the expression is empty", 0)
    if "{{" in source or "{%" in source:
        return ExpressionIssue(
            "an expression is written without {{ }}",
            source.find("{"),
            f"write {_strip_braces(source)!r} instead",
        )
    syntax = _syntax_issue(source)
    if syntax:
        return syntax
    try:
        tree = env.parse("{{ (" + source + ") }}")
        return _unknown_name(tree, source, allowed_names)
    except TemplateSyntaxError as error:  # an assertion: unknown filter or test
        return _assertion_issue(error, source)


def check_template_text(source: str, allowed_names: Collection[str]) -> ExpressionIssue | None:
    """Check a short templated string (a lookup path or query value) with ``{{ }}`` placeholders."""
    env = expression_environment()
    try:
        tree = env.parse(source)
    except TemplateSyntaxError as error:
        return ExpressionIssue(f"invalid template: {error.message}", 0)
    try:
        return _unknown_name(tree, source, allowed_names)
    except TemplateSyntaxError as error:  # an assertion: unknown filter or test
        return _assertion_issue(error, source)


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
        return ExpressionIssue(f"invalid expression: {_marketer_words(message)}", offset)
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
        return ExpressionIssue(f"invalid expression: {error.message}", 0)
    kind, name = found.groups()
    known = env.filters if kind == "filter" else env.tests
    match = re.search(rf"\b{re.escape(name)}\b", source)
    return ExpressionIssue(
        f'unknown {kind} "{name}"{suggestion(name, known)}', match.start() if match else 0
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
