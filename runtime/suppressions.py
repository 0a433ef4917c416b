"""Address suppressions from the outside world: SendGrid's feedback, and what the
``touchpoint suppressions`` commands open and print."""

from __future__ import annotations

import logging
from pathlib import Path

from activities.sendgrid_events import FeedbackEvent
from runtime.settings import load_settings
from store.database import connect
from store.suppressions import Suppressions
from workflows.language.project import ProjectConfig
from workflows.language.validator import CONFIG_FILE, load_config

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
