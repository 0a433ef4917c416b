"""Journeys deployed while the system runs: the store's record of active versions and states
(with its audit), the router's table swapped whole, a paused journey that starts nothing, the
kill switch that ends a stopped journey's runs before their next send, which version wins when
an API starts from a folder, and the ``deploy`` and ``journeys`` commands (in-process)."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from activities.delivery import DeliveryActivities
from activities.email.maildir import MaildirProvider, list_messages
from activities.http import make_client
from activities.policies import JourneyStopped, Message, PolicyChain
from activities.rendering import Renderer
from cli import app
from config.errors import NotDeployed
from ingestion.deployed import DeployedJourneys
from ingestion.router import Router, Routes
from language.validator import validate
from ops.journeys import start_routing
from simulation.recording import RecordingActivities
from store.consent import ConsentStore
from store.database import connect
from store.deployments import Deployments
from store.entries import EntryStore
from store.ledger import Ledger
from store.plans import PlanStore
from store.profiles import ProfileStore
from tests import corpus
from tests.conftest import ROOT
from tests.temporal import event, finish, plan_from, running_workers, start_run
from workflows.channels import EMAIL
from workflows.models import Profile, RunSettings, SendRequest
from workflows.plan import Plan
from workflows.registry import Deployment

MAX = Profile(id="max", email="max@example.com", locale="en")


def journey(version: str = "one", listens: str = "Order Completed") -> str:
    """A journey whose versions differ by name and by the event their runs wait for."""
    return f"""
id: welcome
name: Welcome {version}
category: marketing
trigger:
  event: Signed Up
steps:
  - id: answer
    wait_for: {listens}
    timeout: 2d
    on_timeout: nudge
  - send: email
    template: newsletter-welcome
  - end
  - id: nudge
    send: email
    template: apology
