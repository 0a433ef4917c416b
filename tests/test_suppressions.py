"""Address suppressions: the store and its audit on SQLite and PostgreSQL, SendGrid's feedback
turned into suppressions, the real delivery activities skipping every email to a suppressed
address (transactional included), and the ``touchpoint suppressions`` commands — in-process
and as the installed executable."""

from __future__ import annotations

import getpass
import json
import mailbox
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from activities.delivery import DeliveryActivities
from activities.email.maildir import MaildirProvider
from activities.http import make_client
from activities.rendering import Renderer
from cli import app
from ingestion.sendgrid_events import parse_events
from language.validator import validate
from ops.suppressions import record_sendgrid_feedback
from store.consent import ConsentStore
from store.database import connect, suppression_audit
from store.ledger import Ledger
from store.suppressions import Suppressions, normalise
from tests.conftest import ROOT, Database
from tests.temporal import event, plan_from, running_workers, start_run
from workflows.models import Profile, RunResult

TOUCHPOINT = str(Path(sys.executable).parent / "touchpoint")


@pytest.fixture
def engine(database: Database) -> Engine:
    return database.connect()


@pytest.fixture
def store(engine: Engine) -> Suppressions:
    return Suppressions(engine)


# --- the store ------------------------------------------------------------------------------


def test_an_address_is_stored_normalised_and_added_once(store: Suppressions) -> None:
    assert store.add(
        " Max@Example.COM ", "bounce", detail="550 5.1.1", source="sendgrid", actor="sendgrid"
    )
    again = store.add(
        "max@example.com", "bounce", detail="550", source="sendgrid", actor="sendgrid"
    )
    assert again is False, "idempotent: a repeated bounce changes nothing"
    found = store.get("MAX@example.com")
    assert found is not None
    assert (found.address, found.reason, found.detail, found.source) == (
        "max@example.com",
        "bounce",
        "550 5.1.1",
        "sendgrid",
    )
    assert found.since.tzinfo is UTC and datetime.now(UTC) - found.since < timedelta(minutes=1)
    [added] = store.audit("max@example.com")
    assert (added.action, added.actor, added.why) == ("added", "sendgrid", "bounce: 550 5.1.1")


def test_removal_is_audited_and_an_unknown_address_is_false(store: Suppressions) -> None:
    store.add("ana@example.com", "spamreport", source="sendgrid", actor="sendgrid")
    assert store.remove("nobody@example.com", actor="anna", why="asked") is False
    assert store.audit("nobody@example.com") == [], "nothing recorded for a no-op"
    assert store.remove("ANA@example.com", actor="anna", why="customer asked by phone") is True
    assert store.get("ana@example.com") is None
    assert store.remove("ana@example.com", actor="anna", why="again") is False
    store.add("ana@example.com", "manual", detail="wrote in", source="cli", actor="bob")
    trail = [(e.action, e.actor, e.why) for e in store.audit("ana@example.com")]
    assert trail == [
        ("added", "sendgrid", "spamreport"),
        ("removed", "anna", "customer asked by phone"),
        ("added", "bob", "manual: wrote in"),
    ]
    times = [e.at for e in store.audit("ana@example.com")]
    assert times == sorted(times) and all(t.tzinfo is UTC for t in times)


def test_the_list_is_newest_first_and_limited(store: Suppressions) -> None:
    for n in range(5):
        store.add(f"c{n}@example.com", "bounce", source="sendgrid", actor="sendgrid")
    assert [s.address for s in store.list(3)] == [f"c{n}@example.com" for n in (4, 3, 2)]
    assert store.count() == 5


def test_the_reason_a_send_is_blocked_names_no_address(store: Suppressions) -> None:
    assert store.blocked("max@example.com") is None
    store.add("max@example.com", "bounce", source="sendgrid", actor="sendgrid")
    assert store.blocked("Max@Example.com") == "the address is suppressed (bounce)"
    assert store.blocked("not an address") is None


@pytest.mark.parametrize("address", ["", "   ", "max", "@example.com", "max@", "a b@example.com"])
def test_what_is_not_an_address_is_refused(store: Suppressions, address: str) -> None:
    with pytest.raises(ValueError, match="is not an email address"):
        store.add(address, "manual", source="cli", actor="anna")


