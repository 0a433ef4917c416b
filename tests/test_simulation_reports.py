"""What ``touchpoint simulate`` and ``touchpoint test`` report: each failure once, failures per
step for a population, every valid journey even when another has problems, webhook bodies as
their receiver gets them, and moments and waits as docs/simulate.md says they count."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from simulation.scenario import parse_moment
from tests.conftest import ROOT

MAX = ["--profile", "demo/max/profile.yaml", "--events", "demo/max/events.yaml"]
START = ["--start", "2027-01-04T09:00+01:00"]
NO_FIXTURE = "NoFixture: no answer for lookup shop-api /orders/O-1001/accessories"


def invoke(cli: CliRunner, *args: str) -> tuple[int, str]:
    result = cli.invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture
def project_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    target = tmp_path / "project"
    for name in ("journeys", "templates", "demo"):
        shutil.copytree(ROOT / name, target / name)
    shutil.copy(ROOT / "touchpoint.yaml", target / "touchpoint.yaml")
    monkeypatch.chdir(target)
    return target


def test_a_failed_run_lists_its_failure_once(cli: CliRunner, in_project: Path) -> None:
    # no --lookups: the accessories lookup has no answer and fails the run
    code, text = invoke(cli, "simulate", "post-purchase-accessories", *MAX, *START)
    assert code == 0, text
    assert text.count(NO_FIXTURE) == 1, text
    assert "✗ failed: " + NO_FIXTURE in text
    assert "failed on Sun 2027-01-17 10:00 at accessories" in text

    code, out = invoke(cli, "simulate", "post-purchase-accessories", *MAX, *START, "--json")
    assert code == 0, out
    (run,) = json.loads(out)["runs"]
    failed = [entry for entry in run["timeline"] if entry["kind"] == "failed"]
    assert [(e["step"], e["at"]) for e in failed] == [("accessories", "2027-01-17T09:00:00Z")]
    assert failed[0]["detail"].startswith(NO_FIXTURE) and run["timeline"][-1] == failed[0]
    assert out.count(NO_FIXTURE) == 1


def test_a_population_report_shows_failures_per_step(
    cli: CliRunner, in_project: Path, tmp_path: Path
) -> None:
    customers = tmp_path / "customers.csv"
    customers.write_text("id,email,locale\nc1,c1@example.com,en\nc2,c2@example.com,de\n")
    args = ["simulate", "post-purchase-accessories", "--profiles", str(customers)]
    args += ["--events", "demo/max/events.yaml", *START, "--until", "40d"]
    code, out = invoke(cli, *args, "--json")
    assert code == 0, out
    (funnel,) = json.loads(out)["funnels"]
    assert funnel["outcomes"]["failed"] == 2
    steps = {row["step"]: row for row in funnel["steps"]}
    assert steps["accessories"]["failed"] == 2 and steps["setup-guide"]["failed"] == 0
    [failure] = funnel["failures"]
    assert failure["step"] == "accessories" and failure["runs"] == 2
    assert failure["reason"].startswith(NO_FIXTURE)

    code, text = invoke(cli, *args)
    assert code == 0, text
    lines = text.splitlines()
    header = next(line for line in lines if line.strip().startswith("step "))
    assert header.split()[-1] == "failed"
    accessories = next(line for line in lines if line.strip().startswith("accessories "))
    assert accessories.split()[-1] == "2"
    below = lines[lines.index("  failures by step") + 1]
    assert below.split()[:3] == ["accessories", "2", "×"] and NO_FIXTURE in below


BROKEN = "id: broken\nname: Broken\ncategory: marketing\ntrigger: {event: X}\nsteps:\n"
BROKEN += "  - wait: three days\n"


def test_an_invalid_journey_does_not_stop_the_others(cli: CliRunner, project_copy: Path) -> None:
    (project_copy / "journeys" / "broken.yaml").write_text(BROKEN)
    (project_copy / "journeys" / "broken.test.yaml").write_text(
        "cases:\n  - name: anything\n    events: [{at: '+0', event: X}]\n"
        "    expect: {messages: []}\n"
    )
    problem = 'journeys/broken.yaml:6:11: steps[0].wait: expected a duration like "3d"'

    code, out = invoke(cli, "simulate", "newsletter-welcome", *MAX, *START, "--until", "5d")
    assert code == 1, out
    assert problem in out
    assert "newsletter-welcome  welcome" in out  # simulated all the same
    assert "message(s) would be sent" in out
    assert out.strip().splitlines()[-1].startswith("✗ the project has 1 problem")

    code, out = invoke(cli, "simulate", "broken", *MAX, *START)
    assert code == 1 and "journeys/broken.yaml has problems" in out and "Traceback" not in out

    code, out = invoke(cli, "test")
    assert code == 1, out
    assert problem in out
    assert out.count("✓ journeys/") >= 20  # every other journey's cases ran
    assert "journeys/broken.test.yaml:1:1: journey 'broken' is not tested" in out
    last = out.strip().splitlines()[-1]
    failures = "\n".join(line for line in out.splitlines() if not line.startswith("✓"))
    assert last.startswith("✗ ") and "0 failed" in last, failures
    assert "1 problem(s) in the project" in last


DETRACTOR = """\
journeys: [post-purchase-accessories]
start: 2027-01-04T09:00:00+01:00
profile: {id: max, email: max@example.com, locale: en, timezone: Europe/Berlin}
cases:
  - name: the CRM gets the detractor as JSON
    events:
      - {at: "+0", event: Order Completed, properties: {order_id: O-1, categories: [laptops]}}
      - {at: "+2d", event: Order Delivered, properties: {order_id: O-1}}
      - {at: day 23 09:00, event: Survey Answered, properties: {order_id: O-1, score: 3}}
    lookups: {"shop-api": {products: []}}
    expect:
      messages:
        - {step: setup-guide}
        - {step: accessory-offer}
        - {step: survey}
        - {step: alert-support}
        - {step: tell-crm, body_contains: [BODY]}
        - {step: apology}
