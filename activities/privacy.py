"""The activities of the erasure and retention workflows (``workflows/privacy.py``).

Each is idempotent: run again after a crash, it finds less to do and does it. They log hashes
and counts, never a customer id or an address.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from temporalio import activity
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from activities.email import maildir
from activities.errors import permanent
from config.project import ProjectConfig, RetentionSettings
from store.erasure import ErasureStore
from store.event_log import EventLog
from store.ledger import Ledger
from store.processed import ProcessedMessages
from workflows.models import JourneyInput, customer_hash
from workflows.privacy_models import (
    APPLY_RETENTION,
    BEGIN_ERASURE,
    COMPLETE_ERASURE,
    ERASE_MESSAGES,
    ERASE_PROFILE,
    ERASE_RUNS,
    ErasureRequest,
    ErasureSubjects,
    RetentionRequest,
    RetentionResult,
    erasure_cancel,
)
from workflows.search import CUSTOMER

log = logging.getLogger("touchpoint.privacy")

DELETE_ATTEMPTS = 12  # each followed by 10 s of checking that it is gone
END_WAIT_SECONDS = 10.0  # how long a running run gets to end on the signal before deletion


async def delete_execution(
    client: Client,
    workflow_id: str,
    run_id: str | None,
    beat: Callable[[], None] = lambda: None,
) -> int:
    """Delete an execution and see it gone (describing it says "not found"); 1 if this call
    deleted it, 0 if it was gone already. The server deletes asynchronously — seconds, more
    on a busy one — and is asked again while it has not; ``beat`` is called while waiting."""
    request = DeleteWorkflowExecutionRequest(
        namespace=client.namespace,
        workflow_execution=WorkflowExecution(workflow_id=workflow_id, run_id=run_id or ""),
    )
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    for _ in range(DELETE_ATTEMPTS):
        try:
            await client.workflow_service.delete_workflow_execution(request)
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:  # deleted by an earlier attempt
                return 0
            raise
        for _ in range(20):
            beat()
            try:
                await handle.describe()
            except RPCError as error:
                if error.status == RPCStatusCode.NOT_FOUND:
                    return 1
                raise
            await asyncio.sleep(0.5)
    raise RuntimeError(f"the server has not deleted {workflow_id} ({run_id}) yet")


def outbox_of(config: ProjectConfig, root: Path) -> Path | None:
    """The project's Maildir outbox, when it mails into one."""
    return root / config.email.maildir.path if config.email.provider == "maildir" else None


