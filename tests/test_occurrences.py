"""The occurrences of a scheduled journey's schedule (what simulate and journey tests enter at):
``every`` and ``cron`` in their time zone, across daylight saving in Europe/Berlin, within
``start``/``end`` — and the same moments as the Temporal Schedule of the journey on the real
dev server."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from temporalio.testing import WorkflowEnvironment

from ops.broadcasts import broadcast_schedule
from simulation.occurrences import is_occurrence, nearest, occurrences
from tests.temporal import plan_from
from workflows.plan import ScheduleRule

BERLIN = ZoneInfo("Europe/Berlin")
MONDAY_NINE = ScheduleRule(weekdays=(0,), time="09:00", timezone="Europe/Berlin")


def berlin(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN)


def local(moments: list[datetime], zone: ZoneInfo = BERLIN) -> list[str]:
    return [f"{m.astimezone(zone):%a %Y-%m-%d %H:%M %z}" for m in moments]


def test_every_monday_at_nine_stays_nine_in_berlin_when_the_clocks_go_forward() -> None:
    found = occurrences(MONDAY_NINE, berlin("2027-03-15 00:00"), berlin("2027-04-06 00:00"))
    assert local(found) == [
        "Mon 2027-03-15 09:00 +0100",
        "Mon 2027-03-22 09:00 +0100",
        "Mon 2027-03-29 09:00 +0200",  # summer time since Sunday 28 March
        "Mon 2027-04-05 09:00 +0200",
    ]
    assert [m.hour for m in found] == [8, 8, 7, 7]  # in UTC, as they are returned
    assert all(m.tzinfo == UTC for m in found)


def test_and_when_they_go_back() -> None:
    found = occurrences(MONDAY_NINE, berlin("2027-10-25 00:00"), berlin("2027-11-02 00:00"))
    assert local(found) == ["Mon 2027-10-25 09:00 +0200", "Mon 2027-11-01 09:00 +0100"]


def test_a_time_the_clocks_skip_does_not_occur_one_they_repeat_occurs_once_in_winter_time() -> None:
    rule = ScheduleRule(cron="30 2 * * *", timezone="Europe/Berlin")
    spring = occurrences(rule, berlin("2027-03-27 00:00"), berlin("2027-03-29 23:00"))
    assert local(spring) == [
        "Sat 2027-03-27 02:30 +0100",  # 02:30 does not exist in the night to Sunday
        "Mon 2027-03-29 02:30 +0200",
    ]
    autumn = occurrences(rule, berlin("2027-10-30 00:00"), berlin("2027-11-01 00:00"))
    assert local(autumn) == ["Sat 2027-10-30 02:30 +0200", "Sun 2027-10-31 02:30 +0100"]


@pytest.mark.parametrize(
    ("cron", "expected"),
    [
        ("0 9 * * MON", ["Mon 2027-03-01 09:00", "Mon 2027-03-08 09:00"]),
        ("0 9 * * 1", ["Mon 2027-03-01 09:00", "Mon 2027-03-08 09:00"]),
        ("0 18 * * 7", ["Sun 2027-03-07 18:00"]),  # 7 is Sunday, like 0
        ("0 18 * * 0", ["Sun 2027-03-07 18:00"]),
        ("0 12 1,8 * *", ["Mon 2027-03-01 12:00", "Mon 2027-03-08 12:00"]),
        ("0 9 1-7 * mon", ["Mon 2027-03-01 09:00"]),  # day of month AND day of week
        ("*/30 8-9 2 mar *", [f"Tue 2027-03-02 {t}" for t in ("08:00", "08:30", "09:00", "09:30")]),
        ("15 10/6 3 * *", ["Wed 2027-03-03 10:15", "Wed 2027-03-03 16:15", "Wed 2027-03-03 22:15"]),
        ("0 9 * * fri-sat", ["Fri 2027-03-05 09:00", "Sat 2027-03-06 09:00"]),
        ("@weekly", ["Sun 2027-03-07 00:00"]),
        ("@monthly", ["Mon 2027-03-01 00:00"]),
        ("0 0 1 1 *", []),
    ],
)
def test_cron_fields(cron: str, expected: list[str]) -> None:
    rule = ScheduleRule(cron=cron, timezone="Europe/Berlin")
    found = occurrences(rule, berlin("2027-03-01 00:00"), berlin("2027-03-08 23:59"))
    assert [text[:-6] for text in local(found)] == expected


def test_every_with_several_days_and_another_zone() -> None:
    rule = ScheduleRule(weekdays=(0, 3), time="18:30", timezone="America/New_York")
    start = datetime(2027, 3, 1, tzinfo=UTC)
    found = occurrences(rule, start, start + timedelta(days=7))
    assert local(found, ZoneInfo("America/New_York")) == [
        "Mon 2027-03-01 18:30 -0500",
        "Thu 2027-03-04 18:30 -0500",
    ]


def test_start_and_end_bound_the_occurrences_as_they_bound_the_schedule() -> None:
    rule = MONDAY_NINE.model_copy(update={"start": "2027-01-04", "end": "2027-01-18"})
    found = occurrences(rule, berlin("2026-12-01 00:00"), berlin("2027-02-28 00:00"))
    # a start date is its midnight, an end date the whole day (09:00 on the 18th is in)
    assert local(found) == [
        "Mon 2027-01-04 09:00 +0100",
        "Mon 2027-01-11 09:00 +0100",
        "Mon 2027-01-18 09:00 +0100",
    ]
    timed = MONDAY_NINE.model_copy(update={"start": "2027-01-04T10:00", "end": "2027-01-18T08:59"})
    assert local(occurrences(timed, berlin("2027-01-01 00:00"), berlin("2027-02-01 00:00"))) == [
        "Mon 2027-01-11 09:00 +0100"
    ]


def test_the_window_includes_both_ends() -> None:
    nine = berlin("2027-03-01 09:00")
    assert occurrences(MONDAY_NINE, nine, nine) == [nine.astimezone(UTC)]
    assert occurrences(MONDAY_NINE, nine + timedelta(minutes=1), nine + timedelta(days=6)) == []
    assert is_occurrence(MONDAY_NINE, nine)
    assert not is_occurrence(MONDAY_NINE, berlin("2027-03-02 09:00"))
    assert local(nearest(MONDAY_NINE, berlin("2027-03-03 12:00"), timedelta(days=30))) == [
        "Mon 2027-03-01 09:00 +0100",
        "Mon 2027-03-08 09:00 +0100",
    ]


SCHEDULED = """
id: {journey_id}
name: Check
category: marketing
trigger:
  schedule:
    {when}
    timezone: Europe/Berlin
    start: {start}
  audience: profile.traits.vip | default(false)
