"""``touchpoint stats JOURNEY``: in-process (CliRunner) and as a process of its own, on a real
SQLite store holding a journey's runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from store.analytics import Analytics
from store.database import connect
from store.ledger import Ledger
from store.plans import PlanStore
from tests.conftest import ROOT
from tests.test_analytics_store import PLAN, through_split
from workflows.analytics import RunEnded


@pytest.fixture
def database_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A store with 8 runs of ``welcome`` that entered an hour ago, 2 of them converted."""
    url = f"sqlite:///{tmp_path / 'touchpoint.db'}"
    engine = connect(url)
    PlanStore(engine).publish([PLAN])
    store = Analytics(engine)
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    for n in range(8):
        store.record(through_split(f"r{n}", holdout=n % 4 == 0, at=hour_ago))
    store.record([RunEnded(f"r{n}", "converted", hour_ago) for n in (1, 2)])
    engine.dispose()
    monkeypatch.setenv("TOUCHPOINT_DATABASE_URL", url)
    return url


def test_stats_prints_the_journeys_numbers(cli: CliRunner, database_url: str) -> None:
    done = cli.invoke(app, ["stats", "welcome", "-C", str(ROOT)])
    assert done.exit_code == 0, done.output
    out = done.output
    assert "│ entered         │ 8      │" in out
    assert "│ converted       │ 2      │" in out
    assert "│ conversion rate │ 25.0 % │" in out
    assert "│ pick  │ offer │ control │ 2      │" in out
    assert "│ later │ 0      │ 6       │" in out
    assert "│ treatment │ 6    │ 2         │ 33.3 % │" in out


def test_stats_as_json_agrees_with_the_store(cli: CliRunner, database_url: str) -> None:
    done = cli.invoke(app, ["stats", "welcome", "--since", "1d", "--json", "-C", str(ROOT)])
    assert done.exit_code == 0, done.output
    document = json.loads(done.output)
    assert (document["entered"], document["conversion_rate"]) == (8, 0.25)
    assert document["outcomes"]["active"] == 6 and document["outcomes"]["ended"] == 2
    assert document["lift"]["holdout_runs"] == 2
    steps = {s["step"]: (s["passed"], s["waiting"]) for s in document["steps"]}
    assert steps == {"hello": (8, 0), "pick": (8, 0), "offer": (8, 0), "later": (0, 6)}


def test_a_version_nobody_ran_has_no_runs(cli: CliRunner, database_url: str) -> None:
    done = cli.invoke(app, ["stats", "welcome", "--version", "0000", "--json", "-C", str(ROOT)])
    assert done.exit_code == 0 and json.loads(done.output)["entered"] == 0


def test_an_unknown_journey_is_a_clear_error(cli: CliRunner, database_url: str) -> None:
    done = cli.invoke(app, ["stats", "no-such-journey", "-C", str(ROOT)])
    assert done.exit_code == 2
    assert "✗ no journey 'no-such-journey' in the store; journeys with numbers: welcome" in (
        done.output
    )
    assert "Traceback" not in done.output


@pytest.mark.parametrize("since", ["7x", "0d", "-1d", "week"])
def test_a_bad_window_is_a_clear_error(cli: CliRunner, database_url: str, since: str) -> None:
    done = cli.invoke(app, ["stats", "welcome", "--since", since, "-C", str(ROOT)])
    assert done.exit_code == 2
    assert f"✗ --since {since!r} is not a duration such as 1d, 7d, 30d or 12h" in done.output
    assert "Traceback" not in done.output


