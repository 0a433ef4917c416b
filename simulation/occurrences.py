"""When a scheduled journey goes out: the occurrences of its schedule in a window.

The moments the journey's Temporal Schedule (:func:`ops.broadcasts.broadcast_schedule`) fires
at, computed here so that ``touchpoint simulate`` and journey tests need no server schedule:

* ``every: monday 09:00`` is those weekdays at that time; ``cron`` is its five fields, every
  one of which must match (Temporal reads a cron string as a calendar: a day of month *and* a
  day of week, where classic cron takes either).
* Times are wall-clock times in the schedule's time zone, so 09:00 stays 09:00 across daylight
  saving. As on Temporal (checked against its dev server in the tests): a time the clocks skip
  (02:30 the night they go forward) does not occur that day; a time that happens twice (the
  night they go back) occurs once, the second time (in winter time).
* ``start`` and ``end`` bound the occurrences as they bound the Temporal Schedule (a date: its
  midnight; an end date: the whole day).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from language.schedules import CRON_FIELDS, CRON_NAMES
from ops.broadcasts import schedule_bound
from workflows.plan import ScheduleRule

CRON_SHORTCUTS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
DAY_OF_WEEK = 4  # the cron field whose 0 and 7 are Sunday


@dataclass(frozen=True)
class Calendar:
    """The wall-clock times a schedule matches; ``None``: any day of month / of week."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int] | None
    months: frozenset[int] | None
    weekdays: frozenset[int] | None  # 0 = Monday

    def matches(self, day: date) -> bool:
        return (
            (self.days is None or day.day in self.days)
            and (self.months is None or day.month in self.months)
            and (self.weekdays is None or day.weekday() in self.weekdays)
        )


def calendar_of(rule: ScheduleRule) -> Calendar:
    """The calendar of an ``every`` or ``cron`` schedule (as the compiler checked it)."""
    if rule.cron is None:
        if rule.weekdays is None or rule.time is None:
            raise ValueError("a schedule needs cron, or weekdays and a time")
        hour, minute = (int(part) for part in rule.time.split(":"))
        return Calendar(
            frozenset({minute}), frozenset({hour}), None, None, frozenset(rule.weekdays)
        )
    text = CRON_SHORTCUTS.get(rule.cron.strip().lower(), rule.cron)
    fields = [_cron_field(text, index) for index in range(len(CRON_FIELDS))]
    minutes, hours, days, months, weekdays = fields
    return Calendar(
        minutes=minutes or frozenset(range(60)),
        hours=hours or frozenset(range(24)),
        days=days,
        months=months,
        weekdays=None if weekdays is None else frozenset((d - 1) % 7 for d in weekdays),
    )


def _cron_field(text: str, index: int) -> frozenset[int] | None:
    """The values of cron field ``index`` (``None`` for a bare ``*``)."""
    source = text.split()[index].lower()
    if source == "*":
        return None
    _, low, high = CRON_FIELDS[index]
    if index == DAY_OF_WEEK:
        high = 6  # 7 is Sunday, like 0: a range up to 7 wraps to 0 below
    names = CRON_NAMES.get(index, {})
    values: set[int] = set()
    for item in source.split(","):
        span, _, step_text = item.partition("/")
        step = int(step_text) if step_text else 1
        if span == "*":
            first, last = low, high
        else:
            first_text, _, last_text = span.partition("-")
            first = _cron_value(first_text, names)
            last = _cron_value(last_text, names) if last_text else (high if step_text else first)
        values.update(range(first, last + 1, step))
    if index == DAY_OF_WEEK:
        return frozenset(value % 7 for value in values)
    return frozenset(values)


def _cron_value(text: str, names: dict[str, int]) -> int:
    return names[text] if text in names else int(text)


def occurrences(rule: ScheduleRule, start: datetime, end: datetime) -> list[datetime]:
    """Every occurrence of ``rule`` from ``start`` to ``end`` (both included), in time order,
    in UTC; none outside the schedule's own ``start``/``end``."""
    zone = ZoneInfo(rule.timezone)
    begin, finish = start.astimezone(UTC), end.astimezone(UTC)
    first = schedule_bound(rule.start, zone, end=False)
    last = schedule_bound(rule.end, zone, end=True)
    if first is not None:
        begin = max(begin, first.astimezone(UTC))
    if last is not None:
        finish = min(finish, last.astimezone(UTC))
    calendar = calendar_of(rule)
    found: set[datetime] = set()
    day = begin.astimezone(zone).date() - timedelta(days=1)
    while day <= finish.astimezone(zone).date() + timedelta(days=1):
        if calendar.matches(day):
            for hour in calendar.hours:
                for minute in calendar.minutes:
                    moment = wall_clock(day, hour, minute, zone)
                    if moment is not None and begin <= moment <= finish:
                        found.add(moment)
        day += timedelta(days=1)
    return sorted(found)


def wall_clock(day: date, hour: int, minute: int, zone: ZoneInfo) -> datetime | None:
    """``day hour:minute`` on the clocks of ``zone``, in UTC; ``None`` if the clocks skip it,
    the second one if they show it twice (``fold=1``), as Temporal's calendar does."""
    local = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone, fold=1)
    moment = local.astimezone(UTC)
    shown = moment.astimezone(zone)
    return moment if (shown.hour, shown.minute) == (hour, minute) else None


def is_occurrence(rule: ScheduleRule, moment: datetime) -> bool:
    """Does ``rule`` fire at exactly ``moment`` (to the minute)?"""
    at = moment.astimezone(UTC).replace(second=0, microsecond=0)
    return at in occurrences(rule, at, at)


def nearest(rule: ScheduleRule, moment: datetime, around: timedelta) -> list[datetime]:
    """The last occurrence before ``moment`` and the first after it, within ``around``: what
    an error about a moment that is not an occurrence suggests instead."""
    found = occurrences(rule, moment - around, moment + around)
    before = [at for at in found if at < moment][-1:]
    after = [at for at in found if at > moment][:1]
    return before + after
