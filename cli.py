"""``touchpoint``: the command line for marketers and ops.

Exit codes: 0 success, 1 a mistake the user can fix — in their files, their settings or their
environment (one line on stderr, no traceback), 2 bad usage, 130 interrupted, 3 an unexpected
crash (traceback without local variables, so no secret leaks). :mod:`ops.exits` holds the
one handler that decides them, shared with ``worker.py``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from config.errors import UserError
from language.validator import JOURNEYS_DIR, Report, validate
from ops.exits import exit_code, leave, refuse
from workflows.plan import Plan

if TYPE_CHECKING:
    from store.deployments import State
    from store.suppressions import Suppressions


class Commands(TyperGroup):
    """Every command reports a user error the same way: ``✗ message`` on stderr, exit 1."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except UserError as error:
            raise typer.Exit(refuse(str(error))) from None
        except SystemExit as stop:
            if isinstance(stop.code, str):
                raise typer.Exit(refuse(stop.code)) from None
            raise


app = typer.Typer(
    cls=Commands,
    name="touchpoint",
    help="Customer journeys as code: validate, draw and run YAML journeys on Temporal.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

ProjectOption = Annotated[
    Path,
    typer.Option(
        "--project",
        "-C",
        help="The project folder (holds touchpoint.yaml).",
        file_okay=False,
        exists=True,
    ),
]


WhoOption = Annotated[
    str | None, typer.Option("--by", help="Who does it, for the audit (default: your user name).")
]


class OutputFormat(StrEnum):
    text = "text"
    json = "json"


class GraphFormat(StrEnum):
    mermaid = "mermaid"
    dot = "dot"


class SchemaKind(StrEnum):
    journey = "journey"
    config = "config"


@app.command("validate")
def validate_command(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Files or folders (default: journeys/, templates/, touchpoint.yaml).", exists=True
        ),
    ] = None,
    output: Annotated[
        OutputFormat, typer.Option("--format", help="text or json.")
    ] = OutputFormat.text,
    env: Annotated[
        bool,
        typer.Option(
            "--env", help="Also check the environment has every variable the journeys need."
        ),
    ] = False,
    project: ProjectOption = Path("."),
) -> None:
    """Check journeys, templates and config; report every problem at once."""
    report = validate(paths or (), root=project)
    if env:
        from ops.environment import environment_problems

        report.problems = sorted(
            report.problems + environment_problems(report, project, os.environ)
        )
    if output is OutputFormat.json:
        typer.echo(json.dumps([p.as_json() for p in report.problems], indent=2, ensure_ascii=False))
    else:
        for problem in report.problems:
            typer.echo(problem.format())
        if report.ok:
            environment = "; the environment has every variable they need" if env else ""
            typer.secho(f"✓ {report.summary()}{environment}", fg="green")
        else:
            typer.secho(f"✗ {report.summary()}", fg="red", err=True)
    raise typer.Exit(0 if report.ok else 1)


@app.command("graph")
def graph_command(
    journey: Annotated[str, typer.Argument(help="A journey file, or a journey id from journeys/.")],
    output: Annotated[
        GraphFormat, typer.Option("--format", help="mermaid or dot.")
    ] = GraphFormat.mermaid,
    project: ProjectOption = Path("."),
) -> None:
    """Draw a journey: every step, labelled edges, grouped by stage."""
    from language.diagram import to_dot, to_mermaid

    plan = _load_plan(journey, project)
    typer.echo(to_mermaid(plan) if output is GraphFormat.mermaid else to_dot(plan), nl=False)


@app.command("schema")
def schema_command(
    kind: Annotated[SchemaKind, typer.Argument(help="journey or config.")] = SchemaKind.journey,
) -> None:
    """Print the JSON Schema of journey files or of touchpoint.yaml."""
    from language.schema import config_schema, journey_schema

    schema = journey_schema() if kind is SchemaKind.journey else config_schema()
    typer.echo(json.dumps(schema, indent=2, ensure_ascii=False))


@app.command("worker")
def worker_command(
    role: Annotated[str, typer.Option(help="all, workflows or activities.")] = "all",
    health_port: Annotated[
        int | None,
        typer.Option(min=0, max=65535, help="Serve /healthz and /readyz over HTTP on this port."),
    ] = None,
    health_host: Annotated[
        str, typer.Option(help="Interface for the health checks (0.0.0.0 for every one).")
    ] = "127.0.0.1",
    project: ProjectOption = Path("."),
) -> None:
    """Run the Temporal worker (same as python worker.py).

    /readyz answers 200 when Temporal answers and every task queue is polled, else 503."""
    import asyncio

    from worker import run_worker

    if role not in ("all", "workflows", "activities"):
        raise typer.BadParameter("choose all, workflows or activities", param_hint="--role")
    health = None if health_port is None else (health_host, health_port)
    asyncio.run(run_worker(project.resolve(), role, health=health))  # type: ignore[arg-type]


@app.command("dev")
def dev_command(
    temporal_port: Annotated[int, typer.Option(help="Temporal's gRPC port.")] = 7233,
    ui_port: Annotated[int, typer.Option(help="Temporal UI port (0: no UI).")] = 8233,
    api_port: Annotated[int, typer.Option(help="The API's port.")] = 8000,
    dashboard_port: Annotated[
        int, typer.Option(help="The dashboard's port (0: no dashboard).")
    ] = 8400,
    metrics_port: Annotated[
        int, typer.Option(help="The worker's Prometheus metrics port (0: none).")
    ] = 9464,
    project: ProjectOption = Path("."),
) -> None:
    """Run everything locally: Temporal dev server (state in .touchpoint/), worker, API and
    dashboard (no login: it listens on 127.0.0.1 only)."""
    from ops.dev import DevPorts, run_dev

    ports = DevPorts(temporal_port, ui_port, api_port, dashboard_port, metrics_port)
    raise typer.Exit(run_dev(project.resolve(), ports, echo=typer.echo))


