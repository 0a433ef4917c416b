"""Evaluate journey expressions and templated strings over a run's recorded state.

Pure and deterministic: the same source and names give the same value. The interpreter
workflow imports this module through the sandbox (``imports_passed_through``), so compiled
expressions are cached once per worker process, not once per run.

Expressions are Jinja2's, in the loader-less sandbox of :mod:`workflows.jinja_sandbox`. Jinja2
is imported on the first evaluation, not with this module: importing the workflow loads no
template machinery (the ``jinja2`` package brings its file loaders along, unused).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any


class ExpressionFailed(Exception):
    """An expression could not be evaluated over this customer's data (a data problem)."""


@lru_cache(maxsize=1)
def _environment() -> Any:
    from workflows.jinja_sandbox import make_expression_environment

    return make_expression_environment()


@lru_cache(maxsize=1)
def _failures() -> tuple[type[Exception], ...]:
    """What an expression's data can make it raise (anything else is a bug)."""
    from jinja2 import TemplateError
    from jinja2.sandbox import SecurityError

    return (TemplateError, SecurityError, TypeError, ValueError, ArithmeticError)


@lru_cache(maxsize=4096)
def _compiled(source: str) -> Callable[..., Any]:
    return _environment().compile_expression(source)


@lru_cache(maxsize=1024)
def _template(source: str) -> Any:
    return _environment().from_string(source)


def evaluate(source: str, names: Mapping[str, Any]) -> Any:
    try:
        return _compiled(source)(**names)
    except Exception as error:
        if isinstance(error, _failures()):
            raise ExpressionFailed(f"{source!r}: {error}") from None
        raise


def is_true(source: str, names: Mapping[str, Any]) -> bool:
    return bool(evaluate(source, names))


def render_text(source: str, names: Mapping[str, Any]) -> str:
    if "{" not in source:
        return source
    try:
        return str(_template(source).render(**names))
    except Exception as error:
        if isinstance(error, _failures()):
            raise ExpressionFailed(f"{source!r}: {error}") from None
        raise


def render_value(value: Any, names: Mapping[str, Any]) -> Any:
    """Render every string inside ``value`` (a lookup's query or body)."""
    if isinstance(value, str):
        return render_text(value, names)
    if isinstance(value, dict):
        return {key: render_value(item, names) for key, item in value.items()}
    if isinstance(value, list):
        return [render_value(item, names) for item in value]
    return value


def key_text(value: Any) -> str | None:
    """A correlation key as text (``42`` and ``"42"`` are the same order); ``None`` if absent."""
    if value is None or value == "":
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)
