"""The Jinja2 environments Touchpoint uses; one place, so validation sees what rendering sees.

Both are Jinja2's *immutable* sandbox with ``StrictUndefined``: a template author cannot call
methods that mutate data or reach Python internals, and a missing variable is an error rather
than an empty string. Filters registered in :data:`FILTERS` exist in both.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, select_autoescape
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

FILTERS: dict[str, Callable[..., Any]] = {}
"""Touchpoint's own filters (money, dates …), shared by expressions and templates."""
MAX_REPEAT = 100_000  # "x" * n and [..] * n may build at most this many characters or items
MAX_EXPONENT = 1_000


class LimitedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, plus limits on ``*`` and ``**`` so that ``'x' * 10**9`` or
    ``10 ** 10**8`` cannot eat a worker's memory or CPU."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"exponent {right} is larger than {MAX_EXPONENT}")
        if operator == "*":
            for sequence, count in ((left, right), (right, left)):
                if (
                    isinstance(sequence, str | list | tuple)
                    and isinstance(count, int)
                    and len(sequence) * count > MAX_REPEAT
                ):
                    raise SecurityError(f"repeating would build more than {MAX_REPEAT} items")
        return super().call_binop(context, operator, left, right)


def make_expression_environment() -> ImmutableSandboxedEnvironment:
    env = LimitedSandbox(undefined=StrictUndefined)
    env.filters.update(FILTERS)
    return env


def make_template_environment(templates_dir: Path) -> ImmutableSandboxedEnvironment:
    env = LimitedSandbox(
        loader=FileSystemLoader(str(templates_dir)),
        undefined=StrictUndefined,
        autoescape=select_autoescape(enabled_extensions=("html", "htm"), default=False),
        keep_trailing_newline=True,
    )
    env.filters.update(FILTERS)
    return env
