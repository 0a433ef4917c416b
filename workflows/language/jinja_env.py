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
from jinja2.sandbox import ImmutableSandboxedEnvironment

FILTERS: dict[str, Callable[..., Any]] = {}
"""Touchpoint's own filters (money, dates …), shared by expressions and templates."""


def make_expression_environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined)
    env.filters.update(FILTERS)
    return env


def make_template_environment(templates_dir: Path) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        loader=FileSystemLoader(str(templates_dir)),
        undefined=StrictUndefined,
        autoescape=select_autoescape(enabled_extensions=("html", "htm"), default=False),
        keep_trailing_newline=True,
    )
    env.filters.update(FILTERS)
    return env
