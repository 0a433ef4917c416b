"""``touchpoint forget CUSTOMER``: erase a customer (GDPR Art. 17), and what an API endpoint
calls to do the same (:func:`forget`).

The erasure is an :class:`workflows.privacy.ErasureWorkflow` run on the worker's privacy queue,
its workflow id ``erasure/<keyed hash of the customer id>``: a second request while one runs
joins it, a request after it ended runs it again (idempotent), and a run interrupted by a crash
resumes where it stopped. Its history holds the customer id (the activities need it), so once
it has completed its execution is deleted too; what stays is the audit row in the store.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from temporalio.client import Client, WorkflowFailureError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from activities.privacy import delete_execution
from config.errors import UserError
from config.settings import ERASURE_SECRET_ENV, Settings
from store.erasure import keyed_hash
from workflows.privacy_models import (
    ERASURE_WORKFLOW,
    PRIVACY_QUEUE,
    ErasureRequest,
    ErasureResult,
)

DEFAULT_TIMEOUT = timedelta(minutes=10)


class ErasureUnavailable(UserError):
    """The erasure cannot be run here (no key, no worker answering in time)."""


@dataclass(frozen=True)
class Erased:
    customer: str  # the keyed hash of the customer id, as the audit row has it
    runs: int  # journey executions deleted
    messages: int  # ledger rows anonymised
    request_id: str


def erasure_workflow_id(settings: Settings, customer_id: str) -> str:
    """``erasure/<keyed hash>``: the same for every request about one customer, no PII."""
    return f"erasure/{_key(settings, customer_id)[:32]}"


async def forget(
    client: Client,
    settings: Settings,
    customer_id: str,
    *,
    request_id: str,
    actor: str,
    timeout: timedelta = DEFAULT_TIMEOUT,
) -> Erased:
    """Erase ``customer_id`` and wait until it is done (idempotent: again is harmless).

    ``request_id``: the request's reference (a ticket, the API call's id) for the audit;
    ``actor``: who asked. :class:`ErasureUnavailable` when the key is not set or no worker
    completes the erasure within ``timeout`` (it goes on when a worker comes; run again).
    """
    customer_id = customer_id.strip()
    if not customer_id:
        raise UserError("name the customer to erase (their user id)")
    workflow_id = erasure_workflow_id(settings, customer_id)
    request = ErasureRequest(customer_id=customer_id, request_id=request_id, actor=actor)
    handle = await client.start_workflow(
        ERASURE_WORKFLOW,
        request,
        id=workflow_id,
        task_queue=settings.queue_prefix + PRIVACY_QUEUE,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    try:
        raw = await asyncio.wait_for(handle.result(), timeout.total_seconds())
    except TimeoutError:
        raise ErasureUnavailable(
            f"the erasure {workflow_id} did not complete within {timeout}; is a worker "
            "running (`touchpoint worker`)? It goes on when one is: run `touchpoint forget` "
            "again to wait for it"
        ) from None
    except WorkflowFailureError as error:
        raise ErasureUnavailable(f"the erasure {workflow_id} failed: {error.cause}") from None
    result = ErasureResult.model_validate(raw)
    await delete_execution(client, workflow_id, None)  # this run: visibility may not list it yet
    await delete_executions(client, workflow_id)
    return Erased(result.customer, result.runs, result.messages, request_id)


async def delete_executions(client: Client, workflow_id: str) -> int:
    """Delete every closed execution with ``workflow_id`` (their inputs name the customer)."""
    deleted = 0
    async for run in client.list_workflows(f"WorkflowId = '{workflow_id}'"):
        deleted += await delete_execution(client, run.id, run.run_id)
    return deleted


def require_key(settings: Settings) -> bytes:
    """The erasure key, or :class:`ErasureUnavailable` saying how to set it."""
    if settings.erasure_secret is None:
        raise ErasureUnavailable(
            f"set {ERASURE_SECRET_ENV} (at least 16 bytes, the same on the worker): an "
            "erasure keeps keyed hashes of the customer id and address"
        )
    return settings.erasure_secret


def _key(settings: Settings, customer_id: str) -> str:
    return keyed_hash(require_key(settings), "customer", customer_id)
