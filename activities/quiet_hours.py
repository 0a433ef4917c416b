"""Quiet hours in the customer's local time: is a moment inside a window, and when does it end.

A window is ``[from, to)`` on the wall clock of the customer's zone: a message at exactly
``to`` goes, one at ``from`` is held. ``from`` later than ``to`` runs over midnight and belongs
to the day it starts on (``days: [fri]`` with 21:00–08:00 holds Friday night until Saturday
08:00). Without ``from``/``to`` a window is the whole of each listed day.

Daylight saving: a wall time that never shows (inside the spring-forward gap) means the first
instant after the gap; a wall time shown twice (the fall-back overlap) means its first
occurrence. Windows that touch (Saturday and Sunday, whole days) are one window.

Pure functions of their arguments.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from workflows.policy_models import QuietRule

_MAX_JOINED = 14  # touching windows joined into one (a fortnight of whole days)


def quiet_until(now: datetime, zone: ZoneInfo, rule: QuietRule) -> datetime | None:
    """The end of the ``rule``'s window that holds ``now`` (an aware moment, in UTC), or
    ``None`` when ``now`` is outside every window."""
    end = _window_end(now, zone, rule)
    if end is None:
        return None
    for _ in range(_MAX_JOINED):  # a window that ends where the next begins: one window
        joined = _window_end(end, zone, rule)
        if joined is None:
            break
        end = joined
    return end


def _window_end(moment: datetime, zone: ZoneInfo, rule: QuietRule) -> datetime | None:
    today = moment.astimezone(zone).date()
    for day in (today - timedelta(days=1), today):  # a window over midnight began yesterday
        if day.weekday() not in rule.days:
            continue
        start, end = _window(day, zone, rule)
        if start <= moment < end:
            return end
    return None


def _window(day: date, zone: ZoneInfo, rule: QuietRule) -> tuple[datetime, datetime]:
    """The window that starts on ``day``, as two moments in UTC."""
    if rule.start is None or rule.end is None:
        return wall_time(day, "00:00", zone), wall_time(day + timedelta(days=1), "00:00", zone)
    ends_on = day + timedelta(days=1) if rule.start > rule.end else day
    return wall_time(day, rule.start, zone), wall_time(ends_on, rule.end, zone)


def wall_time(day: date, hhmm: str, zone: ZoneInfo) -> datetime:
    """The first instant (in UTC) at which the wall clock in ``zone`` shows ``hhmm`` on ``day``
    or later: inside a spring-forward gap, the end of the gap; in a fall-back overlap, the first
    of the two."""
    hour, minute = (int(part) for part in hhmm.split(":"))
    local = datetime.combine(day, time(hour, minute), tzinfo=zone)
    first = local.astimezone(UTC)  # fold=0: the earlier reading, the offset before a change
    if first.astimezone(zone).replace(tzinfo=None) == local.replace(tzinfo=None):
        return first
    # Not a wall time at all (the gap): the clock jumped over it. Find the jump between the
    # reading with the offset after the change and the one with the offset before it.
    low = int(min(first, local.replace(fold=1).astimezone(UTC)).timestamp())
    high = int(first.timestamp())
    after = first.astimezone(zone).utcoffset()
    while high - low > 1:  # whole seconds: zones change their offset on a second
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, UTC).astimezone(zone).utcoffset() == after:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def describe_end(end: datetime, now: datetime, zone: ZoneInfo) -> str:
    """``08:00 Europe/Berlin``; with the weekday when the end is a day or more away."""
    local = end.astimezone(zone)
    shown = local.strftime("%H:%M")
    if end - now >= timedelta(days=1):
        shown = f"{local.strftime('%a')} {shown}"
    return f"{shown} {zone.key}"