"""


ENVELOPE = (  # what the CRM receives: the template's JSON as "data", compact
    '{"type":"journey.post-purchase-accessories.tell-crm",'
    '"timestamp":"2027-01-27T08:00:00+00:00","data":{"type":"nps_detractor"'
)


@pytest.mark.parametrize(
    ("body", "passes"),
    [
        (f"'{ENVELOPE}'", True),
        ("'\"score\":3'", True),
        ("'\"score\": 3'", False),  # not the text the receiver gets
        ("\"'type': 'nps_detractor'\"", False),  # nor Python's
    ],
)
def test_a_webhook_body_is_the_json_text_its_receiver_gets(
    body: str, passes: bool, cli: CliRunner, project_copy: Path
) -> None:
    case = project_copy / "journeys" / "crm.test.yaml"
    case.write_text(DETRACTOR.replace("BODY", body))
    code, out = invoke(cli, "test", str(case))
    assert code == (0 if passes else 1), out


def test_the_docs_examples_of_moments() -> None:
    """docs/simulate.md: +20d counts 20 × 24 hours from the start; day 20 09:00 is local."""
    start = datetime.fromisoformat("2027-03-20T09:00+01:00")
    from zoneinfo import ZoneInfo

    berlin = ZoneInfo("Europe/Berlin")
    later = parse_moment("+20d").resolve(start, berlin)
    assert later.astimezone(berlin).isoformat() == "2027-04-09T10:00:00+02:00"
    local = parse_moment("day 20 09:00").resolve(start, berlin)
    assert local.isoformat() == "2027-04-09T09:00:00+02:00"
    text = " ".join((ROOT / "docs" / "simulate.md").read_text().split())
    assert "`+20d` is `2027-04-09T10:00+02:00`" in text
    assert "(`2027-04-09T09:00+02:00`)" in text
    assert "never from the previous event" in text


def test_wait_one_day_is_24_hours_across_the_change_to_summer_time(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "touchpoint.yaml").write_text(
        "defaults:\n  locale: en\n  timezone: Europe/Berlin\n"
        "  sender: {email: hello@shop.example, name: Shop}\nemail:\n  provider: maildir\n"
    )
    (tmp_path / "journeys").mkdir()
    (tmp_path / "journeys" / "later.yaml").write_text(
        "id: later\nname: Later\ncategory: transactional\ntrigger: {event: X}\nsteps:\n"
        "  - wait: 1d\n  - id: hello\n    send: email\n    template: hello\n"
    )
    (tmp_path / "templates" / "hello").mkdir(parents=True)
    (tmp_path / "templates" / "hello" / "en.html").write_text("---\nsubject: Hi\n---\n<p>x</p>\n")
    (tmp_path / "ann.yaml").write_text("id: ann\nemail: ann@example.com\n")
    (tmp_path / "events.yaml").write_text("- {at: '+0', event: X}\n")
    monkeypatch.chdir(tmp_path)
    # Saturday 09:00 in Berlin; the clocks go forward on Sunday 28 March 2027
    args = ["simulate", "later", "--profile", "ann.yaml", "--events", "events.yaml"]
    code, out = invoke(cli, *args, "--start", "2027-03-27T09:00+01:00", "--until", "3d")
    assert code == 0, out
    assert "Sun 2027-03-28 10:00  day 1    later  hello" in out
