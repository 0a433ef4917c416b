"""Date-based entry, the arithmetic: whose date is today, where it is ``at`` now (DST and
quarter-hour zones), Feb 29, offsets across month and year ends, unreadable dates."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from activities.audience import DateUnreadable, date_is_today, in_audience, run_tag
from workflows.dates import (
    anniversary,
    firing_minutes,
    is_due,
    local_date,
    next_occurrence,
    zones_at,
)
from workflows.models import Profile
from workflows.plan import DateRule
from workflows.timing import moment_from, zone

BERLIN = zone("Europe/Berlin")
DAY = 86_400


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("moment", "berlin"),
    [
        (utc(2027, 3, 27, 8, 0), True),  # Saturday before the change: CET, 09:00 is 08:00 UTC
        (utc(2027, 3, 28, 7, 0), True),  # last Sunday of March: CEST from 02:00, 09:00 is 07:00
        (utc(2027, 3, 28, 8, 0), False),  # …so 08:00 UTC that day is 10:00 in Berlin
        (utc(2027, 10, 30, 7, 0), True),  # Saturday before the change back: still CEST
        (utc(2027, 10, 31, 8, 0), True),  # last Sunday of October: CET again, 09:00 is 08:00
        (utc(2027, 10, 31, 7, 0), False),
    ],
)
def test_nine_in_berlin_is_found_on_both_sides_of_each_daylight_saving_change(
    moment: datetime, berlin: bool
) -> None:
    assert ("Europe/Berlin" in zones_at(moment, "09:00")) is berlin


def test_quarter_hour_zones_are_reached_because_the_schedule_fires_every_quarter_hour() -> None:
    assert firing_minutes("09:00") == (0, 15, 30, 45)
    assert firing_minutes("09:10") == (10, 25, 40, 55)
    at_half = zones_at(utc(2027, 3, 1, 3, 30), "09:00")  # 09:00 in India (+05:30)
    assert "Asia/Kolkata" in at_half and "Europe/Berlin" not in at_half
    assert "Asia/Kathmandu" in zones_at(utc(2027, 3, 1, 3, 15), "09:00")  # +05:45
    assert "Asia/Kolkata" not in zones_at(utc(2027, 3, 1, 3, 0), "09:00")
    assert list(zones_at(utc(2027, 3, 1, 8, 0), "09:00")) == sorted(
        zones_at(utc(2027, 3, 1, 8), "09:00")
    )


def test_the_next_occurrence_is_the_next_quarter_hour_where_some_zone_shows_at() -> None:
    assert next_occurrence(utc(2027, 3, 1, 7, 50), "09:00") == utc(2027, 3, 1, 8, 0)
    assert next_occurrence(utc(2027, 3, 1, 8, 0), "09:00") == utc(2027, 3, 1, 8, 0)


@pytest.mark.parametrize(
    ("today", "due"),
    [
        (date(2027, 2, 28), True),  # 2027 has no Feb 29: celebrated on Feb 28
        (date(2027, 3, 1), False),
        (date(2028, 2, 29), True),  # a leap year: on the day
        (date(2028, 2, 28), False),
    ],
)
def test_a_feb_29_birthday_is_celebrated_on_feb_28_in_other_years(today: date, due: bool) -> None:
    assert is_due(date(2000, 2, 29), "year", 0, today) is due


def test_a_feb_29_birthday_with_an_offset_counts_from_feb_28_in_a_common_year() -> None:
    assert is_due(date(2000, 2, 29), "year", -1, date(2027, 2, 27))
    assert is_due(date(2000, 2, 29), "year", -1, date(2028, 2, 28))
    assert anniversary(date(2000, 2, 29), 2027) == date(2027, 2, 28)


@pytest.mark.parametrize(
    ("day", "every", "offset", "today"),
    [
        (date(1990, 1, 5), "year", -30, date(2026, 12, 6)),  # back across the year end
        (date(1990, 12, 20), "year", 20, date(2027, 1, 9)),  # forward across it
        (date(2027, 3, 1), "once", -1, date(2027, 2, 28)),  # back across a month end
        (date(2028, 3, 1), "once", -1, date(2028, 2, 29)),  # …into a leap day
        (date(2027, 1, 31), "once", 1, date(2027, 2, 1)),
        (date(2027, 5, 17), "once", 0, date(2027, 5, 17)),
    ],
)
def test_offsets_move_the_day_across_month_and_year_ends(
    day: date, every: str, offset: int, today: date
) -> None:
    assert is_due(day, every, offset, today)  # type: ignore[arg-type]
    assert not is_due(day, every, offset, date.fromordinal(today.toordinal() + 1))  # type: ignore[arg-type]


def test_a_yearly_date_starts_in_its_own_year_and_a_one_off_date_happens_once() -> None:
    assert not is_due(date(2028, 5, 1), "year", 0, date(2027, 5, 1))
    assert is_due(date(2028, 5, 1), "year", 0, date(2029, 5, 1))
    assert not is_due(date(2027, 5, 1), "once", 0, date(2028, 5, 1))


def test_a_date_with_a_time_is_the_day_it_falls_on_in_the_customers_zone() -> None:
    assert local_date("2027-03-01T23:30:00Z", BERLIN) == date(2027, 3, 2)
    assert local_date("2027-03-01T23:30:00", BERLIN) == date(2027, 3, 1)
    assert local_date(" 1990-05-17 ", BERLIN) == date(1990, 5, 17)


@pytest.mark.parametrize("value", ["17.05.1987", "1987-02-30", "soon", 42, ["1987-05-17"]])
def test_a_value_that_is_not_a_date_is_a_clear_error_without_the_value(value: object) -> None:
    with pytest.raises(ValueError) as caught:
        local_date(value, BERLIN)
    assert "1987" not in str(caught.value), "no personal data (a birthday) in the message"


def test_the_event_forms_wait_is_30_days_before_at_nine_local_across_dst() -> None:
    """The warranty reminder's wait (``moment_from`` with a whole-day offset and ``at``)."""
    summer = moment_from("2027-04-27", BERLIN, -30 * DAY, "09:00")  # 2027-03-28: the DST day
    assert summer == utc(2027, 3, 28, 7, 0)
    winter = moment_from("2027-11-30T15:00:00+00:00", BERLIN, -30 * DAY, "09:00")
    assert winter == utc(2027, 10, 31, 8, 0)  # the day the clocks went back