def test_an_overlong_address_is_refused() -> None:
    with pytest.raises(ValueError, match="at most 320 characters"):
        normalise("a" * 320 + "@example.com")


def test_the_audit_outlives_the_suppression_in_its_own_table(
    store: Suppressions, engine: Engine
) -> None:
    store.add("max@example.com", "bounce", source="sendgrid", actor="sendgrid")
    store.remove("max@example.com", actor="anna", why="mailbox fixed")
    with engine.connect() as db:
        rows = db.execute(select(suppression_audit.c.action, suppression_audit.c.actor)).all()
    assert [tuple(row) for row in rows] == [("added", "sendgrid"), ("removed", "anna")]


# --- SendGrid's feedback --------------------------------------------------------------------


def sendgrid_event(event: str, n: int, **fields: object) -> dict[str, object]:
    return {
        "email": "Max@Example.com",
        "timestamp": 1700000000 + n,
        "event": event,
        "sg_event_id": f"evt-{n}",
        **fields,
    }


def test_hard_bounces_and_spam_reports_suppress_the_address_and_nothing_else_does(
    store: Suppressions,
) -> None:
    body = json.dumps(
        [
            sendgrid_event("bounce", 1, type="blocked", reason="421 try later"),
            sendgrid_event("dropped", 2, reason="Bounced Address"),
            sendgrid_event("unsubscribe", 3),
            sendgrid_event("group_unsubscribe", 4, asm_group_id=7),
            sendgrid_event("open", 5),
            sendgrid_event("bounce", 6, type="bounce", reason="550 5.1.1 unknown user"),
            sendgrid_event("bounce", 7, type="bounce", reason="550 again"),
            {**sendgrid_event("spamreport", 8), "email": "ana@example.com"},
        ]
    ).encode()
    outcomes = [record_sendgrid_feedback(store, e) for e in parse_events(body)]
    assert outcomes == [False, False, False, False, False, True, False, True]
    assert [(s.address, s.reason, s.detail, s.source) for s in store.list(10)] == [
        ("ana@example.com", "spamreport", None, "sendgrid"),
        ("max@example.com", "bounce", "550 5.1.1 unknown user", "sendgrid"),
    ]
    [added] = store.audit("max@example.com")
    assert (added.actor, added.why) == ("sendgrid", "bounce: 550 5.1.1 unknown user")


# --- delivery -------------------------------------------------------------------------------

TRANSACTIONAL = """
id: order-confirmation
name: Order confirmation
category: transactional
trigger:
  event: Order Completed
steps:
  - id: confirm
    send: email
    template: laptop-setup
"""
MARKETING = """
id: welcome
name: Welcome
category: marketing
trigger:
  event: Signed Up
steps:
  - id: welcome
    send: email
    template: newsletter-welcome
"""


def outbox(path: Path) -> list[mailbox.MaildirMessage]:
    return list(mailbox.Maildir(path, create=False)) if (path / "new").exists() else []


async def test_every_email_to_a_suppressed_address_is_skipped_until_it_is_removed(
    time_env: WorkflowEnvironment, tmp_path: Path, engine: Engine
) -> None:
    """The real delivery activities and Maildir: a hard bounce (as SendGrid posts it) stops the
    order confirmation and the marketing email alike; once support lifts it, mail goes out."""
    store, ledger = Suppressions(engine), Ledger(engine)
    activities = DeliveryActivities(
        config=validate((), root=ROOT).config,
        ledger=ledger,
        renderer=Renderer(ROOT / "templates", "en"),
        email=MaildirProvider(tmp_path / "outbox"),
        http=make_client(),
        unsubscribe_secret=b"unsubscribe-secret",
        environ={},
        consent=ConsentStore(engine),
        suppressions=store,
    )
    [bounce] = parse_events(
        json.dumps([sendgrid_event("bounce", 1, type="bounce", reason="550 5.1.1")]).encode()
    )
    assert record_sendgrid_feedback(store, bounce)
    profile = Profile(id="max-1", email="max@example.com")

    async def run(prefix: str, plan_text: str, trigger: str, key: str) -> RunResult:
        handle = await start_run(
            time_env.client,
            plan_from(plan_text),
            prefix,
            event(trigger, customer="max-1", order_id=key, products=[]),
            profile=profile,
            key=key,
        )
        return RunResult.model_validate(await handle.result())

    async with running_workers(time_env.client, activities.all()) as prefix:
        order = await run(prefix, TRANSACTIONAL, "Order Completed", "O-1")
        welcome = await run(prefix, MARKETING, "Signed Up", "S-1")
        assert outbox(tmp_path / "outbox") == []
        assert store.remove("max@example.com", actor="anna", why="mailbox fixed")
        after = await run(prefix, TRANSACTIONAL, "Order Completed", "O-2")

    assert [(e.kind, e.step) for e in order.timeline if e.channel == "email"] == [
        ("skipped", "confirm")
    ]
    assert order.outcome.kind == "completed", "a skipped send does not fail the run"
    assert [e.kind for e in welcome.timeline if e.channel == "email"] == ["skipped"]
    assert "max@example.com" not in str(order.timeline), "no address in the run's history"
    assert [e.kind for e in after.timeline if e.channel == "email"] == ["sent"]
    assert len(outbox(tmp_path / "outbox")) == 1
    rows = sorted((r.journey_id, r.status, r.reason) for r in ledger.list())
    assert rows == [
        ("order-confirmation", "sent", None),
        ("order-confirmation", "skipped", "the address is suppressed (bounce)"),
        ("welcome", "skipped", "the address is suppressed (bounce)"),
    ]


