"""``touchpoint replay`` and the replay half of ``touchpoint plan``: a small event log from
``demo/generate_events.py`` in a real SQLite store, journeys from a copy of the project's
folder, the real (time-skipping) simulator through the CLI in-process, and once through the
command line as a separate process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from cli import app
from demo.generate_events import Generated, generate, write
from ops.planning import JSON_FORMAT as PLAN_JSON_FORMAT
from simulation.replay import ReplaySimulator, simulator_for
from store.consent import ConsentStore
from store.database import connect
from store.profiles import ProfileStore
from store.suppressions import Suppressions
from tests.conftest import ROOT

CUSTOMERS = 24
SEED = 11
DAYS = 10  # generated; the replays' windows are longer, so every call is in them

WELCOME = """
id: welcome-replay
name: Welcome
category: marketing
trigger:
  event: Newsletter Subscribed
steps:
  - id: hello
    send: email
    template: newsletter-welcome
  - id: answer
    wait_for: Order Completed
    timeout: 2d
    on_timeout: survey
  - end
  - id: survey
    send: email
    template: vip-thank-you
"""

WELCOME_WITHOUT_SURVEY = """
id: welcome-replay
name: Welcome
category: marketing
trigger:
  event: Newsletter Subscribed
steps:
  - id: hello
    send: email
    template: first-order-discount
  - id: answer
    wait_for: Order Completed
    timeout: 2d
    on_timeout: end
  - end
"""


@dataclass
class Shop:
    root: Path
    url: str
    generated: Generated

    def write(self, journey: str) -> None:
        (self.root / "journeys" / "welcome-replay.yaml").write_text(journey)

    def subscribed(self) -> dict[str, datetime]:
        """Each subscriber's first sign-up (the journey lets a customer in once)."""
        first: dict[str, datetime] = {}
        for call in self.generated.events("Newsletter Subscribed"):
            first.setdefault(call.customer_id, call.at)
        return first


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Shop:
    """The example project's settings and templates, ``welcome-replay`` in its folder, and a
    store holding a generated event log that ends now."""
    root = tmp_path / "shop"
    root.mkdir()
    shutil.copy(ROOT / "touchpoint.yaml", root / "touchpoint.yaml")
    shutil.copytree(ROOT / "templates", root / "templates")
    (root / "journeys").mkdir()
    shutil.copy(ROOT / "journeys" / "newsletter-welcome.yaml", root / "journeys")
    url = f"sqlite:///{tmp_path / 'touchpoint.db'}"
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    generated = generate(CUSTOMERS, SEED, end, DAYS)
    engine = connect(url)
    try:
        write(engine, generated, SEED)
    finally:
        engine.dispose()
    monkeypatch.setenv("TOUCHPOINT_DATABASE_URL", url)
    monkeypatch.setenv("TOUCHPOINT_TEMPORAL_ADDRESS", "127.0.0.1:1")  # plan: no run counts
    shop = Shop(root, url, generated)
    shop.write(WELCOME)
    assert len(shop.subscribed()) >= 3, "the seed gives a few subscribers to follow"
    return shop


def survey_runs(shop: Shop) -> int:
    """Subscribers who did not order within two days of signing up, two days before now:
    whom ``welcome-replay``'s timeout sends the survey step's email."""
    orders: dict[str, list[datetime]] = {}
    for call in shop.generated.events("Order Completed"):
        orders.setdefault(call.customer_id, []).append(call.at)
    count = 0
    for customer, at in shop.subscribed().items():
        ordered = any(at < moment <= at + timedelta(days=2) for moment in orders.get(customer, []))
        if not ordered and at + timedelta(days=2) < shop.generated.end:
            count += 1
    return count


def per_week(value: float, signed: bool = False) -> str:
    """As plan writes messages per week: whole from 10 up, else one decimal."""
    sign = "+" if signed else ""
    return f"{value:{sign},.0f}" if abs(value) >= 10 else f"{value:{sign},.1f}"


