"""Scheduled journeys in the language: ``trigger.schedule`` and ``trigger.audience`` compile
into ``Plan.schedule``; ``validate`` reports bad schedules and audiences at file:line:col with
hints (the wording is pinned); existing journeys keep their versions."""

from __future__ import annotations

import pytest

from language.compiler import ProjectContext
from language.schedules import check_cron, describe_schedule, parse_every, parse_rate
from language.validator import compile_text
from tests.temporal import CONTEXT, plan_from
from workflows.plan import BROADCAST_EVENT, Plan, ScheduleRule

STEPS = "steps:\n  - send: email\n    template: newsletter-welcome\n"


def scheduled(trigger: str, extra: str = "") -> str:
    return f"id: weekly\nname: Weekly\ncategory: marketing\ntrigger:\n{trigger}{extra}{STEPS}"


def problems(text: str, context: ProjectContext = CONTEXT) -> list[str]:
    plan, found, _ = compile_text(text, "weekly.yaml", context)
    assert plan is None
    return [p.format() for p in found]


def test_a_schedule_and_an_audience_compile_into_the_plan() -> None:
    plan = plan_from(
        scheduled(
            "  schedule:\n"
            "    every: mon, thu 9:30\n"
            "    timezone: Europe/Berlin\n"
            "    start: 2027-01-04\n"
            "    end: 2027-06-30\n"
            "    rate: 600/m\n"
            "  audience: profile.traits.vip | default(false)\n"
        )
    )
    assert plan.trigger.event == BROADCAST_EVENT
    assert plan.schedule == ScheduleRule(
        weekdays=(0, 3),
        time="09:30",
        timezone="Europe/Berlin",
        start="2027-01-04",
        end="2027-06-30",
        audience="profile.traits.vip | default(false)",
        starts_per_second=10.0,
    )
    assert describe_schedule(plan.schedule) == (
        "every Monday, Thursday at 09:30 (Europe/Berlin, from 2027-01-04, until 2027-06-30)"
    )


def test_a_cron_schedule_takes_the_projects_time_zone_by_default() -> None:
    plan = plan_from(scheduled('  schedule:\n    cron: "0 9 * * MON-FRI"\n'))
    assert plan.schedule is not None
    assert (plan.schedule.cron, plan.schedule.timezone, plan.schedule.audience) == (
        "0 9 * * MON-FRI",
        CONTEXT.config.defaults.timezone,
        None,
    )


def test_existing_journeys_keep_their_versions() -> None:
    """The versions main had before schedules existed: ``schedule`` unset is left out of the
    hash (LATER_OPTIONAL_FIELDS), so no running run loses its plan."""
    from language.validator import validate
    from tests.conftest import ROOT

    newer = ("warranty-reminder", "birthday-greeting")  # date journeys: versions of their own
    versions = {k: p.version for k, p in validate((), root=ROOT).plans.items() if k not in newer}
    assert versions | {"monday-newsletter": "-", "vip-thank-you": "-"} == {
        "laptop-recommendation": "2eb46d89f8e807fb",
        "newsletter-welcome": "eac4d412c5945e2a",
        "post-purchase-accessories": "4e78c013a37eadc1",
        "monday-newsletter": "-",
        "vip-thank-you": "-",
    }


def test_a_schedule_changes_the_version() -> None:
    one = plan_from(scheduled("  schedule:\n    every: monday 09:00\n"))
    two = plan_from(scheduled("  schedule:\n    every: monday 10:00\n"))
    assert one.version != two.version
    assert Plan.model_validate_json(one.model_dump_json()) == one