@app.command("api")
def api_command(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    deploy: Annotated[
        bool,
        typer.Option(
            "--deploy",
            help="Deploy this folder's journeys as `touchpoint deploy` would (default: only "
            "those never deployed; the store's active versions win).",
        ),
    ] = False,
    project: ProjectOption = Path("."),
) -> None:
    """Serve the ingestion API (Segment-compatible), unsubscribe and provider webhooks."""
    import uvloop

    from ops.api_server import serve_api

    uvloop.run(serve_api(project.resolve(), host, port, deploy))  # uvloop: the API's hot path


@app.command("dashboard")
def dashboard_command(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8400,
    dev: Annotated[
        bool,
        typer.Option(
            "--dev",
            hidden=True,  # touchpoint dev's: no login, loopback only, refused outside it
            help="No login, on 127.0.0.1/localhost only (only inside touchpoint dev).",
        ),
    ] = False,
    project: ProjectOption = Path("."),
) -> None:
    """Serve the web dashboard: journeys with live counts on their maps, customers, failing runs.

    Read-only; login with the secret in TOUCHPOINT_DASHBOARD_SECRET."""
    import uvloop

    from config.errors import ConfigurationError
    from config.settings import dashboard_secret
    from dashboard.server import DEV_STACK_ENV, serve_dashboard, startup_problem

    try:
        secret = None if dev else dashboard_secret(os.environ)
        in_dev_stack = os.environ.get(DEV_STACK_ENV) == "1"
        problem = startup_problem(host, port, dev, secret, in_dev_stack)
    except ConfigurationError as error:
        problem = str(error)
    if problem is not None:
        typer.secho(f"✗ {problem}", fg="red", err=True)
        raise typer.Exit(2)
    uvloop.run(serve_dashboard(project.resolve(), host, port, secret))


app.command("ui", hidden=True)(dashboard_command)


@app.command("deploy")
def deploy_command(
    journeys: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[JOURNEY]...",
            help="Journey ids in journeys/ (or files); default: every journey of the project.",
        ),
    ] = None,
    why: Annotated[str | None, typer.Option("--why", help="Why, for the audit.")] = None,
    by: WhoOption = None,
    project: ProjectOption = Path("."),
) -> None:
    """Validate, compile and deploy journeys to every running API, all or nothing.

    Every API starts new entries on the deployed versions within seconds, without a restart;
    running runs finish on the version they entered."""
    from ingestion.deployed import POLL_SECONDS
    from ops.journeys import deploy, deploy_line, journey_files, schedule_lines

    who, reason = _who(by), None if why is None else _why(why, "--why")
    report = validate(journey_files(project, journeys or []), root=project)
    if not report.ok or not report.plans:
        for problem in report.problems:
            typer.echo(problem.format(), err=True)
        summary = report.summary() if not report.ok else "no journey to deploy"
        _fail(f"{summary}; nothing deployed")
    results = deploy(report.config, list(report.plans.values()), actor=who, reason=reason)
    for line in aligned([[r.journey_id, deploy_line(r)] for r in results]):
        typer.echo(line)
    for line in schedule_lines(report.config, results):  # scheduled journeys' schedules
        typer.echo(line, err=True)
    changed = sum(r.changed for r in results)
    typer.echo(
        f"{changed} deployed, {len(results) - changed} unchanged"
        + (
            f"; every API starts new entries on them within {2 * POLL_SECONDS:g} s, "
            "running runs stay on their version"
            if changed
            else ""
        ),
        err=True,
    )


@app.command("plan")
def plan_command(
    journeys: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[JOURNEY]...",
            help="Journey ids in journeys/ (or files); default: every journey of the project.",
        ),
    ] = None,
    replay_days: Annotated[
        int,
        typer.Option(
            min=0, help="Replay this many days of recorded events under both versions (0: off)."
        ),
    ] = 7,
    lookups: Annotated[
        Path | None, typer.Option(help='Lookup answers for the replay: "<connection> <path>".')
    ] = None,
    exact: Annotated[
        bool, typer.Option("--exact", help="Replay on Temporal's time-skipping server.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document (for CI).")] = False,
    project: ProjectOption = Path("."),
) -> None:
    """What `touchpoint deploy` would change: the diff against the active version, the runs
    now in each journey per step (they finish on their version), and the last days' recorded
    events replayed under both versions. Deploys nothing, sends nothing.

    Exit 0 whatever the diff, 1 when a journey has problems, 2 for an unknown journey."""
    import asyncio

    from config.settings import load_settings
    from ops.journeys import journey_files
    from ops.planning import (
        ReplayOptions,
        count_runs,
        json_document,
        open_store,
        plan_journeys,
        replay_journeys,
        text_lines,
    )
    from simulation.scenario import ScenarioError, load_lookups

    try:
        files = journey_files(project, journeys or [])
    except UserError as error:  # a usage error here: CI tells it from a broken journey
        typer.secho(f"✗ {str(error).replace('; nothing deployed', '')}", fg="red", err=True)
        raise typer.Exit(2) from None
    report = validate(files, root=project)
    if not report.ok or not report.plans:
        for problem in report.problems:
            typer.echo(problem.format(), err=True)
        _fail(report.summary() if not report.ok else "no journey to plan")
    settings = load_settings(report.config)
    engine, store_note = open_store(settings)
    plans = plan_journeys(engine, list(report.plans.values()))
    runs_note = asyncio.run(count_runs(plans, engine, settings)) if engine is not None else None
    try:
        answers = load_lookups(lookups)
    except ScenarioError as error:
        for problem in error.problems:
            typer.echo(problem.format(), err=True)
        _fail("the --lookups file has problems")
    options = ReplayOptions(days=replay_days, lookups=answers, exact=exact)
    replay_note = replay_journeys(plans, engine, project.resolve(), report.config, options)
    if as_json:
        document = json_document(plans, store_note, runs_note, replay_note)
        typer.echo(json.dumps(document, indent=2, ensure_ascii=False))
        return
    for line in text_lines(plans, store_note, runs_note, replay_note):
        typer.echo(line)
    changed = sum(p.status != "unchanged" for p in plans)
    typer.echo(
        f"{len(plans)} journey(s), {changed} would change; nothing deployed "
        "(`touchpoint deploy` does it)",
        err=True,
    )