@dataclass
class PrivacyActivities:
    client: Client
    engine: Engine
    key: bytes | None  # TOUCHPOINT_ERASURE_SECRET; none: erasure refuses, retention works
    outbox: Path | None = None  # the Maildir outbox, where the project mails into one
    retention: RetentionSettings | None = None

    @property
    def erasures(self) -> ErasureStore:
        if self.key is None:
            raise permanent(
                "TOUCHPOINT_ERASURE_SECRET is not set on the worker: an erasure keeps keyed "
                "hashes and needs the key",
                "Misconfigured",
            )
        return ErasureStore(self.engine, self.key)

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.begin_erasure,
            self.erase_runs,
            self.erase_messages,
            self.erase_profile,
            self.complete_erasure,
            self.apply_retention,
        ]

    # --- erasure ----------------------------------------------------------------------------

    @activity.defn(name=BEGIN_ERASURE)
    async def begin_erasure(self, request: ErasureRequest) -> ErasureSubjects:
        """Audit the request, find whom it concerns, and keep their addresses as hashes."""
        store = self.erasures

        def begin() -> ErasureSubjects:
            record = store.begin(request.customer_id, request.request_id, request.actor)
            ids = store.identities(request.customer_id)
            addresses = store.addresses(ids)
            store.keep_addresses(addresses)
            return ErasureSubjects(customer=record.customer, ids=ids, addresses=addresses)

        subjects = await asyncio.to_thread(begin)
        log.info("erasure %s: %d id(s), %d address(es)", subjects.customer[:16],
                 len(subjects.ids), len(subjects.addresses))  # fmt: skip
        return subjects

    @activity.defn(name=ERASE_RUNS)
    async def erase_runs(self, subjects: ErasureSubjects) -> int:
        """End the customer's running runs (the ``cancel`` signal, flagged ``erased``: they end
        as ``erased``), delete every execution of theirs (running or closed), and their journey
        entries."""
        store = self.erasures
        hashes = ", ".join(f"'{customer_hash(i)}'" for i in subjects.ids)
        query = f"WorkflowType = 'JourneyWorkflow' AND {CUSTOMER.name} IN ({hashes})"
        done: set[tuple[str, str]] = set()
        deleted = 0
        while True:  # again until a listing shows nothing new: visibility may lag a start
            runs = [
                r async for r in self.client.list_workflows(query) if (r.id, r.run_id) not in done
            ]
            if not runs:
                break
            for run in runs:
                activity.heartbeat(len(done))
                started = await self._input(run.id, run.run_id)
                if started is not None and started.key is not None:
                    subject = customer_hash(f"{started.customer_id}\x00{started.key}")
                    await asyncio.to_thread(store.delete_entries, [subject])
                if run.status == WorkflowExecutionStatus.RUNNING:
                    await self._end(run.id, run.run_id)
                deleted += await self._delete(run.id, run.run_id)
                done.add((run.id, run.run_id))
        await asyncio.to_thread(store.delete_entries, [customer_hash(i) for i in subjects.ids])
        log.info("erasure %s: %d run(s) deleted", subjects.customer[:16], deleted)
        return deleted

    async def _input(self, workflow_id: str, run_id: str) -> JourneyInput | None:
        """The run's input (whose key names its journey entry), or ``None`` if it is gone."""
        handle = self.client.get_workflow_handle(workflow_id, run_id=run_id)
        try:
            async for event in handle.fetch_history_events():
                payloads = event.workflow_execution_started_event_attributes.input.payloads
                [found] = await self.client.data_converter.decode(payloads, [JourneyInput])
                return found if isinstance(found, JourneyInput) else None
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
        return None

    async def _end(self, workflow_id: str, run_id: str) -> None:
        handle = self.client.get_workflow_handle(workflow_id, run_id=run_id)
        try:
            await handle.signal("cancel", erasure_cancel())
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:  # ended meanwhile
                raise
            return
        with contextlib.suppress(Exception):  # whatever the end: the deletion follows
            await asyncio.wait_for(handle.result(), END_WAIT_SECONDS)

    async def _delete(self, workflow_id: str, run_id: str) -> int:
        return await delete_execution(self.client, workflow_id, run_id, activity.heartbeat)

    @activity.defn(name=ERASE_MESSAGES)
    async def erase_messages(self, subjects: ErasureSubjects) -> int:
        """Delete the customer's messages from the outbox, then anonymise their ledger rows."""
        store = self.erasures

        def erase() -> int:
            ids = store.ledger_messages([customer_hash(i) for i in subjects.ids])
            if self.outbox is not None:
                for message_id in ids:
                    maildir.remove(self.outbox, message_id)
            return store.anonymise_ledger(ids)

        changed = await asyncio.to_thread(erase)
        log.info("erasure %s: %d ledger row(s) anonymised", subjects.customer[:16], changed)
        return changed

    @activity.defn(name=ERASE_PROFILE)
    async def erase_profile(self, subjects: ErasureSubjects) -> int:
        """Delete the profiles, consent records and topic choices, event log rows, aliases and
        plain suppressions."""
        store = self.erasures
        await asyncio.to_thread(store.delete_customer, subjects.ids, subjects.addresses)
        return len(subjects.ids)

    @activity.defn(name=COMPLETE_ERASURE)
    async def complete_erasure(self, subjects: ErasureSubjects) -> int:
        await asyncio.to_thread(self.erasures.complete, subjects.customer)
        log.info("erasure %s: complete", subjects.customer[:16])
        return 0

    # --- retention ----------------------------------------------------------------------------

    @activity.defn(name=APPLY_RETENTION)
    async def apply_retention(self, request: RetentionRequest) -> RetentionResult:
        """Delete processed message ids, ledger rows, event log rows and outbox files older
        than configured."""
        settings = self.retention or RetentionSettings()
        now = datetime.now(UTC)

        def apply() -> RetentionResult:
            processed = ProcessedMessages(self.engine).purge(
                now, keep=timedelta(hours=settings.processed_ids_hours)
            )
            ledger = Ledger(self.engine).purge(now - timedelta(days=settings.ledger_days))
            logged = EventLog(self.engine).purge(now - timedelta(days=settings.event_log_days))
            outbox = 0
            if self.outbox is not None:
                outbox = maildir.purge(self.outbox, now - timedelta(days=settings.outbox_days))
            return RetentionResult(
                processed_ids=processed,
                ledger_rows=ledger,
                outbox_files=outbox,
                event_log_rows=logged,
            )

        result = await asyncio.to_thread(apply)
        log.info(
            "retention: %d processed id(s), %d ledger row(s), %d event log row(s), "
            "%d outbox file(s) deleted",
            result.processed_ids,
            result.ledger_rows,
            result.event_log_rows,
            result.outbox_files,
        )
        return result
