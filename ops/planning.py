"""``touchpoint plan JOURNEY…``: what a deploy would change, before it is made.

For each journey: the structural diff (:mod:`ops.plandiff`) of the folder's compiled version
against the store's **active version** (the one ``touchpoint deploy`` would replace), and the
runs now in the journey, per version and current step, counted by Temporal's visibility. Runs
are never migrated: they finish on the version they entered (docs/operations.md, "Deploying
journeys"), so a run waiting at a step the new version removes or changes still goes through
the old step. Nothing is written: no plan published, nothing deployed.

And the **replay** (:mod:`ops.planreplay`): the event log's last ``--replay-days`` under the
active version and under the folder's, each journey on its own, on the simulator ``touchpoint
replay`` uses — messages per template per week, runs reaching each step, steps never reached.
What it cannot know (today's profiles, fixtures for lookups, …): docs/simulate.md, "Replay".
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, make_url
from temporalio.client import Client

from config.errors import StoreUnavailable, TemporalUnreachable
from config.project import ProjectConfig
from config.settings import Settings, connect
from ops.plandiff import Change, diff, step_fate, step_summary
from ops.planreplay import ReplayComparison, compare, comparison_lines
from store.analytics import Analytics
from store.database import connect as connect_store
from store.deployments import Deployments, Journey
from store.plans import PlanStore
from workflows.plan import Plan
from workflows.search import JOURNEY_ID, JOURNEY_STEP, JOURNEY_VERSION

JSON_FORMAT = 2
"""Bumped when a key of ``touchpoint plan --json`` changes meaning or goes away (2: ``replay``
is the side-by-side replay, ``replay_note`` why there is none)."""

DEFAULT_REPLAY_DAYS = 7


@dataclass(frozen=True)
class StepRuns:
    """Running runs of one version at one step, and what the new version does to that step."""

    version: str
    step: str  # "" for runs the index does not place at a step of their plan
    running: int
    fate: str  # "kept", "changed", "removed" (in the new version), or "unknown"

    def as_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "step": self.step or None,
            "running": self.running,
            "fate": self.fate,
        }


@dataclass
class JourneyPlan:
    """What ``touchpoint plan`` says about one journey."""

    journey_id: str
    plan: Plan  # the folder's version, compiled
    deployed: Journey | None  # the store's record (None: never deployed, or no store)
    changes: list[Change]
    steps: list[str]  # the new version's steps, each summarised (a new journey lists them)
    runs: list[StepRuns] = field(default_factory=list)
    runs_note: str | None = None  # why there are no counts, when there are none
    replay: ReplayComparison | None = None  # the last days' events under both versions
    replay_note: str | None = None  # why there is no replay (or only the new version's)

    @property
    def status(self) -> str:
        if self.deployed is None:
            return "new"
        return "changed" if self.changes else "unchanged"

    def as_json(self) -> dict[str, Any]:
        return {
            "journey": self.journey_id,
            "status": self.status,
            "version": self.plan.version,
            "deployed_version": self.deployed.active_version if self.deployed else None,
            "state": self.deployed.state if self.deployed else None,
            "changes": [c.as_json() for c in self.changes],
            "runs": [r.as_json() for r in self.runs],
            "runs_note": self.runs_note,
            "replay": self.replay.as_json() if self.replay is not None else None,
            "replay_note": self.replay_note,
        }


def open_store(settings: Settings) -> tuple[Engine | None, str | None]:
    """The store, or ``None`` and why: a SQLite file that does not exist is not created (a CI
    checkout has none: the journeys are compared against nothing)."""
    url = settings.database_url
    shown = make_url(url).render_as_string(hide_password=True) if "://" in url else url
    sqlite_file = url.startswith("sqlite:///") and ":memory:" not in url
    if sqlite_file and not Path(url.removeprefix("sqlite:///")).is_file():
        return None, f"no deployed version (store {shown} does not exist)"
    try:
        return connect_store(url), None
    except StoreUnavailable as error:
        return None, f"no deployed version (store unavailable: {error})"


def plan_journeys(engine: Engine | None, compiled: Sequence[Plan]) -> list[JourneyPlan]:
    """Each compiled journey against its active version in the store (none without a store)."""
    deployed: dict[str, Journey] = {}
    store = None
    if engine is not None:
        deployed = Deployments(engine).journeys()
        store = PlanStore(engine)
    found = []
    for plan in compiled:
        journey = deployed.get(plan.journey_id)
        active = store.get(journey.active_version) if store and journey else None
        changes = diff(active, plan) if journey is not None else diff(None, plan)
        steps = [f"{step_id}: {step_summary(node)}" for step_id, node in plan.nodes.items()]
        found.append(JourneyPlan(plan.journey_id, plan, journey, changes, steps))
    return found


async def count_runs(
    plans: list[JourneyPlan], engine: Engine, settings: Settings, timeout: float = 20.0
) -> str | None:
    """Fill each deployed journey's running runs per version and step from Temporal's
    visibility; a note instead when they cannot be had (the plans keep no counts)."""
    deployed = [p for p in plans if p.deployed is not None]
    if not deployed:
        return None
    if not settings.config.worker.index_runs:
        return "no run counts: they need the search attributes (worker.index_runs is off)"
    try:
        client = await connect(settings)
    except TemporalUnreachable as error:
        return f"no run counts: {error}"
    try:
        await asyncio.wait_for(
            asyncio.gather(*(_count_journey(client, engine, p) for p in deployed)), timeout
        )
    except TimeoutError:
        return f"no run counts: Temporal's visibility did not answer within {timeout:g} s"
    return None


async def _count_journey(client: Client, engine: Engine, plan: JourneyPlan) -> None:
    """Per version that has running runs: per step of its plan, how many runs are there.
    The versions are those the audit says were ever deployed (a handful), so no run is
    listed: one count per version from Temporal's visibility; where in the version its runs
    are from the analytics store, which every run writes as it moves (runs of input version
    4 keep their step nowhere else) — or, for runs the store does not have, from the
    ``TouchpointStep`` search attribute that runs started before version 4 carry."""
    journey = f"{JOURNEY_ID.name} = '{_quote(plan.journey_id)}' AND ExecutionStatus = 'Running'"
    history = Deployments(engine).history(plan.journey_id)
    versions = sorted({c.version for c in history if c.action == "deployed" and c.version})
    by_version = await _counts(client, journey, JOURNEY_VERSION.name, versions)
    stored = await asyncio.to_thread(Analytics(engine).running_by_step, plan.journey_id)
    store = PlanStore(engine)
    for version, running in by_version.items():
        if not running:
            continue
        old = store.get(version)
        steps = list(old.nodes) if old is not None else []
        at = {step: n for (v, step), n in stored.items() if v == version and step in steps}
        if not at:  # runs the store does not know: their search attribute, if they have it
            query = f"{journey} AND {JOURNEY_VERSION.name} = '{_quote(version)}'"
            at = await _counts(client, query, JOURNEY_STEP.name, steps)
        for step, count in sorted(at.items(), key=lambda item: steps.index(item[0])):
            if count and old is not None:
                plan.runs.append(StepRuns(version, step, count, step_fate(old, plan.plan, step)))
        elsewhere = running - sum(at.values())
        if elsewhere > 0:
            plan.runs.append(StepRuns(version, "", elsewhere, "unknown"))


async def _counts(client: Client, query: str, attribute: str, values: list[str]) -> dict[str, int]:
    """How many workflows match ``query``, per value of a keyword attribute: one count per
    value (Temporal's ``GROUP BY`` takes only ``ExecutionStatus``)."""
    found = await asyncio.gather(
        *(client.count_workflows(f"{query} AND {attribute} = '{_quote(v)}'") for v in values)
    )
    return {value: counted.count for value, counted in zip(values, found, strict=True)}


def _quote(value: str) -> str:
    return value.replace("'", "")


# --- the replay ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayOptions:
    days: int = DEFAULT_REPLAY_DAYS  # 0: no replay
    lookups: dict[str, Any] = field(default_factory=dict)
    exact: bool = False  # the time-skipping simulator even when the fast one is there


def replay_journeys(
    plans: list[JourneyPlan],
    engine: Engine | None,
    root: Path,
    config: ProjectConfig,
    options: ReplayOptions,
    now: datetime | None = None,
) -> str | None:
    """Replay the event log's last ``options.days`` under each new or changed journey's active
    version and its folder version (each journey alone); a note for every journey instead when
    there is nothing to replay. Journeys without a change are not replayed."""
    from simulation.commands import quiet_sdk_logs
    from simulation.replay import (
        JourneyReplay,
        NothingToReplay,
        journey_replay,
        read_recorded,
        simulator_for,
    )

    if options.days <= 0:
        return "not asked for (--replay-days 0)"
    if engine is None:
        return "no store, so no recorded events to replay"
    wanted = [plan for plan in plans if plan.status != "unchanged"]
    if not wanted:
        return None
    end = now or datetime.now(UTC).replace(microsecond=0)
    try:
        recorded = read_recorded(engine, end - timedelta(days=options.days), end)
    except (NothingToReplay, StoreUnavailable) as error:
        return str(error)
    quiet_sdk_logs()
    simulator = simulator_for(root, config, options.exact)
    store = PlanStore(engine)

    async def one(plan: Plan) -> JourneyReplay:
        result = await simulator.run(recorded.scenario([plan], options.lookups))
        return journey_replay(plan, result)

    async def replay_all() -> None:
        for journey in wanted:
            active = None
            if journey.deployed is not None:
                active = store.get(journey.deployed.active_version)
                if active is None:
                    journey.replay_note = (
                        f"the active version {journey.deployed.active_version} is not among the "
                        "store's plans: replayed under the new version only"
                    )
            after = await one(journey.plan)
            before = await one(active) if active is not None else None
            journey.replay = compare(
                before,
                after,
                days=(recorded.end - recorded.start).total_seconds() / 86_400,
                customers=len(recorded.customers),
                events=len(recorded.events),
                simulator=simulator.name,
            )

    asyncio.run(replay_all())
    return None


# --- output -------------------------------------------------------------------------------------


def text_lines(
    plans: list[JourneyPlan],
    store_note: str | None,
    runs_note: str | None,
    replay_note: str | None = None,
) -> list[str]:
    """The report for people (and pull requests): per journey a header, ``+``/``-``/``~``
    lines, the runs now in it, and the replay side by side."""
    lines: list[str] = []
    for plan in plans:
        if lines:
            lines.append("")
        lines += _journey_text(plan, store_note, runs_note)
        lines += _replay_text(plan, replay_note)
    return lines


def _replay_text(plan: JourneyPlan, replay_note: str | None) -> list[str]:
    if plan.status == "unchanged":
        return []
    lines = comparison_lines(plan.replay) if plan.replay is not None else []
    note = plan.replay_note or (replay_note if plan.replay is None else None)
    if note:
        lines.append(f"  replay: {note}")
    return lines


def _journey_text(plan: JourneyPlan, store_note: str | None, runs_note: str | None) -> list[str]:
    if plan.deployed is None:
        why = f"; {store_note}" if store_note else ""
        lines = [f"{plan.journey_id}: new journey {plan.plan.version}{why}"]
        lines += [f"  + step {step}" for step in plan.steps]
    elif not plan.changes:
        lines = [f"{plan.journey_id}: no change ({plan.plan.version} is deployed)"]
    else:
        active = plan.deployed.active_version
        lines = [
            f"{plan.journey_id}: {active} → {plan.plan.version} ({len(plan.changes)} change(s))"
        ]
        lines += [f"  {c.sign} {c.what} {c.detail}" for c in plan.changes]
    if plan.deployed is not None and plan.deployed.state != "active":
        lines.append(f"  note: the journey is {plan.deployed.state}; a deploy keeps that state")
    if plan.deployed is not None:
        lines += _runs_text(plan, runs_note)
    return lines


def _runs_text(plan: JourneyPlan, runs_note: str | None) -> list[str]:
    note = plan.runs_note or runs_note
    if note:
        return [f"  runs now: {note}"]
    total = sum(r.running for r in plan.runs)
    if not total:
        return ["  runs now: none running"]
    lines = [f"  runs now: {total} running; they finish on the version they entered (no migration)"]
    for runs in plan.runs:
        where = f"at `{runs.step}`" if runs.step else "not at a step of their plan yet"
        line = f"    {runs.running} run(s) on {runs.version} {where}"
        if runs.fate == "removed":
            line += (
                f", which the new version removes: they finish on {runs.version} "
                "and still go through it"
            )
        elif runs.fate == "changed":
            line += f", which the new version changes: they go through {runs.version}'s step"
        lines.append(line)
    return lines


def json_document(
    plans: list[JourneyPlan],
    store_note: str | None,
    runs_note: str | None,
    replay_note: str | None = None,
) -> dict[str, Any]:
    """``touchpoint plan --json`` (keys documented in docs/operations.md)."""
    journeys = []
    for plan in plans:
        document = plan.as_json()
        if plan.deployed is not None and document["runs_note"] is None:
            document["runs_note"] = runs_note
        journeys.append(document)
    return {
        "format": JSON_FORMAT,
        "store_note": store_note,
        "journeys": journeys,
        "replay_note": replay_note,
    }
