"""Expression checks: syntax with position, unknown names, filters and tests."""

from __future__ import annotations

import pytest

from language.expressions import (
    EVENT_NAMES,
    STEP_NAMES,
    check_expression,
    check_template_text,
)
from workflows.durations import format_duration, parse_duration, parse_offset


@pytest.mark.parametrize(
    "source",
    [
        "profile.traits.score >= 9",
        "'laptops' in profile.traits.interests | default([])",
        "lookups.picks.products | length == 0",
        "events.answer.properties.score | int",
        "now",
        "true",
    ],
)
def test_valid_expressions_pass(source: str) -> None:
    assert check_expression(source, STEP_NAMES) is None


@pytest.mark.parametrize(
    ("source", "message", "offset"),
    [
        ("profile.traits.score >> 9", "invalid expression: unexpected '>'", 22),
        ("vars.a and", "the expression ends too early", 10),
        ("(vars.a", "expected ')'", 7),
        ("vars.a vars.b", "unexpected 'vars' after the expression", 7),
        ("profil.x", 'unknown name "profil"; did you mean "profile"?', 0),
        ("vars.a | uper", 'unknown filter "uper"; did you mean "upper"?', 9),
        ("vars.a is evn", 'unknown test "evn"; did you mean "even"?', 10),
        ("{{ vars.a }}", "an expression is written without {{ }}", 0),
        ("  ", "the expression is empty", 0),
    ],
)
def test_invalid_expressions_say_what_and_where(source: str, message: str, offset: int) -> None:
    issue = check_expression(source, STEP_NAMES)
    assert issue is not None
    assert message in issue.message
    assert issue.offset == offset


def test_names_depend_on_the_context() -> None:
    assert check_expression("event.properties.order_id", EVENT_NAMES) is None
    issue = check_expression("profile.id", EVENT_NAMES)
    assert issue is not None and issue.hint == "available here: event"


def test_template_text_checks_placeholders() -> None:
    assert check_template_text("/customers/{{ profile.id }}/picks", STEP_NAMES) is None
    issue = check_template_text("/c/{{ evnt.id }}", STEP_NAMES)
    assert issue is not None and 'did you mean "event"' in issue.message


def test_durations_parse_and_format() -> None:
    assert parse_duration("90m") == 5400
    assert parse_duration("1d12h") == 129_600
    assert parse_duration("2w") == 1_209_600
    assert parse_offset("-1d") == -86_400
    assert parse_offset("+2h") == 7_200
    for bad in ("0d", "3 days", "d", "", "-1d", "99999w"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    assert format_duration(129_600) == "1d12h"
    assert format_duration(1_209_600) == "2w"
    assert format_duration(-86_400) == "-1d"
