"""``touchpoint.yaml`` ``policies:`` as ``validate`` reports it: every problem at its line and
column, in the marketer's words; and the repository's own policies as the worker applies them."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from activities.policy_rules import ProjectPolicies
from cli import app
from language.validator import validate
from tests.conftest import ROOT
from workflows.policy_models import CapRule, QuietRule

BAD = """\
defaults:
  timezone: Europe/Berlin
policies:
  defer_max: three days
  frequency_caps:
    - name: marketing-email-daily
      limit: 0
      per: 24h
      channels: [email, slack]
  quiet_hours:
    - name: evenings
      from: "21:00"
      channels: [sms]
    - name: sundays
      from: "25:00"
      to: "08:00"
      days: [sunday]
    - name: nights
      from: "22:00"
      to: "22:00"
"""


def test_every_policy_problem_is_reported_at_its_line(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "touchpoint.yaml").write_text(BAD)
    (tmp_path / "journeys").mkdir()
    (tmp_path / "templates").mkdir()
    monkeypatch.chdir(tmp_path)
    result = cli.invoke(app, ["validate"])
    assert result.exit_code == 1
    assert result.stdout.splitlines()[:7] == [
        'touchpoint.yaml:4:14: policies.defer_max: expected a duration like "3d", got '
        '"three days" (hint: a whole number and a unit (s, m, h, d, w), e.g. 90m, 12h, 3d, '
        "1d12h)",
        "touchpoint.yaml:7:14: policies.frequency_caps[0].limit: a cap lets at least 1 message "
        "through, got 0",
        "touchpoint.yaml:9:25: policies.frequency_caps[0].channels[1]: expected one of email, "
        'webhook, chat, sms, got "slack" (hint: write one of these exactly as shown)',
        "touchpoint.yaml:11:7: policies.quiet_hours[0]: write both from and to (or neither, "
        "with days, for whole days)",
        'touchpoint.yaml:15:13: policies.quiet_hours[1].from: "25:00" is not a time of day: '
        "hours go from 0 to 23, minutes from 00 to 59 (hint: hours 0-23 and minutes, e.g. "
        'time: "09:00" or time: "18:30")',
        "touchpoint.yaml:17:14: policies.quiet_hours[1].days[0]: expected one of mon, tue, wed, "
        'thu, fri, sat, sun, got "sunday"; did you mean "sun"? (hint: write one of these '
        "exactly as shown)",
        "touchpoint.yaml:18:7: policies.quiet_hours[2]: from and to are the same time: the "
        "window would be empty",
    ]
    assert "7 problems" in result.output


def test_the_repositorys_policies_as_the_worker_applies_them() -> None:
    project = ProjectPolicies.for_project(validate((), root=ROOT).config)
    assert project.default_timezone == "Europe/Berlin"
    assert project.defer_max_seconds == 3 * 86_400
    assert project.caps == (
        CapRule(name="marketing-email-daily", limit=2, window_seconds=86_400, channels=("email",)),
        CapRule(
            name="marketing-email-weekly", limit=5, window_seconds=7 * 86_400, channels=("email",)
        ),
    )
    assert project.quiet == (
        QuietRule(name="evenings", start="21:00", end="08:00", channels=("sms",)),
    )
