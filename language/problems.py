"""Problems found in a marketer's files, and how they read.

A problem reads ``file:line:col: path: message (hint: …)`` — the shape editors and CI
annotators understand — and sorts by file, then line, then column.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

PathPart = str | int
Path = tuple[PathPart, ...]


@dataclass(frozen=True, order=True)
class Problem:
    file: str
    line: int
    column: int
    path: str
    message: str
    hint: str | None = None

    def format(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}:"
        text = f"{where} {self.path}: {self.message}" if self.path else f"{where} {self.message}"
        return f"{text} (hint: {self.hint})" if self.hint else text

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def format_path(path: Path) -> str:
    """``("steps", 2, "wait")`` → ``steps[2].wait``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """The closest candidate to a near-miss ``word``, if one is close enough."""
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def suggestion(word: str, candidates: Iterable[str]) -> str:
    """`` did you mean "x"?`` or an empty string."""
    match = did_you_mean(word, candidates)
    return f'; did you mean "{match}"?' if match else ""


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
