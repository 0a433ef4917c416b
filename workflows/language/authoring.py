"""The authoring format: what a marketer writes in ``journeys/*.yaml``.

Every model forbids unknown fields so a typo is an error, not a silently ignored setting. A step is
a mapping with exactly one *step key* (``send``, ``wait``, ``wait_for`` …) that says what it does,
plus that step's settings; ``- end`` alone ends the journey. The compiler turns this model into
the plan the workflow runs (:mod:`workflows.plan`); nothing here ever reaches a workflow.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from workflows.language.durations import (
    DURATION_PATTERN,
    OFFSET_PATTERN,
    parse_duration,
    parse_offset,
)

SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]*$"
STEP_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
TIME_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
END = "end"
"""The target that ends the run; also the one reserved step id."""

Category = Literal["marketing", "transactional"]
Stage = Literal["awareness", "consideration", "conversion", "retention", "advocacy"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Channel = Literal["email", "webhook", "chat"]
Reentry = Literal["once", "one_at_a_time", "every_time"]
HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]


def text_matching(pattern: str, what: str, example: str) -> AfterValidator:
    import re

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


# --- journey-level parts -------------------------------------------------------------------


class Trigger(Model):
    """The event that starts a run."""

    event: EventName
    if_: Expression | None = Field(None, alias="if", description="condition over `event`")
    key: Expression | None = Field(
        None, description="correlation key over `event`: one run per customer per key"
    )


class Entry(Model):
    """Who may enter, and how often."""

    reentry: Reentry = "one_at_a_time"
    after: Duration | None = Field(
        None, description="cooldown: enter again only this long after the previous entry"
    )
    if_: Expression | None = Field(None, alias="if", description="condition over `profile`")


class ExitRule(Model):
    """An event that ends the run early."""

    event: EventName
    if_: Expression | None = Field(None, alias="if")
    key: Expression | None = None
    reason: Text | None = None


class Goal(Model):
    """The conversion event: a run that sees it ends as converted."""

    event: EventName
    if_: Expression | None = Field(None, alias="if")
    key: Expression | None = None
    within: Duration | None = Field(None, description="only counts this long after entry")


# --- steps ---------------------------------------------------------------------------------


class StepBase(Model):
    id: StepId | None = None
    stage: Stage | None = None


class SendStep(StepBase):
    send: Channel
    template: Slug
    to: Slug | None = Field(None, description="a destination from touchpoint.yaml (webhook, chat)")
    skip_on_failure: bool = False


class WaitStep(StepBase):
    wait: Duration


class WaitUntilSpec(Model):
    time: TimeOfDay | None = Field(None, description="local time of day in the customer's timezone")
    days: list[Weekday] | None = Field(None, min_length=1, description="allowed weekdays")
    date: Expression | None = Field(None, description="a date or time from the profile or event")
    offset: Offset | None = Field(None, description="added to `date`, e.g. -1d")


class WaitUntilStep(StepBase):
    wait_until: WaitUntilSpec


class WaitForStep(StepBase):
    wait_for: EventName
    if_: Expression | None = Field(None, alias="if")
    key: Expression | None = None
    timeout: Duration
    on_event: Target | None = None
    on_timeout: Target | None = None


class Case(Model):
    if_: Expression = Field(alias="if")
    goto: Target


class BranchStep(StepBase):
    branch: list[Case] = Field(min_length=1)
    else_: Target | None = Field(None, alias="else")


class SplitPath(Model):
    name: Slug
    percent: int = Field(ge=1, le=100)
    goto: Target | None = None
    holdout: bool = Field(False, description="customers on this path receive nothing")


class SplitStep(StepBase):
    split: list[SplitPath] = Field(min_length=2)


JsonValue = Any


class LookupStep(StepBase):
    lookup: Slug = Field(description="a connection from touchpoint.yaml")
    path: Text
    method: HttpMethod = "GET"
    query: dict[str, str | int | float | bool] | None = None
    body: JsonValue | None = None
    save_as: VariableName


class SetStep(StepBase):
    set: dict[VariableName, Expression] = Field(min_length=1)


class GotoStep(StepBase):
    goto: Target


class EndStep(StepBase):
    end: Literal[True] = True


STEP_KEYS: tuple[str, ...] = (
    "send",
    "wait",
    "wait_until",
    "wait_for",
    "branch",
    "split",
    "lookup",
    "set",
    "goto",
    "end",
)
"""The keys that say what a step does; each step has exactly one."""


def step_kind(value: Any) -> str | None:
    """Which step model ``value`` is, by its step key (``None``: none or several)."""
    if isinstance(value, str):
        return "end" if value == END else None
    if isinstance(value, BaseModel):
        value = value.model_dump(by_alias=True)
    if not isinstance(value, dict):
        return None
    kinds = [key for key in STEP_KEYS if key in value]
    return kinds[0] if len(kinds) == 1 else None


def _bare_end(value: Any) -> Any:
    return {"end": True} if value == END else value


Step = Annotated[
    Annotated[SendStep, Tag("send")]
    | Annotated[WaitStep, Tag("wait")]
    | Annotated[WaitUntilStep, Tag("wait_until")]
    | Annotated[WaitForStep, Tag("wait_for")]
    | Annotated[BranchStep, Tag("branch")]
    | Annotated[SplitStep, Tag("split")]
    | Annotated[LookupStep, Tag("lookup")]
    | Annotated[SetStep, Tag("set")]
    | Annotated[GotoStep, Tag("goto")]
    | Annotated[Annotated[EndStep, BeforeValidator(_bare_end)], Tag("end")],
    Discriminator(step_kind, custom_error_type="step_kind", custom_error_message="step kind"),
]


class Journey(Model):
    """One customer journey: a trigger, entry rules, exits, a goal and ordered steps."""

    model_config = ConfigDict(title="Touchpoint journey")

    id: Slug
    name: Text
    description: str | None = None
    category: Category
    trigger: Trigger
    entry: Entry = Entry()
    exit_when: list[ExitRule] = Field(default_factory=list)
    goal: Goal | None = None
    steps: list[Step] = Field(min_length=1)


AnyStep = (
    SendStep
    | WaitStep
    | WaitUntilStep
    | WaitForStep
    | BranchStep
    | SplitStep
    | LookupStep
    | SetStep
    | GotoStep
    | EndStep
)
