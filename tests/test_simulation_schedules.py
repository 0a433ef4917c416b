"""Scheduled journeys in ``touchpoint simulate`` and ``touchpoint test``, on Temporal's real
time-skipping server: each occurrence of the schedule enters exactly the population's
customers its audience matches (one run each), the re-entry rules hold between occurrences,
events change who matches; journey test cases say whom an occurrence reaches, and mistakes are
reported at file:line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from tests.conftest import ROOT

TOUCHPOINT = str(Path(sys.executable).parent / "touchpoint")  # the installed executable
POPULATION = """id,email,locale,timezone,interests,email_opt_in
anna,anna@example.com,en,Europe/Berlin,"[""laptops""]",true
bob,bob@example.com,en,Europe/Berlin,"[""phones""]",true
carla,carla@example.com,en,Europe/Berlin,"[""laptops""]",false
dirk,dirk@example.com,de,Europe/Berlin,"[""laptops"",""monitors""]",true
emil,emil@example.com,en,Europe/Berlin,,
"""
# Mondays 15, 22 and 29 March 2027 (summer time from the 28th: 09:00 is 07:00 UTC then).
WINDOW = ["--start", "2027-03-15T08:00+01:00", "--until", "15d"]
MONDAYS_UTC = ["2027-03-15T08:00:00Z", "2027-03-22T08:00:00Z", "2027-03-29T07:00:00Z"]


@pytest.fixture
def population(tmp_path: Path) -> Path:
    path = tmp_path / "customers.csv"
    path.write_text(POPULATION)
    return path


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the example project, to change a journey or add a test file in."""
    target = tmp_path / "project"
    for name in ("journeys", "templates"):
        shutil.copytree(ROOT / name, target / name)
    shutil.copy(ROOT / "touchpoint.yaml", target / "touchpoint.yaml")
    monkeypatch.chdir(target)
    return target


def invoke(cli: CliRunner, *args: str) -> tuple[int, str]:
    result = cli.invoke(app, list(args))
    return result.exit_code, result.output


def entered(document: dict) -> list[tuple[str, str]]:
    """(customer, moment of entry) of every run, in order."""
    return sorted((run["customer"], run["timeline"][0]["at"]) for run in document["runs"])


def test_each_occurrence_enters_exactly_the_audience(
    cli: CliRunner, in_project: Path, population: Path
) -> None:
    code, out = invoke(
        cli, "simulate", "monday-newsletter", "--profiles", str(population), *WINDOW, "--json"
    )
    assert code == 0, out
    document = json.loads(out)
    assert entered(document) == sorted(
        (customer, monday) for customer in ("anna", "dirk") for monday in MONDAYS_UTC
    )
    for run in document["runs"]:
        assert run["outcome"] == "completed"
        [sent] = [entry for entry in run["timeline"] if entry["kind"] == "sent"]
        assert sent["at"] == run["timeline"][0]["at"]  # the issue goes out at 09:00 Berlin
        assert sent["to"] == f"{run['customer']}@example.com"
        assert sent["subject"] == (
            "Diese Woche bei den Laptops" if run["customer"] == "dirk" else "This week in laptops"
        )
    missed = {(n["customer"], n["at"], n["reason"]) for n in document["not_entered"]}
    assert missed == {
        (customer, monday, "not in the audience")
        for customer in ("bob", "carla", "emil")
        for monday in MONDAYS_UTC
    }
    [funnel] = document["funnels"]
    assert funnel["entered"] == 6
    assert funnel["outcomes"]["completed"] == sum(funnel["outcomes"].values()) == 6

    code, text = invoke(
        cli, "simulate", "monday-newsletter", "--profiles", str(population), *WINDOW
    )
    assert code == 0, text
    assert "Simulated monday-newsletter for 5 customers: 15 days from Mon 2027-03-15 08:00" in text
    assert (
        "monday-newsletter goes out every Monday at 09:00 (Europe/Berlin, from 2027-01-04): "
        "3 occurrences, Mon 2027-03-15 09:00, Mon 2027-03-22 09:00, Mon 2027-03-29 09:00\n"
    ) in text
    assert "monday-newsletter: 6 entered — 6 completed" in text
    assert "monday-newsletter: the schedule ×9 — not in the audience" in text
    assert "6 message(s) would be sent; nothing left this machine." in text


