"""Address suppressions from the outside world: SendGrid's feedback, and what the
``touchpoint suppressions`` commands open and print."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

from config.project import ProjectConfig
from config.settings import load_settings
from ingestion.sendgrid_events import FeedbackEvent
from language.validator import CONFIG_FILE, load_config
from store.database import connect
from store.suppressions import AuditEntry, Suppression, Suppressions

log = logging.getLogger("touchpoint.suppressions")


class ConfigProblem(Exception):
    """``touchpoint.yaml`` cannot be read, so it is unclear which store is meant."""


def record_sendgrid_feedback(suppressions: Suppressions, feedback: FeedbackEvent) -> bool:
    """Suppress the address of a hard bounce or a spam report; ``True`` if it is newly
    suppressed. Other feedback (unsubscribes, blocked bounces, drops) changes nothing here.

    Blocking (SQL): call it in a thread from async code.
    """
    if not feedback.suppresses_address:
        return False
    try:
        return suppressions.add(
            feedback.email,
            feedback.reason or feedback.sendgrid_event,
            detail=feedback.detail,
            source="sendgrid",
            actor="sendgrid",
        )
    except ValueError as error:  # SendGrid reported something that is no address: nothing to do
        log.warning("SendGrid event %s not suppressed: %s", feedback.sg_event_id, error)
        return False


def open_suppressions(root: Path) -> Suppressions:
    """The suppressions in the project's store (``database_url``, or
    ``TOUCHPOINT_DATABASE_URL``). Only ``touchpoint.yaml`` is read: a broken journey must not
    keep support staff from lifting a suppression."""
    path = root / CONFIG_FILE
    config = ProjectConfig()
    if path.exists():
        config, problems = load_config(path)
        if problems:
            raise ConfigProblem(f"{CONFIG_FILE} has problems; run `touchpoint validate` first")
    return Suppressions(connect(load_settings(config).database_url))


def suppression_table(rows: list[Suppression]) -> list[str]:
    """``ADDRESS  REASON  SOURCE  SINCE`` and a line per suppression, in aligned columns;
    nothing at all when there are none."""
    if not rows:
        return []
    table = [("ADDRESS", "REASON", "SOURCE", "SINCE")] + [
        (row.address, row.reason, row.source, _when(row.since)) for row in rows
    ]
    widths = [max(len(line[column]) for line in table) for column in range(3)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(line[:3], widths, strict=True))
        + "  "
        + line[3]
        for line in table
    ]


def audit_trail(address: str, current: Suppression | None, history: list[AuditEntry]) -> list[str]:
    """Whether ``address`` is suppressed now, then every change: when, what, who, why."""
    if current is None:
        head = f"{address.strip().lower()}: not suppressed"
    else:
        detail = f": {current.detail}" if current.detail else ""
        head = (
            f"{current.address}: suppressed since {_when(current.since)} "
            f"({current.reason}{detail}; source {current.source})"
        )
    actor_width = max((len(entry.actor) for entry in history), default=0)
    return [head] + [
        f"{_when(entry.at)}  {entry.action:<7}  by {entry.actor.ljust(actor_width)}  "
        f"{entry.why or ''}".rstrip()
        for entry in history
    ]


def _when(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")
