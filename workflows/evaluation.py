"""Evaluate journey expressions and templated strings over a run's recorded state.

Pure and deterministic: the same source and names give the same value. The interpreter
workflow imports this module through the sandbox (``imports_passed_through``), so compiled
expressions are cached once per worker process, not once per run.

Expressions are Jinja2's, in the loader-less sandbox of :mod:`workflows.jinja_sandbox`. Jinja2
is imported on the first evaluation, not with this module: importing the workflow loads no
template machinery (the ``jinja2`` package brings its file loaders along, unused).

Each evaluation is bounded (:data:`workflows.limits.EXPRESSION_LIMITS`): a count of operations,
loop iterations and sizes, never the clock, so an expression too costly for the workflow fails
the same way on every replay, as an :class:`ExpressionFailed` naming the limit. ``bounded=False``
evaluates as before the limits existed (runs recorded then replay that way).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from functools import lru_cache
from typing import Any


class ExpressionFailed(Exception):
    """An expression could not be evaluated over this customer's data (a data problem)."""


@lru_cache(maxsize=1)
def _environment() -> Any:
    from workflows.jinja_sandbox import make_expression_environment

    return make_expression_environment()


@lru_cache(maxsize=1)
def failures() -> tuple[type[Exception], ...]:
    """What an expression's data can make it raise (anything else is a bug)."""
    from jinja2 import TemplateError
    from jinja2.sandbox import SecurityError

    # a filter given the wrong kind of data (AttributeError, LookupError); a macro of a
    # lookup's template that calls itself (RecursionError)
    return (
        TemplateError,
        SecurityError,
        TypeError,
        ValueError,
        ArithmeticError,
        AttributeError,
        LookupError,
        RecursionError,
    )


def budget(bounded: bool) -> AbstractContextManager[Any]:
    from workflows.limits import EXPRESSION_LIMITS
    from workflows.limits import bounded as counting

    return counting(EXPRESSION_LIMITS if bounded else None)


def _check_result(value: Any) -> None:
    """A value the run keeps (``vars``) is serialised with its state: not a huge one."""
    if not isinstance(value, str | int | float | bool | Iterator) and value is not None:
        from workflows.limits import check_text_size

        check_text_size(value, "the value")


@lru_cache(maxsize=4096)
def _compiled(source: str) -> Callable[..., Any]:
    return _environment().compile_expression(source)


@lru_cache(maxsize=1024)
def _template(source: str) -> Any:
    return _environment().from_string(source)


def evaluate(source: str, names: Mapping[str, Any], *, bounded: bool = True) -> Any:
    try:
        expression = _compiled(source)  # outside the budget: compiling is cached, not counted
        with budget(bounded):
            value = expression(**names)
            if bounded:
                _check_result(value)
            return value
    except Exception as error:
        if isinstance(error, failures()):
            raise ExpressionFailed(f"{source!r}: {error}") from None
        raise


def is_true(source: str, names: Mapping[str, Any], *, bounded: bool = True) -> bool:
    return bool(evaluate(source, names, bounded=bounded))


def render_text(source: str, names: Mapping[str, Any], *, bounded: bool = True) -> str:
    if "{" not in source:
        return source
    try:
        template = _template(source)
        with budget(bounded):
            return str(template.render(**names))
    except Exception as error:
        if isinstance(error, failures()):
            raise ExpressionFailed(f"{source!r}: {error}") from None
        raise


def render_value(value: Any, names: Mapping[str, Any], *, bounded: bool = True) -> Any:
    """Render every string inside ``value`` (a lookup's query or body)."""
    if isinstance(value, str):
        return render_text(value, names, bounded=bounded)
    if isinstance(value, dict):
        return {key: render_value(item, names, bounded=bounded) for key, item in value.items()}
    if isinstance(value, list):
        return [render_value(item, names, bounded=bounded) for item in value]
    return value


def key_text(value: Any) -> str | None:
    """A correlation key as text (``42`` and ``"42"`` are the same order); ``None`` if absent."""
    if value is None or value == "":
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)