@app.command("setup")
def setup_command(project: ProjectOption = Path(".")) -> None:
    """Register Touchpoint's search attributes on the Temporal namespace (once per namespace;
    safe to repeat). Temporal Cloud: it says what to add in the UI instead."""
    import asyncio

    from config.settings import connect, load_settings
    from ops.setup import register_search_attributes

    settings = load_settings(validate((), root=project).config)

    async def go() -> list[Any]:
        return await register_search_attributes(await connect(settings), settings.namespace)

    registered = asyncio.run(go())
    for item in registered:
        typer.echo(f"{item.name:<20} {'registered' if item.added else 'already registered'}")
    added = sum(item.added for item in registered)
    typer.echo(
        f"{added} search attribute(s) registered, {len(registered) - added} already there, "
        f"on namespace {settings.namespace} at {settings.address}",
        err=True,
    )


@app.command("migrate")
def migrate_command(project: ProjectOption = Path(".")) -> None:
    """Bring the store's schema to the newest revision (APIs and workers also do it when they
    start); for upgrades: migrate, then restart the processes."""
    from config.settings import load_settings
    from ops.setup import migrate_store

    settings = load_settings(validate((), root=project).config)
    migrated = migrate_store(settings.database_url)
    typer.echo(
        f"the store {migrated.database} is at revision {migrated.revision}"
        + (" (the newest)" if migrated.revision == migrated.newest else "")
    )


keys_app = typer.Typer(
    help="Keys for the API: write keys (ingestion) and admin keys (privacy requests).",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create_command(
    name: Annotated[str, typer.Argument(help="Who uses it, e.g. web-shop or store-tills.")],
    admin: Annotated[
        bool,
        typer.Option(
            "--admin",
            help="An admin key (the shop backend's privacy requests, e.g. export), not a "
            "write key.",
        ),
    ] = False,
    project: ProjectOption = Path("."),
) -> None:
    """Create a write key (or an admin key); it is shown once and only its hash is stored."""
    from ops.api_server import create_key

    key = create_key(project.resolve(), name, admin=admin)
    typer.echo(key)
    if admin:
        typer.echo(
            f"admin key for {name!r}; send it as Authorization: Bearer <key> to the admin "
            "endpoints (GET /v1/customers/ID/export); it cannot send events",
            err=True,
        )
    else:
        typer.echo(f"write key for {name!r}; use it as the Segment SDK's write key", err=True)


@app.command("identify")
def identify_command(
    user: Annotated[str, typer.Argument(help="The customer's id.")],
    trait: Annotated[list[str] | None, typer.Option("--trait", "-t", help="key=value")] = None,
    project: ProjectOption = Path("."),
) -> None:
    """Create or update a customer profile, as the API's identify would."""
    import asyncio

    from ops.operations import Emitter

    async def go() -> None:
        emitter = await Emitter.for_project(project.resolve())
        profile, entered = await emitter.identify_entering(user, _pairs(trait))
        typer.echo(f"{profile.id}: {len(profile.traits)} trait(s)")
        for result in entered:  # segment journeys the change made them match
            reason = f" ({result.reason})" if result.reason else ""
            typer.echo(f"{result.journey_id}: {result.action}{reason}")

    asyncio.run(go())


@app.command("emit")
def emit_command(
    event_name: Annotated[
        str | None, typer.Argument(metavar="[EVENT]", help="The event name, as tracked.")
    ] = None,
    user: Annotated[
        str | None, typer.Option("--user", "--customer", help="The customer's id.")
    ] = None,
    prop: Annotated[
        list[str] | None, typer.Option("--prop", "--property", "-p", help="key=value (JSON ok).")
    ] = None,
    file: Annotated[Path | None, typer.Option("--file", help="Calls, one JSON a line.")] = None,
    project: ProjectOption = Path("."),
) -> None:
    """Apply events through the ingestion service, as the API would: one, or a file of Segment
    calls (identify, track, page, screen, group, alias)."""
    import asyncio

    from rich.progress import Progress

    from ops.operations import Emitter, read_calls

    if file is None and (event_name is None or user is None):
        raise typer.BadParameter("give EVENT and --user, or --file")
    try:
        calls = read_calls(file) if file else []
    except (OSError, ValueError) as error:
        typer.secho(f"✗ {error}", fg="red", err=True)
        raise typer.Exit(1) from None

    async def go() -> dict[str, int]:
        emitter = await Emitter.for_project(project.resolve())
        if file is None:
            assert event_name is not None and user is not None
            routed = await emitter.emit(event_name, user, _pairs(prop))
            for result in routed:
                reason = f" ({result.reason})" if result.reason else ""
                typer.echo(f"{result.journey_id}: {result.action}{reason}")
            if not routed:
                typer.echo(f"no journey starts on or waits for {event_name!r}")
            return {}
        summary: dict[str, int] = {}
        with Progress(transient=True) as progress:
            task = progress.add_task("routing", total=len(calls))
            for kind, call in calls:
                applied = await emitter.apply(call)
                if applied.duplicate:
                    outcomes = ["duplicate"]
                elif call.event is None:
                    outcomes = ["identified" if kind == "identify" else kind]
                    outcomes += [result.action for result in applied.routed]  # segments
                else:
                    outcomes = [result.action for result in applied.routed]
                for outcome in outcomes:
                    summary[outcome] = summary.get(outcome, 0) + 1
                progress.advance(task)
        return summary

    summary = asyncio.run(go())
    if file is not None:
        typer.echo(
            f"{len(calls)} call(s): " + ", ".join(f"{n} {a}" for a, n in sorted(summary.items()))
        )


@app.command("export")
def export_command(
    customer: Annotated[str, typer.Argument(help="The customer's id.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the document here (default: stdout).")
    ] = None,
    project: ProjectOption = Path("."),
) -> None:
    """Everything held about one customer as one JSON document: profile, consent,
    suppressions, entries, runs with their timelines and events, messages (GDPR Art. 15, 20)."""
    import asyncio

    from ops.export import export_for_project

    document = asyncio.run(export_for_project(project.resolve(), customer))
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        try:
            out.write_text(text, encoding="utf-8")
        except OSError as error:
            _fail(f"cannot write {out}: {error.strerror}")
    said = (
        f"{len(document['runs'])} run(s), {len(document['messages'])} message(s)"
        if document["found"]
        else "nothing is held about this customer"
    )
    typer.echo(f"{said}" + (f"; written to {out}" if out else ""), err=True)
    for note in document["notes"]:
        typer.echo(f"note: {note}", err=True)


@app.command("show")
def show_command(
    workflow_id: Annotated[str, typer.Argument(help="The run's workflow id.")],
    project: ProjectOption = Path("."),
) -> None:
    """A run's step, what it waits for and until when, its outcome and timeline."""
    runs_show_command(workflow_id, project)


@app.command("cancel")
def cancel_command(
    workflow_id: Annotated[str, typer.Argument(help="The run's workflow id.")],
    reason: Annotated[
        str, typer.Option(help="Why, for the run's outcome.")
    ] = "cancelled by an operator",
    project: ProjectOption = Path("."),
) -> None:
    """End a run now (outcome cancelled)."""
    import asyncio

    from ops.operations import cancel_run

    asyncio.run(cancel_run(project.resolve(), workflow_id, reason))
    typer.echo(f"cancelled {workflow_id}")


@app.command("forget")
def forget_command(
    customer: Annotated[str, typer.Argument(help="The customer's user id.")],
    request_id: Annotated[
        str | None,
        typer.Option("--request", help="The request's reference, for the audit (a ticket id)."),
    ] = None,
    by: WhoOption = None,
    project: ProjectOption = Path("."),
) -> None:
    """Erase a customer (GDPR Art. 17): runs ended and deleted, profile gone, ledger anonymised.

    What stays, as keyed hashes: that they were erased, and their address (no marketing email
    without new consent). Idempotent; waits until a worker has done it. See docs/privacy.md.
    """
    import asyncio
    from datetime import UTC, datetime

    from config.settings import connect, load_settings
    from ops.forget import Erased, forget, require_key
    from ops.operations import _project

    _, config = _project(project.resolve())
    settings = load_settings(config)
    require_key(settings)  # before connecting: the missing key is the thing to fix first
    who = _who(by)
    reference = (request_id or "").strip() or f"cli-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"

    async def go() -> Erased:
        client = await connect(settings)
        return await forget(client, settings, customer, request_id=reference, actor=who)

    erased = asyncio.run(go())
    typer.echo(
        f"erased customer {erased.customer[:16]}… (request {reference}, by {who}): "
        f"{erased.runs} run(s) deleted, {erased.messages} message(s) anonymised"
    )


@app.command("consent")
def consent_command(
    customer: Annotated[str, typer.Argument(help="The customer's user id.")],
    leave: Annotated[
        list[str] | None, typer.Option("--leave", help="Leave this topic (repeatable).")
    ] = None,
    join: Annotated[
        list[str] | None, typer.Option("--join", help="Join this topic again (repeatable).")
    ] = None,
    channel: Annotated[
        str, typer.Option("--channel", help="email, sms, or all (the default).")
    ] = "all",
    leave_all: Annotated[
        bool,
        typer.Option("--leave-all", help="Withdraw all marketing email and leave every topic."),
    ] = False,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why, for the record (default: support).")
    ] = None,
    by: WhoOption = None,
    project: ProjectOption = Path("."),
) -> None:
    """A customer's consent: all marketing email, SMS, each topic per channel, their address's
    suppression. With --leave/--join/--leave-all, change it and tell their running runs.

    Joining a topic by email lifts the customer's own withdrawal of all marketing email (the
    other topics stay left); a suppression (bounce, spam report) and an SMS STOP never lift
    here. See docs/journeys.md "Subscription topics"."""
    import asyncio

    from ops.consent import (
        ConsentChange,
        change_consent,
        check_change,
        describe,
        describe_applied,
        open_consents,
    )

    consents, settings = open_consents(project.resolve())
    change = ConsentChange(
        leave=leave or [], join=join or [], channel=channel.strip().lower(), leave_all=leave_all
    )
    if not change.empty:
        changes = check_change(consents, customer, change)
        why = f"{(reason or 'support').strip() or 'support'} (by {_who(by)})"
        applied = asyncio.run(
            change_consent(consents, settings, customer, changes, why, change.leave_all)
        )
        for line in describe_applied(applied):
            typer.echo(line, err=True)
    elif channel.strip().lower() != "all" or reason is not None:
        raise typer.BadParameter(
            "goes with --leave, --join or --leave-all", param_hint="--channel/--reason"
        )
    elif not consents.known(customer):
        _fail(
            f"no customer {customer!r} in the store: check the id "
            f"(`touchpoint export {customer}` shows what is held)"
        )
    for line in describe(consents.view(customer)):
        typer.echo(line)


