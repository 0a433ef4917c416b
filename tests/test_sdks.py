"""The official SDKs, unchanged and at their default settings (plus compression for Segment's,
which RudderStack's has on by default), pointed at a real ``uvicorn`` serving the API: an
identify and a track start a real journey on Temporal, and a personalised email lands in the
Maildir outbox through the real delivery activity."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from activities.delivery import DeliveryActivities
from activities.email.maildir import MaildirProvider
from activities.http import make_client
from activities.rendering import Renderer
from ingestion.api import Api, create_app
from ingestion.router import Router
from ingestion.service import Ingestion
from language.validator import validate
from store.consent import ConsentStore
from store.database import connect
from store.entries import EntryStore
from store.keys import WriteKeys
from store.ledger import Ledger
from store.processed import ProcessedMessages
from store.profiles import ProfileStore
from tests.conftest import ROOT
from tests.net import served
from tests.temporal import plan_from, running_workers
from workflows.models import RunSettings

WELCOME = """
id: sdk-welcome
name: Welcome from an SDK
category: marketing
trigger:
  event: Signed Up
steps:
  - send: email
    template: newsletter-welcome
"""


@dataclass
class Shop:
    url: str
    write_key: str
    outbox: Path


@pytest.fixture
async def shop(time_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Shop]:
    """The API on a real port, routing into Temporal, with real delivery to a Maildir."""
    engine = connect(f"sqlite:///{tmp_path / 'touchpoint.db'}")
    delivery = DeliveryActivities(
        config=validate((), root=ROOT).config,
        ledger=Ledger(engine),
        renderer=Renderer(ROOT / "templates", "en"),
        email=MaildirProvider(tmp_path / "outbox"),
        http=make_client(),
        unsubscribe_secret=b"s" * 32,
        environ={},
        consent=ConsentStore(engine),
    )
    plan = plan_from(WELCOME)
    async with running_workers(time_env.client, delivery.all()) as prefix:
        router = Router(
            time_env.client,
            {plan.journey_id: plan},
            EntryStore(engine),
            RunSettings(queue_prefix=prefix, index_runs=False),
        )
        keys = WriteKeys(engine)
        key = keys.create("web shop")
        app = create_app(
            Api(Ingestion(ProfileStore(engine), ProcessedMessages(engine), router.route), keys)
        )
        async with served(app) as url:
            yield Shop(url, key, tmp_path / "outbox")


async def the_email(outbox: Path, seconds: float = 20) -> EmailMessage:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        files = sorted((outbox / "new").glob("*")) if (outbox / "new").is_dir() else []
        if files:
            [only] = files
            message = BytesParser(policy=policy.default).parsebytes(only.read_bytes())
            assert isinstance(message, EmailMessage)
            return message
        await asyncio.sleep(0.1)
    raise AssertionError("no email reached the outbox")


def use(sdk: Any, customer: str) -> None:
    """What a shop's code does: identify with Segment's reserved traits, then track."""
    sdk.identify(customer, {"email": "max@example.com", "firstName": "Max"})
    sdk.track(customer, "Signed Up", {"source": "newsletter-form"})
    sdk.flush()


async def test_rudderstack_sdk_with_its_defaults(shop: Shop) -> None:
    """rudder-sdk-python gzips every batch and puts identify traits in context.traits."""
    from rudderstack.analytics import Client

    sdk = Client(write_key=shop.write_key, host=shop.url)
    assert sdk.gzip is True, "compression is RudderStack's default"
    await _run_sdk(lambda: use(sdk, f"max-{uuid.uuid4().hex[:8]}"))
    email = await the_email(shop.outbox)
    assert str(email["To"]) == "max@example.com"
    assert str(email["Subject"]) == "Welcome to Example Laptop Shop, Max!"


async def test_segment_sdk_with_compression_on(shop: Shop) -> None:
    from segment.analytics import Client

    errors: list[Exception] = []
    sdk = Client(
        write_key=shop.write_key, host=shop.url, gzip=True, on_error=lambda e, _: errors.append(e)
    )
    await _run_sdk(lambda: use(sdk, f"max-{uuid.uuid4().hex[:8]}"))
    email = await the_email(shop.outbox)
    assert str(email["To"]) == "max@example.com"
    assert str(email["Subject"]) == "Welcome to Example Laptop Shop, Max!"
    assert errors == []


async def _run_sdk(calls: Callable[[], None]) -> None:
    """SDKs block (requests, a consumer thread): run them beside the event loop."""
    await asyncio.to_thread(calls)
