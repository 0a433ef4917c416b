"""``touchpoint stats JOURNEY``: a journey's numbers from the analytics store, as Rich tables or
JSON — the same numbers the dashboard shows (:mod:`store.analytics`)."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from config.errors import UserError
from config.project import ProjectConfig
from config.settings import load_settings
from language.validator import CONFIG_FILE, JOURNEYS_DIR, load_config, validate
from store.analytics import Analytics, JourneyStats
from store.database import connect as connect_store
from workflows.durations import parse_duration
from workflows.plan import Plan

SINCE_HINT = "a duration such as 1d, 7d, 30d or 12h"


class UnknownJourney(UserError):
    """No plan and no run of the journey in the store, and no such journey in the project."""


def since_of(text: str, now: datetime) -> datetime:
    """The start of the window ``text`` long that ends ``now``; ``ValueError`` saying what a
    window looks like."""
    try:
        seconds = parse_duration(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not {SINCE_HINT}") from None
    return now - timedelta(seconds=seconds)


def open_analytics(root: Path) -> Analytics:
    """The project's store. Only ``touchpoint.yaml`` is read: a broken journey file must not
    keep anyone from reading the numbers of another one."""
    path = root / CONFIG_FILE
    config = ProjectConfig()
    if path.exists():
        config, problems = load_config(path)
        if problems:
            raise UserError(f"{CONFIG_FILE} has problems; run `touchpoint validate` first")
    return Analytics(connect_store(load_settings(config).database_url))


def journey_stats(
    analytics: Analytics,
    journey_id: str,
    since: datetime,
    version: str | None,
    root: Path | None = None,
) -> JourneyStats:
    """The journey's numbers; for a journey the store does not know yet but the project in
    ``root`` has (not deployed, or nobody entered it), zeros on its compiled plan's steps and
    templates, as the dashboard shows it."""
    if analytics.known(journey_id):
        return analytics.journey(journey_id, since, version=version)
    plan = project_plan(root, journey_id) if root is not None else None
    if plan is None:
        known = analytics.journey_ids()
        listed = f"journeys with numbers: {', '.join(known)}" if known else "no journey has run yet"
        raise UnknownJourney(f"no journey {journey_id!r} in the store; {listed}")
    return analytics.journey(journey_id, since, version=version, unpublished=plan)


def project_plan(root: Path, journey_id: str) -> Plan | None:
    """``journey_id``'s compiled plan from the project's journeys, if its file compiles (a
    broken file of another journey does not matter)."""
    return validate([root / JOURNEYS_DIR], root=root).plans.get(journey_id)


def as_json(stats: JourneyStats) -> str:
    document = dataclasses.asdict(stats)
    document["outcomes"]["ended"] = stats.outcomes.ended
    return json.dumps(document, default=_iso, indent=2)


def _iso(value: object) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    raise TypeError(type(value).__name__)


def percent(rate: float) -> str:
    return f"{rate * 100:.1f} %"


def print_stats(stats: JourneyStats, console: Console) -> None:
    """The numbers as tables: summary and outcomes, lift, steps, edges, templates, days."""
    window = f"{stats.since:%Y-%m-%d %H:%M} – {stats.until:%Y-%m-%d %H:%M} UTC"
    versions = ", ".join(v[:12] for v in stats.versions) or "none"
    console.print(f"[bold]{stats.journey_id}[/bold]  runs entered {window}  (versions: {versions})")
    outcomes = stats.outcomes
    summary = Table("number", "runs", title="Entered and outcomes", title_justify="left")
    rows: list[tuple[str, Any]] = [
        ("entered", stats.entered),
        ("active", outcomes.active),
        ("completed", outcomes.completed),
        ("converted", outcomes.converted),
        *((f"exited: {reason}", n) for reason, n in outcomes.exited.items()),
        *((f"failed at {step}", n) for step, n in outcomes.failed.items()),
        ("cancelled", outcomes.cancelled),
        ("erased", outcomes.erased),
        ("conversion rate", percent(stats.conversion_rate)),
    ]
    for name, value in rows:
        summary.add_row(name, str(value))
    console.print(summary)
    _print_lift(stats, console)
    steps = Table("step", "passed", "waiting", title="Steps", title_justify="left")
    for step in stats.steps:
        steps.add_row(step.step, str(step.passed), str(step.waiting))
    console.print(steps)
    edges = Table("from", "to", "by", "passed", title="Edges", title_justify="left")
    for edge in stats.edges:
        edges.add_row(edge.source, edge.target, edge.label or "", str(edge.passed))
    console.print(edges)
    _print_templates(stats, console)
    days = Table(
        "day", "entered", "converted", "ended", "sent", "opened", "clicked",
        title="Days (UTC)", title_justify="left",
    )  # fmt: skip
    for day in stats.days:
        days.add_row(
            day.day, *(str(n) for n in (day.entered, day.converted, day.ended, day.sent,
                                         day.opened, day.clicked))
        )  # fmt: skip
    console.print(days)


def _print_lift(stats: JourneyStats, console: Console) -> None:
    lift = stats.lift
    if lift is None:
        console.print("Lift: no holdout (or nobody in both groups yet)")
        return
    table = Table("group", "runs", "converted", "rate", title="Lift", title_justify="left")
    table.add_row("treatment", str(lift.treatment_runs), str(lift.treatment_converted),
                  percent(lift.treatment_rate))  # fmt: skip
    table.add_row("holdout", str(lift.holdout_runs), str(lift.holdout_converted),
                  percent(lift.holdout_rate))  # fmt: skip
    console.print(table)
    console.print(
        f"lift {lift.lift * 100:+.1f} points (95 % interval {lift.low * 100:+.1f} to "
        f"{lift.high * 100:+.1f})"
    )


def _print_templates(stats: JourneyStats, console: Console) -> None:
    sent = Table(
        "step", "template", "channel", "sent", "skipped", "failed", "deferred",
        title="Messages", title_justify="left",
    )  # fmt: skip
    provider = Table(
        "step", "delivered", "opened", "clicked", "bounced", "dropped", "spam", "unsubscribed",
        title="Provider events (messages with each)", title_justify="left",
    )  # fmt: skip
    for t in stats.templates:
        skipped = ", ".join(f"{n} {reason}" for reason, n in t.skipped.items()) or "0"
        sent.add_row(t.step, t.template, t.channel, str(t.sent), skipped, str(t.failed),
                     str(t.deferred))  # fmt: skip
        provider.add_row(
            t.step, *(str(n) for n in (t.delivered, t.opened, t.clicked, t.bounced, t.dropped,
                                       t.spam_reported, t.unsubscribed))
        )  # fmt: skip
    console.print(sent)
    console.print(provider)
    _print_template_days(stats, console)


def _print_template_days(stats: JourneyStats, console: Console) -> None:
    """A small table per send step: its messages on each day that had any."""
    for step, template, days in stats.template_days_by_step():
        title = f"{step} ({template or 'no template'}) per day (UTC)"
        table = Table(
            "day", "sent", "skipped", "failed", "delivered", "opened", "clicked", "bounced",
            title=title, title_justify="left",
        )  # fmt: skip
        for d in days:
            table.add_row(d.day, *(str(n) for n in (d.sent, d.skipped, d.failed, d.delivered,
                                                    d.opened, d.clicked, d.bounced)))  # fmt: skip
        console.print(table)