runs_app = typer.Typer(help="Find and inspect journey runs.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")


@runs_app.command("list")
def runs_list_command(
    journey: Annotated[str | None, typer.Option(help="Only runs of this journey id.")] = None,
    customer: Annotated[str | None, typer.Option(help="Only this customer's runs.")] = None,
    outcome: Annotated[
        str | None,
        typer.Option(
            "--outcome",
            "--status",
            help="completed, converted, exited, cancelled, failed or erased.",
        ),
    ] = None,
    running: Annotated[bool, typer.Option("--running", help="Only runs still going.")] = False,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 50,
    project: ProjectOption = Path("."),
) -> None:
    """List runs, newest first, by the Touchpoint search attributes; step and outcome from the
    analytics store (runs started since input version 4 keep them only there)."""
    import asyncio

    from ops.operations import RUN_COLUMNS, list_runs

    rows = asyncio.run(list_runs(project.resolve(), journey, customer, outcome, running, limit + 1))
    shown = rows[:limit]
    for line in aligned([RUN_COLUMNS, *shown]) if shown else []:
        typer.echo(line)
    typer.echo(f"{len(shown)} run(s){_more(len(rows), limit)}", err=True)


@runs_app.command("show")
def runs_show_command(
    workflow_id: Annotated[str, typer.Argument(help="The run's workflow id.")],
    project: ProjectOption = Path("."),
) -> None:
    """Show a run's current step, outcome and timeline."""
    import asyncio

    from ops.operations import show_run

    typer.echo(asyncio.run(show_run(project.resolve(), workflow_id)))


