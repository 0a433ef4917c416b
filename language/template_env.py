"""The Jinja2 environment message templates render in: the expression sandbox
(:mod:`workflows.jinja_sandbox`) plus the loader for the project's ``templates/`` folder and
HTML autoescaping. Validation and rendering both build it here, so they see the same thing."""

from __future__ import annotations

from pathlib import Path

from jinja2 import FileSystemLoader, StrictUndefined, Undefined, select_autoescape
from jinja2.sandbox import ImmutableSandboxedEnvironment

from workflows.jinja_sandbox import FILTERS, LimitedSandbox


def make_template_environment(
    templates_dir: Path, undefined: type[Undefined] = StrictUndefined
) -> ImmutableSandboxedEnvironment:
    """``undefined``: what a missing value is — an error when rendering for real; validation's
    sample render (:mod:`language.samples`) passes a stand-in for data it cannot know."""
    env = LimitedSandbox(
        loader=FileSystemLoader(str(templates_dir)),
        undefined=undefined,
        autoescape=select_autoescape(enabled_extensions=("html", "htm"), default=False),
        keep_trailing_newline=True,
    )
    env.filters.update(FILTERS)
    return env
