"""What a simulation is given: customers, events at moments, lookup answers — read from the
files a marketer writes, with every mistake reported as ``file:line:col: path: message``.

Moments are written relative to the simulation's start (``+0``, ``+2d3h``, ``+90m``) or as ISO
times with an offset (``2027-01-04T09:30:00+01:00``).
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from language.problems import Problem
from language.validator import _display, schema_problems
from language.yamlsource import SourceMap, YamlError, load_yaml
from workflows.durations import parse_offset

M = TypeVar("M", bound=BaseModel)
_DAY_CLOCK = re.compile(r"day ([0-9]+) ([0-2][0-9]:[0-5][0-9])")
AT_HINT = (
    'write "+2d3h" (after the start), "day 2 09:00" (local time) or an ISO time with its '
    'offset, "2027-01-04T09:00+01:00"'
)


class ScenarioError(Exception):
    """The scenario's files have problems; each one says where and what to do."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(p.format() for p in problems))
        self.problems = sorted(problems)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProfileSpec(Strict):
    """A customer as a scenario writes them (``--profile``, a test case, a population row)."""

    id: str = Field(min_length=1)
    email: str | None = None
    phone: str | None = None
    locale: str | None = None
    timezone: str | None = None
    traits: dict[str, Any] = Field(default_factory=dict)

    def identify_traits(self) -> dict[str, Any]:
        """The traits as an ``identify`` call carries them (email and phone among them)."""
        extra = {"email": self.email, "phone": self.phone}
        return {**self.traits, **{k: v for k, v in extra.items() if v is not None}}


class EventSpec(Strict):
    """One line of an events file: a ``track`` (the default) or an ``identify`` at a moment."""

    at: str = "+0"
    type: Literal["track", "identify"] = "track"
    event: str | None = None
    user: str | None = None  # the customer; default: every customer of the simulation
    properties: dict[str, Any] = Field(default_factory=dict)
    traits: dict[str, Any] = Field(default_factory=dict)  # a track's: Segment's context.traits
    locale: str | None = None  # Segment's context.locale: the profile's locale from then on
    timezone: str | None = None  # context.timezone: the profile's time zone from then on
    message_id: str | None = None

    @model_validator(mode="after")
    def _event_for_track(self) -> EventSpec:
        if self.type == "track" and not self.event:
            raise ValueError('a track needs "event": the name of what happened')
        if self.type == "identify" and self.event:
            raise ValueError('an identify has no "event"; it sets "traits"')
        return self


@dataclass(frozen=True)
class Moment:
    """``+2d`` (seconds after the start), ``day 2 09:00`` (a local time on the start's date
    plus two days) or an absolute time; resolved once the start and time zone are known."""

    offset: int | None = None
    absolute: datetime | None = None
    day: int | None = None
    clock: time | None = None
    text: str = ""

    def resolve(self, start: datetime, zone: tzinfo = UTC) -> datetime:
        if self.absolute is not None:
            return self.absolute
        if self.day is not None and self.clock is not None:
            date = start.astimezone(zone).date() + timedelta(days=self.day)
            return datetime.combine(date, self.clock, tzinfo=zone)
        return start + timedelta(seconds=self.offset or 0)


@dataclass(frozen=True)
class ScenarioEvent:
    moment: Moment
    spec: EventSpec
    where: Problem  # the position of this event, for errors found later (e.g. before the start)


@dataclass
class LoadedFile:
    raw: Any
    source: SourceMap
    display: str


