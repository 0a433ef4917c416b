"""Runs' timelines for the customer page, from each run's ``state`` query.

Temporal is asked with a short timeout, and connected to only when a page needs it: the
dashboard starts, and its pages render, while Temporal is down ("timeline unavailable").
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

from temporalio.client import Client

from workflows.models import RunView

QUERY_SECONDS = 2.0
"""How long a page waits for Temporal: to connect, then for all of a customer's runs."""


class Timelines:
    def __init__(
        self, connect: Callable[[], Awaitable[Client]], seconds: float = QUERY_SECONDS
    ) -> None:
        self._connect = connect
        self._client: Client | None = None
        self._lock = asyncio.Lock()
        self.seconds = seconds

    async def of(self, workflow_ids: Sequence[str]) -> dict[str, RunView | None]:
        """Each run's view (``None``: Temporal did not answer in time, or the run has no
        worker to answer it)."""
        if not workflow_ids:
            return {}
        client = await self._client_or_none()
        if client is None:
            return dict.fromkeys(workflow_ids)
        views = await asyncio.gather(*(self._query(client, wid) for wid in workflow_ids))
        return dict(zip(workflow_ids, views, strict=True))

    async def _client_or_none(self) -> Client | None:
        async with self._lock:
            if self._client is None:
                try:
                    self._client = await asyncio.wait_for(self._connect(), self.seconds)
                except Exception:  # down, refused or slow: the page says so and renders
                    return None
            return self._client

    async def _query(self, client: Client, workflow_id: str) -> RunView | None:
        handle = client.get_workflow_handle(workflow_id)
        try:
            state = await asyncio.wait_for(
                handle.query("state", rpc_timeout=timedelta(seconds=self.seconds)),
                self.seconds + 0.5,
            )
            return RunView.model_validate(state)
        except Exception:  # no worker in time, a closed run nobody replays, a lost connection
            return None