def test_replay_gives_the_funnel_the_events_imply(shop: Shop, cli: CliRunner) -> None:
    result = cli.invoke(
        app,
        ["replay", "welcome-replay", "--since", "14d", "--exact", "--json", "-C", str(shop.root)],
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    subscribed = shop.subscribed()
    assert document["simulator"] == "exact"
    assert document["events"] == len(shop.generated.calls)
    assert document["customers"] == len({call.customer_id for call in shop.generated.calls})
    (journey,) = document["journeys"]
    funnel = journey["funnel"]
    assert funnel["entered"] == len(subscribed)
    steps = {row["step"]: row for row in funnel["steps"]}
    assert steps["hello"]["reached"] == steps["hello"]["sent"] == len(subscribed)
    surveyed = survey_runs(shop)
    assert steps["survey"]["sent"] == surveyed
    expected = {"newsletter-welcome": len(subscribed), "vip-thank-you": surveyed}
    assert journey["messages"] == [
        {"channel": "email", "template": template, "count": count}
        for template, count in sorted(expected.items())
        if count
    ]
    # the welcome goes out the moment they sign up: on the day (Berlin) of each sign-up
    zone = ZoneInfo("Europe/Berlin")
    welcomes = {
        row["day"]: row["count"]
        for row in document["messages_per_day"]
        if row["template"] == "newsletter-welcome"
    }
    assert welcomes == dict(
        Counter(at.astimezone(zone).date().isoformat() for at in subscribed.values())
    )
    assert sum(funnel["outcomes"].values()) == len(subscribed)


def test_replay_as_a_command_prints_funnel_and_messages(shop: Shop) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "cli.py"),
            "replay",
            "welcome-replay",
            "--since",
            "14d",
            "--exact",
            "-C",
            str(shop.root),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    customers = len({call.customer_id for call in shop.generated.calls})
    assert lines[0].startswith("Replayed welcome-replay on 14 days of recorded events (")
    assert lines[0].endswith(
        f"Europe/Berlin): {customers} customers, {len(shop.generated.calls)} calls; exact simulator"
    )
    subscribed = len(shop.subscribed())
    assert lines[2].startswith(f"welcome-replay: {subscribed} entered — ")
    assert f"  email newsletter-welcome  {subscribed:>6}" in lines
    sent = subscribed + survey_runs(shop)
    assert lines[-1] == f"{sent} message(s) would have been sent; nothing left this machine."


def test_plan_replays_the_active_and_the_new_version_side_by_side(
    shop: Shop, cli: CliRunner
) -> None:
    subscribed, surveyed = len(shop.subscribed()), survey_runs(shop)
    customers = len({call.customer_id for call in shop.generated.calls})
    new = cli.invoke(
        app, ["plan", "welcome-replay", "--replay-days", "14", "--exact", "-C", str(shop.root)]
    )
    assert new.exit_code == 0, new.output
    lines = new.stdout.splitlines()
    start = lines.index(
        f"  replay: the last 14 days' recorded events ({customers} customers, "
        f"{len(shop.generated.calls)} calls; exact simulator) under the new version"
    )
    assert lines[start + 1].startswith(f"    runs entered {subscribed}; converted ")
    assert lines[start + 1].endswith(f"; messages {subscribed + surveyed}")
    assert f"      email newsletter-welcome: {per_week(subscribed / 2)} per week" in lines
    assert f"    {subscribed} run(s) reach hello" in lines

    deployed = cli.invoke(app, ["deploy", "welcome-replay", "-C", str(shop.root)])
    assert deployed.exit_code == 0, deployed.output
    v1 = deployed.stdout.split()[2]
    shop.write(WELCOME_WITHOUT_SURVEY)
    planned = cli.invoke(
        app, ["plan", "welcome-replay", "--replay-days", "14", "--exact", "-C", str(shop.root)]
    )
    assert planned.exit_code == 0, planned.output
    half = subscribed / 2  # 14 days: a week is half of them
    lines = planned.stdout.splitlines()
    start = lines.index(
        f"  replay: the last 14 days' recorded events ({customers} customers, "
        f"{len(shop.generated.calls)} calls; exact simulator) under both versions"
    )
    assert lines[start + 1].startswith(f"    runs entered {subscribed} → {subscribed}; converted ")
    assert lines[start + 1].endswith(f"messages {subscribed + surveyed} → {subscribed}")
    if surveyed:
        assert f"    {per_week(-surveyed / 2, signed=True)} emails per week" in lines
    assert (
        f"      email first-order-discount: 0.0 → {per_week(half)} per week "
        f"({per_week(half, signed=True)})"
    ) in lines
    assert (
        f"      email newsletter-welcome: {per_week(half)} → 0.0 per week "
        f"({per_week(-half, signed=True)})"
    ) in lines
    if surveyed:
        assert f"    {surveyed} run(s) reached survey, which the new version removes" in lines

    as_json = cli.invoke(
        app,
        [
            "plan",
            "welcome-replay",
            "--replay-days",
            "14",
            "--exact",
            "--json",
            "-C",
            str(shop.root),
        ],
    )
    document = json.loads(as_json.stdout)
    assert document["format"] == PLAN_JSON_FORMAT == 2
    assert document["replay_note"] is None
    (journey,) = document["journeys"]
    replay = journey["replay"]
    assert journey["deployed_version"] == v1 and replay["before"]["version"] == v1
    assert replay["after"]["version"] == journey["version"]
    assert replay["before"]["entered"] == replay["after"]["entered"] == subscribed
    rates = {row["template"]: row for row in replay["messages_per_week"]}
    assert rates["newsletter-welcome"] == {
        "channel": "email",
        "template": "newsletter-welcome",
        "before": round(half, 1),
        "after": 0.0,
        "delta": round(-half, 1),
    }
    assert rates["first-order-discount"]["before"] == 0.0
    assert rates["first-order-discount"]["after"] == round(half, 1)
    assert {"step": "survey", "before": surveyed, "after": None, "change": None} in replay["reach"]
    assert replay["never_reached"] == []