def parse_moment(text: str) -> Moment:
    """``+0``, ``+2d3h``, ``day 2 09:00``, ``2027-01-04T09:00:00+01:00``; else ``ValueError``."""
    value = text.strip()
    if value in ("0", "+0", "now"):
        return Moment(offset=0, text=value)
    day = _DAY_CLOCK.fullmatch(value)
    if day is not None:
        return Moment(day=int(day[1]), clock=time.fromisoformat(day[2]), text=value)
    if value[:1] in "+-" or (value[:1].isdigit() and value[-1:] in "wdhms"):
        seconds = parse_offset(value if value[:1] in "+-" else "+" + value)
        if seconds < 0:
            raise ValueError("a moment before the start")
        return Moment(offset=seconds, text=value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is neither +2d3h, day 2 09:00 nor an ISO time") from None
    if moment.tzinfo is None:
        raise ValueError("an ISO time needs its offset (Z or +01:00)")
    return Moment(absolute=moment, text=value)


def _read_text(path: Path, display: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ScenarioError(
            [Problem(display, 1, 1, "", f"cannot read the file: {error}")]
        ) from None


def read_document(path: Path) -> LoadedFile:
    """A YAML or JSON file with positions; a file that cannot be read is a problem."""
    display = _display(path)
    text = _read_text(path, display)
    try:
        raw, source = load_yaml(text, display)
    except YamlError as error:
        raise ScenarioError([error.problem]) from None
    if source.problems:
        raise ScenarioError(source.problems)
    return LoadedFile(raw, source, display)


def validate_as(model: type[M], raw: Any, source: SourceMap) -> M:
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        raise ScenarioError(schema_problems(error, raw, source, model)) from None


def load_profile(path: Path) -> ProfileSpec:
    loaded = read_document(path)
    if not isinstance(loaded.raw, dict):
        raise ScenarioError(
            [loaded.source.problem((), "expected a customer: id, email, locale, traits, …")]
        )
    return validate_as(ProfileSpec, loaded.raw, loaded.source)


def events_from(raw: Any, source: SourceMap, path: tuple[str | int, ...]) -> list[ScenarioEvent]:
    """Events from the list at ``path`` of a loaded document (a whole events file: ``()``)."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ScenarioError([source.problem(path, "expected a list of events (- at: …)")])
    problems: list[Problem] = []
    events: list[ScenarioEvent] = []
    for index, item in enumerate(raw):
        where = (*path, index)
        try:
            spec = EventSpec.model_validate(item)
        except ValidationError as error:
            problems += schema_problems(error, item, source.within(where), EventSpec)
            continue
        try:
            moment = parse_moment(spec.at)
        except ValueError as error:
            problems.append(source.problem((*where, "at"), f"not a moment: {error}", AT_HINT))
            continue
        events.append(ScenarioEvent(moment, spec, source.problem(where, "")))
    if problems:
        raise ScenarioError(problems)
    return events


def load_events(path: Path) -> list[ScenarioEvent]:
    loaded = read_document(path)
    return events_from(loaded.raw, loaded.source, ())


def load_lookups(path: Path | None) -> dict[str, Any]:
    """``"<connection> <path>"`` (or ``"<connection>"``) → the data the lookup answers."""
    if path is None:
        return {}
    loaded = read_document(path)
    if loaded.raw is None:
        return {}
    if not isinstance(loaded.raw, dict):
        raise ScenarioError(
            [loaded.source.problem((), 'expected "<connection> <path>": answer lines')]
        )
    return dict(loaded.raw)


def resolve_events(
    events: list[ScenarioEvent], start: datetime, zone: tzinfo = UTC
) -> list[tuple[datetime, EventSpec]]:
    """Events in time order (file order among equals); none may lie before the start."""
    problems = []
    timed = []
    for order, item in enumerate(events):
        at = item.moment.resolve(start, zone)
        if at < start:
            where = item.where
            problems.append(
                Problem(
                    where.file,
                    where.line,
                    where.column,
                    f"{where.path}.at",
                    f"{item.moment.text} is before the start {start.isoformat()}",
                    "move the event, or pass an earlier --start",
                )
            )
        timed.append((at, order, item.spec))
    if problems:
        raise ScenarioError(problems)
    return [(at, spec) for at, _, spec in sorted(timed, key=lambda t: (t[0], t[1]))]


# --- populations ------------------------------------------------------------------------------

PROFILE_COLUMNS = ("id", "email", "phone", "locale", "timezone")


def load_population(path: Path) -> list[ProfileSpec]:
    """Customers from a CSV file (a column per field, other columns are traits) or NDJSON."""
    display = _display(path)
    text = _read_text(path, display)
    if path.suffix.lower() == ".csv":
        return _csv_customers(text, display)
    if path.suffix.lower() in (".ndjson", ".jsonl"):
        return _ndjson_customers(text, display)
    raise ScenarioError(
        [Problem(display, 1, 1, "", "expected a .csv or .ndjson file of customers")]
    )


def _csv_customers(text: str, display: str) -> list[ProfileSpec]:
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "id" not in reader.fieldnames:
        raise ScenarioError(
            [Problem(display, 1, 1, "", 'the first line names the columns; one must be "id"')]
        )
    customers, problems = [], []
    for row in reader:
        line = reader.line_num
        values = {k: v for k, v in row.items() if k is not None}
        profile: dict[str, Any] = {k: values[k] or None for k in PROFILE_COLUMNS if k in values}
        profile["traits"] = {
            k: _cell(v)
            for k, v in values.items()
            if k not in PROFILE_COLUMNS and v not in ("", None)
        }
        try:
            customers.append(ProfileSpec.model_validate(profile))
        except ValidationError as error:
            problems.append(_row_problem(error, display, line))
    if problems:
        raise ScenarioError(problems)
    return customers


def _cell(text: str | None) -> Any:
    """A CSV cell as a trait: JSON where it reads as JSON (numbers, true, ["a"]), else text."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _ndjson_customers(text: str, display: str) -> list[ProfileSpec]:
    customers, problems = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            customers.append(ProfileSpec.model_validate_json(line))
        except ValidationError as error:
            problems.append(_row_problem(error, display, number))
    if problems:
        raise ScenarioError(problems)
    return customers


def _row_problem(error: ValidationError, display: str, line: int) -> Problem:
    first = error.errors()[0]
    field = ".".join(str(p) for p in first["loc"])
    if first["type"] == "missing":
        return Problem(display, line, 1, field, f'missing "{field}"', "every customer needs an id")
    return Problem(display, line, 1, field, str(first["msg"]))
