"""The Jinja2 environment message templates render in: the expression sandbox
(:mod:`workflows.jinja_sandbox`) plus the loader for the project's ``templates/`` folder and
HTML autoescaping. Validation and rendering both build it here, so they see the same thing.

Chat messages are escaped the same way for their platform: the renderer passes the platform's
escape function as the name :data:`ESCAPE_NAME`, and every value a ``{{ … }}`` prints goes
through it (:func:`escape_inserted`) — the template's own text never does, so formatting the
marketer wrote still works. A value marked safe (``| safe``, ``| tojson``) is printed as is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, Undefined, pass_context, select_autoescape
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from workflows.jinja_rewrite import finalize as bounded_finalize
from workflows.jinja_sandbox import FILTERS, LimitedSandbox

ESCAPE_NAME = "_escape"
"""The render name holding the platform's escape function (absent: values print as they are)."""


@pass_context
def escape_inserted(context: Context, value: Any) -> Any:
    """What a ``{{ … }}`` prints: ``value``, escaped when the render names an escape."""
    value = bounded_finalize(value)  # the size budget of every printed value, first
    escape = context.get(ESCAPE_NAME)
    if escape is None or hasattr(value, "__html__"):
        return value
    return escape(value)


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
        finalize=escape_inserted,
    )
    env.filters.update(FILTERS)
    return env
