"""Field types of the YAML that people write — journeys and ``touchpoint.yaml`` alike: slugs,
step ids, durations, offsets, times of day, expressions, and the strict base model. Each type
fails with a sentence in the marketer's words ("expected a duration like "3d", got …")."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from workflows.durations import (
    DURATION_PATTERN,
    MAX_SECONDS,
    OFFSET_PATTERN,
    UNIT_SECONDS,
    parse_duration,
    parse_offset,
)

SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]*$"
STEP_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
TIME_PATTERN = r"^([01]?[0-9]|2[0-3]):[0-5][0-9]$"
"""A time of day on the 24-hour clock: ``09:30``, ``9:30`` or ``18:00`` (stored as ``HH:MM``)."""
_DURATION_PARTS = re.compile(r"([0-9]+)([wdhms])")
_CLOCK_12H = re.compile(r"^(1[0-2]|0?[1-9])(?::([0-5][0-9]))?\s*([ap])\.?m\.?$", re.IGNORECASE)
_CLOCK_LIKE = re.compile(r"^([0-9]{1,2})[:.]([0-9]{2})$")


def text_matching(pattern: str, what: str, example: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise PydanticCustomError(
                "format",
                "expected {what} like {example}, got {value}",
                {"what": what, "example": f'"{example}"', "value": f'"{value}"'},
            )
        return value

    return AfterValidator(check)


def _check_duration(value: str) -> str:
    try:
        parse_duration(value)
    except ValueError:
        shown = {"value": f'"{value}"'}
        if re.fullmatch(DURATION_PATTERN, value):
            seconds = sum(int(n) * UNIT_SECONDS[u] for n, u in _DURATION_PARTS.findall(value))
            if seconds == 0:
                raise PydanticCustomError(
                    "duration_zero", "a duration must be more than zero, got {value}", shown
                ) from None
            if seconds > MAX_SECONDS:
                raise PydanticCustomError(
                    "duration_long",
                    "a duration can be at most ten years (3650d), got {value}",
                    shown,
                ) from None
        raise PydanticCustomError(
            "duration", 'expected a duration like "3d", got {value}', shown
        ) from None
    return value


def _check_offset(value: str) -> str:
    try:
        parse_offset(value)
    except ValueError:
        raise PydanticCustomError(
            "offset", 'expected an offset like "-1d" or "+2h", got {value}', {"value": f'"{value}"'}
        ) from None
    return value


def _check_time_of_day(value: str) -> str:
    """``9:30`` and ``09:30`` are both half past nine; the plan keeps ``09:30``."""
    text = value.strip()
    if re.fullmatch(TIME_PATTERN, text):
        hour, minute = text.split(":")
        return f"{int(hour):02d}:{minute}"
    shown = {"value": f'"{value}"'}
    twelve = _CLOCK_12H.fullmatch(text)
    if twelve:
        hours = int(twelve[1]) % 12 + (12 if twelve[3].lower() == "p" else 0)
        raise PydanticCustomError(
            "time_of_day",
            "times of day use the 24-hour clock: write {fixed}, not {value}",
            {**shown, "fixed": f'"{hours:02d}:{twelve[2] or "00"}"'},
        )
    clock = _CLOCK_LIKE.fullmatch(text)
    if clock and (int(clock[1]) > 23 or int(clock[2]) > 59):
        raise PydanticCustomError(
            "time_of_day",
            "{value} is not a time of day: hours go from 0 to 23, minutes from 00 to 59",
            shown,
        )
    raise PydanticCustomError(
        "time_of_day", 'expected a time of day like "09:30" (24-hour clock), got {value}', shown
    )


def _check_event_name(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError(
            "event_name", "the event name is empty: write the event's name, e.g. Order Completed"
        )
    return value


def _scalar_to_source(value: Any) -> Any:
    """``true``/``3``/``1.5`` written without quotes are expressions too (``set: {n: 0}``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return value


Text = Annotated[str, Field(min_length=1)]
Slug = Annotated[
    str,
    text_matching(SLUG_PATTERN, "lowercase letters, digits and dashes", "newsletter-welcome"),
    WithJsonSchema({"type": "string", "pattern": SLUG_PATTERN}),
]
StepId = Annotated[
    str,
    text_matching(
        STEP_ID_PATTERN, "a step id of lowercase letters, digits, - and _", "send-welcome"
    ),
    WithJsonSchema({"type": "string", "pattern": STEP_ID_PATTERN}),
]
Target = Annotated[
    str,
    text_matching(STEP_ID_PATTERN, 'a step id or "end"', "send-reminder"),
    WithJsonSchema({"type": "string", "pattern": STEP_ID_PATTERN}),
]
VariableName = Annotated[
    str,
    text_matching(NAME_PATTERN, "a name of letters, digits and _", "recommendations"),
    WithJsonSchema({"type": "string", "pattern": NAME_PATTERN}),
]
Duration = Annotated[
    str,
    AfterValidator(_check_duration),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN, "examples": ["3d", "12h"]}),
]
Offset = Annotated[
    str,
    AfterValidator(_check_offset),
    WithJsonSchema({"type": "string", "pattern": OFFSET_PATTERN, "examples": ["-1d", "+2h"]}),
]
TimeOfDay = Annotated[
    str,
    AfterValidator(_check_time_of_day),
    WithJsonSchema({"type": "string", "pattern": TIME_PATTERN, "examples": ["09:30", "18:00"]}),
]
Expression = Annotated[
    str,
    BeforeValidator(_scalar_to_source),
    Field(min_length=1),
    WithJsonSchema({"type": ["string", "number", "boolean"], "description": "a Jinja2 expression"}),
]
EventName = Annotated[
    str,
    AfterValidator(_check_event_name),
    WithJsonSchema({"type": "string", "minLength": 1, "description": "the event name, as tracked"}),
]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
