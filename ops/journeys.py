"""Journeys deployed while the system runs: what ``touchpoint deploy`` and ``touchpoint
journeys`` do, and what an API does with its project folder when it starts.

**Which version wins.** The store's active version. An API (and ``touchpoint emit``) publishes
its folder's plans when it starts and deploys the folder's journeys that were *never* deployed;
a journey deployed before keeps its active version, whatever the folder says (the API says so
on stderr). ``touchpoint api --deploy`` (and ``touchpoint dev``, a laptop's edit-and-restart
loop) deploys the folder's versions as ``touchpoint deploy`` would.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine
from temporalio.client import Client

from config.errors import TemporalUnreachable, UserError
from config.project import ProjectConfig
from config.settings import Settings, connect, load_settings
from ingestion.deployed import DeployedJourneys
from language.validator import CONFIG_FILE, JOURNEYS_DIR, load_config
from store.database import connect as connect_store
from store.deployments import Change, Deployed, Deployments, Journey, State
from store.plans import PlanStore
from workflows.plan import Plan
from workflows.search import JOURNEY_ID, JOURNEY_VERSION


def operator() -> str:
    """Who runs this process, for the audit (``unknown`` where the system cannot say)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def start_routing(
    engine: Engine, project: Path, folder: Mapping[str, Plan], deploy: bool, process: str
) -> DeployedJourneys:
    """Publish the folder's plans, deploy its journeys that were never deployed (all of them
    with ``deploy``), and say on stderr where the store's active version is not the folder's."""
    plans = PlanStore(engine)
    plans.publish(folder.values())
    deployments = Deployments(engine)
    actor = f"{operator()} ({process})"
    if deploy:
        deployments.deploy(
            list(folder.values()), actor=actor, reason=f"{process} --deploy from {project}"
        )
    else:
        deployments.deploy_new(
            folder.values(), actor=actor, reason=f"first start of {process} from {project}"
        )
        active = deployments.journeys()
        for journey_id, plan in sorted(folder.items()):
            deployed = active.get(journey_id)
            if deployed is not None and deployed.active_version != plan.version:
                print(
                    f"note: journey {journey_id}: routing the deployed version "
                    f"{deployed.active_version}, not this folder's {plan.version} "
                    f"(`touchpoint deploy {journey_id}` deploys the folder's)",
                    file=sys.stderr,
                    flush=True,
                )
    return DeployedJourneys(deployments, plans, known=folder.values())


# --- touchpoint deploy ------------------------------------------------------------------------


def journey_files(project: Path, names: Sequence[str]) -> list[Path]:
    """The files of the journeys ``names`` (ids in ``journeys/``, or paths); none: the whole
    project. :class:`UserError` for a name that is neither."""
    files = []
    for name in names:
        path = Path(name)
        if path.suffix in (".yaml", ".yml") and path.is_file():
            files.append(path)
            continue
        candidate = project / JOURNEYS_DIR / f"{name}.yaml"
        if not candidate.is_file():
            there = sorted(
                p.stem
                for p in (project / JOURNEYS_DIR).glob("*.yaml")
                if not p.name.endswith(".test.yaml")
            )
            raise UserError(
                f"no journey {name!r}: no file {candidate} "
                f"(journeys there: {', '.join(there) or 'none'}); nothing deployed"
            )
        files.append(candidate)
    return files


def deploy(
    config: ProjectConfig, compiled: Sequence[Plan], *, actor: str, reason: str | None
) -> list[Deployed]:
    """Publish the plans and make each its journey's active version (one transaction)."""
    engine = connect_store(load_settings(config).database_url)
    PlanStore(engine).publish(compiled)
    return Deployments(engine).deploy(compiled, actor=actor, reason=reason)


def deploy_line(result: Deployed) -> str:
    """``journey  deployed 3f2a… (was 9e8d…)`` / ``journey  unchanged (3f2a… is active)``."""
    if not result.changed:
        line = f"unchanged ({result.version} is active)"
    elif result.previous is None:
        line = f"deployed {result.version} (its first version)"
    else:
        line = f"deployed {result.version} (was {result.previous})"
    if result.state != "active":
        line += (
            f"; the journey is {result.state}: `touchpoint journeys resume "
            f"{result.journey_id}` lets new entries start"
        )
    return line


# --- touchpoint journeys ------------------------------------------------------------------------


def open_deployments(root: Path) -> tuple[Deployments, Settings]:
    """The project's store and settings. Only ``touchpoint.yaml`` is read: a broken journey
    must not keep anyone from pausing or stopping another one."""
    path = root / CONFIG_FILE
    config = ProjectConfig()
    if path.exists():
        config, problems = load_config(path)
        if problems:
            raise UserError(f"{CONFIG_FILE} has problems; run `touchpoint validate` first")
    settings = load_settings(config)
    return Deployments(connect_store(settings.database_url)), settings


@dataclass(frozen=True)
class VersionRow:
    journey: Journey
    version: str
    deployed: Change | None  # the last time it was made active
    published_at: datetime | None
    running: int | None = None  # none: unknown (Temporal not reachable)
    total: int | None = None

    @property
    def active(self) -> bool:
        return self.version == self.journey.active_version


VERSION_COLUMNS = ["JOURNEY", "STATE", "VERSION", "ACTIVE", "DEPLOYED", "BY", "RUNNING", "RUNS"]


