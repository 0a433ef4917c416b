"""SendGrid's signed Event Webhook, through the real API app, keeps every event about a message
for its journey's numbers: once per ``sg_event_id``, joined with the ledger by message id."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from ingestion.api import create_app
from store.analytics import Analytics
from store.keys import WriteKeys
from store.ledger import Ledger
from store.processed import ProcessedMessages
from store.profiles import ProfileStore
from store.suppressions import Suppressions
from tests.conftest import Routed, api_of

MESSAGE = "msg_0123456789abcdef0123456789abcdef"


def signed(key: ec.EllipticCurvePrivateKey, body: bytes) -> dict[str, str]:
    timestamp = str(int(time.time()))
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        "content-type": "application/json",
    }


def sendgrid_event(event_id: str, event: str, **more: object) -> dict[str, object]:
    return {
        "sg_event_id": event_id,
        "event": event,
        "email": "max@example.com",
        "timestamp": int(datetime.now(UTC).timestamp()),
        "touchpoint_message_id": MESSAGE,
        "journey": "welcome",
        "step": "hello",
        **more,
    }


async def test_every_event_about_a_message_is_kept_once(
    stores: tuple[ProfileStore, ProcessedMessages, WriteKeys],
) -> None:
    engine = stores[0].engine
    key = ec.generate_private_key(ec.SECP256R1())
    stores[0].upsert("max-1", {"email": "max@example.com"})
    ledger = Ledger(engine)
    ledger.claim(MESSAGE, "welcome", "hello", "email", "c-hash")
    ledger.mark(MESSAGE, "sent", provider="sendgrid", provider_id="sg-1")

    async def suppress(customer: str, reason: str) -> None:
        return None

    app = create_app(
        api_of(
            stores,
            Routed(),
            suppress=suppress,
            suppressions=Suppressions(engine),
            sendgrid_key=key.public_key(),
        )
    )
    events = [
        sendgrid_event("e1", "delivered"),
        sendgrid_event("e2", "open"),
        sendgrid_event("e3", "open"),
        sendgrid_event("e4", "click", url="https://shop.example/a"),
        sendgrid_event("e5", "bounce", type="blocked"),
        sendgrid_event("e6", "dropped"),
        sendgrid_event("e7", "spamreport"),
        sendgrid_event("e8", "group_unsubscribe", asm_group_id=7),
        sendgrid_event("e9", "unsubscribe"),
        {**sendgrid_event("e10", "open"), "touchpoint_message_id": None},  # not ours: no id
    ]
    body = json.dumps([e for e in events if e.get("touchpoint_message_id")]).encode()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api"
    ) as client:
        first = await client.post("/webhooks/sendgrid", content=body, headers=signed(key, body))
        again = await client.post("/webhooks/sendgrid", content=body, headers=signed(key, body))
    assert first.status_code == again.status_code == 200, first.text
    analytics = Analytics(engine)
    kept = analytics.message_events([MESSAGE])[MESSAGE]
    assert sorted(e.event for e in kept) == sorted(
        ["delivered", "open", "open", "click", "bounce", "dropped", "spamreport",
         "group_unsubscribe", "unsubscribe"]
    )  # fmt: skip
    assert {e.provider for e in kept} == {"sendgrid"}
    [hello] = analytics.journey("welcome", datetime.now(UTC) - timedelta(days=1)).templates
    assert (hello.sent, hello.delivered, hello.opened, hello.clicked) == (1, 1, 1, 1)
    assert (hello.bounced, hello.dropped, hello.spam_reported, hello.unsubscribed) == (1, 1, 1, 1)