def test_plan_without_replay_and_on_an_empty_log(
    shop: Shop, cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    off = cli.invoke(
        app, ["plan", "welcome-replay", "--replay-days", "0", "--json", "-C", str(shop.root)]
    )
    assert off.exit_code == 0, off.output
    document = json.loads(off.stdout)
    assert document["replay_note"] == "not asked for (--replay-days 0)"
    assert document["journeys"][0]["replay"] is None

    empty_store = f"sqlite:///{tmp_path / 'empty.db'}"
    connect(empty_store).dispose()  # a store without events
    monkeypatch.setenv("TOUCHPOINT_DATABASE_URL", empty_store)
    empty = cli.invoke(app, ["plan", "welcome-replay", "-C", str(shop.root)])
    assert empty.exit_code == 0, empty.output
    assert empty.stdout.splitlines()[-1].startswith("  replay: no recorded events from ")


def test_replay_refuses_bad_input_in_one_line(
    shop: Shop, cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def replay(*args: str) -> tuple[int, str]:
        result = cli.invoke(app, ["replay", *args, "-C", str(shop.root)])
        assert result.stdout == "", result.stdout
        assert "Traceback" not in result.stderr
        return result.exit_code, result.stderr.strip()

    code, error = replay("welcom-replay")
    assert code == 2
    assert error == (
        "✗ no journey 'welcom-replay'; did you mean \"welcome-replay\"? "
        "(journeys: newsletter-welcome, welcome-replay)"
    )
    assert replay("welcome-replay", "--since", "soon") == (
        2,
        "✗ --since 'soon': expected a duration such as 30d, 7d, 2w or 36h",
    )
    code, error = replay("welcome-replay", "--since", "1s")  # nothing in the last second
    assert code == 1 and error.startswith("✗ no recorded events from ")
    assert error.endswith("(touchpoint events count --since 30d)")

    missing = tmp_path / "nowhere.db"
    monkeypatch.setenv("TOUCHPOINT_DATABASE_URL", f"sqlite:///{missing}")
    assert replay("welcome-replay") == (
        1,
        f"✗ no store at sqlite:///{missing}, so no recorded events; point "
        "TOUCHPOINT_DATABASE_URL at the store the API writes (read access is enough)",
    )
    assert not missing.exists(), "replay creates no store"
    monkeypatch.setenv("TOUCHPOINT_DATABASE_URL", "postgresql+psycopg://shop@127.0.0.1:1/shop")
    code, error = replay("welcome-replay")
    assert code == 1 and error.startswith("✗ ") and "\n" not in error


def test_the_simulator_is_chosen_in_one_place(shop: Shop) -> None:
    from config.project import ProjectConfig
    from simulation.simulator import Simulator

    exact = simulator_for(shop.root, ProjectConfig(), exact=True)
    assert exact == ReplaySimulator("exact", exact.simulator)
    assert isinstance(exact.simulator, Simulator)
    chosen = simulator_for(shop.root, ProjectConfig(), exact=False)
    if (ROOT / "simulation" / "fast.py").exists():
        assert (chosen.name, chosen.render) == ("fast", "subjects")
    else:  # not built yet (or only in another checkout): the exact one
        assert chosen.name == "exact"


def test_the_generator_is_deterministic_by_seed() -> None:
    end = datetime(2027, 2, 1, tzinfo=UTC)
    one, two = generate(30, 5, end), generate(30, 5, end)
    assert one.calls == two.calls and one.profiles == two.profiles
    assert generate(30, 6, end).calls != one.calls
    assert all(end - timedelta(days=30) <= call.at < end for call in one.calls)
    names = {call.event for call in one.calls}
    assert {"Newsletter Subscribed", "Product Category Viewed", "Order Completed"} <= names


def test_replay_honours_the_unsubscribes_and_suppressions_of_today(
    shop: Shop, cli: CliRunner
) -> None:
    """On the fast simulator: a customer who unsubscribed since, and one whose address is
    suppressed now, get no welcome in the replay — the policies skip it, and say why."""
    unsubscribed, suppressed = sorted(shop.subscribed())[:2]
    engine = connect(shop.url)
    try:
        ConsentStore(engine).withdraw(unsubscribed, "one-click")
        address = ProfileStore(engine).get(suppressed)
        assert address is not None and address.email
        Suppressions(engine).add(address.email, "bounce", source="test", actor="test")
    finally:
        engine.dispose()
    result = cli.invoke(
        app, ["replay", "welcome-replay", "--since", "14d", "--json", "-C", str(shop.root)]
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["simulator"] == "fast"
    (journey,) = document["journeys"]
    steps = {row["step"]: row for row in journey["funnel"]["steps"]}
    assert steps["hello"]["reached"] == len(shop.subscribed())
    assert steps["hello"]["sent"] == len(shop.subscribed()) - 2, journey["held"]
    skipped = {row["reason"]: row["count"] for row in journey["held"] if row["step"] == "hello"}
    assert sum(skipped.values()) == 2, skipped
    assert any("unsubscribed" in reason for reason in skipped), skipped
    assert any("suppress" in reason for reason in skipped), skipped