def version_rows(deployments: Deployments, only: str | None = None) -> list[VersionRow]:
    """Each deployed journey's versions that were ever deployed, newest deploy first."""
    journeys = deployments.journeys() if only is None else {only: deployments.get(only)}
    published = deployments.published(journeys)
    rows = []
    for journey_id, journey in journeys.items():
        deploys: dict[str, Change] = {}
        for change in deployments.history(journey_id):
            if change.action == "deployed" and change.version:
                deploys[change.version] = change
        when = {p.version: p.published_at for p in published.get(journey_id, [])}
        order = sorted(deploys.values(), key=lambda c: c.at, reverse=True)
        rows += [VersionRow(journey, c.version or "", c, when.get(c.version or "")) for c in order]
    return rows


async def with_run_counts(
    rows: list[VersionRow], settings: Settings
) -> tuple[list[VersionRow], str | None]:
    """The rows with how many runs each version has (running, and all that entered it) from
    Temporal's visibility; a note instead when the counts cannot be had."""
    if not rows:
        return rows, None
    if not settings.config.worker.index_runs:
        return rows, "run counts need the search attributes (worker.index_runs is off)"
    try:
        client = await connect(settings)
    except TemporalUnreachable as error:
        return rows, f"no run counts: {error}"
    counts = await asyncio.gather(*(_count(client, r.journey.journey_id, r.version) for r in rows))
    return [
        VersionRow(r.journey, r.version, r.deployed, r.published_at, running, total)
        for r, (running, total) in zip(rows, counts, strict=True)
    ], None


async def _count(client: Client, journey_id: str, version: str) -> tuple[int, int]:
    """Running runs, and all runs (a run that continued as new counts once), of a version."""
    query = (
        f"{JOURNEY_ID.name} = '{_quote(journey_id)}' AND "
        f"{JOURNEY_VERSION.name} = '{_quote(version)}' GROUP BY ExecutionStatus"
    )
    found = await client.count_workflows(query)
    by_status = {str(g.group_values[0]): g.count for g in found.groups}
    running = by_status.get("Running", 0)
    total = sum(n for status, n in by_status.items() if status != "ContinuedAsNew")
    return running, total


def version_table(rows: list[VersionRow]) -> list[list[str]]:
    def count(value: int | None) -> str:
        return "?" if value is None else str(value)

    return [
        [
            r.journey.journey_id,
            r.journey.state,
            r.version,
            "*" if r.active else "",
            r.deployed.at.isoformat(timespec="seconds") if r.deployed else "-",
            r.deployed.actor if r.deployed else "-",
            count(r.running),
            count(r.total),
        ]
        for r in rows
    ]


def history_lines(history: list[Change]) -> list[str]:
    """A journey's audit, oldest first: ``<when>  <action>  <what> by <who>: <why>``."""
    lines = []
    for change in history:
        what = ""
        if change.action == "deployed":
            what = f" {change.version}" + (
                f" (was {change.previous})" if change.previous else " (its first version)"
            )
        why = f": {change.reason}" if change.reason else ""
        lines.append(
            f"{change.at.isoformat(timespec='seconds')}  {change.action}{what} "
            f"by {change.actor}{why}"
        )
    return lines


def state_change(deployments: Deployments, journey_id: str, before: State, after: State) -> str:
    """What ``touchpoint journeys pause|resume|stop`` did, in a sentence."""
    if before == after:
        since = next(
            (c.at for c in reversed(deployments.history(journey_id)) if c.action != "deployed"),
            None,
        )
        when = f" (since {since.isoformat(timespec='seconds')})" if since else ""
        return f"{journey_id} is {after} already{when}; nothing changed"
    if after == "paused":
        effect = (
            "no new entries (trigger events are accepted and start nothing); running runs go on"
        )
    elif after == "stopped":
        effect = (
            "no new entries, and running runs end before their next send (outcome exited); "
            "`touchpoint journeys resume` undoes it for the runs that have not ended"
        )
    else:
        effect = "new entries start again" + (
            "; running runs send again" if before == "stopped" else ""
        )
    done = {"active": "resumed", "paused": "paused", "stopped": "stopped"}[after]
    return f"{done} {journey_id}: {effect}"


def _quote(value: str) -> str:
    return value.replace("'", "")


def schedule_lines(config: ProjectConfig, results: Sequence[Deployed]) -> list[str]:
    """After ``touchpoint deploy``: bring the scheduled journeys' Temporal Schedules to the
    deployed versions (:mod:`ops.broadcasts`); what was done, one line per journey."""
    from ops.broadcasts import sync_if_scheduled

    settings = load_settings(config)
    deployments = Deployments(connect_store(settings.database_url))
    versions = [v for r in results if r.changed for v in (r.version, r.previous)]
    return sync_if_scheduled(settings, deployments, versions)


def state_schedule_lines(
    deployments: Deployments, settings: Settings, journey_id: str
) -> list[str]:
    """After ``touchpoint journeys pause|resume|stop``: pause, resume or delete the journey's
    Temporal Schedule if it is a scheduled journey."""
    from ops.broadcasts import sync_if_scheduled

    version = deployments.get(journey_id).active_version
    return sync_if_scheduled(settings, deployments, [version])
