"""Durations as marketers write them (``90m``, ``12h``, ``3d``, ``2w``, ``1d12h``) and offsets."""

from __future__ import annotations

import re

UNIT_SECONDS = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
DURATION_PATTERN = r"^([0-9]+[wdhms])+$"
OFFSET_PATTERN = r"^[-+]?([0-9]+[wdhms])+$"
_PART = re.compile(r"([0-9]+)([wdhms])")
_DURATION = re.compile(DURATION_PATTERN)
_OFFSET = re.compile(OFFSET_PATTERN)
MAX_SECONDS = 10 * 365 * 86_400  # ten years: past that it is a typo, not a plan


def parse_duration(text: str) -> int:
    """Seconds in a positive duration; ``ValueError`` when it is not one."""
    if not _DURATION.fullmatch(text):
        raise ValueError(text)
    seconds = sum(int(n) * UNIT_SECONDS[unit] for n, unit in _PART.findall(text))
    if seconds <= 0 or seconds > MAX_SECONDS:
        raise ValueError(text)
    return seconds


def parse_offset(text: str) -> int:
    """Seconds in a signed offset such as ``-1d`` or ``+2h``."""
    if not _OFFSET.fullmatch(text):
        raise ValueError(text)
    sign = -1 if text.startswith("-") else 1
    seconds = sum(int(n) * UNIT_SECONDS[unit] for n, unit in _PART.findall(text))
    if seconds > MAX_SECONDS:
        raise ValueError(text)
    return sign * seconds


def format_duration(seconds: int) -> str:
    """The shortest marketer form: 93600 → ``1d2h``; a negative number keeps its sign."""
    if seconds == 0:
        return "0s"
    sign, rest, parts = ("-" if seconds < 0 else ""), abs(seconds), []
    for unit, size in UNIT_SECONDS.items():
        if unit == "w" and rest % size:
            continue  # weeks only when they are whole: "10d", not "1w3d"
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    return sign + "".join(parts)