steps:
  - id: issue
    send: email
    template: newsletter-welcome
"""


@pytest.mark.parametrize(
    ("when", "start"),
    [
        ('cron: "30 2 * * *"', "2027-03-25"),  # across the spring gap
        ('cron: "30 2 * * *"', "2027-10-28"),  # across the autumn repeat
        ('cron: "*/20 1-3 28 mar *"', "2027-03-28"),
        ('cron: "0 9 1-7 * MON"', "2027-01-01"),
        ("every: mon, thu 09:00", "2027-03-20"),
        ('cron: "15 10/6 * * 5-7"', "2027-03-01"),
    ],
)
async def test_the_same_moments_as_the_temporal_schedule(
    dev_env: WorkflowEnvironment, when: str, start: str
) -> None:
    """The Temporal Schedule the journey gets on deploy lists its next ten actions: ours are
    the same (the schedule starts in the future, so they are its first ten)."""
    journey_id = f"check-{uuid.uuid4().hex[:8]}"
    plan = plan_from(SCHEDULED.format(journey_id=journey_id, when=when, start=start))
    assert plan.schedule is not None
    sid = f"test-occurrences-{journey_id}"
    handle = await dev_env.client.create_schedule(sid, broadcast_schedule(plan, paused=True))
    try:
        upcoming = (await handle.describe()).info.next_action_times
    finally:
        await handle.delete()
    assert len(upcoming) == 10
    begin = datetime.fromisoformat(start).replace(tzinfo=BERLIN)
    ours = occurrences(plan.schedule, begin, begin + timedelta(days=400))[:10]
    assert local(ours) == local(upcoming)
