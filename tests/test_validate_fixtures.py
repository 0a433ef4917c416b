"""Every bad-journey fixture is rejected with its pinned output; wording is interface.

Set UPDATE_EXPECTED=1 to rewrite the expected files after an intended change, then review the
diff: each line there is what a marketer will read.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from tests.conftest import FIXTURES

INVALID = FIXTURES / "invalid"
CASES = sorted((INVALID / "journeys").glob("*.yaml"))
UPDATE = os.environ.get("UPDATE_EXPECTED") == "1"


def _check_pinned(output: str, expected_file: Path) -> None:
    if UPDATE:
        expected_file.write_text(output, encoding="utf-8")
    assert output == expected_file.read_text(encoding="utf-8")


@pytest.mark.parametrize("case", CASES, ids=lambda path: path.stem)
def test_bad_journey_is_rejected_with_its_pinned_message(
    case: Path, cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(INVALID)
    result = cli.invoke(app, ["validate", f"journeys/{case.name}"])
    assert result.exit_code == 1, result.output
    assert result.stdout, "a rejected journey must say why"
    _check_pinned(result.stdout, INVALID / "expected" / f"{case.stem}.txt")
    assert "problem" in result.stderr


def test_bad_config_is_rejected_with_its_pinned_message(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(FIXTURES / "invalid-config")
    result = cli.invoke(app, ["validate", "touchpoint.yaml"])
    assert result.exit_code == 1
    _check_pinned(result.stdout, FIXTURES / "invalid-config" / "expected.txt")


def test_every_check_of_the_validator_has_a_fixture() -> None:
    """The issue's list of checks, each found in at least one pinned output."""
    pinned = "".join(p.read_text() for p in (INVALID / "expected").glob("*.txt"))
    pinned += (FIXTURES / "invalid-config" / "expected.txt").read_text()
    checks = {
        "YAML syntax errors": "YAML syntax:",
        "duplicate keys citing both lines": 'duplicate key "category", first on line 3',
        "unknown fields with did-you-mean": 'unknown field "tempalte"; did you mean "template"?',
        "wrong types": "expected true or false",
        "bad durations": 'expected a duration like "3d", got "three days"',
        "duplicate step ids": 'duplicate step id "hello"',
        "jumps to unknown steps": 'unknown step "remindr"; did you mean "reminder"?',
        "unreachable steps": "can never be reached",
        "loops that contain no wait": "this loop never waits",
        "wait_for without a timeout": 'steps[0].timeout: missing "timeout"',
        "split percentages": "split percentages add up to 95, not 100",
        "expression syntax errors": "invalid expression: unexpected '>'",
        "missing templates": 'unknown template "welcom"',
        "missing default-locale variants": 'has no "en" variant (the default locale)',
        "template syntax errors": "templates/broken/en.html:5:1: template syntax",
        "unknown destinations": 'unknown destination "suport"',
        "unknown connections": 'unknown connection "shopp"',
        "inline secrets in config": "secret written inline",
        "inline secrets in journeys": "looks like a SendGrid API key written inline",
        # issue 14: checked before they run
        "attributes starting with _": '"__class__" reaches into Python\'s internals',
        "methods that change data": '".append" would change data',
        "constant ranges past the sandbox's limit": "range() may make at most 100000 numbers",
        "template names with did-you-mean": 'unknown name "profil"; did you mean "profile"?',
        "keys a fixed-shape name never holds": 'profile has no "first_name"',
        "run data read before it is filled in": '"events.answer" is not there yet',
        "unsubscribe_url outside marketing email": "unsubscribe_url is given to marketing",
        "JSON templates rendered with sample data": 'a comma before "}"',
        "values inserted without tojson": "write values with | tojson",
        "every problem at once": 'unknown template "welcom"',
        "zero durations": "a duration must be more than zero",
        "empty event names": "the event name is empty: write the event's name",
        "12-hour times": 'write "09:00", not "9am"',
        "unreadable dates show the value": "'2027-02-30' is not a date",
        "unclosed brackets where they open": 'unclosed-bracket.yaml:9:13: YAML syntax: this "["',
    }
    missing = [check for check, text in checks.items() if text not in pinned]
    assert not missing


def test_every_pinned_problem_has_a_hint() -> None:
    lines = [
        line
        for path in [
            *(INVALID / "expected").glob("*.txt"),
            FIXTURES / "invalid-config" / "expected.txt",
        ]
        for line in path.read_text().splitlines()
    ]
    assert lines and [line for line in lines if "(hint: " not in line] == []


def test_every_problem_of_one_file_is_reported_at_once(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad duration does not hide the unknown template and the bad expression after it."""
    monkeypatch.chdir(INVALID)
    result = cli.invoke(app, ["validate", "journeys/all-at-once.yaml"])
    paths = [line.split(": ")[1] for line in result.stdout.splitlines()]
    assert paths == [
        "trigger.event",
        "steps[0].wait",
        "steps[1].template",
        "steps[2].branch[0].if",
        "steps[3].wait",
        "steps[4].if",
    ]


def test_problems_come_sorted_by_file_line_and_column(
    cli: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(INVALID)
    result = cli.invoke(app, ["validate"])
    assert result.exit_code == 1
    keys = []
    for line in result.stdout.splitlines():
        file, line_no, column, _ = line.split(":", 3)
        keys.append((file, int(line_no), int(column)))
    assert keys == sorted(keys)
    assert len({k[0] for k in keys}) > 10  # all files at once, not just the first
