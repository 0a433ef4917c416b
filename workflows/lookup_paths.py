"""A lookup's ``path``, rendered so that customer data cannot change what is asked for.

The text the marketer wrote stays as written (``/customers/``, ``/recommendations``, a literal
``?``); every value an expression inserts (``{{ profile.id }}``) becomes exactly one path
segment: percent-encoded (RFC 3986), everything but letters, digits, ``-._~`` and the harmless
``@:!$'()*,``. So ``x?admin=true#`` asks for ``/customers/x%3Fadmin%3Dtrue%23``, never for
``/customers/x`` with a query, and ``a/b`` is one segment (``a%2Fb``). A value that is empty
or ``.``, or climbs with ``..`` (also percent-encoded, also inside: ``a/../b``), would name
another resource (``/customers//orders``, ``/customers/../admin``) and fails the step. Query
values belong under ``query:``, which goes as parameters.

Pure and deterministic, like :mod:`workflows.evaluation`, whose sandbox it uses: the workflow
imports it through the sandbox (``imports_passed_through``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any
from urllib.parse import quote, unquote

from workflows.evaluation import ExpressionFailed, budget, failures

SEGMENT_SAFE = "@:!$'()*,"
"""Characters a path segment may hold unencoded besides letters, digits and ``-._~``."""


def encode_segment(value: Any) -> str:
    """``value`` as one percent-encoded path segment; ``ValueError`` for one that would name
    another resource."""
    text = str(value)  # an undefined name raises here, as it does when rendering text
    if text in ("", "."):
        shown = "empty" if not text else "'.'"
        raise ValueError(
            f"a value inserted into the path is {shown}, which would ask for another resource"
        )
    if _climbs(text):
        raise ValueError("a value inserted into the path contains '..', which would leave it")
    return quote(text, safe=SEGMENT_SAFE)


def _climbs(text: str) -> bool:
    """Does ``text`` hold a ``..`` segment, even percent-encoded (as the lookup checks)?"""
    for _ in range(3):  # %252e%252e → %2e%2e → ..
        text = unquote(text)
    return any(part.split(";", 1)[0] == ".." for part in re.split(r"[/\\]", text))


@lru_cache(maxsize=1)
def _environment() -> Any:
    from workflows.jinja_rewrite import finalize
    from workflows.jinja_sandbox import make_expression_environment

    env = make_expression_environment()
    env.finalize = lambda value: encode_segment(finalize(value))  # each {{ … }}, not the text
    return env


@lru_cache(maxsize=1024)
def _template(source: str) -> Any:
    return _environment().from_string(source)


def render_path(source: str, names: Mapping[str, Any], *, bounded: bool = True) -> str:
    """The lookup path ``source`` over ``names``, each inserted value encoded as a segment,
    within the expressions' budget (:func:`workflows.evaluation.render_text`)."""
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
