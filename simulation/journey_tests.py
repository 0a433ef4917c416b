"""Journey test files (``*.test.yaml``): cases of a customer, events at moments and what must
happen — run by ``touchpoint test`` on the time-skipping server, like ``simulate``.

A case of a scheduled journey names its customers (``customers:``) and the occurrence it goes
out at (``at: 2027-03-01 09:00``, in the schedule's time zone); ``reaches`` and
``does_not_reach`` name who must and must not enter then.

A case passes when every expectation holds: who it reaches, the messages (all of them, in
order, each matching the fields it names), the messages the delivery policies held back
(``held``, the same way), the steps reached and not reached, the outcome, the quiet windows
and the most messages in any window (``max_messages``). A failure shows expected against
actual messages (and held messages) as a diff.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, Literal
from xml.etree import ElementTree
from zoneinfo import ZoneInfo

from pydantic import Field, ValidationError, field_validator

from language.authoring import Channel
from language.fields import Duration
from language.problems import Problem, suggestion
from language.schedules import describe_schedule
from language.validator import schema_problems
from language.yamlsource import SourceMap
from simulation.entry import EntryMoment, entry_moments, without_event
from simulation.fast import FastSimulator, not_conformed
from simulation.occurrences import nearest
from simulation.report import Held, Line, held, run_lines
from simulation.scenario import (
    AT_HINT,
    ProfileSpec,
    ScenarioError,
    Strict,
    events_from,
    parse_moment,
    read_document,
    resolve_events,
)
from simulation.setup import Project, UsageError, customer_zone, parse_until
from simulation.simulator import Scenario, SimulationResult, Simulator
from workflows.durations import parse_duration
from workflows.plan import Plan

TEST_SUFFIX = ".test.yaml"
DEFAULT_START = "2027-01-04T09:00:00+00:00"  # a Monday: cases are reproducible on any day
Outcome = Literal["completed", "converted", "exited", "failed", "cancelled", "running"]


# --- the file format ----------------------------------------------------------------------


class MessageExpectation(Strict):
    at: str | None = None
    journey: str | None = None
    step: str | None = None
    channel: str | None = None
    template: str | None = None
    to: str | None = None
    subject: str | None = None
    subject_contains: str | None = None
    body_contains: str | list[str] | None = None
    locale: str | None = None


class HeldExpectation(Strict):
    """A message a delivery policy held back (``skipped`` or ``deferred``), as the run's
    timeline has it; each named field must match."""

    at: str | None = None  # when the policy decided
    journey: str | None = None
    step: str | None = None
    channel: Channel | None = None
    template: str | None = None
    action: Literal["skipped", "deferred"] | None = None
    policy: str | None = None  # the reason names it (e.g. marketing-email-daily)
    reason_contains: str | None = None
    until: str | None = None  # a deferral's end


class MessageLimit(Strict):
    """At most ``limit`` messages sent in any window of ``per`` (of ``channel``/``journey``)."""

    limit: int = Field(ge=0)
    per: Duration
    channel: Channel | None = None
    journey: str | None = None


class Expectations(Strict):
    messages: list[MessageExpectation] | None = None  # every message, in order
    held: list[HeldExpectation] | None = None  # every message a policy held, in order
    max_messages: Any = None  # a MessageLimit or a list of them: see limit_problems
    outcome: Outcome | None = None  # of every run
    outcomes: dict[str, Outcome] = Field(default_factory=dict)  # journey (or "journey [key]")
    reached: list[str] = Field(default_factory=list)  # step ids
    not_reached: list[str] = Field(default_factory=list)
    not_entered: list[str] = Field(default_factory=list)  # journey ids that must not start
    reaches: list[str] = Field(default_factory=list)  # customers who must enter (customers:)
    does_not_reach: list[str] = Field(default_factory=list)  # customers who must not
    no_messages_between: list[str] | list[list[str]] | None = None

    @field_validator("no_messages_between")
    @classmethod
    def _pairs(cls, value: list[Any] | None) -> list[Any] | None:
        windows = [value] if value and isinstance(value[0], str) else value or []
        if any(len(window) != 2 for window in windows):
            raise ValueError('write ["+1d", "+3d"]: from and to')
        return value

    def limits(self) -> list[MessageLimit]:
        """``max_messages`` (checked with its positions by :func:`limit_problems` on loading)."""
        value = self.max_messages
        items = [] if value is None else [value] if isinstance(value, dict) else value
        return [MessageLimit.model_validate(item) for item in items]

    def windows(self) -> list[list[str]]:
        value = self.no_messages_between
        if not value:
            return []
        return [value] if isinstance(value[0], str) else value


class Case(Strict):
    name: str = Field(min_length=1)
    profile: dict[str, Any] = Field(default_factory=dict)  # merged over the file's profile
    customers: list[dict[str, Any]] | None = None  # each merged over the file's profile
    at: str | None = None  # the occurrence of a scheduled journey the case is about
    events: list[Any] = Field(default_factory=list)
    lookups: dict[str, Any] = Field(default_factory=dict)  # merged over the file's lookups
    start: str | None = None
    until: str | None = None
    expect: Expectations


class TestFile(Strict):
    journeys: list[str] | None = None  # default: the file's own journey (x.test.yaml → x)
    start: str = DEFAULT_START
    until: str = "90d"
    profile: dict[str, Any] = Field(default_factory=dict)
    customers: list[dict[str, Any]] | None = None  # cases without their own use these
    lookups: dict[str, Any] = Field(default_factory=dict)
    cases: list[Case] = Field(min_length=1)


# --- results --------------------------------------------------------------------------------


@dataclass
class CaseResult:
    file: str
    name: str
    failures: list[str] = field(default_factory=list)
    diff: list[str] = field(default_factory=list)
    held_diff: list[str] = field(default_factory=list)
    seconds: float = 0.0
    exact_because: str | None = None  # why the case ran on the time-skipping server

    @property
    def passed(self) -> bool:
        return not self.failures and not self.diff and not self.held_diff

    def report(self) -> list[str]:
        lines = [*self.failures]
        if self.diff:
            lines.append("messages differ (- expected, + actual):")
            lines += [f"  {line}" for line in self.diff]
        if self.held_diff:
            lines.append("held messages differ (- expected, + actual):")
            lines += [f"  {line}" for line in self.held_diff]
        return lines


@dataclass
class PreparedCase:
    file: str
    name: str
    scenario: Scenario
    expect: Expectations
    zone: tzinfo
    source: SourceMap
    path: tuple[str | int, ...]


# --- loading --------------------------------------------------------------------------------


def find_test_files(paths: Sequence[Path], project: Project) -> list[Path]:
    roots = list(paths) or [project.root / "journeys"]
    files: list[Path] = []
    for root in roots:
        if root.is_dir():
            files += sorted(root.rglob(f"*{TEST_SUFFIX}"))
        elif root.is_file():
            files.append(root)
    return files


def load_test_file(path: Path, project: Project) -> list[PreparedCase]:
    loaded = read_document(path)
    raw, source = loaded.raw, loaded.source
    if not isinstance(raw, dict):
        raise ScenarioError([source.problem((), "expected a test file: journeys, cases, …")])
    problems = limit_problems(raw, source)
    try:
        spec = TestFile.model_validate(raw)
    except ValidationError as error:
        raise ScenarioError(schema_problems(error, raw, source, TestFile) + problems) from None
    if problems:
        raise ScenarioError(problems)
    plans = _plans_for(spec, path, project, source)
    return [
        _prepare(spec, case, index, plans, project, source, loaded.display)
        for index, case in enumerate(spec.cases)
    ]


def limit_problems(raw: dict[str, Any], source: SourceMap) -> list[Problem]:
    """Each ``max_messages`` (a mapping, or a list of them) checked where it stands."""
    problems: list[Problem] = []
    cases = raw.get("cases")
    for index, case in enumerate(cases if isinstance(cases, list) else []):
        expect = case.get("expect") if isinstance(case, dict) else None
        value = expect.get("max_messages") if isinstance(expect, dict) else None
        path: tuple[str | int, ...] = ("cases", index, "expect", "max_messages")
        items = [(path, value)] if isinstance(value, dict) else []
        if isinstance(value, list):
            items = [((*path, i), item) for i, item in enumerate(value)]
        elif value is not None and not isinstance(value, dict):
            problems.append(
                source.problem(
                    path,
                    "expected a limit such as {limit: 2, per: 24h, channel: email}, or a list",
                )
            )
        for where, item in items:
            try:
                MessageLimit.model_validate(item)
            except ValidationError as error:
                problems += schema_problems(error, item, source.within(where), MessageLimit)
    return problems


def _plans_for(spec: TestFile, path: Path, project: Project, source: SourceMap) -> list[Plan]:
    names = spec.journeys or [path.name.removesuffix(TEST_SUFFIX)]
    problems, plans = [], []
    for index, name in enumerate(names):
        plan = project.plans.get(name)
        where: tuple[str | int, ...] = ("journeys", index) if spec.journeys else ()
        broken = project.broken_file(name)
        if plan is None and broken is not None:
            problems.append(
                source.problem(where, f"journey {name!r} is not tested: {broken} has problems")
            )
        elif plan is None:
            hint = None if spec.journeys else "name them: journeys: [journey-id]"
            problems.append(
                source.problem(where, f"no journey {name!r}{suggestion(name, project.plans)}", hint)
            )
        else:
            plans.append(plan)
    if problems:
        raise ScenarioError(problems)
    return plans


def _prepare(
    spec: TestFile,
    case: Case,
    index: int,
    plans: list[Plan],
    project: Project,
    source: SourceMap,
    display: str,
) -> PreparedCase:
    path: tuple[str | int, ...] = ("cases", index)
    problems: list[Problem] = []
    customers = _customers(spec, case, source, path)
    try:
        occurrence = _occurrence(case, plans, source, path)
    except ScenarioError as error:  # reported with the case's other problems
        problems += error.problems
        occurrence = None
    start_text = case.start or (None if occurrence else spec.start)
    try:
        start = (
            datetime.fromisoformat(start_text.replace("Z", "+00:00")) if start_text else occurrence
        )
        if start is None or start.tzinfo is None:
            raise ValueError("add its offset, e.g. +01:00")
    except ValueError as error:
        key = (*path, "start") if case.start else ("start",)
        raise ScenarioError([source.problem(key, f"not a start time: {error}", AT_HINT)]) from None
    try:
        until = parse_until(case.until or spec.until)
    except UsageError as error:
        raise ScenarioError([source.problem((*path, "until"), str(error))]) from None
    if occurrence is not None and occurrence < start:
        raise ScenarioError(
            [source.problem((*path, "at"), f"{case.at} is before the case's start {start_text}")]
        )
    zone = customer_zone(project, customers)
    events = resolve_events(events_from(case.events, source, (*path, "events")), start, zone)
    problems += _check_steps(case.expect, plans, source, (*path, "expect"))
    problems += _check_moments(case.expect, source, (*path, "expect"))
    problems += _check_customers(case.expect, customers, source, (*path, "expect"))
    if problems:
        raise ScenarioError(problems)
    scenario = Scenario(
        plans=plans,
        customers=customers,
        events=events,
        start=start,
        until=until,
        lookups={**spec.lookups, **case.lookups},
        entries=_entries(plans, start, until, occurrence, customers),
    )
    return PreparedCase(display, case.name, scenario, case.expect, zone, source, path)


def _customers(
    spec: TestFile, case: Case, source: SourceMap, path: tuple[str | int, ...]
) -> list[ProfileSpec]:
    """The case's customers: its ``customers`` (or the file's), else its one ``profile``; each
    merged over the file's ``profile``."""
    listed = case.customers if case.customers is not None else spec.customers
    if case.customers is not None and case.profile:
        raise ScenarioError(
            [
                source.problem(
                    (*path, "customers"),
                    "a case has one profile or a list of customers, not both",
                    "put the profile's fields into each customer",
                )
            ]
        )
    where: tuple[str | int, ...] = (*path, "customers") if case.customers else ("customers",)
    if listed is None:
        return [_customer({**case.profile}, spec, (*path, "profile"), source, "test-customer")]
    if not listed:
        raise ScenarioError([source.problem(where, "expected at least one customer (- id: …)")])
    customers = [_customer(raw, spec, (*where, i), source, None) for i, raw in enumerate(listed)]
    seen: set[str] = set()
    for i, customer in enumerate(customers):
        if customer.id in seen:
            raise ScenarioError(
                [source.problem((*where, i, "id"), f"customer {customer.id!r} is listed twice")]
            )
        seen.add(customer.id)
    return customers


