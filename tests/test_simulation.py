"""``touchpoint simulate`` and ``touchpoint test`` on Temporal's real time-skipping server."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from xml.etree import ElementTree

import pytest
from typer.testing import CliRunner

from cli import app
from simulation.scenario import parse_moment
from tests.conftest import ROOT

MAX = ["--profile", "demo/max/profile.yaml", "--events", "demo/max/events.yaml"]
MAX += ["--lookups", "demo/max/lookups.yaml", "--start", "2027-01-04T09:00+01:00"]
ALL_EXAMPLES = ["newsletter-welcome", "laptop-recommendation", "post-purchase-accessories"]


def invoke(cli: CliRunner, *args: str) -> tuple[int, str]:
    result = cli.invoke(app, list(args))
    return result.exit_code, result.output


def test_max_ninety_days_across_the_three_examples(cli: CliRunner, in_project: Path) -> None:
    code, out = invoke(cli, "simulate", *ALL_EXAMPLES, *MAX)
    assert code == 0, out
    assert "90 days from Mon 2027-01-04 09:00 (Europe/Berlin)" in out
    expected = [
        "Mon 2027-01-04 09:00  day 0    newsletter-welcome",
        '✉ email to max@example.com: "Willkommen bei Example Laptop Shop, Max!"',
        "Tue 2027-01-05 12:00  day 1    laptop-recommendation",
        "⇄ looked up GET /customers/max/recommendations",
        "Thu 2027-01-07 09:00  day 3    newsletter-welcome",
        "Fri 2027-01-08 10:00  day 4    laptop-recommendation               store-invite",
        "★ converted: Order Completed",
        "post-purchase-accessories [O-1001]  referral",
    ]
    for text in expected:
        assert text in out, text
    assert "8 message(s) would be sent" in out
    # the timeline is in time order
    days = [int(line.split("day ")[1].split()[0]) for line in out.splitlines() if " day " in line]
    assert days == sorted(days) and days[-1] == 28


def test_json_output_is_stable_and_complete(cli: CliRunner, in_project: Path) -> None:
    runs = []
    for _ in range(2):
        code, out = invoke(cli, "simulate", *ALL_EXAMPLES, *MAX, "--json")
        assert code == 0, out
        runs.append(json.loads(out))
    assert runs[0] == runs[1]
    document = runs[0]
    assert document["start"] == "2027-01-04T08:00:00Z"
    outcomes = {(r["journey"], r["key"]): r["outcome"] for r in document["runs"]}
    assert outcomes == {
        ("newsletter-welcome", None): "converted",
        ("laptop-recommendation", None): "completed",
        ("post-purchase-accessories", "O-1001"): "completed",
    }
    assert [r["journey"] for r in document["runs"]] == ALL_EXAMPLES  # in order of entry
    welcome = document["runs"][0]["timeline"][1]
    assert welcome == {
        "at": "2027-01-04T08:00:00Z",
        "step": "welcome",
        "kind": "sent",
        "channel": "email",
        "to": "max@example.com",
        "subject": "Willkommen bei Example Laptop Shop, Max!",
        "template": "newsletter-welcome",
        "locale": "de",
        "detail": "email: newsletter-welcome",
    }


def test_population_funnel(cli: CliRunner, in_project: Path, tmp_path: Path) -> None:
    customers = tmp_path / "customers.csv"
    with customers.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["id", "email", "locale", "interests"])
        for i in range(24):
            interests = '["laptops"]' if i % 2 else "[]"
            writer.writerow([f"c{i:03d}", f"c{i:03d}@example.com", "en", interests])
    code, out = invoke(
        cli,
        "simulate",
        "newsletter-welcome",
        "--profiles",
        str(customers),
        "--start",
        "2027-01-04T10:30+01:00",
        "--until",
        "20d",
        "--json",
    )
    assert code == 0, out
    (funnel,) = json.loads(out)["funnels"]
    assert funnel["entered"] == 24 and funnel["outcomes"]["completed"] == 24
    steps = {row["step"]: row for row in funnel["steps"]}
    assert steps["welcome"]["sent"] == 24
    assert steps["laptop-fan"]["reached"] == 12 and steps["everyone-else"]["reached"] == 12
    paths = {row["path"]: row["customers"] for row in funnel["paths"]}
    assert sum(paths.values()) == 24
    sent_offers = steps["discount-offer"]["sent"] + steps["free-shipping-offer"]["sent"]
    assert sent_offers == 24 - paths.get("control", 0)  # the holdout gets nothing

    code, text = invoke(
        cli, "simulate", "newsletter-welcome", "--profiles", str(customers), "--until", "20d"
    )
    assert code == 0, text
    assert "newsletter-welcome: 24 entered — 24 completed" in text
    assert "incentive / discount" in text


def test_example_journey_tests_pass(cli: CliRunner, in_project: Path, tmp_path: Path) -> None:
    report = tmp_path / "junit.xml"
    code, out = invoke(cli, "test", "--junit", str(report))
    assert code == 0, out
    assert "✗" not in out
    suites = ElementTree.parse(report).getroot()
    cases = suites.findall(".//testcase")
    assert len(cases) >= 20 and not suites.findall(".//failure")
    files = {suite.get("name") for suite in suites.findall("testsuite")}
    not_by_event = ["monday-newsletter", "vip-thank-you", "birthday-greeting"]  # issue 19
    by_date_in_an_event = ["warranty-reminder"]
    assert files == {
        f"journeys/{name}.test.yaml" for name in ALL_EXAMPLES + not_by_event + by_date_in_an_event
    }


@pytest.fixture
def project_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    target = tmp_path / "project"
    for name in ("journeys", "templates"):
        shutil.copytree(ROOT / name, target / name)
    shutil.copy(ROOT / "touchpoint.yaml", target / "touchpoint.yaml")
    monkeypatch.chdir(target)
    return target


def test_a_broken_wait_fails_its_test_with_a_readable_diff(
    cli: CliRunner, project_copy: Path, tmp_path: Path
) -> None:
    journey = project_copy / "journeys" / "newsletter-welcome.yaml"
    journey.write_text(journey.read_text().replace("- wait: 2d", "- wait: 3d"))
    report = tmp_path / "junit.xml"
    code, out = invoke(cli, "test", "journeys/newsletter-welcome.test.yaml", "--junit", str(report))
    assert code == 1, out
    assert "✗ journeys/newsletter-welcome.test.yaml › a laptop fan is welcomed" in out
    assert "messages differ (- expected, + actual):" in out
    # Thursday 10:30 is past the Tue–Thu 09:00 slot: the recommendations move to Tuesday
    assert "      - day 3 09:00  newsletter-welcome/recommendations" in out
    assert "      + day 8 09:00  newsletter-welcome/recommendations" in out
    assert "✗ " in out.splitlines()[-1] and "failed" in out.splitlines()[-1]
    failures = ElementTree.parse(report).getroot().findall(".//failure")
    assert failures and "day 8 09:00" in (failures[0].text or "")


def test_test_file_mistakes_are_reported_with_their_position(
    cli: CliRunner, project_copy: Path
) -> None:
    bad = project_copy / "journeys" / "bad.test.yaml"
    bad.write_text(
        "journeys: [newsletter-welcome]\n"
        "cases:\n"
        "  - name: typo\n"
        "    events:\n"
        "      - {at: tomorrow, event: Newsletter Subscribed}\n"
        "    expect:\n"
        "      not_reached: [everyone-els]\n"
    )
    code, out = invoke(cli, "test", "journeys/bad.test.yaml")
    assert code == 1
    assert (
        "journeys/bad.test.yaml:5:14: cases[0].events[0].at: not a moment: 'tomorrow' is neither "
        "+2d3h, day 2 09:00 nor an ISO time (hint: write" in out
    )
    bad.write_text(bad.read_text().replace("tomorrow", "+1d"))
    code, out = invoke(cli, "test", "journeys/bad.test.yaml")
    assert code == 1
    assert (
        "journeys/bad.test.yaml:7:21: cases[0].expect.not_reached[0]: no step 'everyone-els'; "
        'did you mean "everyone-else"?' in out
    )


def test_simulate_input_mistakes(cli: CliRunner, in_project: Path, tmp_path: Path) -> None:
    code, out = invoke(cli, "simulate", "newsletter-welcom", *MAX)
    assert code == 2 and 'did you mean "newsletter-welcome"?' in out
    code, out = invoke(cli, "simulate", "newsletter-welcome", "--profile", MAX[1])
    assert code == 2 and "--events FILE is needed" in out
    events = tmp_path / "events.yaml"
    events.write_text(
        "- at: +1d\n  evnt: Newsletter Subscribed\n- at: 2020-01-01T00:00Z\n  event: x\n"
    )
    code, out = invoke(
        cli, "simulate", "newsletter-welcome", "--profile", MAX[1], "--events", str(events)
    )
    assert code == 1
    assert ':2:3: [0].evnt: unknown field "evnt"; did you mean "event"?' in out
    events.write_text("- at: 2020-01-01T00:00Z\n  event: Newsletter Subscribed\n")
    code, out = invoke(
        cli, "simulate", "newsletter-welcome", "--profile", MAX[1], "--events", str(events)
    )
    assert code == 1 and "is before the start" in out and "Traceback" not in out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+0", "2027-01-04T10:30:00+01:00"),
        ("+2d3h", "2027-01-06T13:30:00+01:00"),
        ("day 2 09:00", "2027-01-06T09:00:00+01:00"),
        ("2027-01-05T08:00:00Z", "2027-01-05T09:00:00+01:00"),
    ],
)
def test_moments(text: str, expected: str) -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    zone = ZoneInfo("Europe/Berlin")
    start = datetime.fromisoformat("2027-01-04T10:30:00+01:00")
    assert parse_moment(text).resolve(start, zone) == datetime.fromisoformat(expected)


@pytest.mark.parametrize("text", ["-1d", "tomorrow", "2027-01-05T08:00", "day x 09:00"])
def test_bad_moments(text: str) -> None:
    with pytest.raises(ValueError):
        parse_moment(text)


def test_population_files(tmp_path: Path) -> None:
    from simulation.scenario import ScenarioError, load_population

    ndjson = tmp_path / "customers.ndjson"
    ndjson.write_text(
        '{"id": "a", "email": "a@example.com", "traits": {"vip": true}}\n\n{"id": "b"}\n'
    )
    assert [(c.id, c.traits) for c in load_population(ndjson)] == [("a", {"vip": True}), ("b", {})]
    ndjson.write_text('{"id": "a"}\n{"email": "x@example.com"}\n')
    with pytest.raises(ScenarioError) as error:
        load_population(ndjson)
    assert f'{ndjson.name}:2:1: id: missing "id"' in error.value.problems[0].format()
    table = tmp_path / "customers.csv"
    table.write_text('id,email,score,interests\nc1,c1@example.com,7,"[""laptops""]"\nc2,,,\n')
    first, second = load_population(table)
    assert (
        first.traits == {"score": 7, "interests": ["laptops"]} and first.email == "c1@example.com"
    )
    assert second.email is None and second.traits == {}
    table.write_text("email\nx@example.com\n")
    with pytest.raises(ScenarioError, match='one must be "id"'):
        load_population(table)


def test_a_population_shows_its_progress(in_project: Path, tmp_path: Path) -> None:
    from io import StringIO

    from rich.console import Console

    from simulation.commands import run_with_progress
    from simulation.setup import build_scenario, load_project
    from simulation.simulator import Simulator

    customers = tmp_path / "customers.ndjson"
    customers.write_text(
        "".join(f'{{"id": "p{i}", "email": "p{i}@example.com"}}\n' for i in range(3))
    )
    project, _ = load_project(in_project)
    assert project is not None
    scenario = build_scenario(project, ["newsletter-welcome"], profiles=customers, until="12d")
    screen = StringIO()
    console = Console(file=screen, force_terminal=True, width=100)
    result = run_with_progress(Simulator(project.root, project.config), scenario, console)
    assert len(result.runs) == 3
    shown = screen.getvalue()
    assert "simulated time" in shown and "reading runs" in shown and "100%" in shown


def test_simulate_keeps_the_projects_profile_cap(cli: CliRunner, project_copy: Path) -> None:
    """A customer the API would refuse (profiles.max_bytes) is refused by the simulator too."""
    config = project_copy / "touchpoint.yaml"
    config.write_text(config.read_text() + "profiles:\n  max_bytes: 1024\n")
    customers = project_copy / "customers.csv"
    customers.write_text(f"id,email,locale,bio\nbig-1,big@example.com,en,{'x' * 1100}\n")
    code, out = invoke(cli, "simulate", "newsletter-welcome", "--profiles", str(customers))
    assert code != 0
    assert "profiles.max_bytes" in out and "1,024" in out
    assert "Traceback" not in out

    customers.write_text(f"id,email,locale,bio\nsmall-1,small@example.com,en,{'x' * 900}\n")
    code, out = invoke(cli, "simulate", "newsletter-welcome", "--profiles", str(customers))
    assert code == 0, out
