"""``touchpoint events tail|count``: a look at the event log (:mod:`store.event_log`) — is it
filling, and with what."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from ops.stats import open_analytics
from store.event_log import EventLog, LoggedEvent


def open_event_log(root: Path) -> EventLog:
    """The project's event log; only ``touchpoint.yaml`` is read, as for ``touchpoint stats``."""
    return EventLog(open_analytics(root).engine)


def event_lines(events: Iterable[LoggedEvent]) -> list[list[str]]:
    """One row of columns per call: id, received, customer, kind, event, its data (cut short)."""
    rows = []
    for event in events:
        data = json.dumps(event.data, ensure_ascii=False, separators=(",", ":"), default=str)
        rows.append(
            [
                str(event.id),
                event.received_at.isoformat(timespec="seconds"),
                event.customer_id,
                event.kind,
                event.event or "-",
                (data if len(data) <= 60 else data[:59] + "…")
                + (" (truncated)" if event.truncated else ""),
            ]
        )
    return rows