def _customer(
    raw: dict[str, Any],
    spec: TestFile,
    where: tuple[str | int, ...],
    source: SourceMap,
    default_id: str | None,
) -> ProfileSpec:
    if not isinstance(raw, dict):
        raise ScenarioError([source.problem(where, "expected a customer: id, email, traits, …")])
    profile_raw = {**spec.profile, **raw}
    profile_raw["traits"] = {**spec.profile.get("traits", {}), **raw.get("traits", {})}
    if default_id is not None:
        profile_raw.setdefault("id", default_id)
    elif "id" not in raw:
        raise ScenarioError([source.problem(where, 'every customer needs an "id"')])
    try:
        return ProfileSpec.model_validate(profile_raw)
    except ValidationError as error:
        first = error.errors()[0]
        field_name = ".".join(str(p) for p in first["loc"])
        raise ScenarioError([source.problem(where, f"{field_name}: {first['msg']}")]) from None


def _occurrence(
    case: Case, plans: list[Plan], source: SourceMap, path: tuple[str | int, ...]
) -> datetime | None:
    """The case's ``at``: a moment one of the scheduled journeys goes out at (a time without
    offset is in the schedule's time zone)."""
    if case.at is None:
        return None
    where = (*path, "at")
    scheduled = [plan for plan in without_event(plans) if plan.schedule is not None]
    if not scheduled:
        names = ", ".join(plan.journey_id for plan in plans)
        raise ScenarioError(
            [
                source.problem(
                    where,
                    f"at: is when a scheduled journey goes out; {names} has no schedule",
                    "start event-triggered journeys with events: (- at: +0, event: …)",
                )
            ]
        )
    rules = [plan.schedule for plan in scheduled if plan.schedule is not None]
    try:
        moment = datetime.fromisoformat(case.at.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ScenarioError(
            [
                source.problem(
                    where,
                    f"{case.at!r} is not a moment",
                    'write the date and time the journey goes out, e.g. "2027-03-01 09:00" '
                    "(in the schedule's time zone) or with an offset, 2027-03-01T09:00+01:00",
                )
            ]
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(rules[0].timezone))
    if entry_moments(scheduled, moment, moment, only=moment):
        return moment
    problems = []
    for plan in scheduled:
        rule = plan.schedule
        assert rule is not None
        zone = ZoneInfo(rule.timezone)
        close = nearest(rule, moment, timedelta(days=400))
        hint = (
            "the nearest: "
            + " and ".join(f"{at.astimezone(zone):%a %Y-%m-%d %H:%M}" for at in close)
            if close
            else "it has no occurrence within a year of it"
        )
        problems.append(
            source.problem(
                where,
                f"{case.at} is not an occurrence of {plan.journey_id}, which goes out "
                f"{describe_schedule(rule)}",
                hint,
            )
        )
    raise ScenarioError(problems)


def _entries(
    plans: list[Plan],
    start: datetime,
    until: timedelta,
    occurrence: datetime | None,
    customers: Sequence[ProfileSpec],
) -> list[EntryMoment]:
    """The case's occurrence if it names one, else every occurrence while it runs (for a
    date journey: each customer's ``at`` on every day)."""
    zones = [(customer.id, customer.timezone) for customer in customers]
    return entry_moments(plans, start, start + until, only=occurrence, zones=zones)


def _check_customers(
    expect: Expectations,
    customers: list[ProfileSpec],
    source: SourceMap,
    path: tuple[str | int, ...],
) -> list[Problem]:
    """A misspelt customer in ``does_not_reach`` would pass for ever: refuse unknown ones."""
    ids = [customer.id for customer in customers]
    problems = []
    for key in ("reaches", "does_not_reach"):
        for i, name in enumerate(getattr(expect, key)):
            if name not in ids:
                problems.append(
                    source.problem(
                        (*path, key, i),
                        f"{name!r} is not a customer of this case{suggestion(name, ids)}",
                        "list them under customers: (- id: …)",
                    )
                )
    return problems


def _check_steps(
    expect: Expectations, plans: list[Plan], source: SourceMap, path: tuple[str | int, ...]
) -> list[Problem]:
    """A misspelt step in ``not_reached`` would pass for ever: refuse unknown ones."""
    steps = {node_id for plan in plans for node_id in plan.nodes}
    journeys = {plan.journey_id for plan in plans}
    problems = []
    for key in ("reached", "not_reached"):
        for i, step in enumerate(getattr(expect, key)):
            if step not in steps:
                problems.append(
                    source.problem((*path, key, i), f"no step {step!r}{suggestion(step, steps)}")
                )
    named = [("messages", i, m.step) for i, m in enumerate(expect.messages or [])]
    named += [("held", i, h.step) for i, h in enumerate(expect.held or [])]
    for key, i, step in named:
        if step is not None and step not in steps:
            where = (*path, key, i, "step")
            problems.append(source.problem(where, f"no step {step!r}{suggestion(step, steps)}"))
    named_journeys: list[tuple[tuple[str | int, ...], str | None]] = [
        ((*path, "not_entered", i), journey) for i, journey in enumerate(expect.not_entered)
    ]
    limits = expect.limits()
    single = isinstance(expect.max_messages, dict)  # a misspelt journey would pass for ever
    named_journeys += [
        ((*path, "max_messages", *(() if single else (i,)), "journey"), limit.journey)
        for i, limit in enumerate(limits)
    ]
    for where, journey in named_journeys:
        if journey is not None and journey not in journeys:
            problems.append(
                source.problem(
                    where,
                    f"{journey!r} is not a journey of this test{suggestion(journey, journeys)}",
                )
            )
    return problems


def _check_moments(
    expect: Expectations, source: SourceMap, path: tuple[str | int, ...]
) -> list[Problem]:
    texts: list[tuple[tuple[str | int, ...], str | None]] = [
        ((*path, "messages", i, "at"), m.at) for i, m in enumerate(expect.messages or [])
    ]
    for i, h in enumerate(expect.held or []):
        texts += [((*path, "held", i, "at"), h.at), ((*path, "held", i, "until"), h.until)]
    for i, window in enumerate(expect.windows()):
        texts += [((*path, "no_messages_between", i), text) for text in window]
    problems = []
    for where, text in texts:
        if text is None:
            continue
        try:
            parse_moment(text)
        except ValueError as error:
            problems.append(source.problem(where, f"not a moment: {error}", AT_HINT))
    return problems


# --- running and judging --------------------------------------------------------------------


async def run_case(case: PreparedCase, simulator: Simulator) -> CaseResult:
    began = time.perf_counter()
    result = await simulator.run(case.scenario)
    outcome = judge(case, result)
    outcome.seconds = time.perf_counter() - began
    return outcome


def judge(case: PreparedCase, result: SimulationResult) -> CaseResult:
    verdict = CaseResult(case.file, case.name)
    expect, start, zone = case.expect, case.scenario.start, case.zone
    lines = [line for run in result.runs for line in run_lines(run, result)]
    messages = sorted(
        (line for line in lines if line.kind == "sent"), key=lambda m: (minute(m.at), m.journey)
    )
    if expect.messages is not None:
        verdict.diff = message_diff(expect.messages, messages, start, zone)
    if expect.held is not None:
        holds = sorted(
            (line for line in lines if held(line) is not None),
            key=lambda h: (minute(h.at), h.journey),
        )
        verdict.held_diff = held_diff(expect.held, holds, start, zone)
    for limit in expect.limits():
        verdict.failures += limit_failures(limit, messages, start, zone)
    for run in result.runs:
        label = run.journey_id + (f" [{run.key}]" if run.key else "")
        actual = run.outcome.kind if run.outcome else "running"
        wanted = expect.outcomes.get(label) or expect.outcomes.get(run.journey_id)
        wanted = wanted or expect.outcome
        if wanted is not None and wanted != actual:
            why = run.outcome.reason or run.outcome.error if run.outcome else None
            verdict.failures.append(
                f"{label}: expected outcome {wanted}, got {actual}" + (f" ({why})" if why else "")
            )
    verdict.failures += reach_failures(expect, result, start, zone)
    started = {run.journey_id for run in result.runs}
    for journey in expect.outcomes:
        if journey.split(" [")[0] not in started:
            verdict.failures.append(f"{journey}: expected a run, but it never started")
    for journey in expect.not_entered:
        if journey in started:
            verdict.failures.append(f"{journey}: expected no run, but one started")
    reached = {line.step for line in lines if line.kind not in ("entered",)}
    for step in expect.reached:
        if step not in reached:
            verdict.failures.append(f'step "{step}" was not reached')
    for step in expect.not_reached:
        if step in reached:
            verdict.failures.append(f'step "{step}" was reached, but should not have been')
    for begin_text, end_text in expect.windows():
        begin = parse_moment(begin_text).resolve(start, zone)
        end = parse_moment(end_text).resolve(start, zone)
        inside = [m for m in messages if begin <= minute(m.at) <= end]
        for message in inside:
            verdict.failures.append(
                f"no message expected between {begin_text} and {end_text}, "
                f"but {message.step} sent one at {when(message.at, start, zone)}"
            )
    return verdict


def reach_failures(
    expect: Expectations, result: SimulationResult, start: datetime, zone: tzinfo
) -> list[str]:
    """``reaches``: a run started for each of them; ``does_not_reach``: none for any."""
    failures = []
    for customer in expect.reaches:
        if not any(run.customer_id == customer for run in result.runs):
            why = sorted(
                {
                    f"{n.journey_id}: {n.reason}"
                    for n in result.not_entered
                    if n.customer_id == customer
                }
            )
            because = f" ({'; '.join(why)})" if why else ""
            failures.append(f"{customer}: expected to be reached, but did not enter{because}")
    for customer in expect.does_not_reach:
        for run in result.runs:
            if run.customer_id == customer:
                failures.append(
                    f"{customer}: expected not to be reached, but entered {run.journey_id} "
                    f"at {when(run.entered_at, start, zone)}"
                )
    return failures


def minute(moment: datetime) -> datetime:
    """Compare to the minute: the test server's clock drifts by milliseconds per step."""
    return moment.replace(second=0, microsecond=0)


def when(moment: datetime, start: datetime, zone: tzinfo) -> str:
    local = moment.astimezone(zone)
    return f"day {(local.date() - start.astimezone(zone).date()).days} {local:%H:%M}"


def message_line(message: Line, start: datetime, zone: tzinfo, contains: Sequence[str] = ()) -> str:
    text = (
        f"{when(message.at, start, zone)}  {message.journey}/{message.step}  "
        f"{message.channel} → {message.to}  [{message.template}, {message.locale}]"
    )
    if message.subject is not None:
        text += f'  "{message.subject}"'
    if contains:
        text += "  body ∋ " + ", ".join(f'"{c}"' for c in contains)
    return text


def message_diff(
    expected: Sequence[MessageExpectation],
    actual: Sequence[Line],
    start: datetime,
    zone: tzinfo,
) -> list[str]:
    """Expected and actual messages as lines; unnamed fields take the actual's value, so
    equal lines mean a match. Empty when everything matches."""
    want_lines, got_lines = [], []
    for index, message in enumerate(actual):
        wanted = expected[index] if index < len(expected) else None
        contains = _contains(wanted)
        got_lines.append(message_line(message, start, zone, _found(contains, message)))
        if wanted is not None:
            want_lines.append(
                message_line(_apply(wanted, message, start, zone), start, zone, contains)
            )
    for wanted in expected[len(actual) :]:
        want_lines.append(_describe_expected(wanted))
    if want_lines == got_lines:
        return []
    return [
        line.rstrip() for line in difflib.ndiff(want_lines, got_lines) if not line.startswith("?")
    ]


def _contains(wanted: MessageExpectation | None) -> list[str]:
    if wanted is None or wanted.body_contains is None:
        return []
    body = wanted.body_contains
    return [body] if isinstance(body, str) else list(body)


def _found(contains: Sequence[str], message: Line) -> list[str]:
    """The expected body texts as the actual message has them: only those it contains."""
    body = message.body or ""
    return [text for text in contains if text in body]


def _apply(wanted: MessageExpectation, message: Line, start: datetime, zone: tzinfo) -> Line:
    """The actual message with the expectation's fields put in."""
    changes: dict[str, Any] = {}
    if wanted.at is not None:
        expected_at = parse_moment(wanted.at).resolve(start, zone)
        changes["at"] = message.at if minute(expected_at) == minute(message.at) else expected_at
    for name in ("journey", "step", "channel", "template", "to", "subject", "locale"):
        value = getattr(wanted, name)
        if value is not None:
            changes[name] = value
    if wanted.subject_contains is not None and wanted.subject_contains not in (
        message.subject or ""
    ):
        changes["subject"] = f"…{wanted.subject_contains}…"
    return replace(message, **changes)


def _describe_expected(wanted: MessageExpectation | HeldExpectation) -> str:
    parts = [f"{name}={value}" for name, value in wanted.model_dump(exclude_none=True).items()]
    noun = "a held message" if isinstance(wanted, HeldExpectation) else "a message"
    return f"{noun} with " + ", ".join(parts) if parts else noun


# --- held messages and limits ---------------------------------------------------------------


def held_line(line: Line, decision: Held, start: datetime, zone: tzinfo) -> str:
    until = f" until {when(decision.until, start, zone)}" if decision.until else ""
    return (
        f"{when(line.at, start, zone)}  {line.journey}/{line.step}  "
        f"{line.channel} [{line.template}]  {decision.action}{until}: {decision.reason}"
    )


def held_diff(
    expected: Sequence[HeldExpectation], actual: Sequence[Line], start: datetime, zone: tzinfo
) -> list[str]:
    """As :func:`message_diff`, for the messages the policies held back."""
    want_lines, got_lines = [], []
    for index, line in enumerate(actual):
        decision = held(line)
        assert decision is not None
        got_lines.append(held_line(line, decision, start, zone))
        if index < len(expected):
            wanted_line, wanted = _apply_held(expected[index], line, decision, start, zone)
            want_lines.append(held_line(wanted_line, wanted, start, zone))
    want_lines += [_describe_expected(wanted) for wanted in expected[len(actual) :]]
    if want_lines == got_lines:
        return []
    return [
        line.rstrip() for line in difflib.ndiff(want_lines, got_lines) if not line.startswith("?")
    ]


def _apply_held(
    wanted: HeldExpectation, line: Line, decision: Held, start: datetime, zone: tzinfo
) -> tuple[Line, Held]:
    """The actual held message with the expectation's fields put in."""
    changes: dict[str, Any] = {}
    if wanted.at is not None:
        expected_at = parse_moment(wanted.at).resolve(start, zone)
        changes["at"] = line.at if minute(expected_at) == minute(line.at) else expected_at
    for name in ("journey", "step", "channel", "template"):
        value = getattr(wanted, name)
        if value is not None:
            changes[name] = value
    action, reason, until = decision.action, decision.reason, decision.until
    if wanted.action is not None:
        action = wanted.action
    missing = [
        text
        for text in (wanted.policy, wanted.reason_contains)
        if text is not None and text not in reason
    ]
    if missing:
        reason = " … ".join(f"…{text}…" for text in missing)
    if wanted.until is not None:
        expected_until = parse_moment(wanted.until).resolve(start, zone)
        if until is None or minute(expected_until) != minute(until):
            until = expected_until
    return replace(line, **changes), Held(action, reason, until)


def limit_failures(
    limit: MessageLimit, messages: Sequence[Line], start: datetime, zone: tzinfo
) -> list[str]:
    """The first window of ``limit.per`` with more than ``limit.limit`` messages, if any. A
    window starts at a message and ends before the moment ``per`` later (a message exactly
    ``per`` after another is in the next window)."""
    window = timedelta(seconds=parse_duration(limit.per))
    counted = sorted(
        (
            m
            for m in messages
            if (limit.channel is None or m.channel == limit.channel)
            and (limit.journey is None or m.journey == limit.journey)
        ),
        key=lambda m: m.at,
    )
    for first, message in enumerate(counted):
        inside = [m for m in counted[first:] if minute(m.at) < minute(message.at) + window]
        if len(inside) > limit.limit:
            noun = "message" if limit.limit == 1 else "messages"
            what = f"{limit.channel} {noun}" if limit.channel else noun
            of = f" of {limit.journey}" if limit.journey else ""
            sent = ", ".join(f"{m.journey}/{m.step} {when(m.at, start, zone)}" for m in inside)
            return [
                f"at most {limit.limit} {what}{of} expected in any {limit.per}, but "
                f"{len(inside)} were sent from {when(message.at, start, zone)}: {sent}"
            ]
    return []


# --- the command ---------------------------------------------------------------------------


async def run_files(
    files: Sequence[Path],
    project: Project,
    on_case: Callable[[CaseResult], None],
    *,
    exact: bool = False,
) -> tuple[list[CaseResult], list[Problem]]:
    """Run the cases of ``files``: on the fast simulator where the conformance suite covers
    their journeys (:func:`simulation.fast.not_conformed`), else — or with ``exact`` — on the
    time-skipping server."""
    fast = FastSimulator(project.root, project.config)
    slow = Simulator(project.root, project.config)
    results: list[CaseResult] = []
    problems: list[Problem] = []
    for path in files:
        try:
            cases = load_test_file(path, project)
        except ScenarioError as error:
            problems += error.problems
            continue
        for case in cases:
            because = None if exact else not_conformed(case.scenario.plans)
            result = await run_case(case, slow if exact or because else fast)
            result.exact_because = because
            on_case(result)
            results.append(result)
    return results, problems


def junit_xml(results: Sequence[CaseResult], problems: Sequence[Problem]) -> bytes:
    suites = ElementTree.Element("testsuites", name="touchpoint")
    by_file: dict[str, list[CaseResult]] = {}
    for result in results:
        by_file.setdefault(result.file, []).append(result)
    for file, cases in by_file.items():
        failed = sum(not c.passed for c in cases)
        suite = ElementTree.SubElement(
            suites,
            "testsuite",
            name=file,
            tests=str(len(cases)),
            failures=str(failed),
            time=f"{sum(c.seconds for c in cases):.3f}",
        )
        for case in cases:
            element = ElementTree.SubElement(
                suite, "testcase", classname=file, name=case.name, time=f"{case.seconds:.3f}"
            )
            if not case.passed:
                failure = ElementTree.SubElement(
                    element, "failure", message=(case.failures or ["messages differ"])[0]
                )
                failure.text = "\n".join(case.report())
    if problems:
        suite = ElementTree.SubElement(
            suites,
            "testsuite",
            name="test files",
            tests=str(len(problems)),
            errors=str(len(problems)),
        )
        for problem in problems:
            element = ElementTree.SubElement(
                suite, "testcase", classname=problem.file, name=problem.path or "file"
            )
            error = ElementTree.SubElement(element, "error", message=problem.message)
            error.text = problem.format()
    return ElementTree.tostring(suites, encoding="utf-8", xml_declaration=True)
