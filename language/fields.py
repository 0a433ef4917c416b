"""Field types of the YAML that people write — journeys and ``touchpoint.yaml`` alike: slugs,
step ids, durations, offsets, times of day, expressions, and the strict base model. Each type
fails with a sentence in the marketer's words ("expected a duration like "3d", got …")."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from workflows.durations import DURATION_PATTERN, OFFSET_PATTERN, parse_duration, parse_offset

SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]*$"
STEP_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
TIME_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


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
        raise PydanticCustomError(
            "duration",
            'expected a duration like "3d", got {value}',
            {"value": f'"{value}"'},
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
    text_matching(TIME_PATTERN, "a time of day", "09:30"),
    WithJsonSchema({"type": "string", "pattern": TIME_PATTERN}),
]
Expression = Annotated[
    str,
    BeforeValidator(_scalar_to_source),
    Field(min_length=1),
    WithJsonSchema({"type": ["string", "number", "boolean"], "description": "a Jinja2 expression"}),
]
EventName = Annotated[str, Field(min_length=1, description="the event name, as tracked")]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
