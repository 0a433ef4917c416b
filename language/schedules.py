"""The schedule of a scheduled journey (a broadcast), as a marketer writes it.

* ``every: monday 09:00`` — days, then a time of day on the 24-hour clock. Days are a weekday
  (``monday`` or ``mon``), several (``mon, thu``), ``day`` (every day), ``weekday`` (Monday to
  Friday) or ``weekend``; ``at`` between days and time is allowed (``every: friday at 17:30``).
* ``cron: "0 9 * * MON"`` — the five classic fields (minute, hour, day of month, month, day of
  week), with ``*``, ``a-b``, ``*/n``, lists and English names; or ``@daily``, ``@weekly`` …
* ``rate: 50/s`` (or ``/m``) — how fast one occurrence starts runs.

Each parser raises ``ValueError`` with a sentence that says what is wrong and how it should
look; the field types of :mod:`language.authoring` turn it into a positioned problem.
"""

from __future__ import annotations

import re

from language.fields import TIME_PATTERN
from workflows.plan import DateRule, ScheduleRule

DAY_NAMES = {
    "monday": 0,
    "tuesday": 1,
    "wednesday": 2,
    "thursday": 3,
    "friday": 4,
    "saturday": 5,
    "sunday": 6,
}
DAY_GROUPS = {
    "day": (0, 1, 2, 3, 4, 5, 6),
    "daily": (0, 1, 2, 3, 4, 5, 6),
    "weekday": (0, 1, 2, 3, 4),
    "weekend": (5, 6),
}
DAY_WORDS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
EVERY_EXAMPLE = '"monday 09:00", "mon, thu 18:30", "day 08:00" or "weekday 07:45"'
CRON_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
CRON_NAMES = {
    3: {
        m: i + 1
        for i, m in enumerate(
            ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
        )
    },
    4: {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])},
}
CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_CRON_ITEM = re.compile(r"^(\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/([0-9]+))?$")
_RATE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*/\s*(s|m|second|minute)\s*$")


def _day(word: str) -> tuple[int, ...]:
    word = word.strip().lower()
    if word in DAY_GROUPS:
        return DAY_GROUPS[word]
    plural = word[:-1] if word.endswith("s") and word[:-1] in DAY_NAMES else word
    for name, number in DAY_NAMES.items():
        if plural == name or plural == name[:3]:
            return (number,)
    near = [name for name in DAY_NAMES if name.startswith(plural[:2])] if plural else []
    hint = f' (did you mean "{near[0]}"?)' if len(near) == 1 else ""
    raise ValueError(f'"{word}" is not a day{hint}: write {EVERY_EXAMPLE}')


def parse_every(text: str) -> tuple[tuple[int, ...], str]:
    """``(weekdays with 0 = Monday, "HH:MM")`` for an ``every`` setting."""
    words = text.replace(",", " , ").split()
    if len(words) < 2:
        raise ValueError(f'expected days and a time of day, like {EVERY_EXAMPLE}, got "{text}"')
    clock = words[-1]
    days_words = words[:-1]
    if days_words and days_words[-1].lower() == "at":
        days_words = days_words[:-1]
    if not re.fullmatch(TIME_PATTERN, clock):
        raise ValueError(
            f'"{clock}" is not a time of day: write hours 0-23 and minutes on the 24-hour '
            f'clock, e.g. "every: monday 09:00"'
        )
    days: set[int] = set()
    for word in " ".join(days_words).split(","):
        for part in word.split():
            if part.lower() in ("and", "every", "on"):
                continue
            days.update(_day(part))
    if not days:
        raise ValueError(f'"{text}" names no day: write {EVERY_EXAMPLE}')
    hour, minute = clock.split(":")
    return tuple(sorted(days)), f"{int(hour):02d}:{minute}"


def check_cron(text: str) -> str:
    """``text`` if it is a cron expression Temporal takes, else ``ValueError`` naming the field."""
    source = text.strip()
    if source.startswith("@"):
        if source.lower() in CRON_MACROS:
            return source
        raise ValueError(f'unknown cron shortcut "{source}": use one of {", ".join(CRON_MACROS)}')
    fields = source.split()
    if len(fields) != 5:
        raise ValueError(
            f"a cron expression has 5 fields (minute hour day-of-month month day-of-week), "
            f'got {len(fields)} in "{source}"; e.g. "0 9 * * MON" is Mondays at 09:00'
        )
    for index, (field, (name, low, high)) in enumerate(zip(fields, CRON_FIELDS, strict=True)):
        for item in field.lower().split(","):
            _check_cron_item(item, index, name, low, high)
    return source


def _check_cron_item(item: str, index: int, name: str, low: int, high: int) -> None:
    match = _CRON_ITEM.fullmatch(item)
    if match is None:
        raise ValueError(
            f'cron field {index + 1} ({name}) "{item}" cannot be read: use *, a number, a '
            f"range a-b, a step */n, or a list a,b"
        )
    if match[2] is not None and int(match[2]) == 0:
        raise ValueError(f'cron field {index + 1} ({name}) "{item}": a step must be at least 1')
    if match[1] == "*":
        return
    numbers: list[int] = []
    for value in match[1].split("-"):
        if value.isdigit():
            number = int(value)
        elif value in CRON_NAMES.get(index, {}):
            number = CRON_NAMES[index][value]
        else:
            raise ValueError(f'cron field {index + 1} ({name}) "{value}" is not a {name}')
        if not low <= number <= high:
            raise ValueError(
                f'cron field {index + 1} ({name}) "{value}" is out of range: {low}-{high}'
            )
        numbers.append(number)
    if len(numbers) == 2 and numbers[1] < numbers[0]:
        raise ValueError(
            f'cron field {index + 1} ({name}) "{item}" ends before it starts (Temporal refuses '
            f'a range that wraps around): use a list instead, e.g. "sat,sun" or "22,23,0,1"'
        )


def parse_rate(text: str) -> float:
    """Starts per second for a ``rate`` setting like ``50/s`` or ``600/m``."""
    match = _RATE.fullmatch(str(text).lower())
    if match is None or float(match[1]) <= 0:
        raise ValueError(f'expected a start rate like "50/s" or "600/m", got "{text}"')
    per = 1.0 if match[2] in ("s", "second") else 60.0
    return float(match[1]) / per


def describe_schedule(rule: ScheduleRule) -> str:
    """``every Monday at 09:00 (Europe/Berlin)`` / ``cron "0 9 * * MON" (UTC)``, for people."""
    if rule.cron is not None:
        when = f'cron "{rule.cron}"'
    else:
        days = rule.weekdays or ()
        named = (
            "day"
            if len(days) == 7
            else "weekday"
            if days == (0, 1, 2, 3, 4)
            else ", ".join(DAY_WORDS[d] for d in days)
        )
        when = f"every {named} at {rule.time}"
    bounds = "".join(
        f", {word} {value}" for word, value in (("from", rule.start), ("until", rule.end)) if value
    )
    return f"{when} ({rule.timezone}{bounds})"


def describe_date(rule: DateRule) -> str:
    """``profile.traits.birthday every year, 1 day before, at 09:00 local time``, for people."""
    days = abs(rule.offset_days)
    side = "before" if rule.offset_days < 0 else "after"
    moved = "" if days == 0 else f", {days} day{'s' if days != 1 else ''} {side}"
    return (
        f"profile.{rule.path} {'every year' if rule.every == 'year' else 'once'}{moved}, at "
        f"{rule.time} local time (default {rule.timezone})"
    )