"""


@pytest.fixture
def engine(tmp_path: Path):  # type: ignore[no-untyped-def]
    return connect(f"sqlite:///{tmp_path / 'touchpoint.db'}")


def published(engine: object, *plans: Plan) -> Deployments:
    PlanStore(engine).publish(plans)  # type: ignore[arg-type]
    return Deployments(engine)  # type: ignore[arg-type]


# --- the store --------------------------------------------------------------------------------


def test_a_deploy_makes_a_version_active_and_says_what_it_replaced(engine: object) -> None:
    one, two = plan_from(journey("one")), plan_from(journey("two"))
    deployments = published(engine, one, two)
    [first] = deployments.deploy([one], actor="ann", reason="launch")
    [same] = deployments.deploy([one], actor="ann", reason="again")
    [second] = deployments.deploy([two], actor="bob", reason="new subject")
    assert (first.previous, first.changed) == (None, True)
    assert (same.previous, same.changed) == (one.version, False)
    assert (second.previous, second.version) == (one.version, two.version)
    assert deployments.get("welcome").active_version == two.version
    history = deployments.history("welcome")
    assert [(c.action, c.version, c.previous, c.actor, c.reason) for c in history] == [
        ("deployed", one.version, None, "ann", "launch"),
        ("deployed", two.version, one.version, "bob", "new subject"),
    ], "an unchanged deploy writes no audit line"


def test_pause_resume_and_stop_are_audited_and_a_deploy_keeps_the_state(engine: object) -> None:
    one, two = plan_from(journey("one")), plan_from(journey("two"))
    deployments = published(engine, one, two)
    deployments.deploy([one], actor="ann", reason=None)
    assert deployments.set_state("welcome", "paused", actor="ann", reason="freeze")[0] == "active"
    assert deployments.set_state("welcome", "paused", actor="ann", reason="x")[0] == "paused"
    [deployed] = deployments.deploy([two], actor="bob", reason="fix")
    assert deployed.state == "paused" and deployments.state("welcome") == "paused"
    deployments.set_state("welcome", "stopped", actor="cy", reason="wrong price")
    assert deployments.stop_reason("welcome") == "journey stopped by cy: wrong price"
    deployments.set_state("welcome", "active", actor="ann", reason="fixed")
    assert [(c.action, c.actor, c.reason) for c in deployments.history("welcome")][1:] == [
        ("paused", "ann", "freeze"),
        ("deployed", "bob", "fix"),
        ("stopped", "cy", "wrong price"),
        ("resumed", "ann", "fixed"),
    ]
    assert deployments.state("never-deployed") is None


def test_an_unknown_journey_is_named_with_the_deployed_ones(engine: object) -> None:
    deployments = published(engine, plan_from(journey()))
    deployments.deploy([plan_from(journey())], actor="ann", reason=None)
    with pytest.raises(NotDeployed) as raised:
        deployments.set_state("welcom", "paused", actor="ann", reason="typo")
    assert str(raised.value) == (
        "no journey 'welcom' has been deployed (deployed: welcome); "
        "`touchpoint deploy welcom` deploys it from the project folder"
    )
    with engine.connect() as db:  # type: ignore[attr-defined]
        assert db.execute(text("SELECT count(*) FROM journey_audit")).scalar_one() == 1


# --- which version wins when an API starts from a folder -------------------------------------


def test_the_store_wins_over_the_folder_unless_the_api_deploys(
    engine: object, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    one, two = plan_from(journey("one")), plan_from(journey("two"))
    first = start_routing(engine, tmp_path, {"welcome": one}, False, "touchpoint api")  # type: ignore[arg-type]
    assert first.deployments.get("welcome").active_version == one.version, "never deployed"
    later = start_routing(engine, tmp_path, {"welcome": two}, False, "touchpoint api")  # type: ignore[arg-type]
    routing = later.read()
    assert routing is not None and routing.active["welcome"].version == one.version
    assert [p.version for p in routing.earlier] == [two.version], "published: its runs listen"
    assert capsys.readouterr().err == (
        f"note: journey welcome: routing the deployed version {one.version}, not this "
        f"folder's {two.version} (`touchpoint deploy welcome` deploys the folder's)\n"
    )
    deploying = start_routing(engine, tmp_path, {"welcome": two}, True, "touchpoint api")  # type: ignore[arg-type]
    assert deploying.deployments.get("welcome").active_version == two.version
    [*_, last] = deploying.deployments.history("welcome")
    assert last.actor.endswith("(touchpoint api)") and "--deploy" in (last.reason or "")


def test_the_deployed_journeys_are_read_again_only_when_they_change(engine: object) -> None:
    one, two = plan_from(journey("one")), plan_from(journey("two"))
    deployments = published(engine, one, two)
    deployments.deploy([one], actor="ann", reason=None)
    deployed = DeployedJourneys(deployments, PlanStore(engine))  # type: ignore[arg-type]
    routing = deployed.read()
    assert routing is not None and routing.active["welcome"] == one
    assert deployed.read() is None
    deployments.set_state("welcome", "paused", actor="ann", reason="not a routing change")
    assert deployed.read() is None
    deployments.deploy([two], actor="ann", reason=None)
    again = deployed.read()
    assert again is not None and again.active["welcome"] == two and again.earlier == [one]


# --- the router ------------------------------------------------------------------------------


def test_earlier_versions_listen_and_only_the_active_one_is_triggered() -> None:
    one = plan_from(journey("one", listens="Order Completed"))
    two = plan_from(journey("two", listens="Order Shipped"))
    routes = Routes.of({"welcome": two}, [one, two])
    assert routes.triggers["Signed Up"] == (two,)
    assert routes.listeners["Order Completed"] == (one,), "runs on version one still wait"
    assert routes.listeners["Order Shipped"] == (two,)


async def test_a_swap_while_an_event_is_routed_sends_it_to_one_version(
    time_env: WorkflowEnvironment, engine: object
) -> None:
    one, two = plan_from(journey("one")), plan_from(journey("two"))
    recorder = RecordingActivities()
    async with running_workers(time_env.client, recorder.all()) as prefix:
        settings = RunSettings(queue_prefix=prefix, index_runs=False)
        router = Router(time_env.client, {"welcome": one}, EntryStore(engine), settings)  # type: ignore[arg-type]

        async def deploy_meanwhile():  # type: ignore[no-untyped-def]
            router.use({"welcome": two}, [one])  # what DeployedJourneys.follow does
            return await time_env.get_current_time()

        router.clock = deploy_meanwhile
        [during] = await router.route(event("Signed Up", customer="c-1"), MAX)
        [after] = await router.route(event("Signed Up", customer="c-2"), MAX)
        handles = [
            time_env.client.get_workflow_handle(r.workflow_id or "") for r in (during, after)
        ]
        versions = [await handle.query("state") for handle in handles]
        for handle in handles:  # every run ends here: one cut off mid-task can stop the test
            await finish(time_env, handle.id)  # server's clock for the tests that follow
    assert (during.action, after.action) == ("started", "started")
    assert [v["journey_version"] for v in versions] == [one.version, two.version]


async def test_a_paused_journey_starts_nothing_and_its_runs_still_get_events(
    time_env: WorkflowEnvironment, engine: object
) -> None:
    plan = plan_from(journey())
    deployments = published(engine, plan)
    deployments.deploy([plan], actor="ann", reason=None)
    recorder = RecordingActivities()
    async with running_workers(time_env.client, recorder.all()) as prefix:
        router = Router(
            time_env.client,
            {"welcome": plan},
            EntryStore(engine),  # type: ignore[arg-type]
            RunSettings(queue_prefix=prefix, index_runs=False),
            deployments=deployments,
        )
        [running] = await router.route(event("Signed Up", customer="early"), MAX)
        deployments.set_state("welcome", "paused", actor="ann", reason="freeze")
        [refused] = await router.route(event("Signed Up", customer="late"), MAX)
        [answered] = await router.route(event("Order Completed", customer="early"), MAX)
        result = await finish(time_env, running.workflow_id)
        deployments.set_state("welcome", "active", actor="ann", reason="thaw")
        [resumed] = await router.route(event("Signed Up", customer="late"), MAX)
        await finish(time_env, resumed.workflow_id)
    assert (refused.action, refused.reason) == ("skipped", "the journey is paused")
    assert (answered.action, answered.workflow_id) == ("signalled", running.workflow_id)
    assert [e.kind for e in result.timeline] == ["event", "sent"], "the running run went on"
    assert resumed.action == "started"


# --- the kill switch -------------------------------------------------------------------------


def test_the_stop_policy_ends_runs_of_a_stopped_journey_only(engine: object) -> None:
    plan = plan_from(journey())
    deployments = published(engine, plan)
    deployments.deploy([plan], actor="ann", reason=None)
    policy = JourneyStopped(deployments)
    request = SendRequest(
        message_id="msg_1",
        journey_id="welcome",
        journey_version=plan.version,
        category="marketing",
        step_id="send-2",
        channel="email",
        template="newsletter-welcome",
        customer_id="max",
    )
    message = Message(request, EMAIL, "max@example.com", datetime.now(UTC))
    assert policy.decide(message) is None
    deployments.set_state("welcome", "paused", actor="ann", reason="freeze")
    assert policy.decide(message) is None, "a pause lets running runs send"
    deployments.set_state("welcome", "stopped", actor="ann", reason="wrong price")
    decided = PolicyChain([policy]).decide(message)
    assert (decided.action, decided.reason, decided.policy) == (
        "end",
        "journey stopped by ann: wrong price",
        "journey-stopped",
    )


@pytest.mark.records_history
async def test_a_stopped_journey_run_ends_before_its_next_send(
    time_env: WorkflowEnvironment, engine: object, tmp_path: Path
) -> None:
    """The real delivery activity with the standard chain: the run that waits ends as exited at
    its send; nothing reaches the outbox; the ledger says why. (Recorded in the replay corpus:
    the run takes the ``journey-stop`` patch.)"""
    plan = plan_from(journey())
    ProfileStore(engine).upsert(MAX.id, {"email": MAX.email}, locale=MAX.locale)  # type: ignore[arg-type]
    deployments = published(engine, plan)
    deployments.deploy([plan], actor="ann", reason=None)
    config = validate((), root=ROOT).config
    ledger = Ledger(engine)  # type: ignore[arg-type]
    activities = DeliveryActivities(
        config=config,
        ledger=ledger,
        renderer=Renderer.for_project(ROOT, config),
        email=MaildirProvider(tmp_path / "outbox"),
        http=make_client(),
        unsubscribe_secret=b"s" * 32,
        environ={},
        consent=ConsentStore(engine),  # type: ignore[arg-type]
    )
    async with running_workers(time_env.client, activities.all()) as prefix:
        handle = await start_run(
            time_env.client, plan, prefix, event("Signed Up", customer="max"),
            by_reference=True, workflow_id=f"stop-{uuid.uuid4()}",
        )  # fmt: skip
        deployments.set_state("welcome", "stopped", actor="ann", reason="wrong price")
        result = await finish(time_env, handle.id)  # the 2-day wait is skipped
        await corpus.record(
            time_env.client, handle.id, "stopped-before-its-next-send",
            "the journey is stopped while the run waits: it ends at its next send, unsent",
            recorded_on=corpus.TIME_SKIPPING, plans=[plan],
            deployment=Deployment(index_runs=False, default_timezone="Europe/Berlin"),
        )  # fmt: skip
    assert (result.outcome.kind, result.outcome.reason, result.outcome.step) == (
        "exited",
        "journey stopped by ann: wrong price",
        "nudge",
    )
    assert [(e.step, e.kind) for e in result.timeline] == [
        ("answer", "timeout"),
        ("nudge", "stopped"),
    ]
    assert list_messages(tmp_path / "outbox") == []
    [row] = ledger.list(limit=10)
    assert (row.status, row.reason) == ("skipped", "journey stopped by ann: wrong price")


# --- the commands (in-process; tests/test_live_deploys.py runs the installed executable) ------


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "shop"
    root.mkdir()
    shutil.copy(ROOT / "touchpoint.yaml", root / "touchpoint.yaml")
    shutil.copytree(ROOT / "templates", root / "templates")
    (root / "journeys").mkdir()
    (root / "journeys" / "welcome.yaml").write_text(journey("one"))
    monkeypatch.setenv("TOUCHPOINT_DATABASE_URL", f"sqlite:///{tmp_path / 'touchpoint.db'}")
    monkeypatch.setenv("TOUCHPOINT_TEMPORAL_ADDRESS", "127.0.0.1:1")  # no counts: quick
    return root


def version_of(project: Path, text: str) -> str:
    """The version ``text`` compiles to in ``project``."""
    (project / "journeys" / "welcome.yaml").write_text(text)
    return validate((), root=project).plans["welcome"].version


def test_deploy_says_what_changed(cli: CliRunner, project: Path) -> None:
    first = cli.invoke(app, ["deploy", "-C", str(project), "--why", "launch", "--by", "ann"])
    again = cli.invoke(app, ["deploy", "welcome", "-C", str(project)])
    (project / "journeys" / "welcome.yaml").write_text(journey("two"))
    second = cli.invoke(app, ["deploy", "welcome", "-C", str(project)])
    one, two = version_of(project, journey("one")), version_of(project, journey("two"))
    assert (first.exit_code, again.exit_code, second.exit_code) == (0, 0, 0)
    assert first.stdout == f"welcome  deployed {one} (its first version)\n"
    assert again.stdout == f"welcome  unchanged ({one} is active)\n"
    assert second.stdout == f"welcome  deployed {two} (was {one})\n"
    assert "1 deployed, 0 unchanged; every API starts new entries on them within 2 s" in (
        second.stderr
    )


def test_an_invalid_journey_deploys_nothing(cli: CliRunner, project: Path) -> None:
    (project / "journeys" / "broken.yaml").write_text(
        journey("x").replace("welcome", "broken", 1) + "  - wait: soon\n"
    )
    result = cli.invoke(app, ["deploy", "-C", str(project)])
    assert result.exit_code == 1 and result.stdout == ""
    assert "broken.yaml:" in result.stderr and result.stderr.rstrip().endswith("nothing deployed")
    listed = cli.invoke(app, ["journeys", "-C", str(project)])
    assert listed.exit_code == 0 and listed.stdout == "", "not even the valid journey"


def test_journeys_lists_shows_and_changes_states(cli: CliRunner, project: Path) -> None:
    assert cli.invoke(app, ["deploy", "-C", str(project), "--by", "ann"]).exit_code == 0
    paused = cli.invoke(
        app, ["journeys", "pause", "welcome", "--why", "freeze", "--by", "bob", "-C", str(project)]
    )
    assert paused.exit_code == 0, paused.output
    assert paused.stdout.startswith("paused welcome: no new entries")
    listed = cli.invoke(app, ["journeys", "-C", str(project)])
    version = version_of(project, journey("one"))
    header, row = listed.stdout.splitlines()
    assert header.split() == [
        "JOURNEY", "STATE", "VERSION", "ACTIVE", "DEPLOYED", "BY", "RUNNING", "RUNS",
    ]  # fmt: skip
    assert row.split()[:4] == ["welcome", "paused", version, "*"] and row.split()[5:] == [
        "ann", "?", "?",
    ]  # fmt: skip
    assert "no run counts: Temporal is not reachable" in listed.stderr
    shown = cli.invoke(app, ["journeys", "welcome", "-C", str(project)])
    assert shown.exit_code == 0
    assert shown.stdout.splitlines()[0] == (
        f"welcome: paused; new entries would start on {version} "
        "(`touchpoint journeys resume welcome`)"
    )
    assert shown.stdout.rstrip().endswith("paused by bob: freeze")
    unknown = cli.invoke(app, ["journeys", "stop", "nope", "--why", "x", "-C", str(project)])
    assert unknown.exit_code == 1 and "no journey 'nope' has been deployed" in unknown.stderr
    no_reason = cli.invoke(app, ["journeys", "stop", "welcome", "-C", str(project)])
    assert no_reason.exit_code == 2 and "--why" in no_reason.stderr


def test_a_deploy_while_an_api_follows_the_store_reaches_its_router(engine: object) -> None:
    """``follow`` swaps the router's table within its poll interval."""
    one, two = plan_from(journey("one")), plan_from(journey("two"))
    deployments = published(engine, one, two)
    deployments.deploy([one], actor="ann", reason=None)

    async def go() -> str:
        deployed = DeployedJourneys(deployments, PlanStore(engine))  # type: ignore[arg-type]
        router = deployed.router(None, EntryStore(engine), RunSettings())  # type: ignore[arg-type]
        follower = asyncio.create_task(deployed.follow(router, seconds=0.05))
        deployments.deploy([two], actor="ann", reason=None)
        for _ in range(100):
            if router.plans["welcome"] == two:
                break
            await asyncio.sleep(0.02)
        follower.cancel()
        return router.plans["welcome"].version

    assert asyncio.run(go()) == two.version
