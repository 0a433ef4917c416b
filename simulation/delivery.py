"""Delivery for simulations: everything the worker does — the ledger, the policy chain,
addresses, unsubscribe headers, each channel's checks, rendering in the sandbox — except the
last hop to a provider, which is recorded instead. Lookups are answered from a fixtures file.
Nothing leaves the machine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine
from temporalio import activity

from activities.delivery import DeliveryActivities
from activities.errors import permanent
from activities.messages import OutgoingEmail, Prepared, RenderedMessage
from activities.rendering import Renderer
from activities.webhooks import WebhookPost, webhook_body
from config.project import ProjectConfig
from store.consent import ConsentStore
from store.ledger import Ledger
from store.suppressions import Suppressions
from workflows.channels import Channel
from workflows.models import LookupRequest, LookupResult

SIMULATION_SECRET = b"touchpoint-simulation"  # signs the unsubscribe links simulations render


@dataclass
class Outbox:
    """Takes the place of the email provider (never called: the last hop is recorded)."""

    name: str = "simulation"

    async def send(self, email: OutgoingEmail) -> str | None:  # pragma: no cover
        raise AssertionError("simulations record emails before the provider")


async def _no_network(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError(f"simulations do not reach the network ({request.url.host})")


class SimulatedDelivery(DeliveryActivities):
    """The production send path — ledger, policies, each channel's checks and rendering — with
    the last hop recorded instead of taken (:meth:`_hand_over`)."""

    lookup_answers: Mapping[str, Any]
    delivered: dict[str, RenderedMessage]  # what was sent, by message id
    bodies: dict[str, str]  # webhooks: the body the receiver would get, by message id

    @classmethod
    def create(
        cls,
        config: ProjectConfig,
        root: Path,
        engine: Engine,
        lookups: Mapping[str, Any],
        journey_names: Mapping[str, str] | None = None,
    ) -> SimulatedDelivery:
        delivery = cls(
            config=config,
            ledger=Ledger(engine),
            renderer=Renderer.for_project(root, config, journey_names),
            email=Outbox(),
            http=httpx.AsyncClient(transport=httpx.MockTransport(_no_network)),
            unsubscribe_secret=SIMULATION_SECRET,
            environ={},
            consent=ConsentStore(engine),
            suppressions=Suppressions(engine),  # none, unless a replay brings today's
        )
        delivery.lookup_answers = dict(lookups)
        delivery.delivered = {}
        delivery.bodies = {}
        return delivery

    async def _hand_over(self, channel: Channel, prepared: Prepared) -> str | None:
        message_id = prepared.request.message_id
        self.delivered[message_id] = prepared.rendered
        if isinstance(prepared.payload, WebhookPost):  # the JSON text the receiver would get
            post = prepared.payload
            at = post.occurred_at or datetime.now(UTC)
            self.bodies[message_id] = webhook_body(post.event_type, post.data, at).decode()
        return f"sim-{message_id}"

    def env(self, value: str) -> str:
        """Secrets are not needed where nothing is sent: ``${VAR}`` stays as written."""
        return value

    @activity.defn(name="lookup")
    async def lookup(self, request: LookupRequest) -> LookupResult:
        if request.connection not in self.config.connections:
            raise permanent(f"unknown connection {request.connection!r}", "Misconfigured")
        for key in (f"{request.connection} {request.path}", request.connection):
            if key in self.lookup_answers:
                return LookupResult(data=self.lookup_answers[key])
        raise permanent(
            f"no answer for lookup {request.connection} {request.path}: add "
            f'"{request.connection} {request.path}": … to the lookups file',
            "NoFixture",
        )

    async def close(self) -> None:
        await self.http.aclose()