@app.command("simulate")
def simulate_command(
    journeys: Annotated[list[str], typer.Argument(help="Journey ids (or files) to run.")],
    profile: Annotated[
        Path | None, typer.Option(help="One customer: YAML/JSON id, email, locale, traits.")
    ] = None,
    profiles: Annotated[
        Path | None, typer.Option(help="A population: customers.csv or .ndjson.")
    ] = None,
    events: Annotated[
        Path | None, typer.Option(help="YAML/JSON list of {at: +2d3h, event, properties}.")
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(help="When the simulation starts (ISO, with offset). Default: now."),
    ] = None,
    until: Annotated[str, typer.Option(help="How long to simulate, e.g. 90d.")] = "90d",
    lookups: Annotated[
        Path | None, typer.Option(help='Lookup answers: "<connection> <path>": JSON.')
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    exact: Annotated[
        bool,
        typer.Option(
            "--exact",
            help="Run on Temporal's time-skipping test server (the workflow itself), not the "
            "fast in-process simulator.",
        ),
    ] = False,
    render: Annotated[
        str,
        typer.Option(
            "--render",
            help="subjects: render subjects but no email bodies (fast, for populations); "
            "all: render every message.",
        ),
    ] = "all",
    project: ProjectOption = Path("."),
) -> None:
    """Run journeys for a customer (or a population) on the fast simulator (the production
    interpreter core on a virtual clock; --exact: on a time-skipping Temporal server): what
    would be sent, when, and how each run ends. Nothing is sent."""
    from simulation.commands import simulate

    if render not in ("subjects", "all"):
        raise UserError(f'--render must be "subjects" or "all", not "{render}"')
    if exact and render != "all":
        raise UserError("--render subjects is for the fast simulator: leave out --exact")

    code = simulate(
        project,
        journeys,
        profile=profile,
        profiles=profiles,
        events=events,
        lookups=lookups,
        start=start,
        until=until,
        as_json_output=as_json,
        echo=typer.echo,
        progress_bar=sys.stderr.isatty(),
        exact=exact,
        render=render,
    )
    raise typer.Exit(code)


@app.command("replay")
def replay_command(
    journeys: Annotated[
        list[str], typer.Argument(help="Journey ids (or files) in the folder: new or changed.")
    ],
    since: Annotated[
        str, typer.Option(help="Replay the calls recorded within this long: 30d, 7d, 36h …")
    ] = "30d",
    lookups: Annotated[
        Path | None, typer.Option(help='Lookup answers: "<connection> <path>": JSON.')
    ] = None,
    exact: Annotated[
        bool,
        typer.Option("--exact", help="On Temporal's time-skipping server (slower, exact)."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    project: ProjectOption = Path("."),
) -> None:
    """Run journeys from the folder against the events the API recorded (the event log) and
    today's profiles of those customers: funnels, messages per template and day, conversions,
    what the delivery policies held back, runs that would fail. Nothing is sent."""
    from simulation.commands import replay

    code = replay(
        project,
        journeys,
        since=since,
        lookups=lookups,
        exact=exact,
        as_json_output=as_json,
        echo=typer.echo,
        progress_bar=sys.stderr.isatty(),
    )
    raise typer.Exit(code)


@app.command("audience")
def audience_command(
    journey: Annotated[str, typer.Argument(help="A scheduled or segment journey's id (or file).")],
    sample: Annotated[
        int, typer.Option("--sample", min=0, help="Also list this many matching customer ids.")
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            help="Count as of this moment instead of now: ISO, e.g. 2027-03-01T09:00 "
            "(UTC unless it names a zone).",
        ),
    ] = None,
    project: ProjectOption = Path("."),
) -> None:
    """How many profiles a scheduled journey would reach if it went out now (its audience and
    entry condition, over the store's profiles), or match a segment journey's condition now;
    a date journey: at its next occurrence (the next quarter hour where it is `at` somewhere).
    --sample N lists N of their customer ids."""
    from datetime import UTC, datetime

    from config.project import ProjectConfig
    from config.settings import load_settings
    from language.validator import load_config
    from ops.broadcasts import audience_report

    plan = _load_plan(journey, project)
    config_file = project / "touchpoint.yaml"
    config = load_config(config_file)[0] if config_file.exists() else ProjectConfig()
    settings = load_settings(config)
    now = datetime.now(UTC)
    if at is not None:
        try:
            moment = datetime.fromisoformat(at.strip().replace("Z", "+00:00"))
        except ValueError:
            raise UserError(
                f'--at "{at}" is not a moment: write it in ISO form, e.g. 2027-03-01T09:00'
            ) from None
        now = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    found = audience_report(plan, settings, sample, now)
    if sample:
        typer.echo(
            "note: customer ids are personal data: keep them off tickets, chats and screenshots",
            err=True,
        )
    if as_json:
        shown = dict(found.__dict__)
        if plan.date_entry is None:  # a broadcast's JSON keeps its shape
            del shown["at"], shown["unreadable_dates"]
        elif found.at is not None:
            shown["at"] = found.at.isoformat()
        typer.echo(json.dumps(shown, indent=2, default=str))
        return
    if plan.date_entry is None:
        typer.echo(
            f"{found.journey_id}: {found.matched:,} of {found.read:,} profile(s) match now "
            f"({found.schedule})"
        )
    else:
        typer.echo(
            f"{found.journey_id}: {found.matched:,} profile(s) enter at the next occurrence, "
            f"{found.at:%Y-%m-%d %H:%M} UTC, of {found.read:,} in the time zones where it is "
            f"{plan.date_entry.time} then ({found.schedule})"
        )
    if found.unreadable_dates:
        typer.echo(
            f"note: {found.unreadable_dates:,} profile(s) have a date that is not one (e.g. "
            "not YYYY-MM-DD): they are skipped until it is fixed",
            err=True,
        )
    if found.failed:
        typer.echo(
            f"note: the audience could not be evaluated on {found.failed:,} profile(s) (their "
            "data does not fit the expression, e.g. a missing trait): they are left out; "
            "`| default(…)` makes the expression take them",
            err=True,
        )
    for customer in found.sample:
        typer.echo(customer)


@app.command("test")
def test_command(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Test files or folders (default: journeys/**/*.test.yaml).", exists=True
        ),
    ] = None,
    junit: Annotated[Path | None, typer.Option(help="Also write a JUnit XML report here.")] = None,
    exact: Annotated[
        bool,
        typer.Option(
            "--exact",
            help="Run every case on Temporal's time-skipping test server (default: the fast "
            "simulator where the conformance suite covers the journey).",
        ),
    ] = False,
    project: ProjectOption = Path("."),
) -> None:
    """Run journey tests (*.test.yaml): expected messages, steps and outcomes per case."""
    from simulation.commands import test

    raise typer.Exit(test(project, paths or [], junit=junit, echo=typer.echo, exact=exact))


