"""What the erasure and retention workflows pass to their activities and return.

Pure pydantic, passed through the workflow sandbox. Fields are only ever added, with defaults.
"""

from __future__ import annotations

from pydantic import Field

from workflows.models import CancelRequest, Model

PRIVACY_QUEUE = "touchpoint-privacy"
ERASURE_WORKFLOW = "ErasureWorkflow"
RETENTION_WORKFLOW = "RetentionWorkflow"
RETENTION_SCHEDULE = "touchpoint-retention"

BEGIN_ERASURE = "begin_erasure"
ERASE_RUNS = "erase_runs"
ERASE_MESSAGES = "erase_messages"
ERASE_PROFILE = "erase_profile"
COMPLETE_ERASURE = "complete_erasure"
APPLY_RETENTION = "apply_retention"
ERASURE_ACTIVITIES = (BEGIN_ERASURE, ERASE_RUNS, ERASE_MESSAGES, ERASE_PROFILE, COMPLETE_ERASURE)
PRIVACY_ACTIVITIES = (*ERASURE_ACTIVITIES, APPLY_RETENTION)

ERASED_REASON = "erased"  # the cancel reason: what a worker from before the outcome shows


def erasure_cancel() -> CancelRequest:
    """The ``cancel`` signal an erasure sends each running run of the customer: the run ends
    as ``erased`` and sends nothing more."""
    return CancelRequest(reason=ERASED_REASON, erased=True)


class ErasureRequest(Model):
    """Erase ``customer_id``. The erasure workflow's own history holds the id: ``touchpoint
    forget`` deletes the erasure workflow's execution once it has completed."""

    customer_id: str
    request_id: str
    actor: str


class ErasureSubjects(Model):
    """Whom the erasure concerns, as the store knows at its start."""

    customer: str  # keyed hash of the customer id: the audit row's key
    ids: list[str]  # the customer id and the anonymous ids linked to it
    addresses: list[str] = Field(default_factory=list)  # their email addresses, normalised


class ErasureResult(Model):
    customer: str  # keyed hash of the customer id
    runs: int = 0  # executions deleted (running ones ended first)
    messages: int = 0  # ledger rows anonymised (and their outbox files deleted)


class RetentionRequest(Model):
    pass


class RetentionResult(Model):
    processed_ids: int = 0
    ledger_rows: int = 0
    outbox_files: int = 0
    event_log_rows: int = 0
