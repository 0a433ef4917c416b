"""What ``touchpoint simulate`` does, kept out of the CLI module (which imports it lazily)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from language.schedules import describe_schedule
from simulation.fast import FastSimulator
from simulation.replay import Runs
from simulation.report import (
    as_json,
    display_zone,
    funnel,
    funnel_text,
    held,
    outcome_of,
    run_lines,
    sorted_runs,
    timeline_text,
)
from simulation.scenario import ScenarioError, load_lookups
from simulation.setup import (
    BrokenJourney,
    Project,
    UsageError,
    build_scenario,
    load_project,
    pick_plans,
)
from simulation.simulator import Scenario, SimulationResult, Simulator

Echo = Callable[..., None]
PHASES = {"events": "events", "time": "simulated time", "collect": "reading runs"}


def quiet_sdk_logs() -> None:
    """An activity that fails on purpose (a missing template) is part of the result, not a
    traceback on the terminal."""
    for name in ("temporalio", "temporalio.activity", "temporalio.worker"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _load(root: Path, echo: Echo) -> tuple[Project | None, int]:
    """The project and how many problems it has, printed first. Journeys with problems are
    left out, the others run; problems in touchpoint.yaml stop everything (``None``)."""
    project, problems = load_project(root)
    for problem in problems:
        echo(problem.format(), err=True)
    if project is None:
        echo("✗ touchpoint.yaml has problems; fix them first (touchpoint validate)", err=True)
    elif project.broken:
        files = ", ".join(sorted(project.broken.values()))
        echo(f"! left out, until their problems are fixed: {files}", err=True)
    return project, len(problems)


def _cannot_start(error: UsageError | BrokenJourney | ScenarioError, echo: Echo) -> int:
    """Say why a simulation or replay cannot start: exit 2 for a wrong command line, 1 for a
    journey or file with problems."""
    if isinstance(error, ScenarioError):
        for problem in error.problems:
            echo(problem.format(), err=True)
        return 1
    echo(f"✗ {error}", err=True)
    return 2 if isinstance(error, UsageError) else 1


def _problems_left(count: int, echo: Echo) -> int:
    """The exit code's share of the project's problems: 1 when there were any."""
    if not count:
        return 0
    problems = "1 problem" if count == 1 else f"{count} problems"
    echo(f"✗ the project has {problems} (listed first; touchpoint validate)", err=True)
    return 1


def simulate(
    root: Path,
    journeys: list[str],
    *,
    profile: Path | None,
    profiles: Path | None,
    events: Path | None,
    lookups: Path | None,
    start: str | None,
    until: str,
    as_json_output: bool,
    echo: Echo,
    progress_bar: bool,
    exact: bool = False,
    render: str = "all",
) -> int:
    project, problems = _load(root, echo)
    if project is None:
        return 1
    try:
        scenario = build_scenario(
            project,
            journeys,
            profile=profile,
            profiles=profiles,
            events=events,
            lookups=lookups,
            start=start,
            until=until,
        )
    except (UsageError, BrokenJourney, ScenarioError) as error:
        return _cannot_start(error, echo)
    quiet_sdk_logs()
    simulator = (
        Simulator(project.root, project.config)
        if exact
        else FastSimulator(project.root, project.config, render=render)
    )
    population = profiles is not None
    if progress_bar and population:
        result = run_with_progress(simulator, scenario)
    else:
        result = asyncio.run(simulator.run(scenario))
    funnels = [funnel(plan, result.runs) for plan in scenario.plans] if population else None
    if as_json_output:
        echo(json.dumps(as_json(result, funnels), indent=2, ensure_ascii=False))
    else:
        for line in text_report(result, funnels, project.config.defaults.timezone):
            echo(line)
    return _problems_left(problems, echo)


def run_with_progress(
    simulator: Runs, scenario: Scenario, console: Console | None = None
) -> SimulationResult:
    """Run with a progress bar per phase: routing the events, simulated time, reading runs."""
    columns = (
        TextColumn("{task.description:<16}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=True, console=console) as bar:
        tasks: dict[str, int] = {}

        def report(phase: str, done: float, total: float) -> None:
            if phase not in tasks:
                tasks[phase] = int(bar.add_task(PHASES.get(phase, phase), total=total))
            bar.update(tasks[phase], completed=done, total=total)  # type: ignore[arg-type]

        return asyncio.run(simulator.run(scenario, report))


def occurrence_lines(result: SimulationResult, zone: tzinfo) -> list[str]:
    """When each scheduled journey went out in the simulation, so the computed moments can be
    checked at a glance (the first few and the last)."""
    lines = []
    for plan in result.plans:
        if plan.schedule is None:
            continue
        moments = [e.at for e in result.entries if e.journey_id == plan.journey_id]
        shown = [f"{m.astimezone(zone):%a %Y-%m-%d %H:%M}" for m in moments]
        if len(shown) > 4:
            shown = [*shown[:3], "…", shown[-1]]
        count = "1 occurrence" if len(moments) == 1 else f"{len(moments)} occurrences"
        lines.append(
            f"{plan.journey_id} goes out {describe_schedule(plan.schedule)}: {count}, "
            + ", ".join(shown)
        )
    return lines


def text_report(result: SimulationResult, funnels: list | None, default_zone: str) -> list[str]:
    """What ``touchpoint simulate`` prints: the timeline and outcomes (one customer) or the
    funnels (a population), what did not enter, and how many messages would be sent."""
    lines: list[str] = []
    echo = lines.append
    zone = display_zone(result, default_zone)
    start = result.start.astimezone(zone)
    days = (result.end - result.start).days
    who = (
        result.customers[0].id
        if len(result.customers) == 1
        else f"{len(result.customers)} customers"
    )
    journeys = ", ".join(plan.journey_id for plan in result.plans)
    echo(f"Simulated {journeys} for {who}: {days} days from {start:%a %Y-%m-%d %H:%M} ({zone})")
    lines += occurrence_lines(result, zone)
    if funnels is None:
        echo("")
        lines += timeline_text(result, zone)
        echo("")
        echo("Outcomes")
        for run in sorted_runs(result):
            label = run.journey_id + (f" [{run.key}]" if run.key else "")
            ending = run.outcome
            when = (
                f" on {ending.at.astimezone(zone):%a %Y-%m-%d %H:%M}"
                if ending and ending.at
                else ""
            )
            if ending and ending.kind == "failed":  # why is in the timeline, once
                why = f" at {ending.step}" if ending.step else ""
            elif ending and ending.reason:
                why = f" ({ending.reason})"
            else:
                why = ""
            echo(f"  {label:<40} {outcome_of(run)}{when}{why}")
    else:
        for item in funnels:
            echo("")
            lines += funnel_text(item)
    if result.not_entered:
        echo("")
        echo("Not entered")
        reasons: dict[tuple[str, str, str], int] = {}
        for miss in result.not_entered:
            key = (miss.journey_id, miss.event, miss.reason)
            reasons[key] = reasons.get(key, 0) + 1
        for (journey, event, reason), count in sorted(reasons.items()):
            times = f" ×{count}" if count > 1 else ""
            echo(f"  {journey}: {event}{times} — {reason}")
    sent = len(result.messages)
    holds = [h for run in result.runs for line in run_lines(run, result) if (h := held(line))]
    actions = [h.action for h in holds]
    by_policies = (
        f" ({actions.count('skipped')} skipped, {actions.count('deferred')} deferred by the "
        "delivery policies)"
        if holds
        else ""
    )
    echo("")
    echo(f"{sent} message(s) would be sent{by_policies}; nothing left this machine.")
    return lines


def replay(
    root: Path,
    journeys: list[str],
    *,
    since: str,
    lookups: Path | None,
    exact: bool,
    as_json_output: bool,
    echo: Echo,
    progress_bar: bool,
) -> int:
    """``touchpoint replay``: the folder's journeys against the event log's last ``since``
    (:mod:`simulation.replay`). 2 for a usage mistake, 1 when there is nothing to replay."""
    from config.settings import load_settings
    from simulation.replay import (
        open_recorded,
        read_recorded,
        simulator_for,
        summarize,
        text_lines,
        window_start,
    )

    project, problems = _load(root, echo)
    if project is None:
        return 1
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        plans = pick_plans(project, journeys)
        start = window_start(since, now)
        answers = load_lookups(lookups)
    except (UsageError, BrokenJourney, ScenarioError) as error:
        return _cannot_start(error, echo)
    engine = open_recorded(load_settings(project.config).database_url)
    try:
        recorded = read_recorded(engine, start, now)
    finally:
        engine.dispose()
    quiet_sdk_logs()
    simulator = simulator_for(project.root, project.config, exact)
    scenario = recorded.scenario(plans, answers)
    if progress_bar:
        result = run_with_progress(simulator, scenario)
    else:
        result = asyncio.run(simulator.run(scenario))
    zone = ZoneInfo(project.config.defaults.timezone)
    summary = summarize(recorded, result, simulator.name, zone)
    if as_json_output:
        echo(json.dumps(summary.as_json(), indent=2, ensure_ascii=False))
    else:
        for line in text_lines(summary, zone):
            echo(line)
    return _problems_left(problems, echo)


def test(
    root: Path,
    paths: list[Path],
    *,
    junit: Path | None,
    echo: Echo,
    colour: bool = True,
    exact: bool = False,
) -> int:
    """``touchpoint test``: run journey test files; 0 when every case passes."""
    from simulation.journey_tests import (
        CaseResult,
        find_test_files,
        junit_xml,
        run_files,
    )

    project, problems = _load(root, echo)
    if project is None:
        return 1
    files = find_test_files(paths, project)
    if not files:
        echo("no *.test.yaml files found", err=True)
        return 1
    quiet_sdk_logs()

    def show(result: CaseResult) -> None:
        mark = "✓" if result.passed else "✗"
        how = f", exact: {result.exact_because}" if result.exact_because else ""
        echo(f"{mark} {result.file} › {result.name} ({result.seconds:.1f}s{how})")
        for line in result.report():
            echo(f"    {line}")

    results, file_problems = asyncio.run(run_files(files, project, show, exact=exact))
    for problem in file_problems:
        echo(problem.format(), err=True)
    if junit is not None:
        junit.parent.mkdir(parents=True, exist_ok=True)
        junit.write_bytes(junit_xml(results, file_problems))
    failed = sum(not r.passed for r in results)
    summary = f"{len(results) - failed} passed, {failed} failed"
    if file_problems:
        summary += f", {len(file_problems)} problem(s) in test files"
    if problems:
        summary += f", {problems} problem(s) in the project"
    echo(("✓ " if not failed and not file_problems and not problems else "✗ ") + summary)
    return 1 if failed or file_problems or problems else 0