@app.command("preview")
def preview_command(
    journey: Annotated[str, typer.Argument(help="The journey id.")],
    step: Annotated[str, typer.Argument(help="The id of a send step.")],
    profile: Annotated[
        Path | None,
        typer.Option(help="YAML/JSON: id, email, locale, traits (and event, events, vars)."),
    ] = None,
    locale: Annotated[str | None, typer.Option(help="Render this locale variant.")] = None,
    lookups: Annotated[Path | None, typer.Option(help="YAML/JSON answers: lookups.<name>.")] = None,
    out: Annotated[Path | None, typer.Option(help="Where to write the HTML.")] = None,
    project: ProjectOption = Path("."),
) -> None:
    """Render one message for a sample customer: subject and text here, the HTML to a file."""
    from ops.messaging import build_preview

    preview = build_preview(project.resolve(), journey, step, profile, locale, lookups)
    message = preview.message
    typer.echo(f"template: {message.template} ({message.locale})")
    if message.subject is not None:
        typer.echo(f"subject:  {message.subject}")
    if message.data is not None:
        typer.echo(json.dumps(message.data, ensure_ascii=False, indent=2))
    if message.text:
        typer.echo("")
        typer.echo(message.text)
    if message.html:
        target = (
            out or project / ".touchpoint" / "preview" / f"{journey}-{step}.{message.locale}.html"
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(message.html, encoding="utf-8")
        typer.echo(f"\nHTML written to {target}")


@app.command("send-test")
def send_test_command(
    journey: Annotated[str, typer.Argument(help="The journey id.")],
    step: Annotated[str, typer.Argument(help="The id of an email step.")],
    to: Annotated[str, typer.Option("--to", help="Where the test goes.")],
    profile: Annotated[Path | None, typer.Option(help="Sample customer (as for preview).")] = None,
    locale: Annotated[str | None, typer.Option(help="Render this locale variant.")] = None,
    lookups: Annotated[Path | None, typer.Option(help="Lookup answers (as for preview).")] = None,
    project: ProjectOption = Path("."),
) -> None:
    """Send one email step through the configured provider, marked [TEST]."""
    import asyncio

    from temporalio.exceptions import ApplicationError

    from ops.messaging import build_preview, send_test

    try:
        preview = build_preview(project.resolve(), journey, step, profile, locale, lookups)
        provider_id = asyncio.run(send_test(project.resolve(), preview, to))
    except ApplicationError as error:
        typer.secho(
            f"✗ the provider did not take it: {error.type}: {error.message}", fg="red", err=True
        )
        raise typer.Exit(1) from None
    typer.echo(
        f"sent test of {journey}/{step} to {to}" + (f" ({provider_id})" if provider_id else "")
    )


@app.command("messages")
def messages_command(
    customer: Annotated[str | None, typer.Option(help="Only this customer's messages.")] = None,
    journey: Annotated[str | None, typer.Option(help="Only this journey's messages.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 50,
    project: ProjectOption = Path("."),
) -> None:
    """The delivery ledger: every message, newest first, with its status."""
    from ops.messaging import ledger_rows

    found = ledger_rows(project.resolve(), customer, journey, limit + 1)
    rows = found[:limit]
    for row in rows:
        typer.echo(
            f"{row.created_at.isoformat(timespec='seconds')}  {row.status:<8} "
            f"{row.channel:<8} {row.journey_id}/{row.step_id}  {row.message_id}  "
            f"{row.provider or '-'}:{row.provider_id or '-'}"
            + (f"  ({row.reason})" if row.reason else "")
        )
    typer.echo(f"{len(rows)} message(s){_more(len(found), limit)}", err=True)


@app.command("stats")
def stats_command(
    journey: Annotated[str, typer.Argument(help="The journey id.")],
    since: Annotated[
        str, typer.Option(help="Runs that entered within this long: 1d, 7d, 30d, 12h …")
    ] = "7d",
    version: Annotated[str | None, typer.Option(help="Only runs of this plan version.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the numbers as JSON.")] = False,
    project: ProjectOption = Path("."),
) -> None:
    """A journey's numbers: entered, outcomes, conversion, lift, steps, edges, messages, days."""
    from datetime import UTC, datetime

    from rich.console import Console

    from ops import stats

    try:
        start = stats.since_of(since, datetime.now(UTC))
    except ValueError as error:
        typer.secho(f"✗ --since {error}", fg="red", err=True)
        raise typer.Exit(2) from None
    analytics = stats.open_analytics(project.resolve())
    try:
        found = stats.journey_stats(analytics, journey, start, version, project.resolve())
    except stats.UnknownJourney as error:
        typer.secho(f"✗ {error}", fg="red", err=True)
        raise typer.Exit(2) from None
    finally:
        analytics.engine.dispose()
    if as_json:
        typer.echo(stats.as_json(found))
    else:
        stats.print_stats(found, Console(width=120, highlight=False))


@app.command("outbox")
def outbox_command(
    key: Annotated[
        str | None, typer.Argument(help="Show this message (a key or its start).")
    ] = None,
    raw: Annotated[
        bool, typer.Option("--raw", help="Print the message as stored (RFC 5322 text).")
    ] = False,
    project: ProjectOption = Path("."),
) -> None:
    """The local Maildir outbox: list the messages, or show one (headers decoded)."""
    from activities.email.maildir import list_messages, read_message, read_raw
    from activities.email.readable import readable
    from ops.messaging import outbox_path

    path = outbox_path(project.resolve())
    if key is None:
        entries = list_messages(path)
        for entry in entries:
            typer.echo(f"{entry.key[:16]}  {entry.date}  {entry.to:<28} {entry.subject}")
        typer.echo(f"{len(entries)} message(s) in {path}", err=True)
        return
    try:
        if raw:
            typer.echo(read_raw(path, key).decode("utf-8", "replace"), nl=False)
        else:
            typer.echo(readable(read_message(path, key)))
    except (KeyError, LookupError) as error:
        typer.secho(f"✗ no message {key!r} in {path}: {error}", fg="red", err=True)
        raise typer.Exit(1) from None


events_app = typer.Typer(
    help="The event log: the calls the API accepted, per customer, in order.",
    no_args_is_help=True,
)
app.add_typer(events_app, name="events")
SinceOption = Annotated[
    str, typer.Option(help="Calls received within this long: 1d, 7d, 30d, 12h …")
]


@events_app.command("tail")
def events_tail_command(
    since: SinceOption = "1d",
    limit: Annotated[int, typer.Option(min=1, help="At most this many, the newest.")] = 20,
    project: ProjectOption = Path("."),
) -> None:
    """The newest calls in the event log, oldest of them first."""
    from ops.events import event_lines, open_event_log

    start = _since(since)
    log = open_event_log(project.resolve())
    try:
        events, total = log.tail(limit, start), log.count(start)
    finally:
        log.engine.dispose()
    if events:
        for line in aligned(event_lines(events)):
            typer.echo(line)
    typer.echo(f"{len(events)} of {total} call(s) since {since}", err=True)


@events_app.command("count")
def events_count_command(since: SinceOption = "1d", project: ProjectOption = Path(".")) -> None:
    """How many calls the event log holds from this window."""
    from ops.events import open_event_log

    start = _since(since)
    log = open_event_log(project.resolve())
    try:
        typer.echo(log.count(start))
    finally:
        log.engine.dispose()


def _since(text: str) -> Any:
    from datetime import UTC, datetime

    from ops.stats import since_of

    try:
        return since_of(text, datetime.now(UTC))
    except ValueError as error:
        typer.secho(f"✗ --since {error}", fg="red", err=True)
        raise typer.Exit(2) from None


class JourneysCommands(TyperGroup):
    """``touchpoint journeys`` lists the journeys, ``touchpoint journeys JOURNEY`` shows one."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not args or (args[0].startswith("-") and args[0] != "--help"):
            args = ["list", *args]
        elif args[0] not in self.commands and args[0] != "--help":
            args = ["show", *args]
        return super().parse_args(ctx, args)


journeys_app = typer.Typer(
    cls=JourneysCommands,
    help="Deployed journeys: versions, runs, and pause, resume or stop (with an audit).",
)
app.add_typer(journeys_app, name="journeys")

JourneyArgument = Annotated[str, typer.Argument(help="The journey id.")]
WhyOption = Annotated[str, typer.Option("--why", help="Why, for the audit.")]


@journeys_app.command("list")
def journeys_list_command(project: ProjectOption = Path(".")) -> None:
    """Every deployed journey: state, versions, the active one (*), runs per version.

    A line per version that was ever deployed: when and by whom, and its runs (running, and
    all that entered it) counted by Temporal's search attributes."""
    import asyncio

    from ops.journeys import (
        VERSION_COLUMNS,
        open_deployments,
        version_rows,
        version_table,
        with_run_counts,
    )

    deployments, settings = open_deployments(project.resolve())
    rows, note = asyncio.run(with_run_counts(version_rows(deployments), settings))
    for line in aligned([VERSION_COLUMNS, *version_table(rows)]) if rows else []:
        typer.echo(line)
    journeys = len({row.journey.journey_id for row in rows})
    said = f"{journeys} journey(s)" if rows else "no journey deployed yet; `touchpoint deploy`"
    typer.echo(said + (f"; {note}" if note else ""), err=True)


@journeys_app.command("show")
def journeys_show_command(journey: JourneyArgument, project: ProjectOption = Path(".")) -> None:
    """One journey: its state, versions and runs, and who changed it, when and why."""
    import asyncio

    from ops.journeys import (
        VERSION_COLUMNS,
        history_lines,
        open_deployments,
        version_rows,
        version_table,
        with_run_counts,
    )

    deployments, settings = open_deployments(project.resolve())
    current = deployments.get(journey)
    rows, note = asyncio.run(with_run_counts(version_rows(deployments, journey), settings))
    if current.state == "active":
        typer.echo(f"{journey}: active; new entries start on {current.active_version}")
    else:
        typer.echo(
            f"{journey}: {current.state}; new entries would start on {current.active_version} "
            f"(`touchpoint journeys resume {journey}`)"
        )
    for line in aligned([VERSION_COLUMNS[2:], *[row[2:] for row in version_table(rows)]]):
        typer.echo(f"  {line}")
    typer.echo("history:")
    for line in history_lines(deployments.history(journey)):
        typer.echo(f"  {line}")
    if note:
        typer.echo(note, err=True)


def _set_state(journey: str, state: State, why: str, by: str | None, project: Path) -> None:
    from ops.journeys import open_deployments, state_change, state_schedule_lines

    who, reason = _who(by), _why(why, "--why")
    deployments, settings = open_deployments(project.resolve())
    before, _now = deployments.set_state(journey, state, actor=who, reason=reason)
    typer.echo(state_change(deployments, journey, before, state))
    for line in state_schedule_lines(deployments, settings, journey):
        typer.echo(line, err=True)


@journeys_app.command("pause")
def journeys_pause_command(
    journey: JourneyArgument,
    why: WhyOption,
    by: WhoOption = None,
    project: ProjectOption = Path("."),
) -> None:
    """No new entries (trigger events are accepted and start nothing); running runs go on."""
    _set_state(journey, "paused", why, by, project)


@journeys_app.command("resume")
def journeys_resume_command(
    journey: JourneyArgument,
    why: WhyOption,
    by: WhoOption = None,
    project: ProjectOption = Path("."),
) -> None:
    """Undo a pause or a stop: new entries start again (runs a stop has ended stay ended)."""
    _set_state(journey, "active", why, by, project)


@journeys_app.command("stop")
def journeys_stop_command(
    journey: JourneyArgument,
    why: WhyOption,
    by: WhoOption = None,
    project: ProjectOption = Path("."),
) -> None:
    """The kill switch: no new entries, and running runs end (exited) before their next send."""
    _set_state(journey, "stopped", why, by, project)


suppressions_app = typer.Typer(
    help="Addresses no email goes to (hard bounces, spam reports), with an audit.",
    no_args_is_help=True,
)
app.add_typer(suppressions_app, name="suppressions")


@suppressions_app.command("list")
def suppressions_list_command(
    limit: Annotated[int, typer.Option(min=1, help="At most this many.")] = 100,
    project: ProjectOption = Path("."),
) -> None:
    """Suppressed addresses, newest first: address, reason, source, since."""
    from ops.suppressions import suppression_table

    store = _suppressions(project)
    rows, total = store.list(limit), store.count()
    for line in suppression_table(rows):
        typer.echo(line)
    if total > len(rows):
        typer.echo(
            f"{len(rows)} of {total} suppressed addresses, newest first "
            f"(--limit {total} shows all)",
            err=True,
        )
    else:
        typer.echo(f"{total} suppressed address(es)", err=True)


@suppressions_app.command("show")
def suppressions_show_command(
    address: Annotated[str, typer.Argument(help="The email address.")],
    project: ProjectOption = Path("."),
) -> None:
    """Whether an address is suppressed, and who added or removed it, when and why."""
    from ops.suppressions import audit_trail

    store = _suppressions(project)
    try:
        current, history = store.get(address), store.audit(address)
    except ValueError as error:
        _fail(str(error))
    if current is None and not history:
        _fail(f"{address.strip()} has never been suppressed")
    for line in audit_trail(address, current, history):
        typer.echo(line)


@suppressions_app.command("add")
def suppressions_add_command(
    address: Annotated[str, typer.Argument(help="The email address.")],
    reason: Annotated[str, typer.Option("--reason", help="Why, for the audit.")],
    by: WhoOption = None,
    project: ProjectOption = Path("."),
) -> None:
    """Suppress an address by hand: no email of any kind goes to it any more."""
    who, why = _who(by), _why(reason)
    store = _suppressions(project)
    try:
        added = store.add(address, "manual", detail=why, source="cli", actor=who)
    except ValueError as error:
        _fail(str(error))
    current = store.get(address)
    assert current is not None
    if added:
        typer.echo(f"suppressed {current.address}: no email goes to it until it is removed")
    else:
        typer.echo(
            f"{current.address} is suppressed already ({current.reason}, since "
            f"{current.since.isoformat(timespec='seconds')}); nothing changed"
        )


@suppressions_app.command("remove")
def suppressions_remove_command(
    address: Annotated[str, typer.Argument(help="The email address.")],
    reason: Annotated[str, typer.Option("--reason", help="Why, for the audit.")],
    by: WhoOption = None,
    project: ProjectOption = Path("."),
) -> None:
    """Lift an address's suppression (audited: who, when, why); email goes to it again."""
    who, why = _who(by), _why(reason)
    store = _suppressions(project)
    try:
        current = store.get(address)
        removed = store.remove(address, actor=who, why=why)
    except ValueError as error:
        _fail(str(error))
    if not removed or current is None:
        _fail(f"{address.strip()} is not suppressed; nothing to remove")
    typer.echo(
        f"removed the suppression of {current.address} ({current.reason}, since "
        f"{current.since.isoformat(timespec='seconds')}); email goes to it again"
    )


def _suppressions(project: Path) -> Suppressions:
    from ops.suppressions import ConfigProblem, open_suppressions

    try:
        return open_suppressions(project.resolve())
    except ConfigProblem as error:
        _fail(str(error))


def _who(by: str | None) -> str:
    """``--by``, or the user name of whoever runs the command."""
    import getpass

    if by is not None and by.strip():
        return by.strip()
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        raise typer.BadParameter("cannot tell who you are; say so", param_hint="--by") from None


def _why(reason: str, option: str = "--reason") -> str:
    if not reason.strip():
        raise typer.BadParameter("say why, for the audit", param_hint=option)
    return reason.strip()


def _fail(message: str) -> NoReturn:
    """A user-facing error: one line on stderr, exit 1."""
    typer.secho(f"✗ {message}", fg="red", err=True)
    raise typer.Exit(1)


def aligned(rows: list[list[str]]) -> list[str]:
    """Rows as lines of left-aligned columns (plain text: ids stay whole for copying)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _more(found: int, limit: int) -> str:
    """What a count line adds when ``limit`` cut the list short (``found`` is limit + 1 then)."""
    return f"; showing the newest {limit}; --limit N for more" if found > limit else ""


def _pairs(items: list[str] | None) -> dict[str, object]:
    pairs: dict[str, object] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected key=value, got {item!r}")
        try:
            pairs[key] = json.loads(value)
        except json.JSONDecodeError:
            pairs[key] = value
    return pairs


def _load_plan(journey: str, project: Path) -> Plan:
    """Compile one journey named by path or id; report its problems and exit 1 if it is broken."""
    path = Path(journey)
    if not path.exists():
        candidate = project / JOURNEYS_DIR / f"{journey}.yaml"
        if not candidate.exists():
            raise typer.BadParameter(
                f"no journey file {journey!r} and no {candidate}", param_hint="JOURNEY"
            )
        path = candidate
    report = validate([path], root=project)
    _fail_on_problems(report)
    return next(iter(report.plans.values()))


def _fail_on_problems(report: Report) -> None:
    if report.ok and report.plans:
        return
    for problem in report.problems:
        typer.echo(problem.format(), err=True)
    typer.secho("✗ " + report.summary(), fg="red", err=True)
    raise typer.Exit(1)


def _interrupted(_signum: int, _frame: FrameType | None) -> None:
    typer.echo("\ninterrupted", err=True)
    raise SystemExit(130)


def main() -> None:
    """Run the command line; ``SystemExit`` with the exit-code contract's code."""
    signal.signal(signal.SIGINT, _interrupted)
    sys.exit(exit_code("touchpoint", app))


def run() -> None:
    """The console script: ``main``, then leave without interpreter teardown."""
    try:
        main()
    except SystemExit as stop:
        leave(stop.code if isinstance(stop.code, int) else 1)


if __name__ == "__main__":
    run()
