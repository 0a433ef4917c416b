"""From the command line's words to a :class:`Scenario`: which journeys, which customers,
which events, from when and for how long."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

from config.project import ProjectConfig
from language.problems import Problem, suggestion
from language.schedules import describe_schedule
from language.validator import CONFIG_FILE, JOURNEYS_DIR, _display, validate
from simulation.entry import entry_moments, without_event
from simulation.scenario import (
    EventSpec,
    ProfileSpec,
    ScenarioError,
    load_events,
    load_lookups,
    load_population,
    load_profile,
    resolve_events,
)
from simulation.simulator import Scenario
from workflows.durations import parse_duration
from workflows.plan import Plan


class UsageError(Exception):
    """A command-line mistake (unknown journey, bad --start): says what to write instead."""


class BrokenJourney(Exception):
    """A journey asked for by name whose file has problems (they are shown already)."""


@dataclass(frozen=True)
class Project:
    root: Path
    config: ProjectConfig
    plans: dict[str, Plan]
    broken: dict[str, str] = field(default_factory=dict)  # journey files with problems: name
    # (the file's stem, which is the journey's id by convention) → the file as problems show it

    def broken_file(self, name: str) -> str | None:
        """The file with problems that ``name`` (a journey id or file) means, if any."""
        stem = Path(name).name.removesuffix(".yaml")
        return self.broken.get(stem)


def load_project(root: Path) -> tuple[Project | None, list[Problem]]:
    """The project and its problems. A journey with problems is left out (and reported): the
    others still run. Problems in touchpoint.yaml concern every journey: no project then."""
    report = validate((), root=root)
    config_file = _display(root / CONFIG_FILE)
    if any(problem.file == config_file for problem in report.problems):
        return None, report.problems
    journeys = {
        _display(path): path.name.removesuffix(".yaml")
        for path in sorted((root / JOURNEYS_DIR).rglob("*.yaml"))
        if not path.name.endswith(".test.yaml")
    }
    broken = {
        journeys[problem.file]: problem.file
        for problem in report.problems
        if problem.file in journeys
    }
    return Project(root.resolve(), report.config, dict(report.plans), broken), report.problems


def pick_plans(project: Project, names: Sequence[str]) -> list[Plan]:
    """Journeys named by id (``newsletter-welcome``) or by file (``journeys/x.yaml``)."""
    plans = []
    by_file = {f"{plan_id}.yaml": plan for plan_id, plan in project.plans.items()}
    for name in names:
        plan = project.plans.get(name) or by_file.get(Path(name).name)
        broken = project.broken_file(name)
        if plan is None and broken is not None:
            raise BrokenJourney(f"{broken} has problems (above): fix them to simulate {name}")
        if plan is None:
            known = sorted(project.plans)
            raise UsageError(
                f"no journey {name!r}{suggestion(name, known)} (journeys: {', '.join(known)})"
            )
        if plan not in plans:
            plans.append(plan)
    return plans


def parse_until(text: str) -> timedelta:
    try:
        return timedelta(seconds=parse_duration(text))
    except ValueError:
        raise UsageError(f"--until {text!r}: expected a duration such as 90d, 12w or 36h") from None


def parse_start_option(text: str | None) -> datetime:
    """``--start``: an ISO time with its offset; default now, to the minute."""
    if text is None:
        return datetime.now(UTC).replace(second=0, microsecond=0)
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"--start {text!r}: expected an ISO time, e.g. 2027-01-04T09:00+01:00"
        ) from None
    if moment.tzinfo is None:
        raise UsageError(f"--start {text!r}: add the offset, e.g. {text}+01:00 or {text}Z")
    return moment


def build_scenario(
    project: Project,
    journeys: Sequence[str],
    *,
    profile: Path | None = None,
    profiles: Path | None = None,
    events: Path | None = None,
    lookups: Path | None = None,
    start: str | None = None,
    until: str = "90d",
) -> Scenario:
    """Raises :class:`UsageError` for the command line, :class:`ScenarioError` for files."""
    plans = pick_plans(project, journeys)
    if (profile is None) == (profiles is None):
        raise UsageError("give one customer (--profile FILE) or a population (--profiles FILE)")
    scheduled = without_event(plans)
    if profile is not None and events is None and len(scheduled) < len(plans):
        raise UsageError("--events FILE is needed: what the customer does, and when")
    begin = parse_start_option(start)
    customers: list[ProfileSpec] = (
        [load_profile(profile)] if profile is not None else load_population(profiles)  # type: ignore[arg-type]
    )
    if not customers:
        raise UsageError(f"{profiles}: no customers in the file")
    by_event = [plan for plan in plans if plan not in scheduled]
    timed = (
        resolve_events(load_events(events), begin, customer_zone(project, customers))
        if events is not None
        else [(begin, EventSpec(event=plan.trigger.event)) for plan in by_event]
    )
    _check_users(timed, customers, events)
    length = parse_until(until)
    zones = [(customer.id, customer.timezone) for customer in customers]
    entries = entry_moments(plans, begin, begin + length, zones=zones)
    for plan in scheduled:
        if plan.schedule is not None and not any(e.journey_id == plan.journey_id for e in entries):
            raise UsageError(
                f"{plan.journey_id} goes out {describe_schedule(plan.schedule)}: not once from "
                f"{begin:%Y-%m-%d %H:%M %z} for {until}; pass a --start or --until that "
                "includes an occurrence"
            )
    return Scenario(
        plans=plans,
        customers=customers,
        events=timed,
        start=begin,
        until=length,
        lookups=load_lookups(lookups),
        entries=entries,
    )


def customer_zone(project: Project, customers: Sequence[ProfileSpec]) -> tzinfo:
    """Where "day 2 09:00" is read: the customer's time zone, else the project's default."""
    name = customers[0].timezone if len(customers) == 1 else None
    for candidate in (name, project.config.defaults.timezone):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (KeyError, ValueError):
                continue
    return UTC


def _check_users(
    timed: list[tuple[datetime, EventSpec]], customers: list[ProfileSpec], events: Path | None
) -> None:
    ids = {c.id for c in customers}
    strangers = sorted({spec.user for _, spec in timed if spec.user and spec.user not in ids})
    if strangers:
        raise ScenarioError(
            [
                Problem(
                    str(events),
                    1,
                    1,
                    "user",
                    f"events for customers not in the simulation: {', '.join(strangers)}",
                    "leave out user: (the event is then every customer's) or add the customer",
                )
            ]
        )