def test_the_worker_checks_suppressions(tmp_path: Path) -> None:
    """What ``touchpoint worker`` builds: the delivery activities with the store's suppressions."""
    ledger = Ledger(connect(f"sqlite:///{tmp_path / 'touchpoint.db'}"))
    built = DeliveryActivities.for_project(validate((), root=ROOT).config, ROOT, ledger, {})
    assert isinstance(built.suppressions, Suppressions)
    assert built.suppressions.engine is ledger.engine


# --- the commands ---------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the example project with its own store."""
    for name in ("touchpoint.yaml", "journeys", "templates"):
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TOUCHPOINT_DATABASE_URL", f"sqlite:///{tmp_path / 'touchpoint.db'}")
    return tmp_path


def project_store(project: Path) -> Suppressions:
    return Suppressions(connect(f"sqlite:///{project / 'touchpoint.db'}"))


def test_list_prints_a_header_and_a_row_per_address(cli: CliRunner, project: Path) -> None:
    store = project_store(project)
    empty = cli.invoke(app, ["suppressions", "list"])
    assert (empty.exit_code, empty.stdout, empty.stderr) == (0, "", "0 suppressed address(es)\n")
    store.add("max@example.com", "bounce", source="sendgrid", actor="sendgrid")
    store.add("ana.long-name@example.com", "spamreport", source="sendgrid", actor="sendgrid")
    listed = cli.invoke(app, ["suppressions", "list"])
    assert listed.exit_code == 0
    since = {s.address: s.since.isoformat(timespec="seconds") for s in store.list(10)}
    assert listed.stdout.splitlines() == [
        "ADDRESS                    REASON      SOURCE    SINCE",
        f"ana.long-name@example.com  spamreport  sendgrid  {since['ana.long-name@example.com']}",
        f"max@example.com            bounce      sendgrid  {since['max@example.com']}",
    ]
    assert listed.stderr == "2 suppressed address(es)\n"
    limited = cli.invoke(app, ["suppressions", "list", "--limit", "1"])
    assert len(limited.stdout.splitlines()) == 2
    assert limited.stderr == (
        "1 of 2 suppressed addresses, newest first (--limit 2 shows all)\n"
    ), "never cut the list without saying so"


