"""A schedule's ``start`` and ``end`` that are not dates: ``validate`` says so once, at the
value's line and column, with the expected form — and the file's other problems are still
reported (the wording is pinned; also through the installed ``touchpoint validate``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from language.validator import compile_text
from tests.conftest import ROOT
from tests.temporal import CONTEXT, plan_from

TOUCHPOINT = shutil.which("touchpoint") or str(Path(sys.executable).parent / "touchpoint")
HINT = "(hint: e.g. 2027-01-04 (a whole day) or 2027-01-04T09:00:00+01:00)"
EXPECTED = "expected a date (YYYY-MM-DD) or a time with an offset, got"


def weekly(bounds: str, audience: str = "profile.traits.vip | default(false)") -> str:
    return (
        "id: weekly\nname: Weekly\ncategory: marketing\ntrigger:\n  schedule:\n"
        f"    every: monday 09:00\n    timezone: Europe/Berlin\n{bounds}"
        f"  audience: {audience}\n"
        "steps:\n  - send: email\n    template: newsletter-welcome\n"
    )


def problems(text: str) -> list[str]:
    plan, found, _ = compile_text(text, "weekly.yaml", CONTEXT)
    assert plan is None
    return [p.format() for p in found]


@pytest.mark.parametrize(
    ("bounds", "expected"),
    [
        (
            "    start: 2027-13-01\n",
            f'weekly.yaml:8:12: trigger.schedule.start: {EXPECTED} "2027-13-01": month value '
            f"is outside expected range of 1-12 {HINT}",
        ),
        (
            "    end: 2027-02-30\n",
            f'weekly.yaml:8:10: trigger.schedule.end: {EXPECTED} "2027-02-30": day value is '
            f"outside expected range {HINT}",
        ),
        (
            '    start: "next monday"\n',
            f'weekly.yaml:8:12: trigger.schedule.start: {EXPECTED} "next monday": invalid '
            f"character in year {HINT}",
        ),
        (
            "    end: [2027-01-01]\n",
            f"weekly.yaml:8:10: trigger.schedule.end: {EXPECTED} [",
        ),
    ],
)
def test_a_bound_that_is_not_a_date_is_one_problem_with_the_form_it_takes(
    bounds: str, expected: str
) -> None:
    found = problems(weekly(bounds))
    assert len(found) == 1, found
    assert found[0].startswith(expected), found


def test_the_files_other_problems_are_still_reported() -> None:
    found = problems(
        weekly(
            "    start: 2027-13-01\n    end: 2027-02-30\n",
            audience="profile.first_name == 'Max'",
        )
    )
    assert [p.split(": ")[0] for p in found] == [
        "weekly.yaml:8:12",
        "weekly.yaml:9:10",
        "weekly.yaml:10:21",
    ], found
    assert 'profile has no "first_name"' in found[2]


def test_dates_and_times_with_an_offset_still_compile() -> None:
    plan = plan_from(weekly("    start: 2027-01-04\n    end: 2027-06-30T18:00:00+02:00\n"))
    assert plan.schedule is not None
    assert plan.schedule.start == "2027-01-04"
    assert plan.schedule.end is not None and plan.schedule.end.startswith("2027-06-30T18:00")


def test_the_installed_validate_reports_both_and_exits_1(tmp_path: Path) -> None:
    journey = tmp_path / "weekly.yaml"
    journey.write_text(weekly("    start: 2027-13-01\n", audience="profile.first_name == 'Max'"))
    done = subprocess.run(
        [TOUCHPOINT, "validate", str(journey)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    dated = [line for line in lines if "trigger.schedule.start" in line]
    assert len(dated) == 1, lines
    assert dated[0].endswith(
        f':8:12: trigger.schedule.start: {EXPECTED} "2027-13-01": month value is outside '
        f"expected range of 1-12 {HINT}"
    ), dated
    assert any(':9:21: trigger.audience: profile has no "first_name"' in line for line in lines)
    assert "2 problems in 1 file" in done.stdout + done.stderr
