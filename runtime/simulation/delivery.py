"""Delivery for simulations: everything the worker does — consent, addresses, unsubscribe
headers, rendering in the sandbox, the ledger — except the last hop to a provider, which a
recorder takes instead. Lookups are answered from a fixtures file. Nothing leaves the machine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine
from temporalio import activity

from activities.delivery import DeliveryActivities
from activities.errors import permanent
from activities.messages import OutgoingEmail, RenderedMessage
from activities.rendering import Renderer
from store.ingestion import ConsentStore
from store.ledger import Ledger
from workflows.language.project import ProjectConfig, WebhookDestination
from workflows.models import LookupRequest, LookupResult, SendRequest, SendResult

SIMULATION_SECRET = b"touchpoint-simulation"  # signs the unsubscribe links simulations render


class RecordingRenderer(Renderer):
    """The real renderer, keeping what it rendered for each message."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rendered: dict[str, RenderedMessage] = {}

    def render(
        self, request: SendRequest, *, unsubscribe_url: str | None = None
    ) -> RenderedMessage:
        message = super().render(request, unsubscribe_url=unsubscribe_url)
        self.rendered[request.message_id] = message
        return message


@dataclass
class Outbox:
    """Takes the place of the email provider."""

    name: str = "simulation"
    emails: dict[str, OutgoingEmail] = field(default_factory=dict)

    async def send(self, email: OutgoingEmail) -> str | None:
        self.emails[email.message_id] = email
        return f"sim-{email.message_id}"


async def _no_network(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError(f"simulations do not reach the network ({request.url.host})")


class SimulatedDelivery(DeliveryActivities):
    lookup_answers: Mapping[str, Any]
    delivered: dict[str, RenderedMessage]  # what was sent, by message id

    @classmethod
    def create(
        cls,
        config: ProjectConfig,
        root: Path,
        engine: Engine,
        lookups: Mapping[str, Any],
        journey_names: Mapping[str, str] | None = None,
    ) -> SimulatedDelivery:
        renderer = RecordingRenderer.for_project(root, config, journey_names)
        delivery = cls(
            config=config,
            ledger=Ledger(engine),
            renderer=renderer,
            email=Outbox(),
            http=httpx.AsyncClient(transport=httpx.MockTransport(_no_network)),
            unsubscribe_secret=SIMULATION_SECRET,
            environ={},
            consent=ConsentStore(engine),
        )
        delivery.lookup_answers = dict(lookups)
        delivery.delivered = {}
        return delivery

    @activity.defn(name="send_email")
    async def send_email(self, request: SendRequest) -> SendResult:
        return self._keep(request, await super().send_email(request))

    @activity.defn(name="send_webhook")
    async def send_webhook(self, request: SendRequest) -> SendResult:
        return self._keep(request, await super().send_webhook(request))

    @activity.defn(name="send_chat")
    async def send_chat(self, request: SendRequest) -> SendResult:
        return self._keep(request, await super().send_chat(request))

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

    # --- the last hop, recorded --------------------------------------------------------------

    async def _webhook(self, request: SendRequest) -> SendResult:
        if not isinstance(self._destination(request), WebhookDestination):
            raise permanent(
                f"{request.destination!r} is not a webhook destination", "Misconfigured"
            )
        self.renderer.render(request)
        return SendResult(message_id=request.message_id, to=request.destination)

    async def _chat(self, request: SendRequest) -> SendResult:
        destination = self._destination(request)
        if destination.type not in ("slack", "teams", "telegram"):
            raise permanent(f"{request.destination!r} is not a chat destination", "Misconfigured")
        self.renderer.render(request)
        return SendResult(message_id=request.message_id, to=request.destination)

    def _keep(self, request: SendRequest, result: SendResult) -> SendResult:
        assert isinstance(self.renderer, RecordingRenderer)
        rendered = self.renderer.rendered.get(request.message_id)
        if result.status == "sent" and rendered is not None:
            self.delivered[request.message_id] = rendered
        return result
