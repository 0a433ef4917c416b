"""The authoring format: what a marketer writes in ``journeys/*.yaml``.

Every model forbids unknown fields so a typo is an error, not a silently ignored setting. A step is
a mapping with exactly one *step key* (``send``, ``wait``, ``wait_for`` …) that says what it does,
plus that step's settings; ``- end`` alone ends the journey. The compiler turns this model into
the plan the workflow runs (:mod:`workflows.plan`); nothing here ever reaches a workflow.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    WrapValidator,
)
from pydantic_core import PydanticCustomError

from config.policies import JourneyPolicies, StepPolicies
from language.fields import (  # the field types, re-exported for the compiler's a.Slug & co.
    NAME_PATTERN,
    Duration,
    EventName,
    Expression,
    Model,
    Offset,
    Slug,
    StepId,
    Target,
    Text,
    TimeOfDay,
    VariableName,
    text_matching,
)
from language.schedules import EVERY_EXAMPLE, check_cron, parse_every, parse_rate
from workflows.channels import CHANNELS, known_channel

END = "end"
"""The target that ends the run; also the one reserved step id."""
Category = Literal["marketing", "transactional"]
Stage = Literal["awareness", "consideration", "conversion", "retention", "advocacy"]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


Channel = Annotated[
    str,
    AfterValidator(known_channel),
    WithJsonSchema({"type": "string", "enum": list(CHANNELS)}),
]
Reentry = Literal["once", "one_at_a_time", "every_time"]
HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]

# --- journey-level parts -------------------------------------------------------------------


def _checked(kind: str, check: Any) -> AfterValidator:
    """A field check whose ``ValueError`` becomes a problem of ``kind`` (hints by kind)."""

    def run(value: str) -> str:
        try:
            check(value)
        except ValueError as error:
            raise PydanticCustomError(kind, "{why}", {"why": str(error)}) from None
        return value

    return AfterValidator(run)


def _known_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f'unknown time zone "{name}"') from None
    return name


Every = Annotated[
    str,
    _checked("every", parse_every),
    WithJsonSchema({"type": "string", "examples": ["monday 09:00", "mon, thu 18:30"]}),
]
Cron = Annotated[
    str,
    _checked("cron", check_cron),
    WithJsonSchema({"type": "string", "examples": ["0 9 * * MON", "@daily"]}),
]
TimeZone = Annotated[
    str,
    _checked("timezone", _known_zone),
    WithJsonSchema({"type": "string", "examples": ["Europe/Berlin", "UTC"]}),
]
Rate = Annotated[
    str,
    BeforeValidator(str),
    _checked("rate", parse_rate),
    WithJsonSchema({"type": "string", "examples": ["50/s", "600/m"]}),
]


def _one_date_problem(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """A date or a time, or one problem saying why not (pydantic has one for each side of
    the union, and its reason only where both agree: "month value is outside …")."""
    try:
        return handler(value)
    except ValidationError as error:
        reasons = {str(e["msg"]).partition(", ")[2] for e in error.errors()}
        why = f": {reasons.pop()}" if len(reasons) == 1 and "" not in reasons else ""
        shown = f'"{value}"' if isinstance(value, str) else repr(value)
        raise PydanticCustomError(
            "schedule_date",
            "expected a date (YYYY-MM-DD) or a time with an offset, got {value}{why}",
            {"value": shown, "why": why},
        ) from None


ScheduleDate = Annotated[date | datetime, WrapValidator(_one_date_problem)]


class Schedule(Model):
    """When a scheduled journey goes out: ``every`` or ``cron``, in a time zone."""

    every: Every | None = Field(None, description=f"days and a time of day: {EVERY_EXAMPLE}")
    cron: Cron | None = Field(None, description='five cron fields, e.g. "0 9 * * MON"')
    timezone: TimeZone | None = Field(
        None, description="an IANA time zone (default: defaults.timezone in touchpoint.yaml)"
    )
    start: ScheduleDate | None = Field(None, description="no occurrence before this")
    end: ScheduleDate | None = Field(None, description="no occurrence after this")
    rate: Rate | None = Field(
        None, description="how fast one occurrence starts runs, e.g. 50/s (default: the project's)"
    )


_PATH_PART = NAME_PATTERN.strip("^$")
PROFILE_DATE_PATTERN = rf"^traits(\.{_PATH_PART})+$"
PROPERTY_PATTERN = rf"^{_PATH_PART}(\.{_PATH_PART})*$"
ProfileDatePath = Annotated[
    str,
    text_matching(PROFILE_DATE_PATTERN, "a trait of the profile", "traits.birthday"),
    WithJsonSchema({"type": "string", "pattern": PROFILE_DATE_PATTERN}),
]
PropertyPath = Annotated[
    str,
    text_matching(PROPERTY_PATTERN, "an event property", "warranty_ends"),
    WithJsonSchema({"type": "string", "pattern": PROPERTY_PATTERN}),
]


class DateTrigger(Model):
    """A date that starts the run at a local time: from the profile (every year or once) or
    from the trigger event's properties (the run waits until then)."""

    profile: ProfileDatePath | None = Field(
        None, description="a date in the profile, e.g. traits.birthday (YYYY-MM-DD or ISO time)"
    )
    property: PropertyPath | None = Field(
        None, description="with event: a date in the event's properties, e.g. warranty_ends"
    )
    every: Literal["year", "once"] | None = Field(
        None, description="year (birthday, anniversary) or once (a one-off date)"
    )
    offset: Offset | None = Field(
        None, description="whole days before (-30d) or after (+1d) the date"
    )
    at: TimeOfDay = Field(description="local time of day in the customer's time zone")


class Trigger(Model):
    """What starts a run: a shop event, a schedule with an audience (a broadcast), or a
    segment (a condition over the profile that an identify makes true)."""

    event: EventName | None = Field(None, description="the event that starts a run")
    if_: Expression | None = Field(None, alias="if", description="condition over `event`")
    key: Expression | None = Field(
        None, description="correlation key over `event`: one run per customer per key"
    )
    schedule: Schedule | None = Field(
        None, description="instead of an event: when the journey goes out to its audience"
    )
    audience: Expression | None = Field(
        None,
        description="with schedule: who enters at each occurrence, a condition over `profile` "
        "(default: every profile)",
    )
    segment: Expression | None = Field(
        None,
        description="instead of an event: a condition over `profile`; a customer enters when "
        "an identify makes it true (once per crossing)",
    )
    date: DateTrigger | None = Field(
        None, description="a date at a local time: a birthday, a warranty end − 30 days"
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
    topic: Slug | None = Field(
        None, description="the subscription topic of this message (default: the journey's)"
    )
    policies: StepPolicies | None = Field(
        None,
        description="this message's exemptions from delivery policies, their actions and the "
        "defer limit, over the journey's",
    )


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
    topic: Slug | None = Field(
        None,
        description="the subscription topic (touchpoint.yaml topics): customers who leave it "
        "get none of this journey's messages, and its running runs end",
    )
    policies: JourneyPolicies | None = Field(
        None,
        description="delivery policies over touchpoint.yaml's: own frequency caps and quiet "
        "hours, exemptions, actions and the defer limit",
    )
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