@pytest.mark.parametrize(
    ("trigger", "expected"),
    [
        (
            "  schedule:\n    every: mondy 09:00\n",
            'weekly.yaml:6:12: trigger.schedule.every: "mondy" is not a day (did you mean '
            '"monday"?): write "monday 09:00", "mon, thu 18:30", "day 08:00" or "weekday '
            '07:45" (hint: e.g. every: monday 09:00 (or cron: "0 9 * * MON"))',
        ),
        (
            "  schedule:\n    every: monday 25:00\n",
            'weekly.yaml:6:12: trigger.schedule.every: "25:00" is not a time of day: write '
            'hours 0-23 and minutes on the 24-hour clock, e.g. "every: monday 09:00" (hint: '
            'e.g. every: monday 09:00 (or cron: "0 9 * * MON"))',
        ),
        (
            '  schedule:\n    cron: "0 25 * * MON"\n',
            'weekly.yaml:6:11: trigger.schedule.cron: cron field 2 (hour) "25" is out of '
            'range: 0-23 (hint: minute hour day-of-month month day-of-week, e.g. "0 9 * * '
            'MON")',
        ),
        (
            '  schedule:\n    cron: "0 9 * MON"\n',
            "weekly.yaml:6:11: trigger.schedule.cron: a cron expression has 5 fields (minute "
            'hour day-of-month month day-of-week), got 4 in "0 9 * MON"; e.g. "0 9 * * MON" '
            'is Mondays at 09:00 (hint: minute hour day-of-month month day-of-week, e.g. "0 9 '
            '* * MON")',
        ),
        (
            "  schedule:\n    every: monday 09:00\n    timezone: Europe/Berlim\n",
            'weekly.yaml:7:15: trigger.schedule.timezone: unknown time zone "Europe/Berlim" '
            "(hint: an IANA name such as Europe/Berlin, America/New_York or UTC)",
        ),
        (
            "  schedule:\n    every: monday 09:00\n    start: 2027-06-01\n    end: 2027-01-01\n",
            "weekly.yaml:8:10: trigger.schedule.end: the schedule ends (2027-01-01) before it "
            "starts (2027-06-01) (hint: end must be after start; check the year and the month)",
        ),
        (
            "  schedule:\n    every: monday 09:00\n    rate: fast\n",
            'weekly.yaml:7:11: trigger.schedule.rate: expected a start rate like "50/s" or '
            '"600/m", got "fast" (hint: a number of starts per second or per minute, e.g. '
            "rate: 50/s)",
        ),
        (
            "  schedule:\n    timezone: UTC\n",
            'weekly.yaml:6:5: trigger.schedule: a schedule needs "every" or "cron" (hint: e.g. '
            'every: monday 09:00, or cron: "0 9 * * MON")',
        ),
        (
            "  schedule:\n    every: monday 09:00\n  audience: profile.traits.vip and (\n",
            "weekly.yaml:7:37: trigger.audience: invalid expression: the expression ends too early",
        ),
        (
            "  schedule:\n    every: monday 09:00\n  audience: profile.first_name == 'Max'\n",
            'weekly.yaml:7:21: trigger.audience: profile has no "first_name" (hint: a '
            "customer's own data is under profile.traits, e.g. profile.traits.first_name)",
        ),
        (
            "  schedule:\n    every: monday 09:00\n  audience: event.properties.total > 5\n",
            'weekly.yaml:7:13: trigger.audience: unknown name "event"',
        ),
        (
            "  event: Signed Up\n  schedule:\n    every: monday 09:00\n",
            'weekly.yaml:6:3: trigger.schedule: a trigger has either "event" or "schedule", '
            "not both (hint: a scheduled journey starts from the calendar: remove event (or "
            "schedule))",
        ),
        (
            "  schedule:\n    every: monday 09:00\n  key: event.properties.order_id\n",
            "weekly.yaml:7:3: trigger.key: trigger.key reads the triggering event, and a "
            "scheduled journey has none (hint: a scheduled journey has one run per customer "
            "and occurrence: remove key)",
        ),
        (
            "  event: Signed Up\n  audience: profile.traits.vip\n",
            'weekly.yaml:6:3: trigger.audience: "audience" goes with "schedule": it says who a '
            "scheduled journey reaches (hint: for an event-triggered journey, put a condition "
            "over the profile in entry.if)",
        ),
        (
            "  audience: profile.traits.vip\n",
            "weekly.yaml:5:3: trigger: a trigger needs",
        ),
    ],
)
def test_validate_reports_schedule_problems_where_they_are(trigger: str, expected: str) -> None:
    found = problems(scheduled(trigger))
    assert any(p.startswith(expected) for p in found), found


def test_every_accepts_what_people_write() -> None:
    assert parse_every("monday 09:00") == ((0,), "09:00")
    assert parse_every("Mondays at 9:00") == ((0,), "09:00")
    assert parse_every("mon, thu 18:30") == ((0, 3), "18:30")
    assert parse_every("weekday 07:45") == ((0, 1, 2, 3, 4), "07:45")
    assert parse_every("day 08:00") == (tuple(range(7)), "08:00")
    assert check_cron("@weekly") == "@weekly"
    assert check_cron("*/15 8-18 * jan-mar mon,fri") == "*/15 8-18 * jan-mar mon,fri"
    assert parse_rate("50/s") == 50.0
    with pytest.raises(ValueError, match="a step must be at least 1"):
        check_cron("*/0 * * * *")


@pytest.mark.parametrize("cron", ["0 9 * * sat-sun", "0 22-2 * * *", "0 9 * dec-jan *"])
def test_a_range_that_wraps_around_is_refused_as_temporal_refuses_it(cron: str) -> None:
    with pytest.raises(ValueError, match=r"ends before it starts .* use a list instead"):
        check_cron(cron)
    assert check_cron("0 9 * * sat,sun") == "0 9 * * sat,sun"