def test_stats_runs_as_a_command(database_url: str) -> None:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "TOUCHPOINT_DATABASE_URL": database_url}
    command = [sys.executable, "-m", "cli", "stats", "-C", str(ROOT)]
    found = subprocess.run(
        [*command, "welcome", "--json"], env=environ(environment), capture_output=True,
        text=True, timeout=120, check=False, cwd=ROOT,
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["entered"] == 8
    unknown = subprocess.run(
        [*command, "nope"], env=environ(environment), capture_output=True, text=True,
        timeout=120, check=False, cwd=ROOT,
    )  # fmt: skip
    assert unknown.returncode == 2 and "✗ no journey 'nope'" in unknown.stderr
    assert "Traceback" not in unknown.stderr


def environ(values: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in values.items() if not k.startswith("PYTEST_")}


NOT_RUN = "post-purchase-accessories"  # a journey of the project the test store never saw


def test_a_journey_of_the_project_that_has_not_run_shows_zeros(
    cli: CliRunner, database_url: str
) -> None:
    done = cli.invoke(app, ["stats", NOT_RUN, "--json", "-C", str(ROOT)])
    assert done.exit_code == 0, done.output
    document = json.loads(done.output)
    assert (document["entered"], document["versions"], document["outcomes"]["ended"]) == (0, [], 0)
    steps = {s["step"]: (s["passed"], s["waiting"]) for s in document["steps"]}
    assert len(steps) == 15 and set(steps.values()) == {(0, 0)}
    assert list(steps)[:3] == ["delivery", "setup-guide", "settled-in"], "the plan's order"
    templates = {t["step"]: (t["template"], t["channel"], t["sent"]) for t in document["templates"]}
    assert templates["accessory-offer"] == ("accessory-offer", "email", 0)
    assert templates["alert-support"] == ("detractor-alert", "chat", 0)
    assert len(templates) == 8
    assert len(document["days"]) == 8 and document["edges"] == []
    text = cli.invoke(app, ["stats", NOT_RUN, "-C", str(ROOT)])
    assert text.exit_code == 0, text.output
    assert f"{NOT_RUN}  runs entered" in text.output and "(versions: none)" in text.output
    assert "│ entered         │ 0     │" in text.output
    assert "│ accessory-offer │ 0      │ 0       │" in text.output
    assert "│ accessory-offer │ accessory-offer     │ email   │ 0    │" in text.output


def test_the_installed_command_prints_zeros_for_a_journey_not_run_yet(database_url: str) -> None:
    executable = Path(sys.executable).parent / "touchpoint"
    environment = {**os.environ, "PYTHONPATH": str(ROOT), "TOUCHPOINT_DATABASE_URL": database_url}
    found = subprocess.run(
        [str(executable), "stats", NOT_RUN, "--json", "-C", str(ROOT)], env=environ(environment),
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    document = json.loads(found.stdout)
    assert document["entered"] == 0 and len(document["steps"]) == 15
    assert "Traceback" not in found.stderr


def test_stats_shows_each_templates_messages_per_day(cli: CliRunner, database_url: str) -> None:
    engine = connect(database_url)
    ledger, store = Ledger(engine), Analytics(engine)
    for n, (step, status) in enumerate([("hello", "sent"), ("hello", "sent"),
                                        ("hello", "skipped"), ("offer", "failed")]):  # fmt: skip
        ledger.claim(f"msg_{n}", "welcome", step, "email", "c-hash")
        ledger.mark(f"msg_{n}", status)  # type: ignore[arg-type]
    store.record_message_event("e1", "msg_0", "delivered", "sendgrid", datetime.now(UTC))
    store.record_message_event("e2", "msg_1", "open", "sendgrid", datetime.now(UTC))
    engine.dispose()
    today = datetime.now(UTC).date().isoformat()
    done = cli.invoke(app, ["stats", "welcome", "--json", "-C", str(ROOT)])
    assert done.exit_code == 0, done.output
    days = {
        (d["step"], d["template"], d["day"]): (d["sent"], d["skipped"], d["failed"],
                                                d["delivered"], d["opened"])
        for d in json.loads(done.output)["template_days"]
    }  # fmt: skip
    assert days == {
        ("hello", "newsletter-welcome", today): (2, 1, 0, 1, 1),
        ("offer", "first-order-discount", today): (0, 0, 1, 0, 0),
    }
    text = cli.invoke(app, ["stats", "welcome", "-C", str(ROOT)]).output
    assert "hello (newsletter-welcome) per day (UTC)" in text
    assert f"│ {today} │ 2    │ 1       │ 0      │ 1         │ 1      │ 0       │ 0       │" in text
    assert "offer (first-order-discount) per day (UTC)" in text
    assert f"│ {today} │ 0    │ 0       │ 1      │ 0         │ 0      │ 0       │ 0       │" in text
