"""Date-based entry: whose date is today, where it is ``at`` now, and Feb 29.

A date journey (``trigger.date.profile``) has a Temporal Schedule that fires every quarter hour
(:func:`firing_minutes`). At each occurrence — a UTC moment — :func:`zones_at` names the time
zones whose wall clock shows ``at`` then; only profiles in those zones are read, and of them
only those whose date (moved by the offset) is their local today enter (:func:`is_due`).

The rules, all of them pure functions of their arguments:

* **Local day.** A date without a time is that calendar day; a date with a time (ISO, with or
  without a zone) is the calendar day it falls on in the customer's zone.
* **Offset** in whole days moves the calendar day (``-30d``: thirty days before), so the entry
  is at ``at`` local time on that day whatever daylight saving does in between.
* **every: year** — the date's anniversary in each year from the date's own on; **Feb 29** is
  celebrated on Feb 28 in years without one. **every: once** — that one day.
* **DST.** ``at`` is a wall-clock time: 09:00 in Berlin is 08:00 UTC in winter and 07:00 UTC
  in summer, and :func:`zones_at` finds Berlin at whichever is right that day. A time that does
  not exist on a spring-forward day (02:30) is the moment after the gap (03:30); a time shown
  twice in autumn is the first one.
* **Quarter-hour zones** (Asia/Kolkata +05:30, Asia/Kathmandu +05:45, Australia/Adelaide) are
  why the schedule fires every fifteen minutes, not hourly: each zone's ``at`` falls on one of
  the four quarter hours.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any, Literal
from zoneinfo import ZoneInfo, available_timezones

from workflows.timing import parse_iso, zone

Every = Literal["year", "once"]


def local_date(value: Any, tz: ZoneInfo) -> date:
    """The calendar day ``value`` (a date, a datetime or ISO text) names in ``tz``;
    ``ValueError`` saying what was expected when it is none."""
    if isinstance(value, str):
        try:
            value = parse_iso(value)
        except ValueError:  # the value itself stays out of the message: it is personal data
            raise ValueError(
                "not a date in ISO form (such as 1990-05-17 or 2027-03-28T09:30:00+01:00)"
            ) from None
    if isinstance(value, datetime):
        return value.astimezone(tz).date() if value.tzinfo else value.date()
    if isinstance(value, date):
        return value
    raise ValueError(f"expected a date, got {type(value).__name__}")


def anniversary(day: date, year: int) -> date:
    """``day``'s anniversary in ``year``; Feb 29 is Feb 28 in a year without one."""
    try:
        return day.replace(year=year)
    except ValueError:  # only Feb 29 in a common year
        return date(year, 2, 28)


def is_due(day: date, every: Every, offset_days: int, today: date) -> bool:
    """Does a customer whose date is ``day`` enter on their local ``today``?"""
    target = today - timedelta(days=offset_days)  # the date's day that ``today`` stands for
    if every == "once":
        return day == target
    return target >= day and anniversary(day, target.year) == target


def firing_minutes(at: str) -> tuple[int, ...]:
    """The minutes of each hour the schedule fires at: ``at``'s minute and the three other
    quarter hours, so zones whose offset is a half or three quarters of an hour are reached."""
    minute = int(at.split(":")[1])
    return tuple(sorted({(minute + 15 * k) % 60 for k in range(4)}))


@lru_cache(maxsize=1)
def _all_zones() -> tuple[str, ...]:
    return tuple(sorted(available_timezones()))


@lru_cache(maxsize=256)
def zones_at(moment: datetime, at: str) -> tuple[str, ...]:
    """The IANA zones whose wall clock shows ``at`` (``HH:MM``) at ``moment``, to the minute.

    A zone whose ``at`` does not exist that day (a spring-forward gap) counts at the moment
    the wall clock jumps past it, as ``wait_until`` does. Remembered (about 80 ms over the
    ~600 zones): every page of an occurrence asks again."""
    hour, minute = (int(part) for part in at.split(":"))
    instant = moment.astimezone(UTC).replace(second=0, microsecond=0)
    found = []
    for name in _all_zones():
        tz = zone(name)
        today = instant.astimezone(tz).date()
        if datetime.combine(today, time(hour, minute), tzinfo=tz).astimezone(UTC) == instant:
            found.append(name)
    return tuple(found)


def profile_value(profile: dict[str, Any], path: str) -> Any:
    """The value at ``path`` (``traits.birthday``) in a profile as expressions see it; ``None``
    when any part is missing."""
    value: Any = profile
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def occurrence_day(moment: datetime, tz: ZoneInfo) -> date:
    """The customer's local date at an occurrence: the day of their run's id."""
    return moment.astimezone(tz).date()


def date_tag(day: date) -> str:
    """The part of a date run's workflow id that names the customer's local date."""
    return "d" + day.strftime("%Y%m%d")


def next_occurrence(after: datetime, at: str) -> datetime:
    """The first quarter-hour occurrence at or after ``after`` at which some zone shows ``at``
    (for ``touchpoint audience``: who would enter next)."""
    moment = after.astimezone(UTC).replace(second=0, microsecond=0)
    moment += timedelta(minutes=(-moment.minute) % 15)
    for _ in range(4 * 24 + 1):
        if zones_at(moment, at):
            return moment
        moment += timedelta(minutes=15)
    raise ValueError(f"no time zone shows {at} within a day")  # pragma: no cover
