"""When a ``wait_until`` ends: local times of day across daylight-saving changes, and dates.

Pure functions of their arguments (the workflow passes ``workflow.now()``); imported through
the sandbox so that ``zoneinfo`` is the real module.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


@lru_cache(maxsize=512)
def zone(name: str | None, fallback: str = "UTC") -> ZoneInfo:
    """The IANA zone ``name``, or ``fallback`` when it is missing or unknown."""
    for candidate in (name, fallback, "UTC"):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")  # pragma: no cover


def _local(day: date, hhmm: str, tz: ZoneInfo) -> datetime:
    """The moment the wall clock in ``tz`` shows ``hhmm`` on ``day``, in UTC.

    With ``fold=0`` a time inside the spring-forward gap (02:30 that never shows) moves forward
    by the gap (to 03:30), and a time shown twice in the autumn fold means the first one.
    """
    hour, minute = (int(part) for part in hhmm.split(":"))
    return datetime.combine(day, time(hour, minute), tzinfo=tz).astimezone(UTC)


def next_time_of_day(now: datetime, tz: ZoneInfo, hhmm: str, days: tuple[int, ...]) -> datetime:
    """The first moment strictly after ``now`` when it is ``hhmm`` in ``tz`` on an allowed day."""
    today = now.astimezone(tz).date()
    for offset in range(0, 15):
        day = today + timedelta(days=offset)
        if day.weekday() not in days:
            continue
        moment = _local(day, hhmm, tz)
        if moment > now:
            return moment
    raise ValueError(f"no allowed day in {days}")


def parse_iso(text: str) -> date | datetime:
    """ISO text as a date, or as a datetime when it has a time (``ValueError`` if neither)."""
    text = text.strip().replace("Z", "+00:00")
    return datetime.fromisoformat(text) if "T" in text or " " in text else date.fromisoformat(text)


def moment_from(
    value: Any,
    tz: ZoneInfo,
    offset_seconds: int = 0,
    hhmm: str | None = None,
    *,
    wall_clock: bool = True,
) -> datetime:
    """``value`` (a date, a datetime, or ISO text) plus an offset, optionally at a local time.

    A date without a time means local midnight; a datetime without a zone means local time.
    The offset moves the local wall clock (``+1d`` is the same time the next calendar day, even
    across a daylight-saving change). ``wall_clock=False`` is the first release's arithmetic
    (absolute seconds), kept for runs recorded before the fix.
    """
    if isinstance(value, str):
        try:
            value = parse_iso(value)
        except ValueError:
            shown = value if len(value) <= 40 else value[:37] + "..."
            raise ValueError(
                f"{shown!r} is not a date or time in ISO form (such as 2027-03-28 or "
                "2027-03-28T09:30:00+01:00)"
            ) from None
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=tz)
    elif isinstance(value, date):
        moment = datetime.combine(value, time(0, 0), tzinfo=tz)
    else:
        shown = repr(value)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise ValueError(f"expected a date or time, got {type(value).__name__} {shown}")
    try:
        if wall_clock:
            local = moment.astimezone(tz).replace(tzinfo=None) + timedelta(seconds=offset_seconds)
            if hhmm is not None:
                return _local(local.date(), hhmm, tz)
            return local.replace(tzinfo=tz).astimezone(UTC)
        moment = moment.astimezone(UTC) + timedelta(seconds=offset_seconds)
        if hhmm is not None:
            moment = _local(moment.astimezone(tz).date(), hhmm, tz)
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("the date moved by the offset is out of range") from None