BIRTHDAY = DateRule(path="traits.birthday", every="year", time="09:00", timezone="Europe/Berlin")


def customer(birthday: object, timezone: str | None = None) -> Profile:
    return Profile(id="c1", timezone=timezone, traits={"birthday": birthday, "vip": True})


def test_the_date_is_read_from_the_profile_as_it_is_now() -> None:
    moment = utc(2027, 3, 1, 8, 0)  # 09:00 in Berlin
    assert date_is_today(BIRTHDAY, customer("1990-03-01"), moment)
    assert not date_is_today(BIRTHDAY, customer("1990-03-02"), moment)  # changed: not today
    assert not date_is_today(BIRTHDAY, customer(None), moment)
    assert not date_is_today(BIRTHDAY, Profile(id="c2"), moment)  # no birthday at all
    # 03:30 UTC is 09:00 in India on March 1st
    assert date_is_today(BIRTHDAY, customer("1990-03-01", "Asia/Kolkata"), utc(2027, 3, 1, 3, 30))
    with pytest.raises(DateUnreadable):
        date_is_today(BIRTHDAY, customer("01/03/1990"), moment)


def test_the_audience_and_the_date_both_decide_and_the_run_tag_is_the_local_date() -> None:
    from tests.temporal import plan_from

    plan = plan_from(
        """
id: birthday
name: Birthday
category: marketing
trigger:
  date: {profile: traits.birthday, every: year, at: "09:00"}
  audience: profile.traits.vip
steps:
  - send: email
    template: newsletter-welcome
"""
    )
    moment = utc(2027, 3, 1, 8, 0)
    assert in_audience(plan, customer("1990-03-01"), moment)
    not_vip = Profile(id="c1", traits={"birthday": "1990-03-01", "vip": False})
    assert not in_audience(plan, not_vip, moment)
    assert run_tag(plan, customer("1990-03-01"), moment) == "d20270301"
    # 23:30 UTC on Feb 28 is already March 1st in Kiritimati (+14)
    late = customer("1990-03-01", "Pacific/Kiritimati")
    assert run_tag(plan, late, utc(2027, 2, 28, 19, 0)) == "d20270301"


def test_an_at_in_the_spring_gap_fires_after_it_and_one_in_the_autumn_fold_fires_once() -> None:
    """02:30 does not exist in Berlin on 2027-03-28: it is reached at 03:30 summer time
    (01:30 UTC), as wait_until does; on 2027-10-31 it shows twice: the first one counts."""
    assert "Europe/Berlin" in zones_at(utc(2027, 3, 28, 1, 30), "02:30")
    assert "Europe/Berlin" not in zones_at(utc(2027, 3, 28, 0, 30), "02:30")
    autumn = [utc(2027, 10, 31, 0, 30), utc(2027, 10, 31, 1, 30)]
    assert ["Europe/Berlin" in zones_at(moment, "02:30") for moment in autumn] == [True, False]