def test_add_show_and_remove_keep_who_when_and_why(cli: CliRunner, project: Path) -> None:
    added = cli.invoke(
        app, ["suppressions", "add", "Max@Example.com", "--reason", "asked by phone", "--by", "bob"]
    )
    assert added.exit_code == 0, added.output
    assert added.stdout == "suppressed max@example.com: no email goes to it until it is removed\n"
    since = project_store(project).get("max@example.com").since.isoformat(timespec="seconds")  # type: ignore[union-attr]
    twice = cli.invoke(app, ["suppressions", "add", "max@example.com", "--reason", "again"])
    assert twice.exit_code == 0
    assert twice.stdout == (
        f"max@example.com is suppressed already (manual, since {since}); nothing changed\n"
    )
    removed = cli.invoke(
        app, ["suppressions", "remove", "max@example.com", "--reason", "mailbox fixed"]
    )
    assert removed.exit_code == 0, removed.output
    assert removed.stdout == (
        f"removed the suppression of max@example.com (manual, since {since}); "
        "email goes to it again\n"
    )
    shown = cli.invoke(app, ["suppressions", "show", "MAX@example.com"])
    assert shown.exit_code == 0
    head, first, second = shown.stdout.splitlines()
    user = getpass.getuser()
    width = max(len("bob"), len(user))
    assert head == "max@example.com: not suppressed"
    assert first.endswith(f"  added    by {'bob'.ljust(width)}  manual: asked by phone")
    assert second.endswith(f"  removed  by {user.ljust(width)}  mailbox fixed"), "the OS user"
    assert [e.actor for e in project_store(project).audit("max@example.com")] == ["bob", user]


def test_show_of_a_suppressed_address(cli: CliRunner, project: Path) -> None:
    store = project_store(project)
    store.add("max@example.com", "bounce", detail="550 5.1.1", source="sendgrid", actor="sendgrid")
    since = store.list(1)[0].since.isoformat(timespec="seconds")
    shown = cli.invoke(app, ["suppressions", "show", "max@example.com"])
    assert shown.stdout.splitlines() == [
        f"max@example.com: suppressed since {since} (bounce: 550 5.1.1; source sendgrid)",
        f"{since}  added    by sendgrid  bounce: 550 5.1.1",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["remove", "nobody@example.com", "--reason", "x"],
            "✗ nobody@example.com is not suppressed; nothing to remove\n",
        ),
        (["show", "nobody@example.com"], "✗ nobody@example.com has never been suppressed\n"),
        (["add", "nobody", "--reason", "x"], "✗ 'nobody' is not an email address\n"),
        (["remove", "nobody", "--reason", "x"], "✗ 'nobody' is not an email address\n"),
    ],
)
def test_mistakes_are_one_line_and_exit_1(
    cli: CliRunner, project: Path, args: list[str], message: str
) -> None:
    result = cli.invoke(app, ["suppressions", *args])
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", message)


def test_a_reason_is_required(cli: CliRunner, project: Path) -> None:
    missing = cli.invoke(app, ["suppressions", "remove", "max@example.com"])
    blank = cli.invoke(app, ["suppressions", "remove", "max@example.com", "--reason", "  "])
    assert missing.exit_code == blank.exit_code == 2
    assert "say why, for the audit" in blank.stderr


def test_a_broken_touchpoint_yaml_is_one_line(cli: CliRunner, project: Path) -> None:
    (project / "touchpoint.yaml").write_text("database_url: [not, a, url]\n")
    result = cli.invoke(app, ["suppressions", "list"])
    assert (result.exit_code, result.stderr) == (
        1,
        "✗ touchpoint.yaml has problems; run `touchpoint validate` first\n",
    )


def test_the_installed_command_removes_and_says_so(project: Path) -> None:
    """The executable, as support staff run it: messages reach the terminal, exit codes hold."""
    project_store(project).add("max@example.com", "bounce", source="sendgrid", actor="sendgrid")
    env = {**os.environ, "TOUCHPOINT_DATABASE_URL": f"sqlite:///{project / 'touchpoint.db'}"}

    def touchpoint(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [TOUCHPOINT, "suppressions", *args],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    listed = touchpoint("list")
    unknown = touchpoint("remove", "nobody@example.com", "--reason", "typo")
    removed = touchpoint("remove", "max@example.com", "--reason", "mailbox fixed", "--by", "anna")
    shown = touchpoint("show", "max@example.com")
    assert (listed.returncode, listed.stdout.splitlines()[1].split()[:3]) == (
        0,
        ["max@example.com", "bounce", "sendgrid"],
    )
    assert (unknown.returncode, unknown.stdout, unknown.stderr) == (
        1,
        "",
        "✗ nobody@example.com is not suppressed; nothing to remove\n",
    )
    assert removed.returncode == 0 and removed.stdout.startswith(
        "removed the suppression of max@example.com (bounce, since "
    )
    assert shown.stdout.splitlines()[-1].endswith("  removed  by anna      mailbox fixed")
