"""Withdrawing marketing consent: record it, then end the customer's running marketing runs.

Runs are found by the hashed customer id in their search attributes; each gets the
``unsubscribed`` signal, which a marketing run answers by exiting (reason ``unsubscribed``) and a
transactional run ignores. Sends check the record again just before delivering, so a run that
starts later, or a message already on its way to a worker, is skipped too.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from store.consent import ConsentStore
from workflows.models import CancelRequest, customer_hash
from workflows.search import CUSTOMER


@dataclass
class Unsubscriber:
    client: Client
    consent: ConsentStore

    async def withdraw(self, customer_id: str, reason: str, status: str = "unsubscribed") -> int:
        """Record the withdrawal and signal running runs; returns how many runs were told."""
        await asyncio.to_thread(self.consent.withdraw, customer_id, reason, status)
        query = f"{CUSTOMER.name} = '{customer_hash(customer_id)}' AND ExecutionStatus = 'Running'"
        told = 0
        async for run in self.client.list_workflows(query):
            try:
                await self.client.get_workflow_handle(run.id).signal(
                    "unsubscribed", CancelRequest(reason=reason)
                )
                told += 1
            except RPCError as error:
                if error.status != RPCStatusCode.NOT_FOUND:  # finished meanwhile: fine
                    raise
        return told