def test_the_installed_executable_simulates_a_scheduled_journey(
    population: Path, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOUCHPOINT_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [
            TOUCHPOINT,
            "simulate",
            "monday-newsletter",
            "--profiles",
            str(population),
            *WINDOW,
            "--json",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert entered(json.loads(done.stdout)) == sorted(
        (customer, monday) for customer in ("anna", "dirk") for monday in MONDAYS_UTC
    )


def test_the_reentry_rules_hold_between_occurrences(
    cli: CliRunner, project: Path, population: Path
) -> None:
    journey = project / "journeys" / "monday-newsletter.yaml"
    journey.write_text(journey.read_text().replace("reentry: every_time", "reentry: once"))
    code, out = invoke(
        cli, "simulate", "monday-newsletter", "--profiles", str(population), *WINDOW, "--json"
    )
    assert code == 0, out
    document = json.loads(out)
    assert entered(document) == [("anna", MONDAYS_UTC[0]), ("dirk", MONDAYS_UTC[0])]
    refused = sorted(
        (n["customer"], n["at"]) for n in document["not_entered"] if "once" in n["reason"]
    )
    assert refused == sorted((c, m) for c in ("anna", "dirk") for m in MONDAYS_UTC[1:])
    assert {n["reason"] for n in document["not_entered"]} == {
        "not in the audience",
        "entered before (reentry: once)",
    }


def test_an_identify_between_occurrences_changes_who_is_reached(
    cli: CliRunner, in_project: Path, population: Path, tmp_path: Path
) -> None:
    events = tmp_path / "events.yaml"
    events.write_text(
        "- {at: +3d, type: identify, user: carla, traits: {email_opt_in: true}}\n"
        "- {at: +10d, type: identify, user: anna, traits: {interests: [tablets]}}\n"
    )
    code, out = invoke(
        cli,
        "simulate",
        "monday-newsletter",
        "--profiles",
        str(population),
        "--events",
        str(events),
        *WINDOW,
        "--json",
    )
    assert code == 0, out
    assert entered(json.loads(out)) == sorted(
        [("dirk", monday) for monday in MONDAYS_UTC]
        + [("anna", MONDAYS_UTC[0]), ("anna", MONDAYS_UTC[1])]
        + [("carla", MONDAYS_UTC[1]), ("carla", MONDAYS_UTC[2])]
    )


def test_a_window_without_an_occurrence_is_a_usage_error(
    cli: CliRunner, in_project: Path, population: Path
) -> None:
    code, out = invoke(
        cli,
        "simulate",
        "monday-newsletter",
        "--profiles",
        str(population),
        "--start",
        "2027-03-16T08:00+01:00",
        "--until",
        "5d",
    )
    assert code == 2
    assert (
        "✗ monday-newsletter goes out every Monday at 09:00 (Europe/Berlin, from 2027-01-04): "
        "not once from 2027-03-16 08:00 +0100 for 5d; pass a --start or --until that includes "
        "an occurrence"
    ) in out


# --- journey tests --------------------------------------------------------------------------


def test_the_monday_newsletter_test_file_passes(cli: CliRunner, in_project: Path) -> None:
    code, out = invoke(cli, "test", "journeys/monday-newsletter.test.yaml")
    assert code == 0, out
    assert "✓ 3 passed, 0 failed" in out
    assert "reaches the laptop fans who opted in, and nobody else" in out


WRONG = """journeys: [monday-newsletter]
until: 1d
customers:
  - {id: anna, email: anna@example.com, traits: {interests: [laptops], email_opt_in: true}}
  - {id: bob, email: bob@example.com, traits: {interests: [phones], email_opt_in: true}}
cases:
  - name: who it reaches, the wrong way round
    at: 2027-03-01 09:00
    expect:
      reaches: [bob]
      does_not_reach: [anna]
"""


def test_a_wrong_expectation_fails_and_says_why(cli: CliRunner, project: Path) -> None:
    (project / "journeys" / "wrong.test.yaml").write_text(WRONG)
    code, out = invoke(cli, "test", "journeys/wrong.test.yaml")
    assert code == 1
    assert out.splitlines()[1:] == [
        "    bob: expected to be reached, but did not enter (monday-newsletter: not in the "
        "audience)",
        "    anna: expected not to be reached, but entered monday-newsletter at day 0 09:00",
        "✗ 0 passed, 1 failed",
    ]
    assert out.startswith("✗ journeys/wrong.test.yaml › who it reaches, the wrong way round")


MISTAKES = """journeys: [monday-newsletter]
customers:
  - {id: anna, email: anna@example.com}
  - {id: bob}
cases:
  - name: a Tuesday
    at: 2027-03-02 09:00
    expect:
      reaches: [anna, bobb]
  - name: before the schedule starts
    at: 2026-12-28 09:00
    expect: {reaches: [anna]}
  - name: no moment
    at: next monday
    expect: {reaches: [anna]}
"""


def test_mistakes_in_a_scheduled_case_are_reported_at_file_and_line(
    cli: CliRunner, project: Path
) -> None:
    (project / "journeys" / "mistakes.test.yaml").write_text(MISTAKES)
    code, out = invoke(cli, "test", "journeys/mistakes.test.yaml")
    assert code == 1
    assert sorted(out.splitlines()) == [
        "journeys/mistakes.test.yaml:7:9: cases[0].at: 2027-03-02 09:00 is not an occurrence "
        "of monday-newsletter, which goes out every Monday at 09:00 (Europe/Berlin, from "
        "2027-01-04) (hint: the nearest: Mon 2027-03-01 09:00 and Mon 2027-03-08 09:00)",
        "journeys/mistakes.test.yaml:9:23: cases[0].expect.reaches[1]: 'bobb' is not a "
        'customer of this case; did you mean "bob"? (hint: list them under customers: '
        "(- id: …))",
        "✗ 0 passed, 0 failed, 2 problem(s) in test files",
    ]


def test_each_case_mistake_is_found(cli: CliRunner, project: Path) -> None:
    for number, (at, expected) in enumerate(
        [
            (
                "2026-12-28 09:00",
                "2026-12-28 09:00 is not an occurrence of monday-newsletter, which goes out "
                "every Monday at 09:00 (Europe/Berlin, from 2027-01-04) (hint: the nearest: "
                "Mon 2027-01-04 09:00)",
            ),
            (
                "next monday",
                "'next monday' is not a moment (hint: write the date and time the journey goes "
                'out, e.g. "2027-03-01 09:00" (in the schedule\'s time zone) or with an offset, '
                "2027-03-01T09:00+01:00)",
            ),
        ]
    ):
        path = project / "journeys" / f"case{number}.test.yaml"
        path.write_text(
            "journeys: [monday-newsletter]\ncustomers: [{id: anna}]\ncases:\n"
            f"  - name: x\n    at: {at}\n    expect: {{reaches: [anna]}}\n"
        )
        code, out = invoke(cli, "test", str(path.relative_to(project)))
        assert code == 1
        assert f"journeys/case{number}.test.yaml:5:9: cases[0].at: {expected}" in out


def test_at_is_for_scheduled_journeys_only(cli: CliRunner, project: Path) -> None:
    path = project / "journeys" / "event.test.yaml"
    path.write_text(
        "journeys: [newsletter-welcome]\ncases:\n"
        "  - name: x\n    at: 2027-03-01 09:00\n    expect: {outcome: completed}\n"
    )
    code, out = invoke(cli, "test", "journeys/event.test.yaml")
    assert code == 1
    assert (
        "journeys/event.test.yaml:4:9: cases[0].at: at: is when a scheduled journey goes out; "
        "newsletter-welcome has no schedule (hint: start event-triggered journeys with events: "
        "(- at: +0, event: …))"
    ) in out
